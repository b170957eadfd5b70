"""Real CRIU for the checkpoint integration tests: installed through tests/cluster/fetch-tools.sh."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from ember_checkpoint.criu import Criu, CriuNotFound
from ember_checkpoint.manifest import Identity
from ember_checkpoint.testing import CounterEngine

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def criu() -> Criu:
    if os.geteuid() != 0:
        pytest.fail(
            "CRIU dump/restore needs root (CAP_SYS_ADMIN + CAP_CHECKPOINT_RESTORE): run these as root"
        )
    try:
        found = Criu.find()
    except CriuNotFound:
        subprocess.run(["bash", str(REPO / "tests/cluster/fetch-tools.sh"), "criu"], check=True)
        found = Criu.find()
    check = found.check()
    assert check.returncode == 0, f"criu check failed here:\n{check.stdout}\n{check.stderr}"
    return found


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[CounterEngine]:
    e = CounterEngine(tmp_path / "engine.log")
    yield e
    if e.proc.returncode is None:
        e.proc.kill()
        e.proc.wait()


@pytest.fixture
def identity(criu: Criu) -> Identity:
    return Identity(
        model_digest="sha256:" + "ab" * 32,
        engine_version="counter-server 1",
        criu_version=criu.version_str,
        dtype="float32",
        max_model_len=128,
    )
