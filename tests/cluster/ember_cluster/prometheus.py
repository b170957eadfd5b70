"""A real Prometheus (Debian's build) with a generated scrape config, for the autoscaler's metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

from ember_cluster.paths import Binaries
from ember_cluster.procs import Proc, free_port, spawn, stop_pid, wait_until


def _duration(seconds: float) -> str:
    """A Prometheus duration: it has no fractional units ("1.0s" is refused), so whole milliseconds."""
    return f"{round(seconds * 1000)}ms"


@dataclass
class Prometheus:
    workdir: Path
    # static targets: job name -> list of "host:port"
    targets: dict[str, list[str]] = field(default_factory=dict)
    # file-discovered targets: job name -> file_sd JSON files, which Prometheus re-reads on change
    # (and every refresh interval), so targets can come and go without a reload
    file_sd: dict[str, list[Path]] = field(default_factory=dict)
    file_sd_refresh_s: float = 1.0
    scrape_interval_s: float = 1.0
    # further scrape configs as Prometheus takes them (e.g. replica_pods_scrape_config below)
    scrape_configs: list[dict[str, object]] = field(default_factory=list)
    # 0.0.0.0 when pods of a kind cluster query it through the Docker network's gateway
    listen_host: str = "127.0.0.1"
    port: int = 0
    proc: Proc | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> dict[str, object]:
        return {
            "global": {"scrape_interval": _duration(self.scrape_interval_s), "evaluation_interval": "5s"},
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": t}]}
                for job, t in sorted(self.targets.items())
            ]
            + [
                {
                    "job_name": job,
                    "file_sd_configs": [
                        {
                            "files": [str(f) for f in files],
                            "refresh_interval": _duration(self.file_sd_refresh_s),
                        }
                    ],
                }
                for job, files in sorted(self.file_sd.items())
            ]
            + self.scrape_configs,
        }

    def start(self) -> Prometheus:
        self.workdir.mkdir(parents=True, exist_ok=True)
        cfg = self.workdir / "prometheus.yml"
        cfg.write_text(yaml.safe_dump(self.config()))
        self.port = self.port or free_port()
        log = self.workdir / "prometheus.log"
        self.proc = spawn(
            "prometheus",
            [
                str(Binaries.locate().prometheus),
                f"--config.file={cfg}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address={self.listen_host}:{self.port}",
                "--web.enable-lifecycle",
                "--storage.tsdb.retention.time=1d",
                "--log.level=warn",
            ],
            log,
        )
        wait_until(
            self.proc,
            "prometheus",
            lambda: httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200,
            60,
            log,
        )
        return self

    def reload(self, targets: dict[str, list[str]]) -> None:
        self.targets = targets
        (self.workdir / "prometheus.yml").write_text(yaml.safe_dump(self.config()))
        httpx.post(f"{self.url}/-/reload", timeout=10).raise_for_status()

    def stop(self) -> None:
        if self.proc is not None:
            stop_pid(self.proc.pid)
            self.proc = None

    def __enter__(self) -> Prometheus:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def replica_pods_scrape_config(
    kubeconfig: Path, namespaces: list[str], interval_s: float = 2.0
) -> dict[str, object]:
    """Plain-Prometheus equivalent of the chart's replica PodMonitor (charts/ember/templates/podmonitor.yaml):
    Ember's replica pods found through the API server, scraped on their `http` (vLLM) and `supervisor`
    ports, with the `namespace`, `pod` and `inferenceservice` labels the autoscaler's queries select by."""
    label = "__meta_kubernetes_pod_label_"
    return {
        "job_name": "ember-replicas",
        "scrape_interval": _duration(interval_s),
        "kubernetes_sd_configs": [
            {"role": "pod", "kubeconfig_file": str(kubeconfig), "namespaces": {"names": namespaces}}
        ],
        "relabel_configs": [
            {"source_labels": [label + "app_kubernetes_io_managed_by"], "regex": "ember", "action": "keep"},
            {"source_labels": [label + "app_kubernetes_io_name"], "regex": "ember-replica", "action": "keep"},
            {
                "source_labels": ["__meta_kubernetes_pod_container_port_name"],
                "regex": "http|supervisor",
                "action": "keep",
            },
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
            {
                "source_labels": [label + "serving_ember_dev_inferenceservice"],
                "target_label": "inferenceservice",
            },
        ],
    }
