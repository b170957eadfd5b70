from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ember_checkpoint.gc import plan_gc
from ember_checkpoint.manifest import Identity, Manifest, Sizes, Timings, Verification
from hypothesis import given
from hypothesis import strategies as st

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def manifest(cid: str, identity: str, minute: int, state: str) -> Manifest:
    ident = Identity(
        model_digest=identity, engine_version="e", criu_version="4.2.1", dtype="f", max_model_len=1
    )
    v = {
        "verified": Verification(verified=True),
        "pending": Verification(),
        "failed": Verification(failure="canary answer differs"),
    }[state]
    return Manifest(
        checkpoint_id=cid,
        identity=ident,
        identity_hash=ident.hash(),
        created=T0 + timedelta(minutes=minute),
        sizes=Sizes(image_bytes=1, gpu_state_bytes=0),
        timings=Timings(),
        content_checksum="sha256:x",
        verification=v,
    )


entries = st.lists(
    st.tuples(
        st.sampled_from(["m1", "m2", "m3"]),
        st.integers(0, 50),
        st.sampled_from(["verified", "pending", "failed"]),
    ),
    max_size=25,
)


@given(entries, st.integers(0, 4))
def test_gc_keeps_exactly_the_newest_n_verified_per_identity(
    items: list[tuple[str, int, str]], keep: int
) -> None:
    ms = [manifest(f"c{i}", ident, minute, state) for i, (ident, minute, state) in enumerate(items)]
    doomed = set(plan_gc(ms, keep))
    for ident in {m.identity_hash for m in ms}:
        group = sorted(
            (m for m in ms if m.identity_hash == ident), key=lambda m: (m.created, m.checkpoint_id)
        )
        verified = [m.checkpoint_id for m in group if m.verified]
        kept_verified = [c for c in verified if c not in doomed]
        assert kept_verified == verified[len(verified) - min(keep, len(verified)) :]
    assert all(m.checkpoint_id in doomed for m in ms if m.verification.failure)


def test_gc_keeps_a_pending_checkpoint_newer_than_the_verified_ones_and_drops_older_ones() -> None:
    ms = [
        manifest("old-pending", "m", 0, "pending"),
        manifest("v1", "m", 1, "verified"),
        manifest("v2", "m", 2, "verified"),
        manifest("new-pending", "m", 3, "pending"),
        manifest("other-identity", "n", 0, "verified"),
    ]
    assert plan_gc(ms, keep=1) == ["old-pending", "v1"]
