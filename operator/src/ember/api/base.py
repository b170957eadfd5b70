"""Shared base for the CRD models: camelCase aliases, attribute docstrings as schema descriptions,
and CEL rules that the API server enforces *and* pydantic re-checks, from one declaration.

A model lists its cross-field rules in `__cel__`. The CRD generator writes each as an
`x-kubernetes-validations` entry; `EmberModel`'s validator runs the paired Python predicate, so the
operator never trusts an object the API server would have refused (and unit tests can check the pair
agrees).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic.alias_generators import to_camel


@dataclass(frozen=True)
class CelRule:
    """One cross-field rule: CEL for the API server, `check` for pydantic. Same meaning, same message."""

    rule: str
    message: str
    check: Callable[[Any], bool]
    field_path: str | None = None  # JSON path (".minReplicas") the API server's error names

    def to_schema(self) -> dict[str, str]:
        out = {"rule": self.rule, "message": self.message}
        if self.field_path:
            out["fieldPath"] = self.field_path
        return out


class EmberModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=True,
        validate_default=True,
    )
    __cel__: ClassVar[tuple[CelRule, ...]] = ()

    @model_validator(mode="after")
    def _check_cel_rules(self) -> EmberModel:
        for r in type(self).__cel__:
            if not r.check(self):
                where = f" ({r.field_path.lstrip('.')})" if r.field_path else ""
                raise ValueError(f"{r.message}{where}")
        return self

    def to_k8s(self) -> dict[str, Any]:
        """The object as the API server stores it: camelCase, None left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")
