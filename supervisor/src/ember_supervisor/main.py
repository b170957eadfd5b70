"""`ember-supervisor --config FILE`: PID 1 of the replica container (`ember-supervisor prestage ...`:
the warm-buffer placeholder's init container, see `prestage`).

Starts the engine (see `startup`), then serves the supervisor's own endpoint until SIGTERM or the
engine exits (the container then exits with the engine's status, and the kubelet decides):
  GET  /healthz     200 while the engine is serving and answers its health path, else 503 (asleep too)
  GET  /livez       200 unless the engine failed (asleep is alive: a probe here keeps a sleeper)
  GET  /startup     the start path, the fallback reason if any, seconds per phase, and the engine's
                    state ("engine": see `engine_state`) (JSON)
  POST /checkpoint  live dump of the engine (asleep where it has sleep mode on a GPU, see `checkpoint`),
                    canary verify, gc, the engine serves again; the manifest (JSON)
  POST /sleep, POST /wake, GET /state   sleeping replicas (`sleep_routes`)
  GET  /metrics     Prometheus text

Every POST route acts on the engine, so every one needs `Authorization: Bearer <token>`, the token the
operator put in the pod (env EMBER_SUPERVISOR_TOKEN, from the service's Secret): 401 without it or with
a wrong one, and when no token is configured at all (fail closed). The GET routes only read. The check
is one place (`Handler.do_POST`, before the route table `post_routes`): a route registered there is
protected by being registered.
If the engine exits while it sleeps or wakes, the supervisor stays up in state `failed` with the
reason, so the operator reads it and replaces the replica; while serving, it exits as before.
"""

from __future__ import annotations

import argparse
import hmac
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from ember_checkpoint import cuda, engine_http, lifecycle
from ember_checkpoint.cli import local_identity
from ember_checkpoint.criu import Criu
from ember_checkpoint.manifest import Manifest
from ember_checkpoint.storage import LocalDirStorage
from ember_checkpoint.verify import verify
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ember_supervisor import prestage, procs, sleep_routes
from ember_supervisor.config import SupervisorConfig
from ember_supervisor.engine_state import EngineState, State, WrongState
from ember_supervisor.metrics import SupervisorMetrics
from ember_supervisor.sleep import Sleeper
from ember_supervisor.startup import Startup, start_engine

log = logging.getLogger("ember.supervisor")
TOKEN_ENV = "EMBER_SUPERVISOR_TOKEN"


