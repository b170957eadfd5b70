"""The operator's Kubernetes API calls run API_CONCURRENCY at a time, each on a kept-alive connection."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from ember.kube.client import API_CONCURRENCY, api_client
from ember.main import use_api_executor


def test_to_thread_runs_api_concurrency_calls_at_once() -> None:
    # Python's default executor has min(32, cores + 4) threads (6 on 2 cores): at 500 services the
    # calls queued (bench/scale: a scale-up's pod create waited 27 s behind status writes).
    # Every call waits until API_CONCURRENCY of them run at once; with fewer threads it breaks.
    barrier = threading.Barrier(API_CONCURRENCY, timeout=5)

    async def main() -> None:
        pool = use_api_executor()
        try:
            await asyncio.gather(*(asyncio.to_thread(barrier.wait) for _ in range(API_CONCURRENCY)))
        finally:
            pool.shutdown()

    asyncio.run(main())


def test_api_client_pools_a_connection_per_concurrent_call(tmp_path: Path) -> None:
    kc = tmp_path / "kubeconfig"
    kc.write_text(
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "users: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n"
        "current-context: x\n"
    )
    api = api_client(kc)
    assert api.configuration.connection_pool_maxsize == API_CONCURRENCY
    assert api.rest_client.pool_manager.connection_pool_kw["maxsize"] == API_CONCURRENCY
