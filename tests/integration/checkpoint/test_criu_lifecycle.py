"""Real CRIU, no mocks: a stateful HTTP server is dumped, killed, restored, and answers with its state."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ember_checkpoint import lifecycle
from ember_checkpoint.criu import Criu
from ember_checkpoint.errors import Reason, RestoreRefused
from ember_checkpoint.manifest import Canary, Identity
from ember_checkpoint.storage import LocalDirStorage
from ember_checkpoint.testing import CounterEngine, get, port_is_free
from ember_checkpoint.verify import verify

pytestmark = pytest.mark.integration


@pytest.fixture
def storage(tmp_path: Path) -> LocalDirStorage:
    return LocalDirStorage(tmp_path / "checkpoints")


@pytest.fixture
def restored() -> Iterator[list[int]]:
    pids: list[int] = []
    yield pids
    for pid in pids:
        lifecycle.kill_tree(pid)


def dump_and_stop(
    engine: CounterEngine, storage: LocalDirStorage, criu: Criu, identity: Identity, cid: str
) -> None:
    req = lifecycle.DumpRequest(
        pid=engine.pid,
        checkpoint_id=cid,
        identity=identity,
        engine_port=engine.port,
        canary=Canary(path="/state"),
    )
    lifecycle.dump(req, storage, criu, gpu=None)
    engine.proc.wait(timeout=10)  # CRIU killed it; reap it so its pid is free for the restore


def test_restored_server_answers_with_the_state_it_had(
    engine: CounterEngine, storage: LocalDirStorage, criu: Criu, identity: Identity, restored: list[int]
) -> None:
    assert [get(engine.port, "/inc") for _ in range(3)] == ["1", "2", "3"]
    t0 = time.monotonic()
    dump_and_stop(engine, storage, criu, identity, "c1")
    dump_s = time.monotonic() - t0
    assert port_is_free(engine.port), "the dumped server should be gone"

    result = lifecycle.restore("c1", storage, identity, criu_finder=lambda: criu, require_verified=False)
    restored.append(result.pid)

    assert result.pid == engine.pid  # CRIU gives the tree its pids back
    assert get(engine.port, "/state") == "3"
    assert get(engine.port, "/inc") == "4"
    m = storage.read_manifest("c1")
    assert m.sizes.image_bytes > 0 and m.canary is not None and m.canary.output == "3"
    print(f"\ndump {dump_s:.3f}s (criu {m.timings.criu_dump_s:.3f}s), restore phases {result.phases_s}")


def test_verify_restores_a_canary_beside_the_running_engine_and_marks_it_verified(
    engine: CounterEngine, storage: LocalDirStorage, criu: Criu, identity: Identity, restored: list[int]
) -> None:
    get(engine.port, "/inc"), get(engine.port, "/inc")
    req = lifecycle.DumpRequest(
        pid=engine.pid,
        checkpoint_id="live",
        identity=identity,
        engine_port=engine.port,
        canary=Canary(method="POST", path="/v1/completions", body="{}", json_field="choices.0.text"),
        leave_running=True,
    )
    lifecycle.dump(req, storage, criu, gpu=None)
    assert get(engine.port, "/inc") == "3"  # a live dump leaves the engine serving

    m = verify("live", storage, criu, timeout_s=60)

    assert m.verification.failure is None and m.verified, m.verification
    assert storage.read_manifest("live").verified
    assert get(engine.port, "/state") == "3"  # the canary ran in its own namespaces, not here
    engine.proc.kill()
    engine.proc.wait()
    result = lifecycle.restore("live", storage, identity, criu_finder=lambda: criu)  # verified: allowed
    restored.append(result.pid)
    assert get(engine.port, "/state") == "2"


def test_verify_fails_when_the_restored_answer_differs_from_the_recorded_one(
    engine: CounterEngine, storage: LocalDirStorage, criu: Criu, identity: Identity
) -> None:
    get(engine.port, "/inc")
    req = lifecycle.DumpRequest(
        pid=engine.pid,
        checkpoint_id="c",
        identity=identity,
        engine_port=engine.port,
        canary=Canary(path="/state"),
        leave_running=True,
    )
    m = lifecycle.dump(req, storage, criu, gpu=None)
    assert m.canary is not None
    # Pretend the dump recorded another answer: the real restored process says "1".
    storage.write_manifest("c", m.model_copy(update={"canary": m.canary.model_copy(update={"output": "7"})}))

    v = verify("c", storage, criu, timeout_s=60)

    assert not v.verified
    assert (
        v.verification.failure is not None
        and "'7'" in v.verification.failure
        and "'1'" in v.verification.failure
    )


def test_corrupted_image_is_refused_with_checksum_mismatch_and_nothing_starts(
    engine: CounterEngine, storage: LocalDirStorage, criu: Criu, identity: Identity
) -> None:
    dump_and_stop(engine, storage, criu, identity, "c1")
    pages = max((storage.get("c1") / "images").glob("pages-*.img"), key=lambda p: p.stat().st_size)
    data = bytearray(pages.read_bytes())
    data[len(data) // 2] ^= 0xFF
    pages.write_bytes(bytes(data))

    with pytest.raises(RestoreRefused) as e:
        lifecycle.restore("c1", storage, identity, criu_finder=lambda: criu, require_verified=False)

    assert e.value.reason is Reason.CHECKSUM_MISMATCH
    assert port_is_free(engine.port)


def test_identity_mismatch_is_refused_naming_the_field(
    engine: CounterEngine, storage: LocalDirStorage, criu: Criu, identity: Identity
) -> None:
    dump_and_stop(engine, storage, criu, identity, "c1")
    other = identity.model_copy(update={"max_model_len": 4096})

    with pytest.raises(RestoreRefused) as e:
        lifecycle.restore("c1", storage, other, criu_finder=lambda: criu, require_verified=False)

    assert e.value.reason is Reason.IDENTITY_MISMATCH
    assert "max_model_len" in e.value.detail
    assert port_is_free(engine.port)


def test_missing_criu_is_refused_with_criu_missing(
    engine: CounterEngine, storage: LocalDirStorage, criu: Criu, identity: Identity, tmp_path: Path
) -> None:
    dump_and_stop(engine, storage, criu, identity, "c1")

    with pytest.raises(RestoreRefused) as e:
        lifecycle.restore(
            "c1",
            storage,
            identity,
            criu_finder=lambda: Criu.find({"EMBER_CRIU": str(tmp_path / "no-criu-here")}),
            require_verified=False,
        )

    assert e.value.reason is Reason.CRIU_MISSING
