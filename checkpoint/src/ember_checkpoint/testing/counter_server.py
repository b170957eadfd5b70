"""A tiny stateful HTTP "engine" for the real-CRIU tests.

Run: `python -m ember_checkpoint.testing.counter_server PORT [--sleep-mode]`.

GET /inc adds one to a counter held in memory and returns it; GET /state returns it unchanged (the
canary: deterministic for a given process state); GET /health answers 200. POST /v1/completions
answers an OpenAI-shaped body whose `id` changes per request but whose text depends only on the
counter, like a greedy generation does on the model.

With `--sleep-mode` it also answers the vLLM sleep-mode routes the supervisor drives (the shape of
vLLM 0.25.1's dev routes, not their work): `POST /sleep?level=N`, `GET /is_sleeping`, `POST /wake_up`
and `POST /collective_rpc` (`reload_weights` or `ember_reload_weights`: the "weights" come back; any
other method answers 200). While asleep a completion answers 503; after a level-2 sleep is woken
without a reload its text is wrong (`weights lost`), as a real engine's would be, so a canary catches
a missing reload. `GET /calls` counts the sleep-mode calls this process (this process state) served.
"""

from __future__ import annotations

import http.server
import itertools
import json
import sys
from urllib.parse import parse_qs, urlsplit

_counter = 0
_request_ids = itertools.count()
SLEEP_MODE = "--sleep-mode" in sys.argv[2:]
_sleep = {"asleep": False, "level": 0, "weights_lost": False}
_calls = {"sleep": 0, "wake_up": 0, "reload": 0, "rpc": 0}
RELOADS = ("reload_weights", "ember_reload_weights")


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        global _counter
        path = urlsplit(self.path).path
        if path == "/inc":
            _counter += 1
        if path in ("/inc", "/state"):
            self._send(str(_counter))
        elif path == "/health":
            self._send("ok")
        elif SLEEP_MODE and path == "/is_sleeping":
            self._send(json.dumps({"is_sleeping": _sleep["asleep"]}))
        elif SLEEP_MODE and path == "/calls":
            self._send(json.dumps(_calls))
        else:
            self.send_error(404)

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("content-length", 0)))
        url = urlsplit(self.path)
        if SLEEP_MODE and url.path in ("/sleep", "/wake_up", "/collective_rpc"):
            self._sleep_route(url.path, parse_qs(url.query), raw)
            return
        if SLEEP_MODE and _sleep["asleep"]:
            self._send(json.dumps({"error": "the engine is asleep"}), 503)
            return
        text = "weights lost" if _sleep["weights_lost"] else f"count is {_counter}"
        self._send(json.dumps({"id": f"cmpl-{next(_request_ids)}", "choices": [{"text": text}]}))

    def _sleep_route(self, path: str, query: dict[str, list[str]], raw: bytes) -> None:
        if path == "/sleep":
            _calls["sleep"] += 1
            _sleep.update(asleep=True, level=int(query.get("level", ["1"])[0]))
        elif path == "/wake_up":
            _calls["wake_up"] += 1
            if _sleep["asleep"]:
                _sleep.update(asleep=False, weights_lost=_sleep["level"] == 2)
        else:
            _calls["rpc"] += 1
            if (json.loads(raw or b"{}").get("method")) in RELOADS:
                _calls["reload"] += 1
                _sleep["weights_lost"] = False
        self._send("{}")

    def _send(self, text: str, code: int = 200) -> None:
        data = text.encode()
        self.send_response(code)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


if __name__ == "__main__":
    http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
