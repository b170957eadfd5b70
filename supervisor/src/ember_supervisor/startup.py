"""The start path: restore from a checkpoint, or cold, with one fallback and its reason recorded."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ember_checkpoint import cuda, engine_http, lifecycle, preflight
from ember_checkpoint.cli import local_identity
from ember_checkpoint.criu import Criu
from ember_checkpoint.errors import RestoreRefused
from ember_checkpoint.storage import LocalDirStorage

from ember_supervisor import procs
from ember_supervisor.config import SupervisorConfig
from ember_supervisor.metrics import SupervisorMetrics
from ember_supervisor.plan import choose_start

log = logging.getLogger("ember.supervisor")
FAILURE_FILE = "restore-failure.json"
START_PATH_ENV = "EMBER_START_PATH"  # the operator's choice (ember.policy.startpath): cold | restore
STARTUP_FILE = "startup.json"


@dataclass
class Startup:
    path: str = "pending"
    asked: str = "auto"  # the path the operator chose; `path` is what happened
    checkpoint_id: str | None = None
    why: str = ""
    phases_s: dict[str, float] = field(default_factory=dict)
    fallback_reason: str | None = None
    fallback_detail: str | None = None
    engine_pid: int | None = None
    transparent_hugepages: str = ""  # the node's THP mode at a restore (preflight.transparent_hugepages)

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def failed_ids(state_dir: Path) -> set[str]:
    """Checkpoints whose restore already failed in this pod (the failure file keeps a list)."""
    try:
        data = json.loads((state_dir / FAILURE_FILE).read_text())
    except (OSError, ValueError):
        return set()
    return {str(f["checkpoint_id"]) for f in data.get("failures", []) if f.get("checkpoint_id")}


def record_failure(state_dir: Path, checkpoint_id: str | None, reason: str, detail: str) -> None:
    path = state_dir / FAILURE_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = {"failures": []}
    entry = {
        "checkpoint_id": checkpoint_id,
        "reason": reason,
        "detail": detail,
        "at": datetime.now(UTC).isoformat(),
    }
    data["failures"].append(entry)
    data["last"] = entry
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)


def asked_path(environ: Mapping[str, str]) -> str:
    """The operator's choice: `cold` (do not look for a checkpoint), `restore`, or `auto` when none
    was given (run by hand or by the library's tests: restore when a checkpoint is usable)."""
    v = environ.get(START_PATH_ENV, "").strip().lower()
    return v if v in ("cold", "restore") else "auto"


def start_engine(
    cfg: SupervisorConfig, metrics: SupervisorMetrics, environ: Mapping[str, str] | None = None
) -> Startup:
    """As the operator chose (EMBER_START_PATH): `cold` starts cold; `restore` (or none given)
    restores when a checkpoint is usable, else cold; on a restore failure, cold once. Raises when
    the cold start itself fails (the container exits; the failure file stops a restore retry)."""
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    st = Startup(asked=asked_path(os.environ if environ is None else environ))
    t0 = time.monotonic()
    if st.asked == "cold":
        st.why = "the operator chose cold"
    elif cfg.checkpoint_dir is not None:
        try:
            if _try_restore(cfg, st):
                _finish(cfg, metrics, st, t0)
                return st
        except RestoreRefused as e:
            st.fallback_reason, st.fallback_detail = str(e.reason), e.detail
        except Exception as e:  # any restore failure falls back: an unexpected one too, with its type
            st.fallback_reason, st.fallback_detail = "unexpected", f"{type(e).__name__}: {e}"
        if st.fallback_reason:
            metrics.restore_failures.labels(st.fallback_reason).inc()
            record_failure(cfg.state_dir, st.checkpoint_id, st.fallback_reason, st.fallback_detail or "")
            log.warning(
                json.dumps(
                    {
                        "event": "restore_failed_falling_back_to_cold",
                        "checkpoint": st.checkpoint_id,
                        "reason": st.fallback_reason,
                        "detail": (st.fallback_detail or "")[:2000],
                    }
                )
            )
    _cold(cfg, st)
    _finish(cfg, metrics, st, t0)
    return st


def _try_restore(cfg: SupervisorConfig, st: Startup) -> bool:
    assert cfg.checkpoint_dir is not None
    storage = LocalDirStorage(cfg.checkpoint_dir)
    manifests = []
    for cid in storage.list():
        try:
            manifests.append(storage.read_manifest(cid))
        except ValueError:
            continue
    plan = choose_start(manifests, None, failed_ids(cfg.state_dir), require_verified=cfg.require_verified)
    if plan.path == "cold":
        st.why = plan.why
        return False
    st.checkpoint_id = plan.checkpoint_id
    criu = lifecycle.find_criu(
        lambda: Criu.find(network_lock=cfg.criu_network_lock)
    )  # before the identity: it names the CRIU version
    gpu = cuda.load()
    identity = local_identity(cfg.identity, criu, gpu)
    plan = choose_start(
        manifests, identity.hash(), failed_ids(cfg.state_dir), require_verified=cfg.require_verified
    )
    assert plan.checkpoint_id is not None
    st.checkpoint_id, st.why = plan.checkpoint_id, plan.why
    # The engine's stdout/stderr is this file (procs.start_engine): CRIU reopens it by path, and a new
    # pod's state_dir is empty.
    (cfg.state_dir / "engine.log").touch()
    with procs.children_lock:
        res = lifecycle.restore(
            plan.checkpoint_id,
            storage,
            identity,
            criu_finder=lambda: criu,
            gpu=gpu,
            require_verified=cfg.require_verified,
            health_timeout_s=cfg.restore_timeout_s,
            log_dir=cfg.state_dir / "restore-logs",
        )
    st.path, st.engine_pid = "restore", res.pid
    st.phases_s.update({f"restore_{k}": v for k, v in res.phases_s.items()})
    st.transparent_hugepages = preflight.transparent_hugepages()
    if st.transparent_hugepages != "always":
        log.info(
            json.dumps(
                {
                    "event": "restore_hint",
                    "transparent_hugepages": st.transparent_hugepages,
                    "hint": "CRIU's part of a restore is faster with the node's transparent huge pages "
                    "set to always (docs/install-gpu.md, Node settings)",
                }
            )
        )
    return True


def _cold(cfg: SupervisorConfig, st: Startup) -> None:
    t = time.monotonic()
    st.path = "cold"
    floor = cfg.engine_pid_floor if os.getpid() == 1 else None  # only a container's own pid space
    st.engine_pid = procs.start_engine(cfg.cold_argv, cfg.state_dir / "engine.log", pid_floor=floor)
    st.phases_s["cold_spawn"] = time.monotonic() - t
    pid = st.engine_pid
    try:
        st.phases_s["cold_to_healthy"] = engine_http.wait_healthy(
            cfg.engine_url + cfg.health_path, cfg.cold_timeout_s, alive=lambda: procs.running(pid)
        )
    except engine_http.EngineExited as e:
        raise engine_http.EngineExited(f"{e}; its output: {cfg.state_dir / 'engine.log'}") from e
    except TimeoutError:
        # the supervisor exits next: an engine still loading would outlive it (seen: a vLLM left
        # running after its cold start timed out on a loaded machine)
        procs.terminate(pid)
        raise


def _finish(cfg: SupervisorConfig, metrics: SupervisorMetrics, st: Startup, t0: float) -> None:
    st.phases_s["total"] = time.monotonic() - t0
    metrics.start_path.labels(st.path).inc()
    for phase, seconds in st.phases_s.items():
        metrics.phase_seconds.labels(phase).set(seconds)
    (cfg.state_dir / STARTUP_FILE).write_text(json.dumps(st.as_dict(), indent=2))
    log.info(json.dumps({"event": "engine_started", **st.as_dict()}))
