"""A tiny stateful HTTP "engine" for the real-CRIU tests.

Run: `python -m ember_checkpoint.testing.counter_server PORT`.

GET /inc adds one to a counter held in memory and returns it; GET /state returns it unchanged (the
canary: deterministic for a given process state); GET /health answers 200. POST /v1/completions
answers an OpenAI-shaped body whose `id` changes per request but whose text depends only on the
counter, like a greedy generation does on the model.
"""

from __future__ import annotations

import http.server
import itertools
import json
import sys

_counter = 0
_request_ids = itertools.count()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        global _counter
        if self.path == "/inc":
            _counter += 1
        if self.path in ("/inc", "/state"):
            self._send(str(_counter))
        elif self.path == "/health":
            self._send("ok")
        else:
            self.send_error(404)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        body = {"id": f"cmpl-{next(_request_ids)}", "choices": [{"text": f"count is {_counter}"}]}
        self._send(json.dumps(body))

    def _send(self, text: str) -> None:
        data = text.encode()
        self.send_response(200)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


if __name__ == "__main__":
    http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
