from __future__ import annotations

import time

import pytest
from ember_checkpoint.engine_http import EngineExited, wait_healthy
from ember_checkpoint.testing import free_port


def test_a_dead_engine_is_not_waited_out() -> None:
    t0 = time.monotonic()
    with pytest.raises(EngineExited, match="exited before"):
        wait_healthy(f"http://127.0.0.1:{free_port()}/health", 600, alive=lambda: False)
    assert time.monotonic() - t0 < 5


def test_without_an_answer_it_times_out() -> None:
    with pytest.raises(TimeoutError, match="not healthy after"):
        wait_healthy(f"http://127.0.0.1:{free_port()}/health", 0.3, alive=lambda: True)
