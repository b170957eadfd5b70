"""The HTTP calls the lifecycle and the supervisor make to an engine: wait until healthy, the canary
request, sleep and the after-restore (wake) steps.

Each takes an optional `client`: the supervisor's wake path passes one long-lived `httpx.Client`,
because building a client (its TLS context) costs 20-100 ms, which a sub-second wake cannot spare.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import httpx

from ember_checkpoint.manifest import Canary, HttpStep

log = logging.getLogger("ember.checkpoint")


class EngineExited(RuntimeError):
    pass


def _http(client: httpx.Client | None) -> Any:
    return client if client is not None else httpx


def wait_healthy(
    url: str,
    timeout_s: float,
    poll_s: float = 0.05,
    alive: Callable[[], bool] | None = None,
    client: httpx.Client | None = None,
) -> float:
    """Poll url until it answers 2xx; returns the seconds waited. Raises TimeoutError, or
    EngineExited as soon as `alive` says the engine is gone (a failed start is not waited out)."""
    t0 = time.monotonic()
    last = "no answer"
    while True:
        if alive is not None and not alive():
            raise EngineExited(f"the engine exited before {url} answered (last: {last})")
        try:
            r = _http(client).get(url, timeout=2.0)
            if r.is_success:
                return time.monotonic() - t0
            last = f"HTTP {r.status_code}"
        except httpx.HTTPError as e:
            last = type(e).__name__
        if time.monotonic() - t0 > timeout_s:
            raise TimeoutError(f"{url} not healthy after {timeout_s:.0f}s (last: {last})")
        time.sleep(poll_s)


def canary_value(body: str, json_field: str | None) -> str:
    """The part of a response that must be identical after a restore.

    A whole OpenAI completion response differs run to run (id, created): compare only the field that
    holds the generated text, e.g. `choices.0.text`.
    """
    if not json_field:
        return body
    node: object = json.loads(body)
    for part in json_field.split("."):
        node = node[int(part)] if isinstance(node, list) else node[part]  # type: ignore[index]
    return node if isinstance(node, str) else json.dumps(node, sort_keys=True)


def run_canary(
    base_url: str, canary: Canary, timeout_s: float = 120.0, client: httpx.Client | None = None
) -> str:
    headers = {"content-type": "application/json"} if canary.body else {}
    r = _http(client).request(
        canary.method,
        base_url.rstrip("/") + canary.path,
        content=canary.body,
        headers=headers,
        timeout=timeout_s,
    )
    r.raise_for_status()
    return canary_value(r.text, canary.json_field)


def sleep(base_url: str, level: int, timeout_s: float = 300.0, client: httpx.Client | None = None) -> float:
    """Put a vLLM engine to sleep (needs --enable-sleep-mode and VLLM_SERVER_DEV_MODE=1); returns seconds.

    Level 1 drops the KV cache and moves the weights to host memory, so a checkpoint taken now holds
    the weights once (in host memory) and no KV cache: fewer bytes to dump, store and restore.
    """
    t0 = time.monotonic()
    r = _http(client).post(f"{base_url.rstrip('/')}/sleep", params={"level": str(level)}, timeout=timeout_s)
    r.raise_for_status()
    return time.monotonic() - t0


def run_steps(
    base_url: str,
    steps: list[HttpStep],
    timeout_s: float,
    poll_s: float = 0.02,
    client: httpx.Client | None = None,
) -> float:
    """Make each call in order, retrying while the engine does not answer yet; returns seconds. A step
    that answers an HTTP error is replaced by its fallback (the reason logged), if it has one."""
    t0 = time.monotonic()
    for first in steps:
        step: HttpStep | None = first
        while step is not None:
            try:
                r = _http(client).request(
                    step.method, base_url.rstrip("/") + step.path, json=step.json_body, timeout=timeout_s
                )
                r.raise_for_status()
                break
            except httpx.TransportError:
                if time.monotonic() - t0 > timeout_s:
                    raise TimeoutError(
                        f"{step.method} {step.path}: engine not answering after {timeout_s:.0f}s"
                    ) from None
                time.sleep(poll_s)
            except httpx.HTTPStatusError as e:
                if step.fallback is None:
                    raise
                log.warning(
                    json.dumps(
                        {
                            "event": "engine_step_failed_using_fallback",
                            "step": f"{step.method} {step.path}",
                            "body": step.json_body,
                            "reason": f"HTTP {e.response.status_code}: {e.response.text[:500]}",
                            "fallback": f"{step.fallback.method} {step.fallback.path}",
                        }
                    )
                )
                step = step.fallback
    return time.monotonic() - t0
