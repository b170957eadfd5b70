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
        steps = adapter.validate_json(adapter.dump_json(wake_steps(2)))
        run_steps(f"http://127.0.0.1:{server.server_address[1]}", steps, timeout_s=5)
    finally:
        server.shutdown()
    assert seen == [("/wake_up", None), ("/collective_rpc", {"method": "reload_weights"})]
    assert [s.path for s in wake_steps(1)] == ["/wake_up"]
    with pytest.raises(DumpFailed, match="levels 1 and 2"):
        wake_steps(3)
