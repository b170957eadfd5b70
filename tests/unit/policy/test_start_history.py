"""The measured start history (policy/startpath.fold, history_of): the supervisors' per-pod
measurements folded into status.startHistory, each start counted once, bounded per path, a fallback
counted under the path that happened; choose() then plans with the median instead of the default."""

from __future__ import annotations

import math

import pytest
from ember.api.v1alpha1 import START_HISTORY_SIZE, InferenceServiceSpec, InferenceServiceStatus, StartHistory
from ember.policy.startpath import Defaults, Measured, choose, fold, history_of

SPEC = InferenceServiceSpec.model_validate({"model": {"uri": "hf://o/m"}})
D = Defaults(wake_s=1.0, restore_s=10.0, cold_s=90.0)


def cold(pod: str, s: float, at: float) -> Measured:
    return Measured(pod, "cold", s, at)


def seconds(h: StartHistory, path: str) -> list[float]:
    return [s.seconds for s in getattr(h, path)]


def test_a_measured_cold_start_replaces_the_default() -> None:
    h = fold(StartHistory(), [cold("llm-0", 42.0, 100.0)])
    status = InferenceServiceStatus(start_history=h)
    c = choose(SPEC, status, granted=False, history=history_of(status), defaults=D)
    assert (c.path, c.expected_s) == ("cold", 42.0) and "median of 1 measured" in c.reason
    # without the history (what the operator did before): the default
    assert choose(SPEC, status, granted=False, defaults=D).expected_s == 90.0


def test_a_pod_read_on_every_pass_is_counted_once() -> None:
    h = StartHistory()
    for _ in range(5):  # the same gauges, read again each decision interval (and after a restart)
        h = fold(h, [cold("llm-0", 40.0, 100.0), cold("llm-1", 50.0, 101.0)])
    assert seconds(h, "cold") == [40.0, 50.0]
    assert [s.pod for s in h.cold] == ["llm-0", "llm-1"]


def test_the_same_measurement_twice_in_one_read_is_counted_once() -> None:
    h = fold(StartHistory(), [cold("llm-0", 40.0, 100.0), cold("llm-0", 40.0, 100.0)])
    assert seconds(h, "cold") == [40.0]


def test_each_path_keeps_the_newest_ten_and_a_long_lived_pod_never_reenters() -> None:
    pods = [cold(f"llm-{i}", float(i), 1000.0 + i) for i in range(15)]
    h = fold(StartHistory(), pods)
    assert len(h.cold) == START_HISTORY_SIZE
    assert seconds(h, "cold") == [float(i) for i in range(5, 15)]  # the oldest five dropped
    # all 15 pods live on and are read again: the five dropped ones are older than all kept, so the
    # history (and the status write) does not change
    assert fold(h, pods) == h
    # a newer start pushes out the oldest kept
    h2 = fold(h, [*pods, cold("llm-15", 99.0, 2000.0)])
    assert seconds(h2, "cold") == [float(i) for i in range(6, 15)] + [99.0]


def test_paths_are_kept_apart_and_a_fallback_counts_as_what_happened() -> None:
    # llm-1 was asked to restore, fell back to cold: the supervisor's counter says cold, and so does
    # its measurement; its 70 s (the failed restore included) is a cold start's
    h = fold(
        StartHistory(),
        [Measured("llm-0", "restore", 8.0, 10.0), Measured("llm-1", "cold", 70.0, 11.0),
         Measured("llm-0", "wake", 0.4, 50.0), Measured("llm-0", "wake", 0.6, 60.0)],
    )  # fmt: skip
    assert (seconds(h, "restore"), seconds(h, "cold"), seconds(h, "wake")) == ([8.0], [70.0], [0.4, 0.6])
    hist = history_of(InferenceServiceStatus(start_history=h))
    assert hist.expected("wake", 1.0) == (pytest.approx(0.5), "median of 2 measured")
    assert hist.expected("restore", 10.0)[0] == 8.0 and hist.expected("cold", 90.0)[0] == 70.0


def test_many_wakes_of_one_pod_are_each_counted() -> None:
    h = StartHistory()
    for i, s in enumerate((0.3, 0.5, 2.0)):  # the last-wake gauges after each wake, read twice each
        h = fold(h, [Measured("llm-0", "wake", s, 100.0 + i)])
        h = fold(h, [Measured("llm-0", "wake", s, 100.0 + i)])
    assert seconds(h, "wake") == [0.3, 0.5, 2.0]
    status = InferenceServiceStatus(start_history=h)
    c = choose(SPEC, status, granted=False, sleeping=("llm-0",), history=history_of(status), defaults=D)
    assert (c.path, c.expected_s) == ("wake", 0.5)


def test_the_median_follows_the_measurements() -> None:
    h = fold(StartHistory(), [cold("a", 30.0, 1.0), cold("b", 200.0, 2.0), cold("c", 40.0, 3.0)])
    status = InferenceServiceStatus(start_history=h)
    assert choose(SPEC, status, granted=False, history=history_of(status), defaults=D).expected_s == 40.0


def test_no_measurement_changes_nothing_and_nonsense_is_no_measurement() -> None:
    h = fold(StartHistory(), [cold("a", 30.0, 1.0)])
    assert fold(h, []) == h
    assert fold(h, [cold("b", -1.0, 2.0), cold("c", math.nan, 3.0), cold("d", 5.0, math.inf)]) == h


def test_the_history_round_trips_through_the_status_as_the_api_server_stores_it() -> None:
    h = fold(
        StartHistory(), [cold("llm-0", 42.5, 1733230000.123), Measured("llm-0", "wake", 0.45, 1733231000.5)]
    )
    raw = InferenceServiceStatus(start_history=h).to_k8s()
    assert raw["startHistory"]["cold"] == [{"pod": "llm-0", "at": 1733230000.123, "seconds": 42.5}]
    back = InferenceServiceStatus.model_validate(raw)
    assert back.start_history == h
    assert fold(back.start_history, [cold("llm-0", 42.5, 1733230000.123)]) == h  # still counted once
