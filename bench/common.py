"""What the control-plane benchmarks share: percentiles, a pod watch, the namespace and CRDs on a local
cluster, an operator process's resource use, and the headline rows written to docs/benchmarks.json."""

from __future__ import annotations

import json
import os
import platform
import statistics
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CLK_TCK = os.sysconf("SC_CLK_TCK")


def pct(xs: list[float], q: float) -> float:
    """The q-quantile by nearest rank over the sorted values (q=0.5: the median of an odd count)."""
    s = sorted(xs)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


# ---- a process's resource use (/proc) -------------------------------------------------------------


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of the process (not its children)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "; utime, stime are 14, 15
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class ProcSampler:
    """Samples a process's RSS (MiB) and CPU seconds every `every_s`, in a thread."""

    def __init__(self, pid: int, every_s: float = 1.0) -> None:
        self.pid, self.every_s = pid, every_s
        self.samples: list[tuple[float, float, float]] = []  # (monotonic, rss MiB, cpu s)
        self.stop = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)

    def start(self) -> ProcSampler:
        self.t.start()
        return self

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.samples.append((time.monotonic(), rss_mib(self.pid), cpu_s(self.pid)))
            except (FileNotFoundError, ProcessLookupError, ValueError):
                return
            self.stop.wait(self.every_s)

    def window(self, t0: float, t1: float) -> dict[str, float]:
        """Peak RSS and mean CPU (cores) between two monotonic times."""
        # the samples just outside the window too, so that a window shorter than a sample has two
        xs = [s for s in self.samples if t0 - self.every_s <= s[0] <= t1 + self.every_s]
        if len(xs) < 2:
            return {"rss_peak_mib": max((s[1] for s in xs), default=0.0), "cpu_cores": 0.0}
        return {
            "rss_peak_mib": max(s[1] for s in xs),
            "cpu_cores": (xs[-1][2] - xs[0][2]) / (xs[-1][0] - xs[0][0]),
        }


# ---- pods as the API server reports them ----------------------------------------------------------


class PodWatch:
    """Local arrival time of each pod's first ADDED event and first Ready, and of DELETED events, from
    one list-then-watch of a namespace (raw JSON, not deserialized into models: thousands of pods)."""

    def __init__(self, core: Any, ns: str) -> None:
        self.core, self.ns = core, ns
        self.seen: dict[str, float] = {}
        self.ready: dict[str, float] = {}
        self.deleted: dict[str, float] = {}
        self.live: dict[str, bool] = {}  # name -> Ready, for pods that exist (not terminating)
        self.last_change = time.monotonic()  # a pod added, deleted or marked for deletion
        self.stop = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)

    def start(self) -> PodWatch:
        self.t.start()
        return self

    def _observe(self, kind: str, pod: dict[str, Any], now: float) -> None:
        meta = pod.get("metadata") or {}
        name = meta.get("name", "")
        if kind == "DELETED":
            self.deleted[name] = now
            self.live.pop(name, None)
            self.last_change = now
            return
        if name not in self.seen:
            self.seen[name] = now
            self.last_change = now
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in (pod.get("status") or {}).get("conditions") or []
        )
        if ready:
            self.ready.setdefault(name, now)
        if meta.get("deletionTimestamp"):
            if self.live.pop(name, None) is not None:
                self.last_change = now
        else:
            self.live[name] = ready

    def run(self) -> None:
        from kubernetes.client.exceptions import ApiException
        from kubernetes.watch.watch import iter_resp_lines

        rv = ""
        while not self.stop.is_set():
            try:
                if not rv:
                    resp = self.core.list_namespaced_pod(self.ns, _preload_content=False)
                    body = json.loads(resp.data)
                    now = time.monotonic()
                    for p in body["items"]:
                        self._observe("ADDED", p, now)
                    rv = body["metadata"]["resourceVersion"]
                resp = self.core.list_namespaced_pod(
                    self.ns,
                    watch=True,
                    resource_version=rv,
                    allow_watch_bookmarks=True,
                    timeout_seconds=30,
                    _preload_content=False,
                )
                for line in iter_resp_lines(resp):
                    if not line:
                        continue
                    ev = json.loads(line)
                    obj = ev.get("object") or {}
                    if ev["type"] == "ERROR":
                        rv = ""  # 410 Gone: list again
                        break
                    rv = (obj.get("metadata") or {}).get("resourceVersion", rv)
                    if ev["type"] != "BOOKMARK":
                        self._observe(ev["type"], obj, time.monotonic())
                    if self.stop.is_set():
                        break
            except ApiException as e:
                if e.status == 410:
                    rv = ""
                time.sleep(0.5)
            except Exception:  # a dropped connection: resume from the last version
                time.sleep(0.5)


# ---- the local cluster, prepared for the operator ----------------------------------------------------


def prepare(cluster: Any, ns: str) -> Any:
    """The namespace (with its default ServiceAccount), Ember's CRDs established and the serving
    PriorityClass; returns a tests.integration.conftest.Kube bound to the namespace."""
    from ember.api.v1alpha1 import GROUP, PLURAL

    from tests.integration.conftest import Kube, eventually

    k = Kube(cluster, ns)
    k.core.create_namespace({"metadata": {"name": ns}})
    eventually(lambda: k.core.read_namespaced_service_account("default", ns), 60)
    k.kubectl("apply", "-f", str(ROOT / "crds"))
    eventually(
        lambda: (
            k.kubectl(
                "wait", "--for=condition=established", "--timeout=10s", f"crd/{PLURAL}.{GROUP}", check=False
            ).returncode
            == 0
        ),
        90,
        what="CRD established",
    )
    k.ensure_priority_class("ember-serving", 1000)
    return k


# ---- docs/benchmarks.json -------------------------------------------------------------------------------


def machine() -> str:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores, {mem:.0f} GiB, {platform.platform()}"


def summary(name: str, xs: list[float], unit: str, cmd: str, scale: float = 1.0) -> dict[str, Any]:
    """One headline row: median (value), n, min, max, date, machine, command."""
    return {"name": name, "value": round(statistics.median(xs) * scale, 3), "unit": unit, "n": len(xs),
            "min": round(min(xs) * scale, 3), "max": round(max(xs) * scale, 3),
            "date": datetime.now(UTC).date().isoformat(), "machine": machine(), "command": cmd}  # fmt: skip


def record(key: str, rows: list[dict[str, Any]], out: Path) -> None:
    """Replace `key`'s rows in the benchmarks file (other benchmarks' entries are kept)."""
    data = json.loads(out.read_text()) if out.exists() else {}
    data[key] = rows
    out.write_text(json.dumps(data, indent=1) + "\n")
