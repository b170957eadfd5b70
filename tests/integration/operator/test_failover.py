"""Failover on the real control plane: two operator processes with leader election (the chart's
default with HA on) share one Lease; the leader is SIGKILLed in the middle of a scale-up, then the
new leader in the middle of a drain. The standby takes over within the lease timings, finishes the
work, and nothing is done twice.

What catches two actors (a standby acting without the Lease, a decision repeated after takeover):

- Every Event names the process that posted it (`reportingInstance` is the operator's identity, the
  name it holds the Lease under; handlers/registry.py). Every Event must come from the identity that
  held the Lease at the Event's `eventTime` (the tenures are read from the Lease itself, polled every
  0.1 s), and no decision has two Events: one `ScalingDecision` per change, one `ReplicaCreated`,
  `ReplicaDraining` and `ReplicaDeleted` per pod, one `Routing` per change of route.
- The standbys' own logs: no `reconciled` pass and no autoscaler `decision` line before the process
  logs `became the leader`.
- A watch on the replica pods from before the scale-up: every name `<service>-<index>` is created
  once (one uid), no pod is deleted during the scale-up, the drain's start annotation is never
  rewritten (the new leader continues the drain; it does not restart it), and each victim is deleted
  once, not before `drainTimeoutSeconds` after the drain began.

Checked by hand with leader election off in both processes (the same scale-up and drain, both
processes acting): Events came from two reportingInstances, every `ReplicaDraining` and
`ReplicaDeleted` Event was there twice, the first `ScalingDecision` twice, a `Routing` Event repeated
its route, and neither log had `waiting for the lease`. The pod checks alone do not catch two actors:
names are the smallest free index and a second create of a name is AlreadyExists, so the pods stayed
six, one per index; the Events and the logs are what do. The repeated `Routing` Event was also what a
takeover did before handlers/routing.py compared with the slice in the cluster.

The first leader talks to the API server through a relay that holds every request 0.15 s (a slow
link), so that its six creates take about a second and the kill lands between the first and the
last; the relay is cut with the kill, so nothing it sent arrives afterwards (as when a node dies).
The takeover times are printed (`-s`); only their bounds are asserted (timings are benchmarks).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from ember.api import labels as L
from ember_cluster import LocalCluster
from kubernetes import client, watch

from tests.integration.conftest import Kube, eventually, install_crds
from tests.integration.operator.harness import (
    Operator,
    get_isvc,
    isvc_manifest,
    patch_spec,
    replica_pods,
    wait_converged,
)

DURATION_S = 5.0  # the Lease duration; kube/leader.py derives the rest from it
RETRY_S = DURATION_S / 7.5
RENEW_DEADLINE_S = DURATION_S * 2 / 3
SLACK_S = 3.0  # a loaded 2-core machine: API latency, the standby's poll, a thread to run it on
TAKEOVER_BOUND_S = DURATION_S + 2 * RETRY_S + SLACK_S
LINK_DELAY_S = 0.15
N_UP, N_DOWN = 6, 2
DRAIN_S = 15
NAME = "fo"


@pytest.fixture(scope="module")
def crds(cluster: LocalCluster) -> None:
    install_crds(cluster)


class SlowLink:
    """A TCP relay to the API server that holds every client-to-server chunk `delay_s` (TLS passes
    through untouched). `cut()` closes every relayed connection at once: what is still held is lost."""

    def __init__(self, target_port: int, delay_s: float) -> None:
        self.target, self.delay_s = target_port, delay_s
        self.srv = socket.create_server(("127.0.0.1", 0))
        self.port = self.srv.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.lock, self.closed = threading.Lock(), False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                c, _ = self.srv.accept()
                s = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                return
            with self.lock:
                if self.closed:
                    c.close()
                    s.close()
                    return
                self.conns += [c, s]
            threading.Thread(target=self._pump, args=(c, s, self.delay_s), daemon=True).start()
            threading.Thread(target=self._pump, args=(s, c, 0.0), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, delay_s: float) -> None:
        try:
            while data := src.recv(65536):
                if delay_s:
                    time.sleep(delay_s)
                if self.closed:
                    return
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        with self.lock:
            self.closed = True
            conns, self.conns = self.conns, []
        try:
            self.srv.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread (Linux)
        except OSError:
            pass
        self.srv.close()
        for sock in conns:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def kubeconfig(self, cluster: LocalCluster, path: Path) -> Path:
        kc = yaml.safe_load(cluster.kubeconfig.read_text())
        for c in kc["clusters"]:
            c["cluster"]["server"] = f"https://127.0.0.1:{self.port}"
        path.write_text(yaml.safe_dump(kc))
        return path


@dataclass(frozen=True)
class LeaseRecord:
    seen: float  # wall time the poller saw this record
    holder: str | None
    acquired: float | None
    renewed: float | None
    transitions: int


def _ts(t: datetime | None) -> float | None:
    return None if t is None else t.timestamp()


class LeaseLog:
    """Every distinct state of the Lease, polled every 0.1 s from its own client."""

    def __init__(self, cluster: LocalCluster, ns: str, name: str) -> None:
        self.coord = cluster.api(client.CoordinationV1Api)
        self.ns, self.name = ns, name
        self.records: list[LeaseRecord] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopped.is_set():
            try:
                s = self.coord.read_namespaced_lease(self.name, self.ns).spec
                rec = LeaseRecord(
                    time.time(),
                    s.holder_identity,
                    _ts(s.acquire_time),
                    _ts(s.renew_time),
                    s.lease_transitions or 0,
                )
                last = self.records[-1] if self.records else None
                if last is None or (last.holder, last.acquired, last.renewed) != (
                    rec.holder,
                    rec.acquired,
                    rec.renewed,
                ):
                    self.records.append(rec)
            except Exception:
                pass  # not created yet; a slow answer
            self.stopped.wait(0.1)

    def holder(self) -> str | None:
        return self.records[-1].holder if self.records else None

    def first_of(self, identity: str) -> LeaseRecord | None:
        return next((r for r in self.records if r.holder == identity), None)

    def last_of(self, identity: str) -> LeaseRecord | None:
        return next((r for r in reversed(self.records) if r.holder == identity), None)

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(5)


@dataclass(frozen=True)
class PodEvent:
    t: float
    type: str
    name: str
    uid: str
    serving: str | None
    drain_started: str | None
    deleting: bool


class PodLog:
    """A watch on the service's replica pods: every ADDED, MODIFIED and DELETED, in order."""

    def __init__(self, cluster: LocalCluster, ns: str, name: str) -> None:
        self.core = cluster.api(client.CoreV1Api)
        self.ns, self.selector = ns, f"{L.ISVC}={name},{L.COMPONENT}={L.REPLICA}"
        self.events: list[PodEvent] = []
        rv = self.core.list_namespaced_pod(ns, label_selector=self.selector).metadata.resource_version
        self.w = watch.Watch()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(rv,), daemon=True)
        self.thread.start()

    def _run(self, rv: str) -> None:
        while not self.stopped.is_set():
            try:
                for ev in self.w.stream(
                    self.core.list_namespaced_pod,
                    self.ns,
                    label_selector=self.selector,
                    resource_version=rv,
                    timeout_seconds=30,
                ):
                    p = ev["object"]
                    rv = p.metadata.resource_version
                    self.events.append(
                        PodEvent(
                            time.time(),
                            ev["type"],
                            p.metadata.name,
                            p.metadata.uid,
                            (p.metadata.labels or {}).get(L.SERVING),
                            (p.metadata.annotations or {}).get(L.DRAIN_STARTED),
                            p.metadata.deletion_timestamp is not None,
                        )
                    )
                    if self.stopped.is_set():
                        return
            except Exception:
                if self.stopped.is_set():
                    return
                time.sleep(0.2)  # a dropped watch resumes from the last resourceVersion

    def added(self, since: float = 0.0) -> list[PodEvent]:
        return [e for e in self.events if e.type == "ADDED" and e.t >= since]

    def stop(self) -> None:
        self.stopped.set()
        self.w.stop()