class Supervisor:
    def __init__(self, cfg: SupervisorConfig) -> None:
        self.cfg = cfg
        self.metrics = SupervisorMetrics()
        self.startup = Startup()
        self._checkpoint_lock = threading.Lock()
        self.state = EngineState(on_change=self._state_metric)
        self.sleeper = Sleeper(
            cfg,
            self.metrics,
            self.state,
            lambda: self.startup.engine_pid,
            self.quiesce,
            self._checkpoint_lock,
        )

    def _state_metric(self, old: State | None, new: State) -> None:
        for s in State:
            self.metrics.engine_state.labels(s.value).set(1 if s == new else 0)

    def engine_healthy(self) -> bool:
        try:
            return httpx.get(self.cfg.engine_url + self.cfg.health_path, timeout=2.0).is_success
        except httpx.HTTPError:
            return False

    def quiesce(self) -> None:
        """Wait until the engine's in-flight gauges read 0 (metrics it does not export count as 0)."""
        deadline = time.monotonic() + self.cfg.quiesce_timeout_s
        while True:
            try:
                text = httpx.get(self.cfg.engine_url + "/metrics", timeout=5.0).text
                busy = sum(
                    s.value
                    for fam in text_string_to_metric_families(text)
                    for s in fam.samples
                    if s.name in self.cfg.quiesce_metrics
                )
            except (httpx.HTTPError, ValueError):
                busy = 0.0
            if busy == 0:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"engine still busy ({busy:.0f} requests) after {self.cfg.quiesce_timeout_s}s"
                )
            time.sleep(0.1)

    def checkpoint(self) -> Manifest:
        """The live dump: out of the Service first (state `checkpointing`, /healthz 503, for
        `checkpoint_unready_s`), quiesce, asleep at `dump_sleep_level` (or awake), driver checkpoint +
        CRIU with the engine left running, then the canary verify while the engine still sleeps (the GPU
        holds the verify copy beside an asleep engine, never two awake ones), then wake and serve."""
        if self.cfg.checkpoint_dir is None or self.startup.engine_pid is None:
            raise RuntimeError("no checkpoint_dir configured, or no engine running")
        t0 = time.monotonic()
        with self._checkpoint_lock, procs.children_lock:
            self.state.move(
                State.CHECKPOINTING, expect=State.SERVING
            )  # a frozen or sleeping engine is not dumped
            try:
                manifest = self._checkpoint()
            finally:  # a wake that failed left `failed`: the checkpoint stands, the replica is replaced
                if self.state.state == State.CHECKPOINTING:
                    self.state.move(State.SERVING)
        self.metrics.checkpoints.labels("verified" if manifest.verified else "unverified").inc()
        self.metrics.checkpoint_seconds.set(time.monotonic() - t0)
        return manifest

    def _checkpoint(self) -> Manifest:
        assert self.cfg.checkpoint_dir is not None and self.startup.engine_pid is not None
        criu, gpu = Criu.find(network_lock=self.cfg.criu_network_lock), cuda.load()
        level = self.cfg.dump_sleep_level(gpu is not None)
        identity = local_identity(self.cfg.identity, criu, gpu)
        storage = LocalDirStorage(self.cfg.checkpoint_dir)
        cid = f"{identity.hash()[7:19]}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%fZ')}"
        req = lifecycle.DumpRequest(
            pid=self.startup.engine_pid,
            checkpoint_id=cid,
            identity=identity,
            engine_port=self.cfg.engine_port,
            health_path=self.cfg.health_path,
            canary=self.cfg.canary,
            leave_running=True,
            sleep_level=level,
            weight_loader=self.cfg.weight_loader,
            wake_after=False,
        )
        if self.cfg.checkpoint_unready_s:
            time.sleep(self.cfg.checkpoint_unready_s)  # the readiness probe sees 503 and the Service drops us
        try:
            manifest = lifecycle.dump(req, storage, criu, gpu, quiesce=self.quiesce)
            if self.cfg.verify_after_checkpoint and manifest.canary is not None:
                manifest = verify(cid, storage, criu, timeout_s=self.cfg.restore_timeout_s)
            lifecycle.gc(storage, self.cfg.keep_verified)
        finally:
            if level is not None:
                self._wake_after_dump(level)
        return manifest

    def _wake_after_dump(self, level: int) -> None:
        """Wake the engine the dump put to sleep (if it did: a dump that failed before the sleep left
        it awake); a wake that fails is the engine's failure (state `failed`: the operator replaces it)."""
        try:
            r = httpx.get(self.cfg.engine_url + "/is_sleeping", timeout=10.0)
            if r.status_code == 404:  # no sleep routes (dev mode off): the sleep failed, the engine is awake
                return
            r.raise_for_status()
            if r.json().get("is_sleeping") is not True:
                return
            t0 = time.monotonic()
            engine_http.run_steps(
                self.cfg.engine_url,
                lifecycle.wake_steps(level, self.cfg.weight_loader),
                self.cfg.wake_timeout_s,
            )
            engine_http.wait_healthy(self.cfg.engine_url + self.cfg.health_path, self.cfg.wake_timeout_s)
            log.info(
                json.dumps({"event": "woke_after_dump", "level": level, "s": round(time.monotonic() - t0, 3)})
            )
        except Exception as e:  # noqa: BLE001
            detail = f"{type(e).__name__}: {e}"
            log.error(json.dumps({"event": "wake_after_dump_failed", "error": detail[:2000]}))
            self.state.fail("wake_after_dump_failed", detail)


def authorized(header: str | None, token: str | None) -> bool:
    """`Authorization: Bearer <token>`, compared in constant time; no configured token: never."""
    if not token or not header or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header.removeprefix("Bearer ").encode(), token.encode())


def _checkpoint_route(sup: Supervisor, body: bytes) -> tuple[int, str]:
    try:
        return 200, sup.checkpoint().to_json()
    except WrongState as e:
        return 409, json.dumps({"error": str(e), "state": e.state.value})
    except Exception as e:  # reported to the caller (the operator) and counted; the engine runs on
        sup.metrics.checkpoints.labels("failed").inc()
        log.error(json.dumps({"event": "checkpoint_failed", "error": f"{type(e).__name__}: {e}"[:2000]}))
        return 500, json.dumps({"error": f"{type(e).__name__}: {e}"[:4000]})


def post_routes(sup: Supervisor) -> dict[str, Callable[[bytes], tuple[int, str]]]:
    """Every mutating route; `Handler.do_POST` is the one place that dispatches (and checks) them."""
    return {"/checkpoint": lambda body: _checkpoint_route(sup, body), **sleep_routes.post_routes(sup.sleeper)}


