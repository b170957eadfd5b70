"""`python -m bench.autoscale.headlines RESULTS.json... --out docs/benchmarks.json`: the headline figures.

Reads the `*.results.json` files the runner wrote and records, per policy, two figures over the
scenarios (a trace at one time-to-ready): the windows it missed beyond the oracle's among the
attainable ones, and its GPU-hours over the oracle's. Each entry: value (mean over the scenarios),
unit, n (scenarios), min, max, date, machine, command. Entries of other benchmarks in the file are kept.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
from datetime import UTC, datetime
from pathlib import Path


def _missed(row: dict[str, object]) -> int:
    met, total = str(row["attainable_windows"]).split("/")
    return int(total) - int(met)


def figures(results: list[dict[str, object]]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for res in results:
        rows = {str(r["policy"]): r for r in res["rows"]}  # type: ignore[attr-defined]
        base = _missed(rows["oracle"])
        for name, r in rows.items():
            if name == "oracle":
                continue
            out.setdefault(f"{name}: attainable windows missed beyond the oracle", []).append(
                _missed(r) - base
            )
            out.setdefault(f"{name}: GPU-h / oracle", []).append(float(r["vs_oracle"]))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.autoscale.headlines")
    p.add_argument("results", type=Path, nargs="+")
    p.add_argument("--group", required=True, help="label of this set of scenarios, e.g. 'untuned families'")
    p.add_argument("--command", required=True, help="the command that produced the results")
    p.add_argument("--out", type=Path, default=Path("docs/benchmarks.json"))
    a = p.parse_args(argv)
    results = [x for f in a.results for x in json.loads(f.read_text())]
    doc = json.loads(a.out.read_text()) if a.out.exists() else {}
    machine = f"{platform.machine()}, {len(__import__('os').sched_getaffinity(0))} cores, shared (simulation)"
    for name, vals in figures(results).items():
        doc[f"autoscale/{a.group}/{name}"] = {
            "value": round(statistics.fmean(vals), 3),
            "unit": "windows" if "windows" in name else "ratio",
            "n": len(vals), "min": min(vals), "max": max(vals),
            "date": datetime.now(UTC).date().isoformat(), "machine": machine, "command": a.command,
        }  # fmt: skip
    a.out.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
