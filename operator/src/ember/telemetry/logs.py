"""Logging: one JSON object per line (machine-readable) or plain text, chosen in Settings."""

from __future__ import annotations

import json
import logging
from typing import Any

_STD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        out.update({k: v for k, v in vars(record).items() if k not in _STD})
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure(fmt: str = "json", level: int = logging.INFO) -> None:
    h = logging.StreamHandler()
    h.setFormatter(
        JsonFormatter()
        if fmt == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [h]
    root.setLevel(level)
    # one line per Prometheus query and per probe answered would drown the decisions (which are logged)
    for noisy in ("httpx", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
