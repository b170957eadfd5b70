"""Every per-event kopf handler is a coroutine, so kopf never sends a watch event through its thread pool."""

from __future__ import annotations

import inspect

import kopf
from ember.config import Settings
from ember.handlers.context import OperatorContext
from ember.handlers.registry import register
from ember.telemetry.metrics import Metrics


def test_event_and_index_handlers_are_coroutines() -> None:
    # a plain function runs in kopf's executor (6 threads on 2 cores): one thread hop per event of
    # every pod and every InferenceService, which fell behind the watch at 500 services (bench/scale)
    reg = kopf.OperatorRegistry()
    register(reg, OperatorContext(settings=Settings(), api=None, metrics=Metrics.create()))  # type: ignore[arg-type]
    handlers = [*reg._indexing.get_all_handlers(), *reg._watching.get_all_handlers()]
    assert {h.id for h in handlers} >= {"ember_pods", "ember_placeholders"}
    assert len(handlers) == 5
    for h in handlers:
        assert inspect.iscoroutinefunction(h.fn), h.id
