"""Output of the benchmark: a rich table on the terminal, a markdown table, a PNG plot (Agg, headless)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from bench.autoscale.harness import RunConfig

if TYPE_CHECKING:
    from bench.autoscale.runner import Row

COLUMNS = [
    ("policy", "policy"),
    ("slo_windows", "SLO windows"),
    ("attainment_pct", "attainment %"),
    ("attainable_windows", "attainable windows met"),
    ("attainable_pct", "attainment over attainable %"),
    ("gpu_hours", "GPU-h"),
    ("vs_oracle", "GPU-h / oracle"),
    ("utilisation_pct", "busy %"),
    ("scale_events", "scale events"),
    ("flaps", "flaps (<120 s)"),
    ("step_to_up_s", "step -> up (s)"),
    ("step_to_up_intervals", "step -> up (intervals)"),
    ("failed_requests", "failed req."),
    ("peak_replicas", "peak replicas"),
]


def _fmt(v: object) -> str:
    return "-" if v is None else str(v)


def print_table(title: str, rows: list[dict[str, object]]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    for _, head in COLUMNS:
        t.add_column(head, justify="left" if head == "policy" else "right")
    for r in rows:
        t.add_row(*(_fmt(r[k]) for k, _ in COLUMNS))
    Console(width=200).print(t)


def markdown(results: list[dict[str, object]], command: str) -> str:
    out = [f"Command: `{command}`", ""]
    for res in results:
        out += [f"**{res['title']}**", ""]
        out.append("| " + " | ".join(h for _, h in COLUMNS) + " |")
        out.append("|" + "---|" * len(COLUMNS))
        for r in res["rows"]:  # type: ignore[attr-defined]
            out.append("| " + " | ".join(_fmt(r[k]) for k, _ in COLUMNS) + " |")
        out += ["", f"![replicas and p95 TTFT per policy]({res['png']})", ""]
    return "\n".join(out)


def plot(rows: list[Row], cfg: RunConfig, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(12, 10), sharex=True)
    for r in rows:
        res = r.result
        t = [x[0] / 60 for x in res.timeline]
        ax1.step(t, [x[1] for x in res.timeline], where="post", label=r.name, lw=1.2)
        w = res.windows
        ax2.plot([x.t0 / 60 + 0.5 for x in w], [None if x.ttft_p95_s is None else x.ttft_p95_s * 1000 for x in w],
                 marker=".", lw=1, label=r.name)  # fmt: skip
        ax3.plot([x.t0 / 60 + 0.5 for x in w], [None if x.itl_p95_s is None else x.itl_p95_s * 1000 for x in w],
                 marker=".", lw=1, label=r.name)  # fmt: skip
    ax2.axhline(cfg.ttft_target_s * 1000, color="k", ls="--", lw=0.8, label="target")
    ax3.axhline(cfg.itl_target_s * 1000, color="k", ls="--", lw=0.8, label="target")
    ax1.set_ylabel("replicas (incl. starting)")
    ax2.set_ylabel("TTFT p95 per minute (ms)")
    ax2.set_yscale("log")
    ax3.set_ylabel("ITL p95 per minute (ms)")
    ax3.set_yscale("log")
    ax3.set_xlabel("minutes")
    ax1.legend(loc="upper left", ncols=4)
    ax1.set_title(title, fontsize=9)
    for ax in (ax1, ax2, ax3):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