def _handler(sup: Supervisor, token: str | None) -> type[BaseHTTPRequestHandler]:
    posts = post_routes(sup)
    gets = sleep_routes.get_routes(sup.sleeper)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            if path == "/healthz":
                state = sup.state.as_dict()  # read once: the answer's code and its state agree
                # a frozen, sleeping or checkpointing engine is not asked: it cannot answer, or must not
                ok = state["state"] == State.SERVING.value and sup.engine_healthy()
                self._send(200 if ok else 503, json.dumps({"engine_healthy": ok, **state}))
            elif path == "/livez":
                alive = sup.state.state != State.FAILED
                self._send(200 if alive else 503, json.dumps(sup.state.as_dict()))
            elif path == "/startup":
                self._send(200, json.dumps({**sup.startup.as_dict(), "engine": sup.state.as_dict()}))
            elif path == "/metrics":
                self._send(200, generate_latest(sup.metrics.registry).decode(), CONTENT_TYPE_LATEST)
            elif path in gets:
                self._send(*gets[path]())
            else:
                self._send(404, "{}")

        def do_POST(self) -> None:
            if not authorized(self.headers.get("Authorization"), token):
                self._send(401, json.dumps({"error": "a valid bearer token is required"}))
                return
            route = posts.get(urlsplit(self.path).path)
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            if route is None:
                self._send(404, "{}")
                return
            self._send(*route(body))

        def _send(self, code: int, body: str, ctype: str = "application/json") -> None:
            data = body.encode()
            self.send_response(code)
            self.send_header("content-type", ctype)
            self.send_header("content-length", str(len(data)))
            if code == 401:
                self.send_header("www-authenticate", "Bearer")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


def run(cfg: SupervisorConfig) -> int:
    procs.become_subreaper()
    sup = Supervisor(cfg)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    token = os.environ.get(TOKEN_ENV) or None
    if token is None:
        log.warning(json.dumps({"event": "no_token", "detail": f"{TOKEN_ENV} unset: every POST is refused"}))
    server = ThreadingHTTPServer(("0.0.0.0", cfg.listen_port), _handler(sup, token))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        sup.startup = start_engine(cfg, sup.metrics)
        sup.state.move(State.SERVING)
    except Exception as e:  # the cold start failed too: exit, and let the kubelet's backoff decide
        sup.state.fail("start_failed", f"{type(e).__name__}: {e}")
        try:  # the engine's own words, so that `kubectl logs` shows why
            tail = (cfg.state_dir / "engine.log").read_text(errors="replace")[-3000:]
        except OSError:
            tail = ""
        log.error(
            json.dumps(
                {
                    "event": "engine_start_failed",
                    "error": f"{type(e).__name__}: {e}"[:2000],
                    "engine_log_tail": tail,
                }
            )
        )
        server.shutdown()
        return 1
    status = _watch(sup, stop)
    server.shutdown()
    return status if status >= 0 else 128 - status


def _watch(sup: Supervisor, stop: threading.Event) -> int:
    """Until SIGTERM or the engine's exit; the engine's exit status (0 after SIGTERM)."""
    status, exited = 0, False
    while not stop.wait(0.2):
        st = procs.reap(sup.startup.engine_pid)
        if st is None or exited:
            continue
        exited, status = True, os.waitstatus_to_exitcode(st)
        state = sup.state.state
        log.error(json.dumps({"event": "engine_exited", "status": status, "state": state.value}))
        if state not in (State.SLEEPING, State.ASLEEP, State.WAKING, State.FAILED):
            return status
        # Asleep: stay up and say why, so the operator's next call (a wake) gets the reason; what is
        # left of the tree (vLLM's engine core, frozen) is ended so the replica holds nothing.
        sup.state.fail("engine_exited", f"the engine exited (status {status}) while {state.value}")
        assert sup.startup.engine_pid is not None
        sup.sleeper.end_engine(sup.startup.engine_pid)
    if not exited:
        assert sup.startup.engine_pid is not None
        sup.sleeper.thaw(sup.startup.engine_pid)  # a frozen engine acts on SIGTERM only once thawed
        procs.terminate(sup.startup.engine_pid)
    sup.sleeper.close()
    return status


def _version() -> str:
    """The installed ember-checkpoint's version; a source tree on PYTHONPATH has no metadata."""
    try:
        return version("ember-checkpoint")
    except PackageNotFoundError:
        return "unknown (not installed: run from a source tree)"


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per health poll otherwise
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["prestage"]:  # the warm-buffer placeholder's init container (see prestage)
        raise SystemExit(prestage.main(argv[1:]))
    p = argparse.ArgumentParser(
        prog="ember-supervisor",
        description="PID 1 of a replica pod: restores a verified checkpoint or starts the engine cold, "
        "serves the checkpoint and metrics endpoints.",
        epilog="`ember-supervisor prestage --help`: the warm buffer's pre-staging",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    p.add_argument(
        "--config",
        type=Path,
        default=os.environ.get("EMBER_SUPERVISOR_CONFIG"),
        help="JSON config file (default: $EMBER_SUPERVISOR_CONFIG, else $EMBER_SUPERVISOR_CONFIG_JSON inline)",
    )
    args = p.parse_args(argv)
    inline = os.environ.get("EMBER_SUPERVISOR_CONFIG_JSON")  # what the operator sets on replica pods
    if args.config is not None:
        cfg = SupervisorConfig.load(args.config)
    elif inline:
        cfg = SupervisorConfig.model_validate_json(inline)
    else:
        p.error("--config, EMBER_SUPERVISOR_CONFIG or EMBER_SUPERVISOR_CONFIG_JSON is required")
    raise SystemExit(run(cfg))


if __name__ == "__main__":
    main()
