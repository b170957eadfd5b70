"""Field-level rules shared by the CRD and the models: each says in a sentence what it wants.

Every rule is a `CelRule` whose CEL the API server runs at `kubectl apply` and whose Python check the
models run, so both refuse the same values with the same message. Regular expressions are written once
and used by both: CEL's `matches` (RE2, unanchored, so anchored here) and Python's `re.fullmatch`; they
avoid the constructs where the two engines differ (`\\s`, `\\w`, `$`).

CEL cost: the API server refuses a CRD whose rules could cost more than its budget on the largest
object the schema allows, so every string a rule reads has a `maxLength` and every list or map one
iterates has a `maxItems`/`maxProperties` (set on the fields in v1alpha1).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import BeforeValidator, StringConstraints, WithJsonSchema

from ember.api.base import Cel, CelRule

_SPACE = r"\t\n\v\f\r "  # what counts as white space in a path or a reference (both engines agree)
DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS_SUBDOMAIN = rf"{DNS_LABEL}([.]{DNS_LABEL})*"
LABEL_NAME = r"([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]"  # the part after the prefix: <= 63
LABEL_VALUE = r"(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?"  # empty, or <= 63
QUALIFIED_NAME = rf"({DNS_SUBDOMAIN}/)?{LABEL_NAME}"
DOTDOT_SEGMENT = r"(^|/)[.][.](/|$)"


def matches(pattern: str) -> Callable[[str], bool]:
    """Python's twin of CEL's `self.matches('^(pattern)$')`."""
    compiled = re.compile(pattern)
    return lambda s: compiled.fullmatch(s) is not None


def cel_matches(expr: str, pattern: str) -> str:
    """`expr.matches(...)`, anchored, as a CEL raw string (the patterns hold no quote)."""
    assert "'" not in pattern
    return f"{expr}.matches(r'^({pattern})$')"


def _no_dotdot(s: str) -> bool:
    return re.search(DOTDOT_SEGMENT, s) is None


NO_DOTDOT_CEL = f"!self.matches(r'{DOTDOT_SEGMENT}')"

# ------------------------------------------------------------------------------------ model.uri
SCHEMES = (
    "use hf://org/name (Hugging Face), pvc://claim/path (a PersistentVolumeClaim), file:///path (in the "
    "image), s3://bucket/path or gs://bucket/path (streamed by vLLM) or oci://registry/repo:tag (an image)"
)
_BUCKET = r"[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]"
_HF_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_PATH = rf"[^{_SPACE}]"


def _scheme_message(uri: str) -> str:
    if "://" in uri:
        return f"unknown scheme '{uri.split('://', 1)[0]}'; {SCHEMES}"
    return f"no scheme; {SCHEMES}"


def _bucket_check(scheme: str) -> Callable[[str], bool]:
    ok = matches(f"{scheme}{_BUCKET}(/{_PATH}*)?")
    return lambda u: not u.startswith(scheme) or ok(u)


MODEL_SCHEMES = ("hf://", "pvc://", "file://", "s3://", "gs://", "oci://")
MODEL_URI_RULES = (
    CelRule(
        " || ".join(f"self.startsWith('{x}')" for x in MODEL_SCHEMES),
        f"unknown scheme; {SCHEMES}",
        lambda u: u.startswith(MODEL_SCHEMES),
        message_expression=(
            "self.contains('://') ? \"unknown scheme '\" + self.split('://')[0] + \"'; "
            f'{SCHEMES}" : "no scheme; {SCHEMES}"'
        ),
        explain=_scheme_message,
    ),
    CelRule(
        f"!self.startsWith('hf://') || {cel_matches('self', f'hf://{_HF_NAME}/{_HF_NAME}')}",
        "hf:// takes a Hugging Face repository id, org/name: e.g. hf://meta-llama/Llama-3.1-8B-Instruct",
        lambda u: not u.startswith("hf://") or matches(f"hf://{_HF_NAME}/{_HF_NAME}")(u),
    ),
    CelRule(
        f"!self.startsWith('pvc://') || {cel_matches('self', f'pvc://{DNS_SUBDOMAIN}(/{_PATH}*)?')}",
        "pvc:// takes a claim name (lowercase letters, digits, '-' and '.') and a path inside it with "
        "no spaces: e.g. pvc://models/llama-3-8b",
        lambda u: not u.startswith("pvc://") or matches(f"pvc://{DNS_SUBDOMAIN}(/{_PATH}*)?")(u),
    ),
    CelRule(
        f"!self.startsWith('file://') || {cel_matches('self', f'file:///{_PATH}+')}",
        "file:// takes an absolute path with no spaces, so three slashes: e.g. file:///models/llama-3-8b",
        lambda u: not u.startswith("file://") or matches(f"file:///{_PATH}+")(u),
    ),
    *(
        CelRule(
            f"!self.startsWith('{x}') || {cel_matches('self', f'{x}{_BUCKET}(/{_PATH}*)?')}",
            f"{x} takes a bucket name (lowercase letters, digits, '.', '-' and '_') and a path inside it "
            f"with no spaces: e.g. {x}models/llama-3-8b",
            _bucket_check(x),
        )
        for x in ("s3://", "gs://")
    ),
    CelRule(
        NO_DOTDOT_CEL,
        "'..' path segments are not allowed: the path must name the model directly, inside the claim "
        "or the image",
        _no_dotdot,
    ),
)

_REVISION = r"[A-Za-z0-9][A-Za-z0-9._/+-]*"
REVISION_RULES = (
    CelRule(
        f"{cel_matches('self', _REVISION)} && !self.contains('..')",
        "a branch, tag or commit: letters, digits and . _ / + -, no spaces and no '..' (git's rule; "
        "the revision also names a file in the node's model cache), e.g. main or refs/pr/1",
        lambda r: matches(_REVISION)(r) and ".." not in r,
    ),
)

# ------------------------------------------------------------------------------------ quantities
# Kubernetes' quantity grammar (k8s.io/apimachinery/pkg/api/resource): a signed decimal number, then a
# binary (Ki..Ei) or decimal (n, u, m, k, M..E) suffix or an exponent.
_QUANTITY = re.compile(
    r"([+-]?(?:[0-9]+(?:[.][0-9]*)?|[.][0-9]+))(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?"
)


def quantity_sign(s: str) -> int | None:
    """-1, 0 or 1 for a Kubernetes quantity, None if `s` is not one (what CEL's isQuantity refuses)."""
    m = _QUANTITY.fullmatch(s)
    if m is None:
        return None
    try:
        d = Decimal(m.group(1))
    except InvalidOperation:
        return None
    return (d > 0) - (d < 0)


def _int_to_str(v: Any) -> Any:
    # `cpu: 4` is what people write, and what a Pod accepts: the CRD takes an integer or a string
    # (x-kubernetes-int-or-string); the models hold the string, as the Pod's quantity does.
    return str(v) if type(v) is int else v


def _quantity_rule(examples: str, *, zero_ok: bool) -> CelRule:
    sign = "isLessThan(quantity('0'))" if zero_ok else "isGreaterThan(quantity('0'))"
    least = "0 or more" if zero_ok else "more than 0"
    return CelRule(
        f"isQuantity(string(self)) && {'!' if zero_ok else ''}quantity(string(self)).{sign}",
        f"must be a quantity of {least}: a number with an optional unit, e.g. {examples} "
        "(units are case-sensitive: Gi, not gi)",
        lambda s: (q := quantity_sign(s)) is not None and q >= (0 if zero_ok else 1),
    )


_INT_OR_STRING = WithJsonSchema({"x-kubernetes-int-or-string": True, "maxLength": 64})
CpuQuantity = Annotated[
    str,
    BeforeValidator(_int_to_str),
    StringConstraints(max_length=64),
    _INT_OR_STRING,
    Cel(_quantity_rule("4, 0.5 or 500m", zero_ok=True)),
]
MemoryQuantity = Annotated[
    str,
    BeforeValidator(_int_to_str),
    StringConstraints(max_length=64),
    _INT_OR_STRING,
    Cel(_quantity_rule("32Gi, 500Mi or 64G", zero_ok=False)),
]


# ------------------------------------------------------------------------------------ labels
LABEL_VALUE_RULE = CelRule(
    cel_matches("self", LABEL_VALUE),
    "must be a label value: at most 63 letters, digits, '-', '_' or '.', starting and ending with a "
    "letter or digit (or empty)",
    matches(LABEL_VALUE),
)
LabelValue = Annotated[str, StringConstraints(max_length=63), Cel(LABEL_VALUE_RULE)]

_KEY_SHAPE = (
    "an optional DNS prefix of at most 253 characters and '/', then at most 63 letters, digits, '-', "
    "'_' or '.', starting and ending with a letter or digit (e.g. team or example.com/team)"
)


def _key_ok(k: str) -> bool:
    return matches(QUALIFIED_NAME)(k) and k.find("/") <= 253


def _first(keys: Iterable[str], bad: Callable[[str], bool]) -> str:
    return next((k for k in keys if bad(k)), "")


def metadata_keys(kind: str, prefixes: tuple[str, ...], exact: tuple[str, ...] = ()) -> tuple[CelRule, ...]:
    """Rules on a map of label or annotation keys: each a valid key, none of Ember's own (keys under
    one of `prefixes`, or one of `exact`)."""
    key_ok = f"{cel_matches('k', QUALIFIED_NAME)} && k.indexOf('/') <= 253"
    own = " || ".join(
        [*(f"k.startsWith('{p}')" for p in prefixes), *([f"k in {list(exact)!r}"] if exact else [])]
    )

    def is_own(k: str) -> bool:
        return k.startswith(prefixes) or k in exact

    ours = "keys under " + ", ".join(prefixes) + (" and " + ", ".join(exact) if exact else "")
    return (
        CelRule(
            f"self.all(k, {key_ok})",
            f"every key must be a valid {kind} key: {_KEY_SHAPE}",
            lambda m: all(_key_ok(k) for k in m),
            message_expression=f'"{kind} key \'" + self.filter(k, !({key_ok}))[0] + "\' is not valid: {_KEY_SHAPE}"',
            explain=lambda m: (
                f"{kind} key '{_first(m, lambda k: not _key_ok(k))}' is not valid: {_KEY_SHAPE}"
            ),
        ),
        CelRule(
            f"!self.exists(k, {own})",
            f"{ours} are set by Ember itself",
            lambda m: not any(is_own(k) for k in m),
            message_expression=f'"{kind} key \'" + self.filter(k, {own})[0] + "\' is Ember\'s own ({ours})"',
            explain=lambda m: f"{kind} key '{_first(m, is_own)}' is Ember's own ({ours})",
        ),
    )


# ------------------------------------------------------------------------------------ names
_NAME_PART = r"[a-z0-9]+(([.]|__|_|-+)[a-z0-9]+)*"
_DOMAIN_PART = r"([A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])"
IMAGE_REFERENCE = (
    rf"({_DOMAIN_PART}([.]{_DOMAIN_PART})*(:[0-9]+)?/)?{_NAME_PART}(/{_NAME_PART})*"
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(@[A-Za-z][A-Za-z0-9]*([-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?"
)  # the grammar of github.com/distribution/reference, which the kubelet parses images with
IMAGE_RULE = CelRule(
    cel_matches("self", IMAGE_REFERENCE),
    "not an image reference: write [registry/]repository[:tag][@digest], repository in lowercase, "
    "no spaces, e.g. vllm/vllm-openai:v0.25.1",
    matches(IMAGE_REFERENCE),
)
# oci:// names an image whose files are the model (a Kubernetes image volume): the same grammar
MODEL_URI_RULES = (
    *MODEL_URI_RULES,
    CelRule(
        f"!self.startsWith('oci://') || {cel_matches('self', f'oci://{IMAGE_REFERENCE}')}",
        "oci:// takes an image reference, registry/repository[:tag][@digest] in lowercase: "
        "e.g. oci://ghcr.io/acme/llama-3-8b:v1",
        lambda u: not u.startswith("oci://") or matches(f"oci://{IMAGE_REFERENCE}")(u),
    ),
)
PRIORITY_CLASS_RULE = CelRule(
    cel_matches("self", DNS_SUBDOMAIN),
    "must be a PriorityClass name: lowercase letters, digits, '-' and '.', e.g. ember-serving",
    matches(DNS_SUBDOMAIN),
)
_SERVED_NAME = r"[A-Za-z0-9][A-Za-z0-9._/-]*"
SERVED_NAME_RULE = CelRule(
    cel_matches("self", _SERVED_NAME),
    "the name clients send as `model`: letters, digits and . _ / -, starting with a letter or digit, "
    "no spaces, e.g. llama-3-8b or meta-llama/Llama-3.1-8B",
    matches(_SERVED_NAME),
)
_ENV_NAME = r"[A-Za-z_][A-Za-z0-9_.-]*"
ENV_NAME_RULE = CelRule(
    cel_matches("self", _ENV_NAME),
    "a variable name: letters, digits, '_', '.' and '-', not starting with a digit, no spaces or '='",
    matches(_ENV_NAME),
)
