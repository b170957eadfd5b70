"""Fake GPU nodes: real Node objects that kwok keeps alive and whose pods it runs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ember_cluster.cluster import GPUNodePool, LocalCluster

GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"


def node_manifest(name: str, product: str, gpus: int) -> dict[str, Any]:
    capacity = {"cpu": "96", "memory": "1024Gi", "pods": "110", "nvidia.com/gpu": str(gpus)}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "type": "kwok",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                GPU_PRODUCT_LABEL: product,
                "nvidia.com/gpu.present": "true",
            },
        },
        "status": {"capacity": capacity, "allocatable": capacity},
    }


def register(cluster: LocalCluster, pools: tuple[GPUNodePool, ...]) -> None:
    from kubernetes import client

    core = cluster.api(client.CoreV1Api)
    for pool in pools:
        for i in range(pool.count):
            add_node(core, f"{pool.prefix}-{i}", pool.product, pool.gpus_per_node)
    # kwok initializes nodes one by one: hundreds of them (bench/scale) take longer than the default
    cluster.wait_nodes_ready(max(60.0, 0.5 * sum(p.count for p in pools)))


def add_node(core: Any, name: str, product: str, gpus: int) -> None:
    from kubernetes.client.exceptions import ApiException

    try:
        core.create_node(node_manifest(name, product, gpus))
    except ApiException as e:
        if e.status != 409:
            raise
