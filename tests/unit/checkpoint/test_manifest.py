from __future__ import annotations

from datetime import UTC, datetime

import pytest
from ember_checkpoint.manifest import Identity, Manifest, Sizes, Timings
from hypothesis import given
from hypothesis import strategies as st

identities = st.builds(
    Identity,
    model_digest=st.text(min_size=1, max_size=20),
    engine_version=st.text(min_size=1, max_size=10),
    criu_version=st.sampled_from(["4.2.1", "4.2.0", "4.3"]),
    cuda_driver_version=st.one_of(st.none(), st.sampled_from(["12.8", "13.0"])),
    gpu_model=st.one_of(st.none(), st.sampled_from(["NVIDIA H100 80GB HBM3", "NVIDIA H200"])),
    tensor_parallel_size=st.integers(1, 8),
    dtype=st.sampled_from(["bfloat16", "float16", "float32"]),
    max_model_len=st.integers(1, 1 << 20),
)


@given(identities)
def test_identity_hash_is_stable_across_serialisation_and_field_order(ident: Identity) -> None:
    reordered = Identity.model_validate(dict(reversed(list(ident.model_dump().items()))))
    roundtrip = Identity.model_validate_json(ident.model_dump_json())
    assert ident.hash() == reordered.hash() == roundtrip.hash()
    assert ident.hash().startswith("sha256:") and len(ident.hash()) == 7 + 64


@given(identities, identities)
def test_identity_hash_differs_exactly_when_some_field_differs(a: Identity, b: Identity) -> None:
    assert (a.hash() == b.hash()) == (a == b)
    assert bool(a.differences(b)) == (a != b)


@pytest.mark.parametrize(
    "field,value",
    [
        ("model_digest", "sha256:other"),
        ("engine_version", "vllm 0.33"),
        ("criu_version", "4.3.0"),
        ("cuda_driver_version", "13.0"),
        ("gpu_model", "NVIDIA H200"),
        ("tensor_parallel_size", 2),
        ("dtype", "float16"),
        ("max_model_len", 8192),
    ],
    ids=lambda v: str(v),
)
def test_every_identity_field_changes_the_hash(field: str, value: object) -> None:
    base = Identity(
        model_digest="sha256:m",
        engine_version="vllm 0.32",
        criu_version="4.2.1",
        dtype="bfloat16",
        max_model_len=4096,
    )
    changed = base.model_copy(update={field: value})
    assert changed.hash() != base.hash()
    assert list(base.differences(changed)) == [field]


def test_manifest_round_trips_through_json_and_is_unverified_by_default() -> None:
    ident = Identity(model_digest="d", engine_version="e", criu_version="4.2.1", dtype="f", max_model_len=1)
    m = Manifest(
        checkpoint_id="c1",
        identity=ident,
        identity_hash=ident.hash(),
        created=datetime(2026, 1, 1, tzinfo=UTC),
        sizes=Sizes(image_bytes=10, gpu_state_bytes=0),
        timings=Timings(criu_dump_s=1.5),
        content_checksum="sha256:x",
    )
    assert Manifest.from_json(m.to_json()) == m
    assert not m.verified
