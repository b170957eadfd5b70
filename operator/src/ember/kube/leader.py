"""Leader election over a coordination.k8s.io/v1 Lease: of several operator replicas only one acts.

Why ~150 lines of our own rather than `kubernetes.leaderelection`: that module runs in threads, builds
its client from the global default configuration (not the ApiClient the operator built from its
Settings) and writes naive local timestamps. The algorithm is client-go's:

- A candidate reads the Lease. It takes it when there is none, when the holder is empty (released),
  when it is already the holder, or when the record has not changed for `leaseDurationSeconds` as
  measured by the candidate's *own monotonic clock* since it first saw that record (clocks of
  different nodes are never compared).
- Every write carries the Lease's resourceVersion, so of two racing candidates exactly one wins; the
  other gets 409 Conflict and stays a standby.
- The leader renews every retry period (duration / 7.5). Without a successful renewal for the renew
  deadline (2/3 of the duration) it stops acting (kopf's stop flag) and exits non-zero, so Kubernetes
  restarts it as a fresh candidate. Deadline < duration means a deposed leader has stopped before a
  standby may take over, given clocks that tick at about the same rate.
- On a clean shutdown (SIGTERM) the leader releases the Lease, so a standby takes over at once
  instead of after a full duration (rolling updates).

While it waits, a standby answers /healthz itself: kopf's liveness endpoint starts only once the
process leads, and a standby killed by its liveness probe would never be ready to take over.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web
from kubernetes import client
from kubernetes.client.exceptions import ApiException

log = logging.getLogger("ember.leader")
SA_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def default_namespace() -> str:
    """The pod's own namespace in a cluster; `default` out of cluster."""
    try:
        return SA_NAMESPACE.read_text().strip() or "default"
    except OSError:
        return "default"


def new_identity() -> str:
    """Hostname (the pod name in a cluster) plus a random suffix: two processes never share one."""
    return f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"


class LeaseElector:
    def __init__(
        self, api: client.ApiClient, namespace: str, name: str, identity: str, lease_duration_s: float = 15.0
    ) -> None:
        self.coord = client.CoordinationV1Api(api)
        self.namespace, self.name, self.identity = namespace, name, identity
        self.duration_s = lease_duration_s
        self.renew_deadline_s = lease_duration_s * 2 / 3
        self.retry_s = lease_duration_s / 7.5
        self._seen: tuple[str | None, str | None] | None = None  # (holder, renewTime) last observed
        self._seen_at = 0.0  # monotonic time when _seen last changed

    def _spec(self, acquired: datetime, now: datetime, transitions: int) -> client.V1LeaseSpec:
        return client.V1LeaseSpec(
            holder_identity=self.identity,
            lease_duration_seconds=max(1, round(self.duration_s)),
            acquire_time=acquired,
            renew_time=now,
            lease_transitions=transitions,
        )

    def try_acquire_or_renew(self) -> bool:
        """One round trip (two on takeover). True: this process holds the Lease now."""
        now = datetime.now(UTC)
        try:
            lease = self.coord.read_namespaced_lease(self.name, self.namespace)
        except ApiException as e:
            if e.status != 404:
                raise
            body = client.V1Lease(
                metadata=client.V1ObjectMeta(name=self.name, namespace=self.namespace),
                spec=self._spec(now, now, 0),
            )
            return self._write(lambda: self.coord.create_namespaced_lease(self.namespace, body))
        spec = lease.spec or client.V1LeaseSpec()
        holder = spec.holder_identity or None
        record = (holder, spec.renew_time.isoformat() if spec.renew_time else None)
        if record != self._seen:
            self._seen, self._seen_at = record, time.monotonic()
        duration = spec.lease_duration_seconds or self.duration_s
        if holder not in (None, self.identity) and time.monotonic() < self._seen_at + duration:
            return False  # held by another, and alive as far as we can tell
        mine = holder == self.identity
        acquired = spec.acquire_time if mine and spec.acquire_time else now
        lease.spec = self._spec(acquired, now, (spec.lease_transitions or 0) + (0 if mine else 1))
        return self._write(lambda: self.coord.replace_namespaced_lease(self.name, self.namespace, lease))

    def _write(self, call: Callable[[], object]) -> bool:
        try:
            call()
            return True
        except ApiException as e:
            if e.status == 409:  # another candidate wrote first (resourceVersion or AlreadyExists)
                return False
            raise

    def release(self) -> None:
        """Clear the holder so that a standby takes over at once (clean shutdown only)."""
        try:
            lease = self.coord.read_namespaced_lease(self.name, self.namespace)
            if lease.spec and lease.spec.holder_identity == self.identity:
                lease.spec.holder_identity = None
                lease.spec.lease_duration_seconds = 1
                self.coord.replace_namespaced_lease(self.name, self.namespace, lease)
                log.info("released the lease", extra={"lease": self.name})
        except ApiException as e:
            log.warning("could not release the lease", extra={"lease": self.name, "error": str(e.reason)})

    async def _attempt(self) -> bool:
        try:
            return await asyncio.to_thread(self.try_acquire_or_renew)
        except ApiException as e:
            # 403 names the verb and resource in its message: say so plainly, keep trying.
            log.error(
                "leader election: API call failed",
                extra={
                    "lease": f"{self.namespace}/{self.name}",
                    "status": e.status,
                    "error": e.body or e.reason,
                },
            )
            return False
        except Exception as e:  # a dropped connection is one failed attempt, not a crash
            log.warning("leader election: attempt failed", extra={"error": f"{type(e).__name__}: {e}"})
            return False

    async def lead(self, operate: Callable[[asyncio.Event], Awaitable[None]], health_port: int = 0) -> None:
        """Wait for the Lease, run `operate(stop_flag)` while holding it; exit 1 if it is lost."""
        standby = await _standby_health(health_port) if health_port else None
        log.info(
            "waiting for the lease", extra={"lease": f"{self.namespace}/{self.name}", "id": self.identity}
        )
        while not await self._attempt():
            await asyncio.sleep(self.retry_s)
        if standby is not None:
            await standby.cleanup()  # free the port for kopf's own liveness endpoint
        log.info("became the leader", extra={"lease": f"{self.namespace}/{self.name}", "id": self.identity})
        stop = asyncio.Event()
        lost = asyncio.Event()

        async def renew() -> None:
            last_ok = time.monotonic()
            while not stop.is_set():
                await asyncio.sleep(self.retry_s)
                if await self._attempt():
                    last_ok = time.monotonic()
                elif time.monotonic() - last_ok > self.renew_deadline_s:
                    log.error("lost the lease: stopping", extra={"lease": f"{self.namespace}/{self.name}"})
                    lost.set()
                    stop.set()

        renewer = asyncio.create_task(renew())
        try:
            await operate(stop)
        finally:
            renewer.cancel()
            if not lost.is_set():
                await asyncio.to_thread(self.release)
        if lost.is_set():
            raise SystemExit(1)  # restart as a fresh candidate; never act without the Lease


async def _standby_health(port: int) -> web.AppRunner:
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"standby": True})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", port, reuse_address=True).start()
    return runner