def log_lines(path: Path, offset: int = 0) -> list[dict[str, Any]]:
    out = []
    with path.open("rb") as f:
        f.seek(offset)
        for raw in f.read().decode(errors="replace").splitlines():
            try:
                out.append(json.loads(raw))
            except ValueError:
                pass
    return out


def assert_stood_by(path: Path, offset: int = 0, led: bool = False) -> None:
    """In this process's log (from `offset`): no reconcile pass and no autoscaler decision before it
    became the leader; `led=False`: it never became the leader."""
    msgs = [str(x.get("message", "")) for x in log_lines(path, offset)]
    assert "waiting for the lease" in msgs, f"{path}: no 'waiting for the lease'"
    before = msgs[: msgs.index("became the leader")] if "became the leader" in msgs else msgs
    assert led == ("became the leader" in msgs), f"{path}: led={not led}"
    acted = [m for m in before if m == "reconciled" or m.startswith("decision ")]
    assert not acted, f"{path}: acted without the Lease: {acted[:3]}"


def isvc_events(kube: Kube) -> list[Any]:
    evs = kube.core.list_namespaced_event(
        kube.ns, field_selector=f"involvedObject.kind=InferenceService,involvedObject.name={NAME}"
    ).items
    return sorted(evs, key=lambda e: _ts(e.event_time) or 0.0)


