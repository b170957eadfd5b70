"""Bar chart of the GPU start paths (needs matplotlib), from the first session's data (cold starts,
suspend, sleep, floor), the second's (Ember restores, n=3 from page cache, n=1 from disk) and the
third's (level 2 with the library's own wake + reload steps):
python3 bench/plot_gpu.py [DATA_DIR] [DATA_DIR_B] [OUT_PNG] [DATA_DIR_C] [DATA_DIR_D]"""

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

data = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/bench-data/gpu-2026-11-24")
data_b = Path(sys.argv[2] if len(sys.argv) > 2 else "docs/bench-data/gpu-2026-11-24b")
out = Path(sys.argv[3] if len(sys.argv) > 3 else "docs/benchmarks-gpu.png")
data_c = Path(sys.argv[4] if len(sys.argv) > 4 else "docs/bench-data/gpu-2026-11-24c")
j = {p.stem: json.loads(p.read_text()) for p in data.glob("*.json")}
b = {p.stem: json.loads(p.read_text()) for p in data_b.glob("*.json")}
c, s, f = j["cold"], j["suspend"], j["floor"]
c1, c2, c3 = b["chain1"], b["chain2"], b["chain3"]
lib3 = json.loads((data_c / "chain3.json").read_text())
# fourth call set: n=3 after drop_caches (cold start; level-2 restore through the library)
data_d = Path(sys.argv[5] if len(sys.argv) > 5 else "docs/bench-data/gpu-2026-11-24d")
cold_d = json.loads((data_d / "cold.json").read_text())
lib3_disk = json.loads((data_d / "chain3.json").read_text())


def gb(x: dict) -> str:
    return f"{x['dump']['manifest']['sizes']['image_bytes'] / 1e9:.1f} GB"


COLD, EMBER, EMBER_DISK, SUSP, SLEEP, FLOOR = "#999999", "#d62728", "#f4a3a3", "#1f77b4", "#2ca02c", "#000000"
rows = [  # label, summary (median, min, max, n), colour
    ("vLLM cold start,\nfirst (no compile cache)", c["first"], COLD),
    ("vLLM cold start,\ndropped page cache", cold_d["cold_cache"], COLD),
    ("vLLM cold start,\nwarm page cache", c["warm"], COLD),
    (f"Ember restore, awake\n({gb(c1)} image), from disk", c1["ttft_disk"], EMBER_DISK),
    ("Ember restore, awake,\nimage in page cache", c1["ttft_page_cache"], EMBER),
    (f"Ember restore, asleep L1\n({gb(c2)}), from disk", c2["ttft_disk"], EMBER_DISK),
    ("Ember restore, asleep L1,\npage cache (+ /wake_up)", c2["ttft_page_cache"], EMBER),
    (f"Ember restore, asleep L2\n({gb(c3)}) + reload, disk", c3["ttft_disk"], EMBER_DISK),
    ("Ember restore, asleep L2 +\nreload (benchmark), page cache", c3["ttft_page_cache"], EMBER),
    (f"Ember restore, asleep L2\n({gb(lib3)}) + reload, library, disk", lib3_disk["ttft_disk"], EMBER_DISK),
    ("Ember restore, asleep L2 +\nreload, library, page cache", lib3["ttft_page_cache"], EMBER),
    ("suspended engine\n(driver API only)", s["suspend"]["ttft"], SUSP),
    ("suspended after\nsleep L1", s["suspend_after_sleep_l1"]["ttft"], SUSP),
    ("vLLM sleep L1 wake", j["sleep_l1"]["sleep_l1"]["ttft"], SLEEP),
    ("floor: pinned H2D\nof 16.06 GB", f["h2d_pinned"], FLOOR),
]
fig, ax = plt.subplots(figsize=(10, 7.5))
ys = range(len(rows))
med = [r[1]["median"] for r in rows]
err = [[r[1]["median"] - r[1]["min"] for r in rows], [r[1]["max"] - r[1]["median"] for r in rows]]
ax.barh(list(ys), med, xerr=err, color=[r[2] for r in rows], capsize=3)
for y, r in zip(ys, rows, strict=True):
    ax.text(r[1]["max"] * 1.08, y, f"{r[1]['median']:.2f} s (n={r[1]['n']})", va="center", fontsize=9)
ax.set_yticks(list(ys), [r[0] for r in rows], fontsize=8.5)
ax.invert_yaxis()
ax.set_xscale("log")
ax.set_xlim(0.1, 400)
ax.axvline(2.0, color="#d62728", ls="--", lw=1)
ax.text(2.05, len(rows) - 0.6, "Ember target: 2 s", color="#d62728", fontsize=8)
ax.set_xlabel("seconds from process / restore / wake start to the first generated token (log scale)")
ax.set_title(
    "Llama-3-8B-shaped (random bf16), vLLM 0.25.1, one H100 80GB, 8 GiB KV cache — 2026-11-24",
    fontsize=10,
)
fig.tight_layout()
fig.savefig(out, dpi=110)
print(out)
