"""A node-provisioner simulator: the cluster autoscaler's scale-up loop, for kwok GPU nodes.

Like the cluster autoscaler (and Karpenter), it looks for pods the scheduler marked
`PodScheduled=False, reason=Unschedulable` whose node selector asks for this pool's
`nvidia.com/gpu.product`, and adds enough nodes for their GPU requests `delay_s` after the first of
them went Pending (the simulated time to provision a GPU node: minutes in a cloud, scaled down for
tests). Pods below the autoscaler's expendable-priority cutoff (-10 by default, so a placeholder at
-10 still counts) are ignored, as the real one does. Nodes already on their way are subtracted, so
one burst yields one batch of nodes, not one per poll.

It polls (every `poll_s`) rather than watches: simple, and a test stops it with `stop()`.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ember_cluster.nodes import GPU_PRODUCT_LABEL, add_node

log = logging.getLogger("ember_cluster.provisioner")
GPU = "nvidia.com/gpu"


def _unschedulable(pod: Any) -> bool:
    if pod.spec.node_name or pod.metadata.deletion_timestamp:
        return False
    return any(
        c.type == "PodScheduled" and c.status == "False" and c.reason == "Unschedulable"
        for c in (pod.status.conditions or [])
    )


def _gpus(pod: Any) -> int:
    total = 0
    for c in pod.spec.containers or []:
        req = (c.resources.requests or {}) if c.resources else {}
        total += int(req.get(GPU, 0))
    return total


def _products(pod: Any) -> set[str]:
    """The GPU products a pod may land on: its nodeSelector, or Ember's required node affinity
    (kube/shaping.py: resources.gpuType as `nvidia.com/gpu.product In [...]`)."""
    out = set()
    if (v := (pod.spec.node_selector or {}).get(GPU_PRODUCT_LABEL)) is not None:
        out.add(v)
    aff = pod.spec.affinity and pod.spec.affinity.node_affinity
    required = aff and aff.required_during_scheduling_ignored_during_execution
    for term in (required.node_selector_terms if required else None) or []:
        for req in term.match_expressions or []:
            if req.key == GPU_PRODUCT_LABEL and req.operator == "In":
                out.update(req.values or [])
    return out


@dataclass
class Provisioner:
    """Adds `gpus_per_node`-GPU kwok nodes of `product` for unschedulable pods after `delay_s`."""

    core: Any  # kubernetes.client.CoreV1Api
    product: str
    gpus_per_node: int = 8
    delay_s: float = 60.0
    prefix: str = "prov"
    max_nodes: int = 16
    poll_s: float = 0.2
    expendable_cutoff: int = -10
    added: list[tuple[str, float]] = field(default_factory=list)  # (node, unix time added)
    _first_pending: float | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def pending_gpus(self) -> int:
        pods = self.core.list_pod_for_all_namespaces(
            field_selector="status.phase=Pending", _request_timeout=10
        ).items
        return sum(
            _gpus(p)
            for p in pods
            if _unschedulable(p)
            and self.product in _products(p)
            and (p.spec.priority or 0) >= self.expendable_cutoff
        )

    def step(self, now: float) -> None:
        want = self.pending_gpus()
        if want == 0:
            self._first_pending = None
            return
        if self._first_pending is None:
            self._first_pending = now
        if now - self._first_pending < self.delay_s:
            return
        n = min(math.ceil(want / self.gpus_per_node), self.max_nodes - len(self.added))
        for _ in range(max(0, n)):
            name = f"{self.prefix}-{len(self.added)}"
            add_node(self.core, name, self.product, self.gpus_per_node)
            self.added.append((name, time.time()))
            log.info("node added", extra={"node": name, "pendingGPUs": want})
        self._first_pending = None  # the next batch waits a full provisioning delay again

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step(time.monotonic())
            except Exception as e:  # keep simulating through API hiccups
                log.warning("provisioner step failed: %s", e)
            self._stop.wait(self.poll_s)

    def start(self) -> Provisioner:
        self._thread = threading.Thread(target=self._run, name=f"provisioner-{self.prefix}", daemon=True)
        self._thread.start()
        return self

    def stop(self, delete_nodes: bool = True) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(5)
        if delete_nodes:
            for name, _ in self.added:
                try:
                    self.core.delete_node(name)
                except Exception as e:  # already gone
                    log.debug("delete %s: %s", name, e)

    def __enter__(self) -> Provisioner:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
