"""Bar chart of the GPU start paths from docs/bench-data/gpu-2026-11-24 (needs matplotlib):
python3 bench/plot_gpu.py [DATA_DIR] [OUT_PNG]"""

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

data = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/bench-data/gpu-2026-11-24")
out = Path(sys.argv[2] if len(sys.argv) > 2 else "docs/benchmarks-gpu.png")
j = {p.stem: json.loads(p.read_text()) for p in data.glob("*.json")}
c, s, e, f = j["cold"], j["suspend"], j["ember_restore"], j["floor"]
rows = [  # label, median, min, max, n
    ("vLLM cold start,\nfirst (no compile cache)", c["first"]),
    ("vLLM cold start,\ndropped page cache", c["cold_cache"]),
    ("vLLM cold start,\nwarm page cache", c["warm"]),
    ("Ember restore (CRIU +\ndriver), 30.8 GB image", e["ttft_page_cache"]),
    ("suspended engine\n(driver API only)", s["suspend"]["ttft"]),
    ("suspended after\nsleep L1", s["suspend_after_sleep_l1"]["ttft"]),
    ("vLLM sleep L1 wake", j["sleep_l1"]["sleep_l1"]["ttft"]),
    ("floor: pinned H2D\nof 16.06 GB", f["h2d_pinned"]),
]
fig, ax = plt.subplots(figsize=(10, 5.5))
ys = range(len(rows))
med = [r[1]["median"] for r in rows]
err = [[r[1]["median"] - r[1]["min"] for r in rows], [r[1]["max"] - r[1]["median"] for r in rows]]
colors = ["#999999"] * 3 + ["#d62728", "#1f77b4", "#1f77b4", "#2ca02c", "#000000"]
ax.barh(list(ys), med, xerr=err, color=colors, capsize=3)
for y, r in zip(ys, rows, strict=True):
    ax.text(r[1]["median"] * 1.08, y, f"{r[1]['median']:.2f} s (n={r[1]['n']})", va="center", fontsize=9)
ax.set_yticks(list(ys), [r[0] for r in rows], fontsize=9)
ax.invert_yaxis()
ax.set_xscale("log")
ax.set_xlim(0.1, 400)
ax.axvline(2.0, color="#d62728", ls="--", lw=1)
ax.text(2.05, len(rows) - 0.6, "Ember target: 2 s", color="#d62728", fontsize=8)
ax.set_xlabel("seconds from process / restore / wake start to the first generated token (log scale)")
ax.set_title("Llama-3-8B-shaped (random bf16), vLLM 0.25.1, one H100 80GB, 8 GiB KV cache — 2026-11-24")
fig.tight_layout()
fig.savefig(out, dpi=110)
print(out)
