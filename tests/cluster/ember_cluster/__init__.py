"""A real local Kubernetes control plane for Ember's tests and demo.

kube-apiserver, kube-controller-manager and kube-scheduler built from the pinned Kubernetes release,
etcd from Debian, kwok for fake GPU nodes whose pods become Ready after a configurable delay, and
Prometheus from Debian. TLS and RBAC are on. Nothing here is a mock: the scheduler really binds and
preempts, the garbage collector really deletes dependents, the API server really validates.
"""

from ember_cluster.cluster import ComponentFailed, GPUNodePool, LocalCluster
from ember_cluster.prometheus import Prometheus

__all__ = ["ComponentFailed", "GPUNodePool", "LocalCluster", "Prometheus"]