def by_reason(evs: list[Any], reason: str) -> list[Any]:
    return [e for e in evs if e.reason == reason]


def standby_health(op: Operator) -> Any:
    return httpx.get(f"http://127.0.0.1:{op.health_port}/healthz", timeout=2).json()


@pytest.fixture
def processes(
    cluster: LocalCluster, crds: None, kube: Kube, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[dict[str, Any]]:
    env = {
        "EMBER_LEADER_ELECTION": "true",
        "EMBER_LEADER_ELECTION_NAMESPACE": kube.ns,
        "EMBER_LEADER_ELECTION_LEASE_NAME": "ember-failover",
        "EMBER_LEADER_ELECTION_LEASE_DURATION_SECONDS": str(DURATION_S),
        "EMBER_NAMESPACES": json.dumps([kube.ns]),
        "EMBER_LOG_FORMAT": "json",
    }
    link = SlowLink(cluster.apiserver_port, LINK_DELAY_S)
    slow = link.kubeconfig(cluster, tmp_path / "slow.kubeconfig")
    ops = {
        "a": Operator(cluster, tmp_path / "a.log", kubeconfig=slow, **env),
        "b": Operator(cluster, tmp_path / "b.log", **env),
        "a2": Operator(cluster, tmp_path / "a-restarted.log", **env),
    }
    leases = LeaseLog(cluster, kube.ns, "ember-failover")
    state: dict[str, Any] = {"link": link, "leases": leases, "env": env, **ops}
    try:
        yield state
    finally:
        for op in ops.values():
            op.stop()
        link.cut()
        leases.stop()
        if (pods := state.get("pods")) is not None:
            pods.stop()
        rep = getattr(request.node, "rep_call", None)
        for key, op in ops.items():
            if rep is not None and rep.failed and op.log.exists():
                print(f"---- operator {key} log (tail)\n{op.log_tail(15)}")


def test_standby_takes_over_mid_scale_up_and_mid_drain_and_nothing_acts_twice(
    kube: Kube, processes: dict[str, Any]
) -> None:
    a, b, a2 = processes["a"], processes["b"], processes["a2"]
    link: SlowLink = processes["link"]
    leases: LeaseLog = processes["leases"]

    # 1. one leader, one standby
    a.start()
    id_a = eventually(leases.holder, 90, what="the first operator holds the Lease")
    a.wait_healthy(90)  # kopf's own liveness endpoint: it runs only once the process leads
    b.start()
    b.wait_healthy(60)
    assert standby_health(b) == {"standby": True}
    time.sleep(2 * RETRY_S)  # the standby has read the Lease at least once
    assert leases.holder() == id_a, "the standby took a Lease that is renewed"
    assert_stood_by(b.log)

    m = isvc_manifest(NAME, replicas=0)
    m["spec"]["scaling"]["drainTimeoutSeconds"] = DRAIN_S
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(m))
    wait_converged(kube, NAME, 0)
    pods = processes["pods"] = PodLog(kube.cluster, kube.ns, NAME)

    # 2. SIGKILL the leader between the first and the last create of a scale-up to N_UP
    patch_spec(kube, NAME, {"replicas": N_UP})
    eventually(lambda: pods.added(), 60, every_s=0.005, what="the scale-up's first pod")
    link.cut()  # the node's link goes with the process: nothing it sent arrives after the kill
    kill1 = time.time()
    a.kill()
    time.sleep(0.5)
    at_kill = {p.metadata.name for p in replica_pods(kube, NAME, include_terminating=True)}
    assert 1 <= len(at_kill) < N_UP, f"the kill must land mid-scale-up: {sorted(at_kill)} existed"

    id_b = eventually(lambda: leases.holder() not in (None, id_a) and leases.holder(), TAKEOVER_BOUND_S + 30)
    took_b, last_a = leases.first_of(id_b), leases.last_of(id_a)
    assert took_b is not None and last_a is not None and took_b.acquired and last_a.renewed
    takeover1 = took_b.acquired - kill1
    wait_converged(kube, NAME, N_UP, timeout_s=90)
    up_done = time.time() - kill1
    print(
        f"\nfailover mid-scale-up: {len(at_kill)}/{N_UP} pods at the kill; takeover "
        f"{takeover1:.2f} s after the kill ({took_b.acquired - last_a.renewed:.2f} s after the killed "
        f"leader's last renewal); scale-up finished {up_done:.2f} s after the kill"
    )
    assert took_b.acquired - last_a.renewed >= DURATION_S - 0.01, "taken over before the Lease expired"
    assert takeover1 <= TAKEOVER_BOUND_S, f"takeover took {takeover1:.2f} s (bound {TAKEOVER_BOUND_S:.2f})"
    assert last_a.renewed <= kill1, "the killed leader renewed after the kill"
    assert took_b.transitions == 1
    names = [e.name for e in pods.added()]
    assert sorted(names) == [f"{NAME}-{i}" for i in range(N_UP)], f"duplicate or missing pods: {names}"
    assert not [e for e in pods.events if e.type == "DELETED" or e.deleting], "a pod went during a scale-up"
    uids_up = {p.metadata.name: p.metadata.uid for p in replica_pods(kube, NAME)}
    assert_stood_by(b.log, led=True)

    # 3. the killed one comes back as the standby; SIGKILL the new leader mid-drain (N_UP -> N_DOWN)
    a2.start()
    a2.wait_healthy(60)
    assert standby_health(a2) == {"standby": True}
    time.sleep(2 * RETRY_S)
    assert leases.holder() == id_b
    assert_stood_by(a2.log)
    victims = {f"{NAME}-{i}" for i in range(N_DOWN, N_UP)}  # with no metrics, the newest go first
    patch_spec(kube, NAME, {"replicas": N_DOWN})

    def drained_started() -> dict[str, str] | None:
        pods_now = replica_pods(kube, NAME)
        got = {p.metadata.name: (p.metadata.annotations or {}).get(L.DRAIN_STARTED) for p in pods_now}
        got = {n: s for n, s in got.items() if s}
        drains = {e.message.split(" ")[0] for e in by_reason(isvc_events(kube), "ReplicaDraining")}
        return got if set(got) == victims and drains == victims else None

    started = eventually(drained_started, 60, what="every victim draining, its Event posted")
    kill2 = time.time()
    b.kill()
    begun = min(datetime.fromisoformat(s).timestamp() for s in started.values())
    assert kill2 < begun + DRAIN_S - TAKEOVER_BOUND_S, "the kill must land well inside the drain"
    id_a2 = eventually(
        lambda: leases.holder() not in (None, id_a, id_b) and leases.holder(), TAKEOVER_BOUND_S + 30
    )
    took_a2, last_b = leases.first_of(id_a2), leases.last_of(id_b)
    assert took_a2 is not None and last_b is not None and took_a2.acquired and last_b.renewed
    takeover2 = took_a2.acquired - kill2
    wait_converged(kube, NAME, N_DOWN, timeout_s=DRAIN_S + 90)
    down_done = time.time() - kill2
    print(
        f"failover mid-drain: takeover {takeover2:.2f} s after the kill "
        f"({took_a2.acquired - last_b.renewed:.2f} s after the last renewal); drain finished "
        f"{down_done:.2f} s after the kill ({time.time() - begun:.2f} s after it began, timeout {DRAIN_S} s)"
    )
    assert took_a2.acquired - last_b.renewed >= DURATION_S - 0.01
    assert takeover2 <= TAKEOVER_BOUND_S, f"takeover took {takeover2:.2f} s (bound {TAKEOVER_BOUND_S:.2f})"
    assert last_b.renewed <= kill2 and took_a2.transitions == 2
    assert_stood_by(a2.log, led=True)

    # the drain was continued, not restarted, and ended once per victim
    assert len(pods.added()) == N_UP, "a pod was created during the drain"
    for v in victims:
        marks = {e.drain_started for e in pods.events if e.name == v and e.drain_started}
        assert marks == {started[v]}, f"{v}: the drain was restarted: {marks}"
        gone = [e for e in pods.events if e.name == v and (e.deleting or e.type == "DELETED")]
        assert gone, f"{v} never deleted"
        assert gone[0].t >= datetime.fromisoformat(started[v]).timestamp() + DRAIN_S - 1, f"{v} left early"
    survivors = {p.metadata.name: p.metadata.uid for p in replica_pods(kube, NAME)}
    assert survivors == {n: u for n, u in uids_up.items() if n not in victims}

    # Events: one per decision, each from the process that held the Lease when it was posted
    first_a = leases.first_of(id_a)
    assert first_a is not None and first_a.acquired
    tenure = {
        id_a: (first_a.acquired, kill1),
        id_b: (took_b.acquired, kill2),
        id_a2: (took_a2.acquired, float("inf")),
    }

    def settled() -> list[Any] | None:
        evs = isvc_events(kube)
        deleted = {e.message.split(" ")[1] for e in by_reason(evs, "ReplicaDeleted")}
        return evs if deleted == victims else None

    evs = eventually(settled, 30, what="every victim's ReplicaDeleted Event")
    for e in evs:
        assert e.reporting_instance in tenure, f"{e.reason} from {e.reporting_instance}, no Lease holder"
        lo, hi = tenure[e.reporting_instance]
        assert lo <= _ts(e.event_time) <= hi, f"{e.reason} {e.message!r} posted outside its tenure"
    for reason in ("ScalingDecision", "ReplicaCreated", "ReplicaDraining", "ReplicaDeleted"):
        counts = Counter(e.message for e in by_reason(evs, reason))
        assert all(n == 1 for n in counts.values()), f"{reason} twice: {counts}"
    routes = [e.message.split(" ")[4] for e in by_reason(evs, "Routing")]
    assert routes and all(x != y for x, y in pairwise(routes)), (
        f"a Routing Event without a change of route: {routes}"
    )
    created_by_b = {
        e.message.split(" ")[1] for e in by_reason(evs, "ReplicaCreated") if e.reporting_instance == id_b
    }
    assert created_by_b == {f"{NAME}-{i}" for i in range(N_UP)} - at_kill
    assert {e.reporting_instance for e in by_reason(evs, "ReplicaDraining")} == {id_b}
    assert {e.reporting_instance for e in by_reason(evs, "ReplicaDeleted")} == {id_a2}
    st = get_isvc(kube, NAME)["status"]
    assert st["desiredReplicas"] == N_DOWN and st["lastDecision"]["desiredReplicas"] == N_DOWN
