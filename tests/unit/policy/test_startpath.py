"""The start-path choice table (policy/startpath.py): wake > restore > cold, cold on a node without
the checkpoint, expected times from measured history or the defaults; and the supervisor's side, which
obeys the operator's choice."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from ember.api.v1alpha1 import CheckpointStatus, InferenceServiceSpec, InferenceServiceStatus
from ember.policy.startpath import Defaults, History, choose

SPEC = InferenceServiceSpec.model_validate(
    {"model": {"uri": "hf://Qwen/Qwen2.5-0.5B-Instruct"}, "checkpoint": {"enabled": True}}
)
VERIFIED = InferenceServiceStatus(
    checkpoint=CheckpointStatus(
        id="c1", identity="i" * 64, size_bytes=1, gpu_bytes=0, created=datetime(2026, 12, 1, tzinfo=UTC),
        verified=True, location="/c",
    )
)  # fmt: skip
UNVERIFIED = VERIFIED.model_copy(
    update={"checkpoint": VERIFIED.checkpoint.model_copy(update={"verified": False})}
)  # type: ignore[union-attr]
D = Defaults(wake_s=1.0, restore_s=10.0, cold_s=90.0)


@pytest.mark.parametrize(
    ("status", "granted", "sleeping", "on_node", "path", "expected", "wake"),
    [
        (InferenceServiceStatus(), False, (), True, "cold", 90.0, None),
        (InferenceServiceStatus(), True, (), True, "cold", 90.0, None),
        (UNVERIFIED, True, (), True, "cold", 90.0, None),
        (VERIFIED, False, (), True, "cold", 90.0, None),  # no grant: cold whatever status says
        (VERIFIED, True, (), True, "restore", 10.0, None),
        (VERIFIED, True, (), False, "cold", 90.0, None),  # a new node without the checkpoint
        (VERIFIED, True, ("llm-2", "llm-0"), True, "wake", 1.0, "llm-2"),
        (InferenceServiceStatus(), False, ("llm-1",), True, "wake", 1.0, "llm-1"),
        (VERIFIED, True, ("llm-1",), False, "wake", 1.0, "llm-1"),
    ],
)
def test_choice_table(
    status: InferenceServiceStatus,
    granted: bool,
    sleeping: tuple[str, ...],
    on_node: bool,
    path: str,
    expected: float,
    wake: str | None,
) -> None:
    c = choose(SPEC, status, granted=granted, sleeping=sleeping, node_has_checkpoint=on_node, defaults=D)
    assert (c.path, c.expected_s, c.wake) == (path, expected, wake)
    assert "default" in c.reason


def test_restore_off_in_the_spec_is_cold() -> None:
    never = SPEC.model_copy(
        update={"checkpoint": SPEC.checkpoint.model_copy(update={"restore_policy": "Never"})}
    )
    assert choose(never, VERIFIED, granted=True, defaults=D).path == "cold"


def test_expected_time_is_the_median_of_measured_history() -> None:
    h = History({"restore": (7.0, 8.0, 30.0), "wake": (0.4, 0.5), "cold": ()})
    assert choose(SPEC, VERIFIED, granted=True, history=h, defaults=D).expected_s == 8.0
    c = choose(SPEC, VERIFIED, granted=True, sleeping=("a",), history=h, defaults=D)
    assert c.expected_s == pytest.approx(0.45) and "median of 2 measured" in c.reason
    assert choose(SPEC, InferenceServiceStatus(), granted=True, history=h, defaults=D).expected_s == 90.0


def test_supervisor_obeys_the_operators_cold(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Asked for cold, the supervisor does not even look for a checkpoint; asked for restore (or
    nothing), it tries one; startup.json says what was asked and what happened."""
    import json

    from ember_supervisor import startup
    from ember_supervisor.config import SupervisorConfig
    from ember_supervisor.metrics import SupervisorMetrics

    tried: list[str] = []

    def fake_restore(cfg: Any, st: startup.Startup) -> bool:
        tried.append("restore")
        return False

    def fake_cold(cfg: Any, st: startup.Startup) -> None:
        st.path = "cold"

    monkeypatch.setattr(startup, "_try_restore", fake_restore)
    monkeypatch.setattr(startup, "_cold", fake_cold)
    cfg = SupervisorConfig.model_validate(
        {
            "engine_argv": ["true"],
            "engine_port": 1,
            "identity": {},
            "state_dir": str(tmp_path),
            "checkpoint_dir": str(tmp_path / "c"),
        }
    )
    st = startup.start_engine(cfg, SupervisorMetrics(), {"EMBER_START_PATH": "cold"})
    assert (st.asked, st.path, tried) == ("cold", "cold", [])
    assert json.loads((tmp_path / startup.STARTUP_FILE).read_text())["asked"] == "cold"
    st = startup.start_engine(cfg, SupervisorMetrics(), {"EMBER_START_PATH": "restore"})
    assert (st.asked, tried) == ("restore", ["restore"])
    assert startup.start_engine(cfg, SupervisorMetrics(), {}).asked == "auto" and len(tried) == 2
