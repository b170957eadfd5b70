"""Reading and transforming request traces."""

from __future__ import annotations

from pathlib import Path

import pytest
from ember_sim.trace import burst, load_trace, parse_timestamp, piecewise, step_load, transform
from hypothesis import given
from hypothesis import strategies as st

CSV = """TIMESTAMP,ContextTokens,GeneratedTokens
2023-11-16 18:15:46.6805900,374,44
2023-11-16 18:15:50.9951690,396,109
2023-11-16 18:15:51.2224670,879,55
2023-11-16 18:16:46.6805900,91,0
"""


@pytest.fixture
def trace(tmp_path: Path) -> Path:
    path = tmp_path / "t.csv"
    path.write_text(CSV)
    return path


def test_a_trace_is_read_as_arrivals_relative_to_its_first_request(trace: Path) -> None:
    reqs = load_trace(trace)
    assert [r.arrival_s for r in reqs] == pytest.approx([0.0, 4.314579, 4.541877, 60.0])
    assert [(r.prompt_tokens, r.output_tokens) for r in reqs][:2] == [(374, 44), (396, 109)]


def test_a_zero_token_output_is_clamped_to_one(trace: Path) -> None:
    assert load_trace(trace)[-1].output_tokens == 1


def test_seven_fractional_digits_and_plain_seconds_are_both_timestamps() -> None:
    assert parse_timestamp("2023-11-16 18:15:46.6805900") == pytest.approx(1700158546.68059)
    assert parse_timestamp("12.5") == 12.5


def test_a_file_without_the_three_columns_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("time,prompt\n1,2\n")
    with pytest.raises(ValueError, match="GeneratedTokens"):
        load_trace(bad)


def test_slicing_keeps_the_window_and_restarts_time_at_its_start(trace: Path) -> None:
    reqs = load_trace(trace, offset_s=4.0, duration_s=10.0)
    assert [r.arrival_s for r in reqs] == pytest.approx([0.314579, 0.541877])


def test_time_compression_divides_arrival_times(trace: Path) -> None:
    reqs = load_trace(trace, time_scale=10.0)
    assert reqs[-1].arrival_s == pytest.approx(6.0)


@given(st.sampled_from([0.25, 0.5, 1.0, 2.0, 3.0, 2.5]))
def test_rate_scaling_multiplies_the_request_count(rate: float) -> None:
    reqs = transform([(float(i), 10, 10) for i in range(100)], rate_scale=rate)
    assert len(reqs) == int(100 * rate)
    assert len({r.id for r in reqs}) == len(reqs)
    assert [r.arrival_s for r in reqs] == sorted(r.arrival_s for r in reqs)


def test_a_step_load_changes_rate_at_the_step() -> None:
    reqs = step_load(2.0, 10.0, step_at_s=30.0, duration_s=60.0)
    assert sum(r.arrival_s < 30 for r in reqs) == 60
    assert sum(r.arrival_s >= 30 for r in reqs) == 300


def test_a_burst_adds_load_only_during_the_burst() -> None:
    reqs = burst(1.0, 20.0, at_s=10.0, length_s=5.0, duration_s=30.0)
    assert sum(10 <= r.arrival_s < 15 for r in reqs) == 100
    assert len(reqs) == 25 + 100


def test_poisson_loads_are_reproducible_from_the_seed() -> None:
    a = piecewise([(100.0, 5.0)], poisson=True, seed=4)
    assert a == piecewise([(100.0, 5.0)], poisson=True, seed=4)
    assert a != piecewise([(100.0, 5.0)], poisson=True, seed=5)
    assert 400 < len(a) < 600
