"""The supervisor token's Secret: one per InferenceService, random, owned by it, never overwritten."""

from __future__ import annotations

from typing import Any

from ember.api.v1alpha1 import InferenceServiceSpec
from ember.kube import builders, executor


class SecretAPI:
    """Our own seam (kube.client.KubeAPI): keeps what was created; a second create is AlreadyExists."""

    def __init__(self) -> None:
        self.secrets: dict[tuple[str, str], dict[str, Any]] = {}

    def ensure_service(self, manifest: dict[str, Any]) -> bool:
        return False

    def create_secret(self, manifest: dict[str, Any]) -> bool:
        key = (manifest["metadata"]["namespace"], manifest["metadata"]["name"])
        if key in self.secrets:
            return False
        self.secrets[key] = manifest
        return True


SPEC = InferenceServiceSpec.model_validate({"model": {"uri": "hf://o/m"}})


def test_each_service_gets_its_own_random_token_and_an_existing_one_is_kept() -> None:
    api = SecretAPI()
    a, b = executor.Target("a", "ns", "uid-a", SPEC), executor.Target("b", "ns", "uid-b", SPEC)
    first = executor.ensure_service(api, a)  # type: ignore[arg-type]
    assert [(o.type, o.reason) for o in first] == [("Normal", "TokenSecretCreated")]
    assert "stringData" in api.secrets[("ns", "a-supervisor-token")]
    token_a = api.secrets[("ns", "a-supervisor-token")]["stringData"]["token"]
    assert executor.ensure_service(api, a) == []  # type: ignore[arg-type]
    assert api.secrets[("ns", "a-supervisor-token")]["stringData"]["token"] == token_a
    executor.ensure_service(api, b)  # type: ignore[arg-type]
    token_b = api.secrets[("ns", "b-supervisor-token")]["stringData"]["token"]
    assert token_a != token_b and len(token_a) >= 32
    owner = api.secrets[("ns", "a-supervisor-token")]["metadata"]["ownerReferences"][0]
    assert owner == builders.owner_reference("a", "uid-a")
    assert all(token_a not in o.message for o in first)  # the Event names the Secret, never the token


def test_a_refused_secret_is_a_warning_not_an_exception() -> None:
    class Refusing(SecretAPI):
        def create_secret(self, manifest: dict[str, Any]) -> bool:
            raise RuntimeError("403 Forbidden: cannot create resource secrets")

    out = executor.ensure_service(Refusing(), executor.Target("a", "ns", "u", SPEC))  # type: ignore[arg-type]
    assert [(o.type, o.reason) for o in out] == [("Warning", "TokenSecretFailed")]
    assert "a-supervisor-token" in out[0].message and "403" in out[0].message
