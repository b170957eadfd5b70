"""Test ports never come from the kernel's ephemeral range (where a dumped engine's ports are)."""

from __future__ import annotations

import socket
from pathlib import Path

from ember_checkpoint.testing import LOWEST_TEST_PORT, ephemeral_low, free_port


def test_free_ports_are_below_the_ephemeral_range_and_bindable() -> None:
    low = ephemeral_low()
    for _ in range(50):
        port = free_port()
        assert LOWEST_TEST_PORT <= port < low
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


def test_the_ephemeral_range_is_read_from_the_kernel_or_defaults(tmp_path: Path) -> None:
    f = tmp_path / "range"
    f.write_text("40000\t60999\n")
    assert ephemeral_low(f) == 40000
    assert ephemeral_low(tmp_path / "missing") == 32768
