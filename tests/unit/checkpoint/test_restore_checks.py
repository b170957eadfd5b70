"""The refusals that need nothing but the manifest, and the verification verdict (pure parts)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from ember_checkpoint.engine_http import canary_value
from ember_checkpoint.errors import Reason, RestoreRefused
from ember_checkpoint.lifecycle import check_restorable
from ember_checkpoint.manifest import Canary, Identity, Manifest, Sizes, Timings, Verification
from ember_checkpoint.scratch import ScratchResult
from ember_checkpoint.verify import judge

IDENT = Identity(
    model_digest="d", engine_version="e", criu_version="4.2.1", dtype="bfloat16", max_model_len=4096
)
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def manifest(**update: object) -> Manifest:
    m = Manifest(
        checkpoint_id="c",
        identity=IDENT,
        identity_hash=IDENT.hash(),
        created=NOW,
        sizes=Sizes(image_bytes=1, gpu_state_bytes=0),
        timings=Timings(),
        content_checksum="sha256:x",
        canary=Canary(path="/state", output="3"),
        verification=Verification(verified=True),
    )
    return m.model_copy(update=update)


@pytest.mark.parametrize(
    "m,expected,reason",
    [
        (manifest(), IDENT.model_copy(update={"dtype": "float16"}), Reason.IDENTITY_MISMATCH),
        (manifest(identity_hash="sha256:forged"), IDENT, Reason.MANIFEST_INVALID),
        (manifest(verification=Verification()), IDENT, Reason.NOT_VERIFIED),
        (manifest(gpu_pids=[7]), IDENT, Reason.GPU_UNAVAILABLE),
    ],
    ids=["identity", "forged-hash", "unverified", "gpu-image-on-cpu"],
)
def test_restore_is_refused_with_a_typed_reason(m: Manifest, expected: Identity, reason: Reason) -> None:
    with pytest.raises(RestoreRefused) as e:
        check_restorable(m, expected, require_verified=True, gpu=None)
    assert e.value.reason is reason


def test_a_matching_verified_cpu_image_passes_the_checks() -> None:
    check_restorable(manifest(), IDENT, require_verified=True, gpu=None)


@pytest.mark.parametrize(
    "result,verified,failure_part",
    [
        (ScratchResult(ok=True, output="3", first_answer_s=0.2), True, None),
        (ScratchResult(ok=True, output="4"), False, "differs"),
        (ScratchResult(ok=False, error="criu restore failed"), False, "criu restore failed"),
    ],
    ids=["same-answer", "other-answer", "restore-failed"],
)
def test_judge_marks_verified_only_on_the_recorded_answer(
    result: ScratchResult, verified: bool, failure_part: str | None
) -> None:
    v = judge(manifest(verification=Verification()), result, NOW)
    assert v.verified is verified
    assert (v.failure is None) if failure_part is None else (failure_part in (v.failure or ""))


def test_canary_compares_only_the_generated_text_of_an_openai_answer() -> None:
    a = '{"id": "cmpl-1", "created": 1, "choices": [{"text": "hello"}]}'
    b = '{"id": "cmpl-2", "created": 2, "choices": [{"text": "hello"}]}'
    assert canary_value(a, "choices.0.text") == canary_value(b, "choices.0.text") == "hello"
    assert canary_value(a, None) != canary_value(b, None)
