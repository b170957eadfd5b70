"""Shared base for the CRD models: camelCase aliases, attribute docstrings as schema descriptions,
and CEL rules that the API server enforces *and* pydantic re-checks, from one declaration.

A model lists its cross-field rules in `__cel__`. The CRD generator writes each as an
`x-kubernetes-validations` entry; `EmberModel`'s validator runs the paired Python predicate, so the
operator never trusts an object the API server would have refused (and unit tests can check the pair
agrees). A rule about one field's value alone goes on the field's type instead, as `Cel(...)` in its
`Annotated[...]`: the API server then names the field itself, and pydantic's error is located there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, GetCoreSchemaHandler, GetJsonSchemaHandler, model_validator
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema


@dataclass(frozen=True)
class CelRule:
    """One rule: CEL for the API server, `check` for pydantic. Same meaning, same message.

    `message_expression` (CEL) and `explain` (Python) optionally word the message from the value
    (e.g. naming an unknown URI scheme); `message` stays the fallback the API server uses if the
    expression fails."""

    rule: str
    message: str
    check: Callable[[Any], bool]
    field_path: str | None = None  # JSON path (".minReplicas") the API server's error names
    message_expression: str | None = None
    explain: Callable[[Any], str] | None = None

    def to_schema(self) -> dict[str, str]:
        out = {"rule": self.rule, "message": self.message}
        if self.message_expression:
            out["messageExpression"] = self.message_expression
        if self.field_path:
            out["fieldPath"] = self.field_path
        return out

    def failure(self, value: Any) -> str | None:
        """The message if `value` breaks the rule, else None."""
        if self.check(value):
            return None
        return self.explain(value) if self.explain else self.message


@dataclass(frozen=True)
class Cel:
    """`Annotated[T, Cel(rule, ...)]`: field-level rules, on the field's schema and in its validation."""

    rules: tuple[CelRule, ...]

    def __init__(self, *rules: CelRule) -> None:
        object.__setattr__(self, "rules", rules)

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self._validate, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        out = handler(schema)
        out.setdefault("x-kubernetes-validations", []).extend(r.to_schema() for r in self.rules)
        return out

    def _validate(self, value: Any) -> Any:
        for r in self.rules:
            msg = r.failure(value)
            if msg is not None:
                raise ValueError(msg)
        return value


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
            msg = r.failure(self)
            if msg is not None:
                where = f" ({r.field_path.lstrip('.')})" if r.field_path else ""
                raise ValueError(f"{msg}{where}")
        return self

    def to_k8s(self) -> dict[str, Any]:
        """The object as the API server stores it: camelCase, None left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")
