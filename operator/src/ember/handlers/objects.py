"""Reading an InferenceService body once per step: its identity, spec and status, typed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from ember.api.v1alpha1 import InferenceServiceSpec, InferenceServiceStatus


@dataclass(frozen=True)
class Parsed:
    ns: str
    name: str
    generation: int | None
    spec: InferenceServiceSpec
    status: InferenceServiceStatus

    @property
    def key(self) -> tuple[str, str]:
        return (self.ns, self.name)


def parse(body: Mapping[str, Any]) -> Parsed | None:
    """None when the spec or status does not validate: the replica reconcile reports an invalid spec
    (a condition and an Event); the other steps just skip the object."""
    meta = body["metadata"]
    try:
        spec = InferenceServiceSpec.model_validate(body.get("spec") or {})
        status = InferenceServiceStatus.model_validate(body.get("status") or {})
    except ValidationError:
        return None
    return Parsed(meta["namespace"], meta["name"], meta.get("generation"), spec, status)
