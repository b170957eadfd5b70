"""LocalCluster: etcd + kube-apiserver + kube-controller-manager + kube-scheduler + kwok, TLS and RBAC on.

Usage from pytest (a session fixture) or the CLI (`make cluster-up`):

    with LocalCluster(workdir) as c:
        c.kubeconfig          # admin (system:masters)
        c.operator_kubeconfig # user ember-operator, no rights until RBAC grants them

State (pids, ports) is written to `<workdir>/state.json` so that another process can stop it.
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import yaml

from ember_cluster import nodes
from ember_cluster.paths import HERE, Binaries
from ember_cluster.pki import CA, service_account_keys
from ember_cluster.procs import ComponentFailed, Proc, free_port, spawn, stop_pid, wait_until

__all__ = ["ComponentFailed", "GPUNodePool", "LocalCluster"]

SERVICE_CIDR = "10.96.0.0/16"
STAGES_TEMPLATE = HERE / "kwok-stages.yaml"


@dataclass(frozen=True)
class GPUNodePool:
    """Fake GPU nodes registered through kwok."""

    count: int = 4
    gpus_per_node: int = 8
    product: str = "H100-80GB"
    prefix: str = "gpu-h100"


@dataclass
class LocalCluster:
    workdir: Path
    pools: tuple[GPUNodePool, ...] = (GPUNodePool(),)
    # Default time from a pod becoming Running to Ready on a fake node; per pod, the annotation
    # `sim.ember.dev/ready-after` (a Go duration, e.g. "30s") overrides it.
    pod_ready_delay_ms: int = 1000
    start_timeout_s: float = 90.0
    binaries: Binaries = field(default_factory=Binaries.locate)
    procs: list[Proc] = field(default_factory=list)
    apiserver_port: int = 0

    # ------------------------------------------------------------------ paths
    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "admin.kubeconfig"

    @property
    def operator_kubeconfig(self) -> Path:
        return self.workdir / "operator.kubeconfig"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def state_file(self) -> Path:
        return self.workdir / "state.json"

    # ---------------------------------------------------------------- lifecycle
    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        missing = self.binaries.missing()
        if missing:
            raise ComponentFailed(
                "cluster binaries", self.workdir, "missing: " + ", ".join(missing) + " (run `make setup`)"
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "logs").mkdir(exist_ok=True)
        try:
            pki = self._make_pki()
            self._start_etcd()
            self._start_apiserver(pki)
            self._start_controllers()
            self._start_kwok()
            nodes.register(self, self.pools)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for p in reversed(self.procs):
            stop_pid(p.pid)
        self.procs.clear()
        self.state_file.unlink(missing_ok=True)

    @staticmethod
    def stop_from_state(workdir: Path) -> bool:
        """Stop a cluster started by another process (`make cluster-down`)."""
        state = workdir / "state.json"
        if not state.exists():
            return False
        for pid in reversed(json.loads(state.read_text())["pids"]):
            stop_pid(int(pid))
        state.unlink()
        return True

    # ---------------------------------------------------------------- internals
    def _log(self, name: str) -> Path:
        return self.workdir / "logs" / f"{name}.log"

    def _track(self, p: Proc) -> Proc:
        self.procs.append(p)
        self.state_file.write_text(
            json.dumps(
                {
                    "pids": [x.pid for x in self.procs],
                    "names": [x.name for x in self.procs],  # for `ember-cluster status`
                    "server": self.server,
                    "kubeconfig": str(self.kubeconfig),
                }
            )
        )
        return p

    def _make_pki(self) -> dict[str, Path]:
        d = self.workdir / "pki"
        d.mkdir(exist_ok=True)
        ca = CA(d)
        out: dict[str, Path] = {"ca": ca.cert_path}
        out["apiserver.crt"], out["apiserver.key"] = ca.issue(
            "apiserver",
            "kube-apiserver",
            server_sans=(
                "127.0.0.1",
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
                "10.96.0.1",
            ),
        )
        out["sa.key"], out["sa.pub"] = service_account_keys(d)
        self.apiserver_port = free_port()
        identities = {
            "admin": ("ember-admin", ("system:masters",)),
            "controller-manager": ("system:kube-controller-manager", ()),
            "scheduler": ("system:kube-scheduler", ()),
            "kwok": ("kwok-controller", ("system:masters",)),
            "operator": ("ember-operator", ("ember:operators",)),
        }
        for name, (cn, orgs) in identities.items():
            crt, key = ca.issue(name, cn, orgs)
            self._write_kubeconfig(self.workdir / f"{name}.kubeconfig", ca.cert_path, crt, key, cn)
        return out

    def _write_kubeconfig(self, path: Path, ca: Path, crt: Path, key: Path, user: str) -> None:
        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "ember-local", "cluster": {"server": self.server, "certificate-authority": str(ca)}}
            ],
            "users": [{"name": user, "user": {"client-certificate": str(crt), "client-key": str(key)}}],
            "contexts": [{"name": "ember-local", "context": {"cluster": "ember-local", "user": user}}],
            "current-context": "ember-local",
        }
        path.write_text(yaml.safe_dump(cfg))
        path.chmod(0o600)

    def _start_etcd(self) -> None:
        self.etcd_port, peer = free_port(), free_port()
        log = self._log("etcd")
        p = self._track(
            spawn(
                "etcd",
                [
                    str(self.binaries.etcd),
                    "--name=ember",
                    f"--data-dir={self.workdir / 'etcd'}",
                    f"--listen-client-urls=http://127.0.0.1:{self.etcd_port}",
                    f"--advertise-client-urls=http://127.0.0.1:{self.etcd_port}",
                    f"--listen-peer-urls=http://127.0.0.1:{peer}",
                    f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                    f"--initial-cluster=ember=http://127.0.0.1:{peer}",
                    # a throwaway test store: fsync buys nothing here and costs seconds per test
                    "--unsafe-no-fsync",
                    "--quota-backend-bytes=4294967296",
                    "--log-level=warn",
                ],
                log,
            )
        )
        url = f"http://127.0.0.1:{self.etcd_port}/health"
        wait_until(p, "etcd", lambda: httpx.get(url, timeout=1).json()["health"] == "true", 30, log)

    def _start_apiserver(self, pki: dict[str, Path]) -> None:
        log = self._log("kube-apiserver")
        p = self._track(
            spawn(
                "kube-apiserver",
                [
                    str(self.binaries.kube_apiserver),
                    f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
                    "--bind-address=127.0.0.1",
                    "--advertise-address=127.0.0.1",
                    f"--secure-port={self.apiserver_port}",
                    f"--tls-cert-file={pki['apiserver.crt']}",
                    f"--tls-private-key-file={pki['apiserver.key']}",
                    f"--client-ca-file={pki['ca']}",
                    "--authorization-mode=Node,RBAC",
                    "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                    f"--service-account-key-file={pki['sa.pub']}",
                    f"--service-account-signing-key-file={pki['sa.key']}",
                    f"--service-cluster-ip-range={SERVICE_CIDR}",
                    "--allow-privileged=true",
                    # no real network: the `kubernetes` Service cannot point at 127.0.0.1
                    "--endpoint-reconciler-type=none",
                    "--profiling=false",
                    "--v=1",
                ],
                log,
            )
        )
        ctx = ssl.create_default_context(cafile=str(pki["ca"]))
        ctx.load_cert_chain(str(self.workdir / "pki/admin.crt"), str(self.workdir / "pki/admin.key"))

        def ready() -> bool:
            return httpx.get(f"{self.server}/readyz", verify=ctx, timeout=2).status_code == 200

        wait_until(p, "kube-apiserver", ready, self.start_timeout_s, log)

    def _start_controllers(self) -> None:
        pki = self.workdir / "pki"
        cm_cfg, sched_cfg = (
            self.workdir / "controller-manager.kubeconfig",
            self.workdir / "scheduler.kubeconfig",
        )
        self._track(
            spawn(
                "kube-controller-manager",
                [
                    str(self.binaries.kube_controller_manager),
                    f"--kubeconfig={cm_cfg}",
                    f"--authentication-kubeconfig={cm_cfg}",
                    f"--authorization-kubeconfig={cm_cfg}",
                    "--bind-address=127.0.0.1",
                    f"--secure-port={free_port()}",
                    f"--service-account-private-key-file={pki / 'sa.key'}",
                    f"--root-ca-file={pki / 'ca.crt'}",
                    f"--cluster-signing-cert-file={pki / 'ca.crt'}",
                    f"--cluster-signing-key-file={pki / 'ca.key'}",
                    "--use-service-account-credentials=true",
                    "--leader-elect=true",
                    # fake nodes heartbeat every ~10 s (kwok-stages.yaml); leave room for a busy 2-core box
                    "--node-monitor-grace-period=90s",
                    "--v=1",
                ],
                self._log("kube-controller-manager"),
            )
        )
        self._track(
            spawn(
                "kube-scheduler",
                [
                    str(self.binaries.kube_scheduler),
                    f"--kubeconfig={sched_cfg}",
                    f"--authentication-kubeconfig={sched_cfg}",
                    f"--authorization-kubeconfig={sched_cfg}",
                    "--bind-address=127.0.0.1",
                    f"--secure-port={free_port()}",
                    "--leader-elect=true",
                    "--v=1",
                ],
                self._log("kube-scheduler"),
            )
        )
        from kubernetes import client

        api = self.api(client.CoordinationV1Api)

        def has_leader(n: str) -> Callable[[], bool]:
            return lambda: bool(api.read_namespaced_lease(n, "kube-system").spec.holder_identity)

        for name, proc in (("kube-controller-manager", self.procs[-2]), ("kube-scheduler", self.procs[-1])):
            wait_until(
                proc,
                name,
                has_leader(name),
                self.start_timeout_s,
                proc.log,
            )
        # The service-account controller must have made kube-system's default account: proof the
        # controller-manager's loops run, not only that it holds the lease.
        core = self.api(client.CoreV1Api)
        wait_until(
            self.procs[-2],
            "kube-controller-manager (service accounts)",
            lambda: core.read_namespaced_service_account("default", "default") is not None,
            self.start_timeout_s,
            self.procs[-2].log,
        )

    def _start_kwok(self) -> None:
        stages = self.workdir / "kwok-stages.yaml"
        stages.write_text(
            STAGES_TEMPLATE.read_text().replace("__POD_READY_DELAY_MS__", str(self.pod_ready_delay_ms))
        )
        self._track(
            spawn(
                "kwok",
                [
                    str(self.binaries.kwok),
                    f"--kubeconfig={self.workdir / 'kwok.kubeconfig'}",
                    f"--config={stages}",
                    "--manage-all-nodes=false",
                    "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                    "--cidr=10.244.0.0/16",
                    "--node-ip=10.0.0.1",
                    f"--server-address=127.0.0.1:{free_port()}",
                ],
                self._log("kwok"),
            )
        )

    # ---------------------------------------------------------------- clients
    def api(self, cls: type[Any], kubeconfig: Path | None = None) -> Any:
        """A typed client from the official Kubernetes library bound to this cluster."""
        from kubernetes import client, config

        cfg = client.Configuration()
        config.load_kube_config(config_file=str(kubeconfig or self.kubeconfig), client_configuration=cfg)
        return cls(client.ApiClient(cfg))

    def wait_nodes_ready(self, timeout_s: float = 60.0) -> None:
        from kubernetes import client

        core = self.api(client.CoreV1Api)
        want = sum(p.count for p in self.pools)

        def ready() -> bool:
            ok = 0
            for n in core.list_node(label_selector="type=kwok").items:
                ok += any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])
            return ok >= want

        kwok = next(p for p in self.procs if p.name == "kwok")
        wait_until(kwok, "kwok (fake GPU nodes Ready)", ready, timeout_s, kwok.log)

    def uptime_probe(self) -> float:
        t0 = time.monotonic()
        from kubernetes import client

        self.api(client.VersionApi).get_code()
        return time.monotonic() - t0
