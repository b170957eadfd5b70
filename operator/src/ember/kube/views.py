"""Pure translation of raw pod objects (dicts, as kopf delivers them) into the planner's PodView."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from ember.api import labels as L
from ember.policy.gpuyield import Sleeper, Waiting
from ember.policy.rollout import PodView


def _ts(value: Any) -> float | None:
    if not value:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


STATUS_LISTS = ("initContainerStatuses", "containerStatuses")


def container_statuses(status: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The part of the containers' statuses `failure` reads (for the operator's compact pod index)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for key in STATUS_LISTS:
        out[key] = [
            {
                "name": c.get("name"),
                "state": {k: dict(v or {}) for k, v in (c.get("state") or {}).items()},
                "lastState": {k: dict(v or {}) for k, v in (c.get("lastState") or {}).items()},
            }
            for c in status.get(key) or []
        ]
    return out


def failure(status: Mapping[str, Any]) -> str | None:
    """Why a container of the pod keeps failing, in one line, or None: the last line of the
    termination message of a container that exited non-zero (the injected supervisor writes ONE line
    there when the image has no vLLM or no Python 3; FallbackToLogsOnError gives the log's tail
    otherwise), else its exit code and reason."""
    for key in STATUS_LISTS:
        for c in status.get(key) or []:
            for where in ("state", "lastState"):
                t = (c.get(where) or {}).get("terminated") or {}
                if not t or not t.get("exitCode"):
                    continue
                lines = [x.strip() for x in str(t.get("message") or "").splitlines() if x.strip()]
                what = lines[-1] if lines else f"exit code {t['exitCode']} ({t.get('reason') or 'Error'})"
                return f"container {c.get('name')}: {what}"[:300]
    return None


def pod_view(pod: Mapping[str, Any], in_flight: float | None = None) -> PodView | None:
    meta = pod.get("metadata", {})
    labels, ann = meta.get("labels") or {}, meta.get("annotations") or {}
    name = meta.get("name", "")
    suffix = name.rsplit("-", 1)[-1]
    if not suffix.isdigit():
        return None
    status = pod.get("status") or {}
    conds = {c.get("type"): c for c in status.get("conditions") or []}
    ready = conds.get("Ready", {}).get("status") == "True"
    sched = conds.get("PodScheduled", {})
    unschedulable = (
        sched.get("message") or "Unschedulable"
        if sched.get("status") == "False" and sched.get("reason") == "Unschedulable"
        else None
    )
    return PodView(
        name=name,
        index=int(suffix),
        template_hash=labels.get(L.TEMPLATE_HASH, ""),
        created=_ts(meta.get("creationTimestamp")) or 0.0,
        ready=ready,
        serving=labels.get(L.SERVING, "true") == "true",
        terminating=bool(meta.get("deletionTimestamp")),
        drain_started=_ts(ann.get(L.DRAIN_STARTED)),
        in_flight=in_flight,
        unschedulable=unschedulable,
        sleeping=labels.get(L.STATE) == L.SLEEPING,
        sleep_started=_ts(ann.get(L.SLEEP_STARTED)),
        failing=failure(status),
    )


def waits_for_gpu(pod: Mapping[str, Any]) -> bool:
    """A replica pod (not asleep, not terminating) the scheduler could not place for lack of GPUs."""
    meta, st = pod.get("metadata") or {}, pod.get("status") or {}
    if (meta.get("labels") or {}).get(L.STATE) == L.SLEEPING or meta.get("deletionTimestamp"):
        return False
    return any(
        c.get("type") == "PodScheduled"
        and c.get("reason") == "Unschedulable"
        and L.GPU_RESOURCE in (c.get("message") or "")
        for c in st.get("conditions") or []
    )


def gpu_yield_inputs(
    pods: Iterable[Mapping[str, Any]],
) -> tuple[list[Waiting], list[Sleeper], frozenset[str]]:
    """policy/gpuyield.choose's inputs from every replica pod the operator watches."""
    waiting: list[Waiting] = []
    sleepers: list[Sleeper] = []
    all_pods = list(pods)
    if not any(waits_for_gpu(p) for p in all_pods):
        return [], [], frozenset()  # the common case, cheap: every pass of every service runs this
    present: set[str] = set()
    for pod in all_pods:
        meta = pod.get("metadata") or {}
        ns, name = meta.get("namespace") or "", meta.get("name") or ""
        labels, ann = meta.get("labels") or {}, meta.get("annotations") or {}
        present.add(f"{ns}/{name}")
        if waits_for_gpu(pod):
            waiting.append(
                Waiting(
                    ns,
                    name,
                    _ts(meta.get("creationTimestamp")) or 0.0,
                    _ts(ann.get(L.GPU_YIELDED_AT)),
                    ann.get(L.GPU_YIELDED_BY),
                )
            )
        elif labels.get(L.STATE) == L.SLEEPING and not meta.get("deletionTimestamp"):
            sleepers.append(Sleeper(ns, name, labels.get(L.ISVC, ""), _ts(ann.get(L.SLEEP_STARTED))))
    return waiting, sleepers, frozenset(present)
