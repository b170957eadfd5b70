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


def test_wake_steps_carry_the_reload_body_and_are_sent_in_order() -> None:
    """A level-2 image holds no weights: its wake must be followed by reload_weights, with the JSON body."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from ember_checkpoint.engine_http import run_steps
    from ember_checkpoint.errors import DumpFailed
    from ember_checkpoint.lifecycle import wake_steps
    from ember_checkpoint.manifest import HttpStep
    from pydantic import TypeAdapter

    seen: list[tuple[str, object]] = []

    class Engine(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            n = int(self.headers.get("content-length") or 0)
            body = json.loads(self.rfile.read(n)) if n else None
            seen.append((self.path, body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Engine)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        # the steps go through JSON, as they do in the manifest on disk
        adapter = TypeAdapter(list[HttpStep])
        steps = adapter.validate_json(adapter.dump_json(wake_steps(2, "vllm")))
        run_steps(f"http://127.0.0.1:{server.server_address[1]}", steps, timeout_s=5)
    finally:
        server.shutdown()
    assert seen == [("/wake_up", None), ("/collective_rpc", {"method": "reload_weights"})]
    assert [s.path for s in wake_steps(1)] == ["/wake_up"]
    with pytest.raises(DumpFailed, match="levels 1 and 2"):
        wake_steps(3)


class _Engine:
    """A stand-in engine on a real socket: records each call; `fail` names the collective_rpc methods
    that answer 500 (as vLLM does when a worker method raises or is unknown)."""

    def __init__(self, fail: set[str]) -> None:
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.seen: list[tuple[str, object]] = []
        seen = self.seen

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                n = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(n)) if n else None
                seen.append((self.path, body))
                bad = isinstance(body, dict) and body.get("method") in fail
                self.send_response(500 if bad else 200)
                self.end_headers()
                if bad:
                    self.wfile.write(b"worker raised")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


def test_level_2_wake_uses_embers_loader_and_falls_back_to_vllms_with_the_reason_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from ember_checkpoint.engine_http import run_steps
    from ember_checkpoint.lifecycle import wake_steps
    from ember_checkpoint.manifest import HttpStep
    from pydantic import TypeAdapter

    adapter = TypeAdapter(list[HttpStep])
    steps = adapter.validate_json(adapter.dump_json(wake_steps(2)))  # through JSON, as in the manifest
    ok = _Engine(fail=set())
    run_steps(ok.url, steps, timeout_s=5)
    assert ok.seen == [("/wake_up", None), ("/collective_rpc", {"method": "ember_reload_weights"})]

    broken = _Engine(fail={"ember_reload_weights"})
    with caplog.at_level("WARNING", logger="ember.checkpoint"):
        run_steps(broken.url, steps, timeout_s=5)
    assert broken.seen == [
        ("/wake_up", None),
        ("/collective_rpc", {"method": "ember_reload_weights"}),
        ("/collective_rpc", {"method": "reload_weights"}),
    ]
    assert "engine_step_failed_using_fallback" in caplog.text and "worker raised" in caplog.text
    ok.server.shutdown()
    broken.server.shutdown()


def test_a_failing_step_without_fallback_still_fails() -> None:
    import httpx
    from ember_checkpoint.engine_http import run_steps
    from ember_checkpoint.lifecycle import VLLM_RELOAD

    e = _Engine(fail={"reload_weights"})
    with pytest.raises(httpx.HTTPStatusError):
        run_steps(e.url, [VLLM_RELOAD], timeout_s=5)
    e.server.shutdown()


def test_unknown_weight_loader_is_refused() -> None:
    from ember_checkpoint.errors import DumpFailed
    from ember_checkpoint.lifecycle import wake_steps

    with pytest.raises(DumpFailed, match="weight_loader"):
        wake_steps(2, "fast")  # type: ignore[arg-type]
