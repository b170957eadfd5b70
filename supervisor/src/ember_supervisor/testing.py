"""The supervisor as a real process for tests: started from a config file, waited for, its metrics read,
and the engine's processes inspected (state letter, CPU time) while it sleeps."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from ember_checkpoint.criu import process_tree
from prometheus_client.parser import text_string_to_metric_families

from ember_supervisor.config import SupervisorConfig

CLK_TCK = os.sysconf("SC_CLK_TCK")


class SupervisorProcess:
    def __init__(self, cfg: SupervisorConfig, tmp: Path, timeout_s: float = 90.0) -> None:
        self.cfg = cfg
        path = tmp / f"supervisor-{os.urandom(3).hex()}.json"
        path.write_text(cfg.model_dump_json())
        self.log = path.with_suffix(".log")
        # the operator's per-service token, as the pod gets it: every POST carries it (main.authorized)
        self.token = secrets.token_urlsafe(16)
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ember_supervisor.main", "--config", str(path)],
                env={**os.environ, "EMBER_SUPERVISOR_TOKEN": self.token},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.url = f"http://127.0.0.1:{cfg.listen_port}"
        try:
            self.startup = self._wait_serving(timeout_s)
        except BaseException:  # never leave a supervisor (and its engine) behind a failed start
            self.proc.terminate()
            self.proc.wait(timeout=60)
            raise

    def _wait_serving(self, timeout_s: float) -> dict[str, object]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                s = httpx.get(self.url + "/startup", timeout=2.0).json()
                if s["engine"]["state"] == "serving":
                    return dict(s)
            except httpx.HTTPError:
                pass
            assert self.proc.poll() is None, self.log.read_text()
            time.sleep(0.1)
        raise TimeoutError(self.log.read_text()[-3000:])

    @property
    def engine_pid(self) -> int:
        return int(self.startup["engine_pid"])  # type: ignore[call-overload]

    def post(self, path: str, json: object | None = None, timeout: float = 120.0) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx.post(self.url + path, json=json, headers=headers, timeout=timeout)

    def state(self) -> dict[str, object]:
        return dict(httpx.get(self.url + "/state", timeout=5.0).json())

    def metric(self, name: str, **labels: str) -> float:
        text = httpx.get(self.url + "/metrics", timeout=5.0).text
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    return float(s.value)
        return 0.0

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU time of every process of the tree (all threads), from /proc/PID/stat."""
    total = 0
    for p in process_tree(root):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / CLK_TCK
