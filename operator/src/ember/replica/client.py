"""The operator's one client of a replica's supervisor (the container's PID 1, `ember_supervisor`):
POST /checkpoint, /sleep and /wake, each with the service's bearer token (its Secret, created by
kube/executor.ensure_service). Every call to a supervisor goes through this module (an import contract
keeps httpx out of ember.kube and ember.handlers). Answers are read as JSON; only the fields the
operator records are read, so the two packages stay independent.

Contract with the supervisor (ember_supervisor/sleep_routes.py):
  /sleep 200 asleep; 409 not serving; 400/500 refused or failed (a 500 may leave it failed)
  /wake  200 serving; 409 not asleep (answered with its state: "serving" means a previous wake
         already did it, e.g. before an operator restart, and counts as woken); 503 failed, with a
         reason (engine_exited, timeout, ...): the replica is to be replaced
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx


class SupervisorError(RuntimeError):
    """A supervisor call that did not do what was asked; `reason` is short and machine-readable."""

    def __init__(self, message: str, reason: str = "error") -> None:
        super().__init__(message)
        self.reason = reason


def auth_headers(token: str) -> dict[str, str]:
    """What every call to a supervisor's POST routes carries: the service's token (its Secret)."""
    return {"Authorization": f"Bearer {token}"}


def supervisor_url(ip: str, port: int) -> str:
    return f"http://{ip}:{port}"


def _json(r: httpx.Response) -> dict[str, Any]:
    try:
        body = r.json()
    except ValueError as e:
        raise SupervisorError(f"supervisor answered non-JSON: {r.text[:200]}", "bad_answer") from e
    if not isinstance(body, dict):
        raise SupervisorError("supervisor answered something other than an object", "bad_answer")
    return body


async def request_checkpoint(url: str, token: str, timeout_s: float) -> dict[str, Any]:
    """POST /checkpoint: the supervisor quiesces, dumps (the engine keeps serving), runs a canary restore
    and answers with the manifest. Takes as long as a dump plus a verify. `token`: the service's
    supervisor token (its Secret); sent as a bearer token, never logged."""
    try:
        async with httpx.AsyncClient(timeout=timeout_s) as c:
            r = await c.post(f"{url.rstrip('/')}/checkpoint", headers=auth_headers(token))
    except httpx.HTTPError as e:
        raise SupervisorError(
            f"supervisor unreachable at {url}: {type(e).__name__}: {e}", "unreachable"
        ) from e
    if r.status_code != 200:
        raise SupervisorError(f"supervisor answered {r.status_code}: {r.text[:300]}", f"http_{r.status_code}")
    return _json(r)


def _post(url: str, path: str, token: str, timeout_s: float, body: Mapping[str, Any]) -> httpx.Response:
    try:
        with httpx.Client(timeout=timeout_s) as c:
            return c.post(f"{url.rstrip('/')}{path}", headers=auth_headers(token), json=dict(body))
    except httpx.TimeoutException as e:
        raise SupervisorError(f"no answer from {url}{path} within {timeout_s:.0f} s", "timeout") from e
    except httpx.HTTPError as e:
        raise SupervisorError(
            f"supervisor unreachable at {url}: {type(e).__name__}: {e}", "unreachable"
        ) from e


def sleep(url: str, token: str, timeout_s: float, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """POST /sleep (the supervisor's configured tier unless `body` names one): the engine is asleep
    when this returns. Raises SupervisorError otherwise."""
    r = _post(url, "/sleep", token, timeout_s, body or {})
    if r.status_code != 200:
        answer = _answer(r)
        reason = str(answer.get("reason") or f"http_{r.status_code}")
        raise SupervisorError(
            f"sleep refused: {r.status_code} {str(answer.get('error') or r.text)[:300]}", reason
        )
    return _json(r)


def _answer(r: httpx.Response) -> dict[str, Any]:
    """An error answer's JSON object, or {} when it is not one."""
    try:
        body = r.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def wake(url: str, token: str, timeout_s: float) -> dict[str, Any]:
    """POST /wake: the engine serves again when this returns (a 409 from an engine already serving
    counts: an earlier wake did it). Raises SupervisorError with the supervisor's reason otherwise."""
    r = _post(url, "/wake", token, timeout_s, {})
    if r.status_code == 200:
        return _json(r)
    body = _answer(r)
    if r.status_code == 409 and body.get("state") == "serving":
        return {"state": "serving", "already": True}
    reason = str(
        body.get("reason") or (f"state_{body['state']}" if body.get("state") else f"http_{r.status_code}")
    )
    raise SupervisorError(f"wake failed: {r.status_code} {str(body.get('error') or r.text)[:300]}", reason)


@dataclass(frozen=True)
class Replicas:
    """Supervisor calls for one service's replicas, by pod name: what the executor uses for Park and
    Wake (kube/executor.py). `urls`: pod name -> supervisor URL (from the pods' IPs)."""

    urls: Mapping[str, str]
    token: str
    sleep_timeout_s: float = 60.0
    wake_timeout_s: float = 30.0

    def _url(self, pod: str) -> str:
        url = self.urls.get(pod)
        if not url:
            raise SupervisorError(f"{pod} has no address", "no_address")
        return url

    def sleep(self, pod: str) -> dict[str, Any]:
        return sleep(self._url(pod), self.token, self.sleep_timeout_s)

    def wake(self, pod: str) -> dict[str, Any]:
        return wake(self._url(pod), self.token, self.wake_timeout_s)
