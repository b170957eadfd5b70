"""Where the pinned binaries live: ~/.cache/ember/<component>/<version>/ (see build-binaries.sh)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = HERE.parent


def cache_root() -> Path:
    return Path(os.environ.get("EMBER_CACHE", Path.home() / ".cache" / "ember"))


def versions() -> dict[str, str]:
    out: dict[str, str] = {}
    for line in (SCRIPTS / "versions.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            k, v = line.split("=", 1)
            out[k] = v
    return out


@dataclass(frozen=True)
class Binaries:
    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kubectl: Path
    kwok: Path
    etcd: Path
    prometheus: Path
    promtool: Path
    helm: Path

    @classmethod
    def locate(cls) -> Binaries:
        v, c = versions(), cache_root()
        k8s = c / "k8s" / v["K8S_VERSION"]
        return cls(
            kube_apiserver=k8s / "kube-apiserver",
            kube_controller_manager=k8s / "kube-controller-manager",
            kube_scheduler=k8s / "kube-scheduler",
            kubectl=k8s / "kubectl",
            kwok=c / "kwok" / v["KWOK_VERSION"] / "kwok",
            etcd=c / "deb" / "etcd-server" / "current" / "usr" / "bin" / "etcd",
            prometheus=c / "deb" / "prometheus" / "current" / "usr" / "bin" / "prometheus",
            # the chart's alert tests: `promtool test rules` (Debian ships it as its own package)
            promtool=c / "deb" / "promtool" / "current" / "usr" / "bin" / "promtool",
            helm=c / "helm" / "current" / "helm",
        )

    def missing(self) -> list[str]:
        return [f"{name} ({p})" for name, p in vars(self).items() if not os.access(p, os.X_OK)]
