"""The kind cluster itself: a pod from a locally built image runs and a ClusterIP Service reaches it,
from the node (kube-proxy) and from another pod by DNS name (CoreDNS)."""

from __future__ import annotations

import json
import subprocess
import textwrap

import pytest

from tests.e2e.conftest import Kind
from tests.integration.conftest import eventually

pytestmark = pytest.mark.e2e

IMAGE = "ember/e2e-smoke:1"
BASE = "ember/kind-node-rootfs:trixie"  # built by images/kind-node/build.sh; has socat and curl
RESPOND = "#!/bin/sh\nprintf 'HTTP/1.0 200 OK\\r\\nContent-Type: text/plain\\r\\n\\r\\nember-smoke %s\\n' \"$(hostname)\"\n"
DOCKERFILE = f"""FROM {BASE}
LABEL ember.e2e=smoke
COPY respond.sh /respond.sh
RUN chmod 0755 /respond.sh
EXPOSE 8080
CMD ["socat", "TCP-LISTEN:8080,fork,reuseaddr", "EXEC:/respond.sh"]
"""


@pytest.fixture(scope="module")
def smoke_image(kind_cluster: Kind, tmp_path_factory: pytest.TempPathFactory) -> str:
    ctx = tmp_path_factory.mktemp("smoke-image")
    (ctx / "respond.sh").write_text(RESPOND)
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    subprocess.run(
        ["docker", "build", "-q", "-t", IMAGE, str(ctx)], check=True, capture_output=True, text=True
    )
    kind_cluster.load_image(IMAGE)
    return IMAGE


def test_pod_behind_clusterip_service(kind_cluster: Kind, smoke_image: str, namespace: str) -> None:
    k = kind_cluster
    manifest = textwrap.dedent(
        f"""
        apiVersion: v1
        kind: Pod
        metadata: {{name: smoke, labels: {{app: smoke}}}}
        spec:
          containers:
            - name: serve
              image: {smoke_image}
              imagePullPolicy: Never
              ports: [{{containerPort: 8080}}]
              readinessProbe: {{tcpSocket: {{port: 8080}}, periodSeconds: 1}}
        ---
        apiVersion: v1
        kind: Service
        metadata: {{name: smoke}}
        spec:
          type: ClusterIP
          selector: {{app: smoke}}
          ports: [{{port: 80, targetPort: 8080}}]
        """
    )
    k.k("apply", "-n", namespace, "-f", "-", input=manifest)
    k.k("wait", "-n", namespace, "--for=condition=Ready", "pod/smoke", "--timeout=120s")
    cluster_ip = k.k("get", "-n", namespace, "service", "smoke", "-o", "jsonpath={.spec.clusterIP}").strip()
    assert cluster_ip

    # node -> ClusterIP: kube-proxy's rules on the node. They are programmed asynchronously after the
    # Service and its EndpointSlice exist; curl's own retries do not cover a reply that is empty (seen
    # once in CI-like runs: the test then failed with ''), so the check itself is retried for 60 s
    def node_curl() -> str:
        return k.node_exec(
            "curl", "-sS", "--max-time", "5", f"http://{cluster_ip}/", check=False, timeout=30
        )  # fmt: skip

    out = eventually(
        lambda: (o := node_curl()).startswith("ember-smoke smoke") and o,
        60,
        what="node -> ClusterIP",
        every_s=1,
    )
    assert out.startswith("ember-smoke smoke"), out

    # pod -> Service by DNS name: CoreDNS, the bridge CNI, kube-proxy, all from inside a pod
    url = f"http://smoke.{namespace}.svc.cluster.local/"
    client = textwrap.dedent(
        f"""
        apiVersion: v1
        kind: Pod
        metadata: {{name: client}}
        spec:
          restartPolicy: Never
          containers:
            - name: curl
              image: {smoke_image}
              imagePullPolicy: Never
              command: [curl, -sS, --retry, "20", --retry-all-errors, --retry-delay, "1", --max-time, "5", {json.dumps(url)}]
        """
    )
    k.k("apply", "-n", namespace, "-f", "-", input=client)
    k.k("wait", "-n", namespace, "--for=jsonpath={.status.phase}=Succeeded", "pod/client", "--timeout=120s")
    assert k.k("logs", "-n", namespace, "client").startswith("ember-smoke smoke")
