"""GPU start paths of a vLLM replica, each timed to the first generated token (issue 8).

Run on the GPU machine through bench/run_gpu.sh (which unpacks the carried vLLM and CRIU first):
    python3 bench/gpu_start_paths.py PHASE [PHASE...] --out DIR
Phases:
  env      versions, GPU, `criu check`
  floor    pinned / pageable host-to-device copy of the model's bytes (the physical floor)
  cold     vLLM OpenAI server cold starts: warm page cache (first one also fills torch.compile's
           cache, reported apart) and cold page cache (drop_caches), phases from vLLM's log
  sleep    vLLM sleep mode level 1 -> wake_up -> first token (in-engine reference)
  suspend  suspended engine: cuCheckpointProcessLock/Checkpoint, then Restore/Unlock -> first token;
           also with sleep level 1 first (KV cache dropped, weights in pinned host memory)
  criu     Ember's checkpoint path via ember_checkpoint.lifecycle: dump, then restores from page
           cache (and one from disk), each to the first token
  criu-sleep  the same with the engine put to sleep (level 1) before the dump and woken after restore
  criu-live   the same, awake, dumped live (leave_running, as POST /checkpoint does), the engine then killed
  decode   decode throughput by concurrency of one engine (EMBER_BENCH_VLLM_EXTRA, e.g. the graph sizes)
  chain1   one sleep-mode engine: suspend cycles (EMBER_BENCH_SKIP_SUSPEND=1 skips them), Ember dump
           awake, restores from page cache and one from disk; the last restored engine keeps running
  chain2   that engine put to sleep at level 1, dumped, restored (page cache, disk) incl. `/wake_up`;
           the last restored engine keeps running
  supervisor  issue 16, through Ember's supervisor (its HTTP API on :8081): cold start with sleep mode,
           RUNS cycles of POST /sleep {"level": 1} -> POST /wake -> first token, then RUNS of
           {"tier": "suspend"} (level 1 + driver suspend); GPU and host memory while asleep
           (EMBER_BENCH_SUP_DRYRUN=1: the counter engine and the freeze tier, to check it on a CPU)
  inject   issue 17, the supervisor as the init container lays it out (ember_supervisor.inject, the
           wheels in EMBER_BENCH_INJECT_WHEELS): cold -> POST /checkpoint -> stop -> a new pod restores
           -> canary identical (EMBER_BENCH_SUP_DRYRUN=1: the counter engine, on a CPU)
  chain3   that engine put to sleep at level 2 (weights dropped), dumped, restored incl. `/wake_up`
           and vLLM's reload_weights from the model's files (page cache; after drop_caches: disk)
Every number goes to DIR/<phase>.json; a table is printed last.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import logging
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "checkpoint/src"))
sys.path.insert(0, str(REPO / "supervisor/src"))

from ember_checkpoint import checksum, cuda, lifecycle, weights  # noqa: E402
from ember_checkpoint.criu import Criu, process_tree  # noqa: E402
from ember_checkpoint.manifest import Canary, Identity  # noqa: E402
from ember_checkpoint.storage import LocalDirStorage  # noqa: E402
from ember_supervisor import procs  # noqa: E402

WORK = Path(os.environ.get("EMBER_BENCH_WORK", "/tmp/ember-bench"))
MODEL = WORK / "model"
PORT = 8000
BASE = f"http://127.0.0.1:{PORT}"
PROMPT = "t1 t2 t3 t4 t5 t6 t7 t8"
COMPLETION = {"model": "m", "prompt": PROMPT, "max_tokens": 1, "temperature": 0.0}
CANARY_BODY = {"model": "m", "prompt": PROMPT, "max_tokens": 8, "temperature": 0.0}
KV_BYTES = os.environ.get("EMBER_BENCH_KV", "8G")
RUNS = int(os.environ.get("EMBER_BENCH_RUNS", "3"))
DISK_RUNS = int(os.environ.get("EMBER_BENCH_DISK_RUNS", "1"))  # runs after drop_caches
WEIGHT_LOADER = os.environ.get("EMBER_BENCH_WEIGHT_LOADER", "ember")  # level-2 reload: ember | vllm
# restored-engine log lines that a healthy engine does not print (issue 20, item 4)
NOISE = re.compile(r"Broken pipe|should dump")

# vLLM log lines that mark start-up phases (first match wins; its time since process start is kept).
MARKERS = {
    "first_log": r"(vLLM API server version|non-default args)",
    "engine_core_start": r"Initializing a V1 LLM engine",
    "weights_loaded": r"Loading weights took",
    "model_loaded": r"Model loading took",
    "compile_done": r"torch\.compile took|torch\.compile takes",
    "kv_cache": r"(Available KV cache memory|GPU KV cache size)",
    "graphs_done": r"Graph capturing finished",
    "engine_ready": r"init engine .* took",
    "api_ready": r"(Starting vLLM server on|Application startup complete)",
}
REPORTED = {  # durations vLLM reports itself
    "load_weights_s": r"Loading weights took ([\d.]+) seconds",
    "model_load_s": r"Model loading took [\d.]+ GiB memory and ([\d.]+) seconds",
    "compile_s": r"torch\.compile too?k(?:es)? ([\d.]+) s in total",
    "graph_capture_s": r"Graph capturing finished in ([\d.]+) secs",
    "init_engine_s": r"init engine \(profile, create kv cache, warmup model\) took ([\d.]+) s",
    "kv_cache_gib": r"Available KV cache memory: ([\d.]+) GiB",
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def sh(cmd: str, timeout: float = 120) -> str:
    p = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=timeout, check=False)
    return (p.stdout + p.stderr).strip()


def drop_caches() -> bool:
    r = subprocess.run("sync && echo 3 > /proc/sys/vm/drop_caches", shell=True, check=False)
    return r.returncode == 0


def summary(xs: list[float]) -> dict:
    xs = [x for x in xs if x is not None]
    if not xs:
        return {"n": 0}
    return {
        "n": len(xs),
        "median": round(statistics.median(xs), 3),
        "min": round(min(xs), 3),
        "max": round(max(xs), 3),
        "runs": [round(x, 3) for x in xs],
    }


def save(out: Path, name: str, data: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(data, indent=1, default=str))


# ---------------------------------------------------------------- the engine


def server_argv(sleep_mode: bool) -> list[str]:
    argv = [
        sys.executable,
        "-m",
        "ember_checkpoint.vllm_entry",  # the entry the supervisor runs: asyncio's loop, the heap trim
        "--model",
        str(MODEL),
        "--served-model-name",
        "m",
        "--host",
        "127.0.0.1",
        "--port",
        str(PORT),
        "--dtype",
        "bfloat16",
        "--max-model-len",
        "4096",
        "--kv-cache-memory-bytes",
        KV_BYTES,
    ]
    if sleep_mode:
        argv.append("--enable-sleep-mode")
    argv += os.environ.get("EMBER_BENCH_VLLM_EXTRA", "").split()  # e.g. --max-cudagraph-capture-size 16
    if WEIGHT_LOADER == "ember":  # the level-2 wake calls ember_reload_weights (vLLM's reload as fallback)
        argv += ["--worker-extension-cls", weights.WORKER_EXTENSION]
    return argv


def server_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        UV_USE_IO_URING="0",
        VLLM_SERVER_DEV_MODE="1",  # /sleep, /wake_up
        VLLM_NO_USAGE_STATS="1",
        VLLM_USE_FLASHINFER_SAMPLER="0",  # flashinfer is not carried (its wheels are GBs)
        DO_NOT_TRACK="1",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        PYTHONUNBUFFERED="1",
        VLLM_LOGGING_LEVEL="INFO",
    )
    return env


class LogWatch:
    """Tails the engine's log file and stamps the first line of each marker with time since t0."""

    def __init__(self, path: Path, t0: float) -> None:
        self.path, self.t0 = path, t0
        self.at: dict[str, float] = {}
        self.reported: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        pos = 0
        buf = ""
        while not self._stop.is_set():
            try:
                with self.path.open("r", errors="replace") as f:
                    f.seek(pos)
                    chunk = f.read()
                    pos = f.tell()
            except OSError:
                chunk = ""
            if chunk:
                now = time.monotonic() - self.t0
                buf += chunk
                *lines, buf = buf.split("\n")
                for line in lines:
                    for k, rx in MARKERS.items():
                        if k not in self.at and re.search(rx, line):
                            self.at[k] = round(now, 3)
                    for k, rx in REPORTED.items():
                        m = re.search(rx, line)
                        if m and k not in self.reported:
                            self.reported[k] = float(m.group(1))
            time.sleep(0.02)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


def first_token(
    t0: float,
    timeout_s: float = 600.0,
    poll_s: float = 0.02,
    pid: int | None = None,
    client: httpx.Client | None = None,
) -> tuple[float, str]:
    """Poll /v1/completions (max_tokens=1) until it answers; seconds since t0 and the token text.
    Without `client`, a new one is built inside the timed span (the issue-8 figures include that)."""
    deadline = t0 + timeout_s
    n = 0
    with contextlib.nullcontext(client) if client is not None else httpx.Client(timeout=60.0) as c:
        while True:
            try:
                r = c.post(f"{BASE}/v1/completions", json=COMPLETION)
                if r.status_code == 200:
                    return time.monotonic() - t0, r.json()["choices"][0]["text"]
            except httpx.HTTPError:
                pass
            n += 1
            if pid is not None and n % 25 == 0:
                procs.reap(None)
                st = Path(f"/proc/{pid}/stat")
                if not st.exists() or ") Z" in st.read_text():
                    raise RuntimeError(f"engine {pid} exited before its first token")
            if time.monotonic() > deadline:
                raise TimeoutError("no first token")
            time.sleep(poll_s)


def greedy(max_tokens: int = 8) -> str:
    r = httpx.post(f"{BASE}/v1/completions", json={**CANARY_BODY, "max_tokens": max_tokens}, timeout=120)
    r.raise_for_status()
    return r.json()["choices"][0]["text"]


def post(path: str, timeout: float = 300) -> float:
    t0 = time.monotonic()
    r = httpx.post(f"{BASE}{path}", timeout=timeout)
    r.raise_for_status()
    return time.monotonic() - t0


PIDS = WORK / "engines.pids"  # every engine tree we start or restore: killed at the next start


def remember(pid: int) -> None:
    with PIDS.open("a") as f:
        f.write(f"{pid}\n")


def kill_remembered() -> None:
    """Engines run in their own session and outlive a killed benchmark: end them (ours, by pid)."""
    if PIDS.exists():
        for line in PIDS.read_text().split():
            if Path(f"/proc/{line}").exists():
                log(f"killing leftover engine tree {line}")
                kill_all(int(line))
        PIDS.unlink()


def port_free() -> bool:
    try:
        httpx.get(f"{BASE}/health", timeout=0.5)
    except httpx.HTTPError:
        return True
    return False


class Engine:
    def __init__(self, logfile: Path, sleep_mode: bool) -> None:
        kill_remembered()
        if not port_free():
            raise RuntimeError(f"port {PORT} already answers: a stray engine would be measured")
        logfile.parent.mkdir(parents=True, exist_ok=True)
        logfile.unlink(missing_ok=True)
        self.log = logfile
        self.t0 = time.monotonic()
        self.pid = procs.start_engine(server_argv(sleep_mode), logfile, env=server_env())
        remember(self.pid)
        self.watch = LogWatch(logfile, self.t0)

    def wait_first_token(self, timeout_s: float = 900) -> dict:
        try:
            ttft, text = first_token(self.t0, timeout_s, pid=self.pid)
        finally:
            time.sleep(0.1)
            self.watch.stop()
        return {
            "ttft_s": round(ttft, 3),
            "token": text,
            "markers_s": self.watch.at,
            "vllm_reported_s": self.watch.reported,
        }

    def gpu_pids(self, drv: cuda.CudaDriver) -> list[int]:
        return sorted(p for p in process_tree(self.pid) if drv.has_cuda_state(p))

    def stop(self) -> None:
        kill_all(self.pid)


def kill_all(pid: int) -> None:
    tree = process_tree(pid)
    for p in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in tree):
        procs.reap(None)
        time.sleep(0.05)
    procs.reap(None)
    wait_port_free()
    wait_gpu_free()


def wait_port_free(timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{BASE}/health", timeout=0.5)
        except httpx.HTTPError:
            return
        time.sleep(0.1)


def gpu_used_mib() -> int:
    out = sh("nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits")
    try:
        return int(out.splitlines()[0])
    except (ValueError, IndexError):
        return -1


def wait_gpu_free(timeout_s: float = 30, below_mib: int = 2000) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and gpu_used_mib() > below_mib:
        time.sleep(0.2)


def tree_proc_bytes(pid: int, file: str, key: str) -> int:
    """A kB field of /proc/<p>/<file> (status, smaps_rollup) summed over the tree, in bytes."""
    total = 0
    for p in process_tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/{file}").read_text().splitlines():
                if line.startswith(key + ":"):
                    total += int(line.split()[1]) * 1024
    return total


def tree_rss_bytes(pid: int) -> int:
    return tree_proc_bytes(pid, "status", "VmRSS")


# ---------------------------------------------------------------- phases


def phase_env(out: Path) -> dict:
    import torch

    d: dict = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "nvidia_smi": sh(
            "nvidia-smi --query-gpu=name,driver_version,memory.total,pcie.link.gen.current,pcie.link.width.current --format=csv"
        ),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": sys.version.split()[0],
        "kernel": os.uname().release,
        "cpus": os.cpu_count(),
        "mem": sh("free -g | head -2"),
        "disk": sh(f"df -h {WORK} | tail -1"),
        "thp": sh(f"cat {THP}; cat {THP.parent / 'defrag'}"),
    }
    try:
        import vllm

        d["vllm"] = vllm.__version__
    except Exception as e:  # noqa: BLE001
        d["vllm"] = f"import failed: {e!r}"
    try:
        criu = Criu.find()
        d["criu"] = criu.version_str
        c = criu.check()
        d["criu_check"] = (c.returncode, (c.stdout + c.stderr)[-1500:])
    except Exception as e:  # noqa: BLE001
        d["criu"] = f"failed: {e!r}"
    drv = cuda.load()
    d["cuda_driver_api"] = drv.info().__dict__ if drv else None
    save(out, "env", d)
    return d


def phase_floor(out: Path) -> dict:
    import torch

    info = json.loads((MODEL / ".complete").read_text())
    n = info["files_bytes"]
    res: dict = {"bytes": n}
    dev = torch.empty(n, dtype=torch.uint8, device="cuda")
    for kind in ("pinned", "pageable"):
        host = torch.empty(n, dtype=torch.uint8, pin_memory=(kind == "pinned"))
        host.fill_(1)
        times = []
        for _ in range(RUNS + 1):
            torch.cuda.synchronize()
            t0 = time.monotonic()
            dev.copy_(host, non_blocking=(kind == "pinned"))
            torch.cuda.synchronize()
            times.append(time.monotonic() - t0)
        times = times[1:]  # the first includes first-touch costs
        res[f"h2d_{kind}"] = summary(times) | {"GBps_median": round(n / statistics.median(times) / 1e9, 2)}
        if kind == "pinned":
            t = []
            for _ in range(RUNS):
                torch.cuda.synchronize()
                t0 = time.monotonic()
                host.copy_(dev, non_blocking=True)
                torch.cuda.synchronize()
                t.append(time.monotonic() - t0)
            res["d2h_pinned"] = summary(t) | {"GBps_median": round(n / statistics.median(t) / 1e9, 2)}
            t0 = time.monotonic()
            h2 = torch.empty(n, dtype=torch.uint8, pin_memory=True)
            res["pin_alloc_s"] = round(time.monotonic() - t0, 3)
            del h2
        del host
    # reading the weights from page cache and from disk (the storage floor)
    files = sorted(MODEL.glob("*.safetensors"))
    for label, drop in (("page_cache", False), ("disk", True)):
        if drop and not drop_caches():
            continue
        if not drop:
            for f in files:  # make sure they are cached
                sh(f"cat {f} > /dev/null", 300)
        t0 = time.monotonic()
        for f in files:
            sh(f"cat {f} > /dev/null", 300)
        dt = time.monotonic() - t0
        res[f"read_{label}"] = {"s": round(dt, 3), "GBps": round(n / dt / 1e9, 2)}
    del dev
    torch.cuda.empty_cache()
    save(out, "floor", res)
    return res


def phase_cold(out: Path) -> dict:
    res: dict = {"kv_cache_bytes": KV_BYTES, "runs": []}
    # EMBER_BENCH_WARM_RUNS (default RUNS) warm starts; EMBER_BENCH_DISK_RUNS (default 1) after drop_caches
    warm = int(os.environ.get("EMBER_BENCH_WARM_RUNS", RUNS))
    kinds = (
        ["first"]
        + ["warm"] * warm
        + (["cold_cache"] * DISK_RUNS if os.environ.get("EMBER_BENCH_COLD", "1") == "1" else [])
    )
    for i, kind in enumerate(kinds):
        if kind == "cold_cache":
            res["drop_caches_ok"] = drop_caches()
        e = Engine(WORK / f"logs/cold-{i}.log", sleep_mode=False)
        try:
            r = e.wait_first_token()
            r["kind"] = kind
            r["gpu_used_mib"] = gpu_used_mib()
            res["runs"].append(r)
            log(f"cold {kind}: ttft {r['ttft_s']} s  {r['vllm_reported_s']}")
            if i == 0:
                res["greedy"] = greedy()
        except Exception as ex:  # noqa: BLE001
            res["runs"].append({"kind": kind, "error": repr(ex), "log_tail": sh(f"tail -40 {e.log}")})
            log(f"cold {kind} FAILED: {ex!r}\n{sh(f'tail -60 {e.log}')}")
            e.stop()
            break
        finally:
            e.stop()
    for kind in ("first", "warm", "cold_cache"):
        res[kind] = summary([r["ttft_s"] for r in res["runs"] if r.get("kind") == kind and "ttft_s" in r])
    save(out, "cold", res)
    return res


def _suspend_cycle(drv: cuda.CudaDriver, pids: list[int], sleep_first: bool) -> dict:
    r: dict = {}
    if sleep_first:
        r["sleep_s"] = round(post("/sleep?level=1"), 3)
        r["gpu_mib_asleep"] = gpu_used_mib()
    t0 = time.monotonic()
    for p in pids:
        drv.suspend(p)
    r["suspend_s"] = round(time.monotonic() - t0, 3)
    r["gpu_mib_suspended"] = gpu_used_mib()
    t0 = time.monotonic()
    for p in pids:
        drv.resume(p)
    r["resume_s"] = round(time.monotonic() - t0, 3)
    if sleep_first:
        r["wake_s"] = round(post("/wake_up"), 3)
    ttft, _ = first_token(t0)
    r["ttft_s"] = round(ttft, 3)
    return r


def phase_sleep_suspend(out: Path, do_sleep: bool, do_suspend: bool) -> dict:
    """One engine with sleep mode enabled: sleep/wake cycles, suspend cycles, suspend-after-sleep."""
    res: dict = {}
    drv = cuda.load()
    e = Engine(WORK / "logs/sleep-engine.log", sleep_mode=True)
    try:
        res["start"] = e.wait_first_token()
        res["greedy_before"] = greedy()
        res["gpu_mib_awake"] = gpu_used_mib()
        if do_sleep:
            runs = []
            for _ in range(RUNS):
                r = {"sleep_s": round(post("/sleep?level=1"), 3), "gpu_mib_asleep": gpu_used_mib()}
                t0 = time.monotonic()
                post("/wake_up")
                r["wake_s"] = round(time.monotonic() - t0, 3)
                r["ttft_s"] = round(first_token(t0)[0], 3)
                runs.append(r)
                log(f"sleep: {r}")
            res["sleep_l1"] = {"runs": runs, "ttft": summary([r["ttft_s"] for r in runs])}
            res["greedy_after_sleep"] = greedy()
        if do_suspend and drv:
            pids = e.gpu_pids(drv)
            res["gpu_pids"] = pids
            for label, sleep_first in (("suspend", False), ("suspend_after_sleep_l1", True)):
                runs = []
                for _ in range(RUNS):
                    r = _suspend_cycle(drv, pids, sleep_first)
                    runs.append(r)
                    log(f"{label}: {r}")
                res[label] = {
                    "runs": runs,
                    "ttft": summary([r["ttft_s"] for r in runs]),
                    "suspend": summary([r["suspend_s"] for r in runs]),
                    "resume": summary([r["resume_s"] for r in runs]),
                }
            res["greedy_after_suspend"] = greedy()
            res["greedy_identical"] = res["greedy_after_suspend"] == res["greedy_before"]
    except Exception as ex:  # noqa: BLE001
        res["error"] = repr(ex)
        log(f"sleep/suspend FAILED: {ex!r}\n{sh(f'tail -60 {e.log}')}")
    finally:
        e.stop()
    save(out, "sleep_suspend", res)
    return res


def identity(criu: Criu, drv: cuda.CudaDriver | None) -> Identity:
    info = drv.info() if drv else None
    import vllm

    return Identity(
        model_digest="sha256:random-llama3-8b-shape-seed0",
        engine_version=f"vllm {vllm.__version__}",
        criu_version=criu.version_str,
        cuda_driver_version=info.driver_version if info else None,
        gpu_model=info.gpu_model if info else None,
        dtype="bfloat16",
        max_model_len=4096,
    )


def phase_criu(out: Path, sleep_level: int | None, live: bool = False) -> dict:
    """Ember's dump of an engine and restores from it. live: the dump leaves the engine running (as the
    supervisor's POST /checkpoint does), which is asked to answer again and only then killed."""
    name = ("criu" if sleep_level is None else f"criu_sleep{sleep_level}") + ("_live" if live else "")
    res: dict = {"sleep_level": sleep_level, "kv_cache_bytes": KV_BYTES, "live": live}
    drv = cuda.load()
    criu = Criu.find()
    ident = identity(criu, drv)
    store_root = WORK / "ckpt"
    sh(f"rm -rf {store_root}")
    storage = LocalDirStorage(store_root)
    e = Engine(WORK / f"logs/{name}-engine.log", sleep_mode=sleep_level is not None)
    canary = Canary(
        method="POST", path="/v1/completions", body=json.dumps(CANARY_BODY), json_field="choices.0.text"
    )
    restored_pid = None
    try:
        res["start"] = e.wait_first_token()
        res["gpu_mib_before_dump"] = gpu_used_mib()
        res["tree_rss_before_dump"] = tree_rss_bytes(e.pid)
        req = lifecycle.DumpRequest(
            pid=e.pid,
            checkpoint_id=name.replace("_", "-"),
            identity=ident,
            engine_port=PORT,
            canary=canary,
            sleep_level=sleep_level,
            leave_running=live,
        )
        t0 = time.monotonic()
        m = lifecycle.dump(req, storage, criu, drv)
        res["dump_wall_s"] = round(time.monotonic() - t0, 3)
        res["manifest"] = json.loads(m.to_json())
        log(
            f"{name} dump: {res['dump_wall_s']} s, image {m.sizes.image_bytes / 1e9:.2f} GB, gpu pids {m.gpu_pids}, timings {m.timings}"
        )
        if live:  # the engine served on: it answers, then goes the way a stopped pod's does
            res["canary_live_ok"] = greedy() == (m.canary.output if m.canary else None)
            res["live_states"] = {p: drv.state(p).name for p in m.gpu_pids} if drv else {}
            log(
                f"{name}: live engine after the dump: canary ok {res['canary_live_ok']}, {res['live_states']}"
            )
            e.stop()
        procs.reap(None)
        wait_port_free()
        wait_gpu_free()
        res["image_files"] = sh(f"ls -la {storage.get(req.checkpoint_id)}/images | sort -k5 -n -r | head -8")
        runs = []
        modes = ["page_cache"] * RUNS + (["disk"] if os.environ.get("EMBER_BENCH_COLD", "1") == "1" else [])
        for mode in modes:
            if mode == "disk":
                res["drop_caches_ok"] = drop_caches()
            res.setdefault("gpu_mib_before_restore", []).append(gpu_used_mib())
            t0 = time.monotonic()
            rr = lifecycle.restore(
                req.checkpoint_id, storage, ident, gpu=drv, require_verified=False, verify_checksum=True
            )
            restored_pid = rr.pid
            ttft, _ = first_token(t0)
            r = {
                "mode": mode,
                "ttft_s": round(ttft, 3),
                "phases_s": {k: round(v, 3) for k, v in rr.phases_s.items()},
            }
            r["canary_ok"] = greedy() == m.canary.output if m.canary else None
            runs.append(r)
            log(f"{name} restore ({mode}): {r}")
            kill_all(restored_pid)
            restored_pid = None
        res["runs"] = runs
        res["ttft_page_cache"] = summary([r["ttft_s"] for r in runs if r["mode"] == "page_cache"])
        res["ttft_disk"] = summary([r["ttft_s"] for r in runs if r["mode"] == "disk"])
        for ph in ("checksum", "criu_restore", "cuda_restore", "wake", "health"):
            res[f"{ph}_page_cache"] = summary(
                [r["phases_s"].get(ph) for r in runs if r["mode"] == "page_cache"]
            )
    except Exception as ex:  # noqa: BLE001
        res["error"] = repr(ex)[:4000]
        log(f"{name} FAILED: {ex!r}")
        for lf in sorted((store_root).rglob("*.log")):
            res.setdefault("criu_logs", {})[str(lf)] = sh(f"grep -E 'Error|Warn|fail' {lf} | tail -30")
    finally:
        e.stop()
        if restored_pid:
            kill_all(restored_pid)
        sh(f"rm -rf {store_root}")
    save(out, name, res)
    return res


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
    except OSError:
        return "?"


def _restores(
    name: str,
    storage: LocalDirStorage,
    cid: str,
    ident: Identity,
    canary_out: str | None,
    keep_last: bool,
) -> tuple[list, int | None]:
    """RUNS restores from page cache and (EMBER_BENCH_COLD=1) one after drop_caches; with keep_last the
    disk one goes before the last page-cache one, whose engine is left running. The manifest's
    after-restore steps (wake; at level 2 also reload_weights) run inside lifecycle.restore, phase `wake`."""
    runs, kept = [], None
    modes = ["page_cache"] * RUNS
    if os.environ.get("EMBER_BENCH_COLD", "1") == "1":
        for _ in range(DISK_RUNS):
            modes.insert(RUNS - 1 if keep_last else RUNS, "disk")
    for i, mode in enumerate(modes):
        if not port_free():
            raise RuntimeError("port busy before restore")
        if mode == "disk":
            drop_caches()
        t0 = time.monotonic()
        rr = lifecycle.restore(
            cid, storage, ident, gpu=cuda.load(), require_verified=False, verify_checksum=True
        )
        remember(rr.pid)
        phases = dict(rr.phases_s)
        ttft, _ = first_token(t0, 240, pid=rr.pid)
        r = {
            "mode": mode,
            "ttft_s": round(ttft, 3),
            "phases_s": {k: round(v, 3) for k, v in phases.items()},
        }
        r["gpu_mib"] = gpu_used_mib()
        r["anon_huge_bytes"] = _tree_anon_huge(rr.pid)  # THP in the restored tree (smaps_rollup)
        r["page_cache_kib"] = _meminfo_kib("Cached")
        r["canary_ok"] = greedy() == canary_out
        runs.append(r)
        log(f"{name} restore ({mode}): {r}")
        if keep_last and i == len(modes) - 1:
            kept = rr.pid
        else:
            kill_all(rr.pid)
    return runs, kept


def _tree_anon_huge(pid: int) -> int:
    return tree_proc_bytes(pid, "smaps_rollup", "AnonHugePages")


def _summarise(res: dict, runs: list) -> None:
    res["runs"] = runs
    res["ttft_page_cache"] = summary([r["ttft_s"] for r in runs if r["mode"] == "page_cache"])
    res["ttft_disk"] = summary([r["ttft_s"] for r in runs if r["mode"] == "disk"])
    for ph in ("checksum", "checksum_stamp", "criu_restore", "cuda_restore", "wake", "health", "total"):
        res[f"{ph}_page_cache"] = summary([r["phases_s"].get(ph) for r in runs if r["mode"] == "page_cache"])
        res[f"{ph}_disk"] = summary([r["phases_s"].get(ph) for r in runs if r["mode"] == "disk"])


class _Collect(logging.Handler):
    """The library's INFO lines (e.g. trim_api_server), kept for the phase's JSON."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


LIB_LOG = _Collect()
logging.getLogger("ember.checkpoint").addHandler(LIB_LOG)
logging.getLogger("ember.checkpoint").setLevel(logging.INFO)


def _dump(name: str, pid: int, storage: LocalDirStorage, ident: Identity, sleep_level: int | None) -> dict:
    canary = Canary(
        method="POST", path="/v1/completions", body=json.dumps(CANARY_BODY), json_field="choices.0.text"
    )
    res: dict = {"gpu_mib_before_dump": gpu_used_mib(), "tree_rss_before_dump": tree_rss_bytes(pid)}
    res["tree"] = {p: cmdline(p) for p in sorted(process_tree(pid))}
    import shutil

    def keep_logs_then_remove(path: Path) -> None:  # a failed dump's CRIU log is the evidence
        with contextlib.suppress(OSError):
            shutil.copytree(path / "logs", WORK / "criu-failed", dirs_exist_ok=True)
        shutil.rmtree(path, ignore_errors=True)

    lifecycle._remove_tree = keep_logs_then_remove
    req = lifecycle.DumpRequest(
        pid=pid,
        checkpoint_id=name,
        identity=ident,
        engine_port=PORT,
        canary=canary,
        sleep_level=sleep_level,
        weight_loader="ember" if WEIGHT_LOADER == "ember" else "vllm",
    )
    t0, n_lib = time.monotonic(), len(LIB_LOG.lines)
    m = lifecycle.dump(req, storage, Criu.find(), cuda.load())
    res["dump_wall_s"] = round(time.monotonic() - t0, 3)
    res["library_log"] = LIB_LOG.lines[n_lib:]
    res["manifest"] = json.loads(m.to_json())
    res["image_files"] = sh(f"ls -la {storage.get(name)}/images | sort -k5 -n -r | head -8")
    log(
        f"{name} dump: {res['dump_wall_s']} s, image {m.sizes.image_bytes / 1e9:.2f} GB, gpu pids {m.gpu_pids}, {m.timings}"
    )
    for pm in m.sizes.processes:  # what the image holds, process by process
        log(
            f"  {pm.pid} {pm.name}: anon {pm.anon_bytes / 1e9:.3f} GB, shmem {pm.shmem_bytes / 1e9:.3f} GB, gpu {pm.gpu_bytes / 1e9:.3f} GB"
        )
    procs.reap(None)
    wait_port_free()
    wait_gpu_free()
    return res


def _log_text(path: Path) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()
    except OSError:
        return []


def _event(line: str) -> dict:
    """An event line of the engine's log: vLLM prefixes each line with its process, e.g. `(EngineCore pid=1) `."""
    try:
        return json.loads(line[line.index("{") :])
    except ValueError:
        return {"unparsed": line[:300]}


def _log_lines(path: Path) -> int:
    return len(_log_text(path))


def phase_chain1(out: Path) -> dict:
    """One sleep-mode engine: suspend cycles, then Ember's dump awake and restores from it; the last
    restored engine is left running (own session) for chain2."""
    res: dict = {"kv_cache_bytes": KV_BYTES}
    drv = cuda.load()
    criu = Criu.find()
    ident = identity(criu, drv)
    store_root = WORK / "ckpt"
    sh(f"rm -rf {store_root}")
    storage = LocalDirStorage(store_root)
    e = Engine(WORK / "logs/chain-engine.log", sleep_mode=True)
    try:
        res["start"] = e.wait_first_token()
        log(f"chain engine up: {res['start']['ttft_s']} s {res['start']['vllm_reported_s']}")
        res["greedy_before"] = greedy()
        res["gpu_mib_awake"] = gpu_used_mib()
        pids = e.gpu_pids(drv)
        res["gpu_pids"] = {p: cmdline(p) for p in pids}
        cycles = (
            ()
            if os.environ.get("EMBER_BENCH_SKIP_SUSPEND") == "1"
            else (("suspend", False), ("suspend_after_sleep_l1", True))
        )
        for label, sleep_first in cycles:
            runs = []
            for _ in range(RUNS):
                r = _suspend_cycle(drv, pids, sleep_first)
                runs.append(r)
                log(f"{label}: {r}")
            res[label] = {
                "runs": runs,
                "ttft": summary([r["ttft_s"] for r in runs]),
                "suspend": summary([r["suspend_s"] for r in runs]),
                "resume": summary([r["resume_s"] for r in runs]),
            }
            save(out, "chain1", res)
        res["greedy_after_suspend"] = greedy()
        res["greedy_identical"] = res["greedy_after_suspend"] == res["greedy_before"]
        res["dump"] = _dump("awake", e.pid, storage, ident, None)
        images = storage.get("awake") / "images"
        for scheme in os.environ.get("EMBER_BENCH_CHECKSUMS", "sha256,sha256-seg").split(","):
            t0 = time.monotonic()
            checksum.content_checksum(images, scheme)
            res[f"checksum_{scheme}_s"] = round(time.monotonic() - t0, 3)
        log(f"checksums: {[(k, v) for k, v in res.items() if k.startswith('checksum_')]}")
        save(out, "chain1", res)
        runs, kept = _restores(
            "awake", storage, "awake", ident, res["dump"]["manifest"]["canary"]["output"], keep_last=True
        )
        _summarise(res, runs)
        res["kept_pid"] = kept
        (WORK / "chain.json").write_text(json.dumps({"pid": kept}))
        PIDS.unlink(missing_ok=True)  # the kept engine must survive this call
    except Exception:  # noqa: BLE001
        import traceback

        res["error"] = traceback.format_exc()[-3000:]
        log(f"chain1 FAILED: {res['error']}")
        for lf in sorted((WORK / "criu-failed").glob("*.log")):
            res.setdefault("criu_failed_log", {})[lf.name] = sh(
                f"grep -n -E 'Error|Warn|cuda|fail' {lf} | tail -40; tail -15 {lf}"
            )
            print(res["criu_failed_log"][lf.name])
        for lf in sorted(store_root.rglob("*.log")):
            res.setdefault("criu_logs", {})[str(lf)] = sh(f"grep -E 'Error|Warn' {lf} | tail -30")
    save(out, "chain1", res)
    return res


THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def _set_thp(mode: str) -> str:
    """The machine's transparent huge page mode (always, madvise, never); what the file says after."""
    try:
        THP.write_text(mode)
    except OSError as e:
        return f"not set ({e}): {THP.read_text().strip()}"
    return THP.read_text().strip()


def _restores_by_thp(
    name: str, storage: LocalDirStorage, ident: Identity, canary: str | None, keep: bool, res: dict
) -> tuple[list, int | None]:
    """The restores once per EMBER_BENCH_THP_MODES entry (e.g. "madvise,always"), the machine's THP mode
    set before each set (res["thp"][mode]); the mode the machine had is put back. Without it, once."""
    modes = [m for m in os.environ.get("EMBER_BENCH_THP_MODES", "").split(",") if m]
    if not modes:
        return _restores(name, storage, name, ident, canary, keep_last=keep)
    original = next((w.strip("[]") for w in THP.read_text().split() if w.startswith("[")), "madvise")
    res["thp"], runs, kept = {"original": original}, [], None
    try:
        for i, mode in enumerate(modes):
            entry = {"set": _set_thp(mode)}
            runs, kept = _restores(name, storage, name, ident, canary, keep_last=keep and i == len(modes) - 1)
            _summarise(entry, runs)
            res["thp"][mode] = entry
            log(
                f"{name} THP {mode}: restore {entry['ttft_page_cache']}, criu {entry['criu_restore_page_cache']}"
            )
    finally:
        _set_thp(original)
    return runs, kept


def phase_chain_asleep(out: Path, level: int, name: str, keep: bool) -> dict:
    """The engine the previous chain phase left running (itself restored), or a fresh sleep-mode one if
    it is gone: put to sleep at `level`, dumped, restored (level 2: weights reloaded from the model's
    files after the wake). With keep, the last restored engine stays running for the next phase."""
    res: dict = {"sleep_level": level}
    drv = cuda.load()
    ident = identity(Criu.find(), drv)
    store_root = WORK / "ckpt"
    storage = LocalDirStorage(store_root)
    chain = WORK / "chain.json"
    pid = json.loads(chain.read_text())["pid"] if chain.exists() else None
    try:
        if pid is not None and Path(f"/proc/{pid}").exists():  # only then is there an engine to wait for
            try:
                res["alive_ttft_s"] = round(first_token(time.monotonic(), 30)[0], 3)
            except (TimeoutError, RuntimeError):
                pid = None
        else:
            pid = None
        if pid is None or not Path(f"/proc/{pid}").exists():
            log(f"{name}: no engine left running by the previous phase, starting a fresh one")
            e = Engine(WORK / f"logs/{name}-engine.log", sleep_mode=True)
            res["fresh_start"] = e.wait_first_token()
            pid = e.pid
        for cid in storage.list():
            with contextlib.suppress(Exception):
                storage.delete(cid)
        t_dec = time.monotonic()
        httpx.post(
            f"{BASE}/v1/completions", json={**CANARY_BODY, "max_tokens": 64}, timeout=120
        ).raise_for_status()
        res["decode_64_tokens_s"] = round(time.monotonic() - t_dec, 3)  # one sequence: batch-1 graphs
        res["vllm_extra"] = os.environ.get("EMBER_BENCH_VLLM_EXTRA", "")
        engine_log = WORK / f"logs/{name}-engine.log"
        lines_before = _log_lines(engine_log)
        res["dump"] = _dump(name, pid, storage, ident, level)
        lines_dumped = _log_lines(engine_log)
        runs, kept = _restores_by_thp(
            name, storage, ident, res["dump"]["manifest"]["canary"]["output"], keep, res
        )
        _summarise(res, runs)
        time.sleep(3)  # the noise came once a second: give a restored engine's log the time to show it
        after = _log_text(engine_log)[lines_dumped:]
        res["restored_log_lines"] = len(after)
        res["restored_log_noise_lines"] = sum(1 for line in after if NOISE.search(line))
        res["restored_log_noise_sample"] = [line for line in after if NOISE.search(line)][:5]
        res["noise_lines_before_dump"] = sum(
            1 for line in _log_text(engine_log)[:lines_before] if NOISE.search(line)
        )
        res["reload_stats"] = [_event(line) for line in after if '"event": "ember_reload_weights"' in line]
        res["fallbacks"] = [line for line in after if "reload_weights" in line and "Traceback" in line][:3]
        res["release_memory"] = [
            _event(line) for line in _log_text(engine_log) if '"event": "ember_release_memory"' in line
        ]
        if keep and kept:
            chain.write_text(json.dumps({"pid": kept}))
            res["kept_pid"] = kept
            pid = None
    except Exception:  # noqa: BLE001
        import traceback

        res["error"] = traceback.format_exc()[-3000:]
        log(f"{name} FAILED: {res['error']}")
        for lf in sorted(store_root.rglob("*.log")):
            res.setdefault("criu_logs", {})[str(lf)] = sh(f"grep -E 'Error|Warn' {lf} | tail -30")
        keep = False
    finally:
        if not keep:
            kill_remembered()
            if pid:
                with contextlib.suppress(Exception):
                    kill_all(pid)
    save(out, name, res)
    return res


# ---------------------------------------------------------------- through Ember's supervisor (issue 16)

SUP_PORT = 8081
SUP = f"http://127.0.0.1:{SUP_PORT}"
DRYRUN = os.environ.get("EMBER_BENCH_SUP_DRYRUN") == "1"  # CPU check of this phase: counter engine, freeze
# one long-lived client, like the operator's: building one costs tens of ms, which is not the wake's
HTTP = httpx.Client(timeout=300.0, trust_env=False)


def _meminfo_kib(key: str = "MemAvailable") -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return -1


def tree_mem(pid: int) -> dict:
    """Host memory of the engine's tree: RSS (anon, file, shmem), locked and pinned pages, in bytes."""
    keys = ("VmRSS", "RssAnon", "RssFile", "RssShmem", "VmLck", "VmPin")
    tot = dict.fromkeys(keys, 0)
    for p in process_tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                k = line.split(":")[0]
                if k in tot:
                    tot[k] += int(line.split()[1]) * 1024
    return tot


def _sup_config(state_dir: Path) -> dict:
    from ember_checkpoint.testing import counter_server_argv

    argv = counter_server_argv(PORT) if DRYRUN else server_argv(sleep_mode=True)
    return {
        "engine_argv": argv,
        "engine_port": PORT,
        "identity": {"model_digest": "sha256:random-llama3-8b-shape-seed0", "engine_version": "vllm"},
        "state_dir": str(state_dir),
        "listen_port": SUP_PORT,
        "cold_timeout_s": 900,
        "sleep_timeout_s": 120,
        "wake_timeout_s": 120,
    }


SUP_TOKEN = os.urandom(16).hex()  # the supervisor acts only on a bearer token, as in a pod


def _sup_post(path: str, body: dict | None = None) -> tuple[float, dict]:
    t0 = time.monotonic()
    r = HTTP.post(SUP + path, json=body, headers={"Authorization": f"Bearer {SUP_TOKEN}"})
    dt = time.monotonic() - t0
    if r.status_code != 200:
        raise RuntimeError(f"POST {path} {body}: {r.status_code} {r.text[:2000]}")
    return dt, r.json()


def _sup_wait_serving(t0: float, sup_pid: int, timeout_s: float) -> tuple[float, dict]:
    """First token through the engine's port, then until the supervisor's /startup says serving
    (the engine answers before the supervisor does); (first token s since t0, /startup)."""
    ttft, _ = first_token(t0, timeout_s, pid=sup_pid)
    startup = HTTP.get(SUP + "/startup").json()
    while startup["engine"]["state"] != "serving":
        if time.monotonic() - t0 > timeout_s + 60:
            raise TimeoutError(f"supervisor never said serving: {startup}")
        time.sleep(0.05)
        startup = HTTP.get(SUP + "/startup").json()
    return ttft, startup


def _sup_stop(sup: subprocess.Popen, res: dict, key: str) -> None:
    """SIGTERM (the kubelet's stop), then the engine's tree is gone and its port and GPU are free.
    The engine's processes outlive the supervisor briefly and reparent to this benchmark (a
    subreaper): they are reaped here, else their pids stay taken and a restore cannot fork them
    ("Can't fork for 750: File exists", the first GPU run)."""
    tree = process_tree(sup.pid)
    sup.send_signal(signal.SIGTERM)
    try:
        res[key] = sup.wait(timeout=60)
    except subprocess.TimeoutExpired:
        kill_all(sup.pid)
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{p}").exists() for p in tree):
        procs.reap(None)
        if time.monotonic() > deadline + 10:
            break  # not ours to reap: the restore will say so
        if time.monotonic() > deadline:
            for p in tree:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGKILL)
        time.sleep(0.05)
    kill_remembered()
    wait_port_free()
    wait_gpu_free()


def _sup_cycle(tier_body: dict, engine_pid: int) -> dict:
    """POST /sleep -> measure while asleep -> POST /wake (answers once healthy) -> first token."""
    avail0 = _meminfo_kib()
    rss0 = tree_mem(engine_pid)
    sleep_wall, slept = _sup_post("/sleep", tier_body)
    time.sleep(0.5)  # let the allocator's frees settle before reading memory
    r = {
        "sleep_wall_s": round(sleep_wall, 3),
        "sleep_s": round(slept["sleep_s"], 3),
        "sleep_phases_s": {k: round(v, 3) for k, v in slept["phases_s"].items()},
        "gpu_mib_asleep": gpu_used_mib(),
        "host_mem_asleep": tree_mem(engine_pid),
        "host_mem_awake": rss0,
        "mem_available_drop_bytes": (avail0 - _meminfo_kib()) * 1024,
        "state_asleep": HTTP.get(SUP + "/state").json()["state"],
    }
    t0 = time.monotonic()
    wake_wall, woke = _sup_post("/wake")
    r["wake_wall_s"] = round(wake_wall, 3)
    r["wake_s"] = round(woke["wake_s"], 3)
    r["wake_phases_s"] = {k: round(v, 3) for k, v in woke["phases_s"].items()}
    r["ttft_s"] = round(first_token(t0, 120, pid=engine_pid, client=HTTP)[0], 3)
    r["gpu_mib_awake"] = gpu_used_mib()
    return r


def phase_supervisor(out: Path) -> dict:
    """Ember's supervisor cold-starts the engine with sleep mode on; RUNS cycles of sleep level 1 ->
    wake -> first token; then RUNS cycles of the suspend tier (level 1 + driver suspend) -> resume ->
    first token. Every call goes to the supervisor's HTTP API (:8081), none to vLLM's sleep routes."""
    res: dict = {"kv_cache_bytes": KV_BYTES, "dryrun": DRYRUN}
    kill_remembered()
    state_dir = WORK / "logs/sup-state"  # the engine's log lands in the carried-back tarball
    sh(f"rm -rf {state_dir}")
    state_dir.mkdir(parents=True)
    cfg_file = WORK / "supervisor.json"
    cfg_file.write_text(json.dumps(_sup_config(state_dir)))
    log_file = WORK / "logs/supervisor.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with log_file.open("wb") as lf:
        sup = subprocess.Popen(
            [sys.executable, "-m", "ember_supervisor.main", "--config", str(cfg_file)],
            stdout=lf,
            stderr=subprocess.STDOUT,
            env={
                **server_env(),
                "EMBER_SUPERVISOR_TOKEN": SUP_TOKEN,
            },  # the engine inherits it: VLLM_SERVER_DEV_MODE=1 for the sleep routes
            start_new_session=True,
        )
    remember(sup.pid)
    tiers = [("sleep_l1", {"level": 1}), ("suspend", {"tier": "suspend"})]
    if DRYRUN:
        tiers = [("freeze", {"tier": "freeze"})]
    try:
        ttft, startup = _sup_wait_serving(t0, sup.pid, 900)
        res["supervisor_serving_s"] = round(time.monotonic() - t0, 3)
        engine_pid = int(startup["engine_pid"])
        res["cold_start"] = {"ttft_s": round(ttft, 3), "startup": startup}
        log(f"supervisor cold start: first token {ttft:.1f} s, engine pid {engine_pid}")
        res["greedy_before"] = greedy()
        res["gpu_mib_awake"] = gpu_used_mib()
        res["host_mem_awake"] = tree_mem(engine_pid)
        for label, body in tiers:
            runs = []
            for _ in range(RUNS):
                r = _sup_cycle(body, engine_pid)
                runs.append(r)
                log(f"supervisor {label}: {r}")
            res[label] = {
                "body": body,
                "runs": runs,
                "wake_to_first_token": summary([r["ttft_s"] for r in runs]),
                "wake_call": summary([r["wake_wall_s"] for r in runs]),
                "sleep_call": summary([r["sleep_wall_s"] for r in runs]),
                "sleep_call_after_first": summary([r["sleep_wall_s"] for r in runs[1:]]),
                "gpu_mib_asleep": summary([r["gpu_mib_asleep"] for r in runs]),
                "mem_available_drop_gb": summary([r["mem_available_drop_bytes"] / 1e9 for r in runs]),
                "tree_rss_asleep_gb": summary([r["host_mem_asleep"]["VmRSS"] / 1e9 for r in runs]),
            }
            save(out, "supervisor_sleep", res)
        res["greedy_after"] = greedy()
        res["greedy_identical"] = res["greedy_after"] == res["greedy_before"]
        res["metrics"] = [
            line
            for line in httpx.get(SUP + "/metrics", timeout=5).text.splitlines()
            if line.startswith("ember_supervisor_")
            and ("_count" in line or "_sum" in line or "state" in line)
        ]
    except Exception:  # noqa: BLE001
        import traceback

        res["error"] = traceback.format_exc()[-3000:]
        log(f"supervisor FAILED: {res['error']}\n{sh(f'tail -40 {log_file}')}")
    finally:
        _sup_stop(sup, res, "supervisor_exit")
        res["supervisor_log_tail"] = sh(f"tail -30 {log_file}")
    save(out, "supervisor_sleep", res)
    return res


# ---------------------------------------------------------------- the injected supervisor (issue 17)

# ember_checkpoint + ember_supervisor wheels (bench/pack_carry.sh builds them into .carry/b/inject-wheels)
INJECT_WHEELS = Path(os.environ.get("EMBER_BENCH_INJECT_WHEELS", ".carry/b/inject-wheels")).resolve()
INJECT_VERIFY = (
    os.environ.get("EMBER_BENCH_INJECT_VERIFY", "0") == "1"
)  # the scratch-namespace canary restore


def _inject_layout(base: Path, tree: Path) -> dict:
    """What the operator image's build does (images/operator/Dockerfile): install the two wheels into
    an environment of their own, then `python -m ember_supervisor.inject TREE --criu PREFIX` from it;
    the init container copies that tree into the pod's /ember. Nothing of the checkout is on the path."""
    site = base / "operator-site"
    sh(f"rm -rf {site} {tree}")
    wheels = sorted(str(w) for w in INJECT_WHEELS.glob("*.whl"))
    if len(wheels) != 2:
        raise FileNotFoundError(
            f"want the ember-checkpoint and ember-supervisor wheels in {INJECT_WHEELS}: {wheels}"
        )
    t = time.monotonic()
    if importlib.util.find_spec("pip") is not None:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "--no-index",
                "--no-deps",
                "--target",
                str(site),
                *wheels,
            ],
            check=True,
        )
    else:  # a uv venv (the CPU check) has no pip: a pure wheel is a zip of the site's files
        for w in wheels:
            with zipfile.ZipFile(w) as z:
                z.extractall(site)
    r: dict = {"wheels": [Path(w).name for w in wheels], "pip_install_s": round(time.monotonic() - t, 3)}
    criu = WORK / "criu"
    if not criu.exists():  # a CPU check: the prefix tests/cluster/fetch-tools.sh unpacks
        criu = Path(os.environ.get("EMBER_CACHE", Path.home() / ".cache/ember")) / "deb/criu/current"
    argv = [
        sys.executable,
        "-m",
        "ember_supervisor.inject",
        str(tree),
        *(["--criu", str(criu.resolve())] if criu.exists() else []),
    ]
    t = time.monotonic()
    # the image's python3 with the operator site alone: no checkout src, no carried vLLM
    p = subprocess.run(
        argv, env={**os.environ, "PYTHONPATH": str(site)}, capture_output=True, text=True, check=False
    )
    r["layout_s"] = round(time.monotonic() - t, 3)
    r["layout_argv"] = argv
    if p.returncode != 0:
        raise RuntimeError(f"inject failed ({p.returncode}): {p.stderr[-2000:]}")
    r["tree_mb"] = round(
        sum(f.stat().st_size for f in tree.rglob("*") if f.is_file() and not f.is_symlink()) / 1e6, 1
    )
    r["tree_top"] = sh(f"cd {tree} && ls -d bin/* lib/* lib/*/* criu/* 2>/dev/null | head -40").splitlines()
    return r


def _inject_start(
    tree: Path, cfg_file: Path, log_file: Path, start_path: str
) -> tuple[subprocess.Popen, dict]:
    """The engine container's command, `/ember/bin/ember-supervisor`, on the image's python3 with the
    image's own packages (here the carried vLLM in WORK/site) and nothing of the checkout."""
    env = {k: v for k, v in server_env().items() if k not in ("PYTHONPATH", "EMBER_CRIU")}
    if not DRYRUN:
        env["PYTHONPATH"] = str(WORK / "site")  # the engine image's site-packages: vLLM, pydantic, ...
    else:  # the boot check wants a vLLM; the counter engine needs none
        (WORK / "fake-vllm/vllm").mkdir(parents=True, exist_ok=True)
        (WORK / "fake-vllm/vllm/__init__.py").write_text("")
        env["PYTHONPATH"] = str(WORK / "fake-vllm")
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}"  # its python3
    env.update(EMBER_SUPERVISOR_TOKEN=SUP_TOKEN, EMBER_CRIU=str(tree / "criu"), EMBER_START_PATH=start_path)
    argv = [str(tree / "bin/ember-supervisor"), "--config", str(cfg_file)]
    with log_file.open("ab") as lf:
        sup = subprocess.Popen(argv, stdout=lf, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    remember(sup.pid)
    time.sleep(0.5)  # the sh preamble has exec'd python3 by now: read what really runs
    who: dict = {
        "argv": argv,
        "pid": sup.pid,
        "env_PYTHONPATH": env.get("PYTHONPATH"),
        "env_EMBER_CRIU": env["EMBER_CRIU"],
    }
    with contextlib.suppress(OSError):
        who["exe"] = os.readlink(f"/proc/{sup.pid}/exe")
        who["cmdline"] = Path(f"/proc/{sup.pid}/cmdline").read_text().split("\0")[:-1]
        penv = dict(
            kv.split("=", 1) for kv in Path(f"/proc/{sup.pid}/environ").read_text().split("\0") if "=" in kv
        )
        who["proc_PYTHONPATH"] = penv.get("PYTHONPATH")
    who["python3"] = (
        sh(f"PATH={env['PATH']} command -v python3") + " " + sh(f"{who.get('exe', 'python3')} -V")
    )
    log(
        f"injected supervisor ({start_path}): {argv[0]} -> {' '.join(who.get('cmdline', []))[:300]}; "
        f"python {who['python3']}; PYTHONPATH {who.get('proc_PYTHONPATH')}"
    )
    return sup, who


# EMBER_BENCH_INJECT_PROBES=bench,tree: before pod 2, restore pod 1's image with the library from the
# bench process, with the bench's CRIU (bench) and with the tree's (tree); empty: none
INJECT_PROBES = [
    (x, x) for x in os.environ.get("EMBER_BENCH_INJECT_PROBES", "").split(",") if x in ("bench", "tree")
]


def _inject_probe(label: str, ckpt_dir: Path, cid: str, tree: Path, criu_env: str) -> dict:
    storage = LocalDirStorage(ckpt_dir)
    m = storage.read_manifest(cid)
    env = dict(os.environ)
    if criu_env == "tree":
        env["EMBER_CRIU"] = str(tree / "criu")
    r: dict = {"criu": env.get("EMBER_CRIU"), "gpu_pids": m.gpu_pids}
    r["criu_plugins"] = sh(f"find {tree}/criu {WORK}/criu -name '*plugin*' 2>/dev/null | head").splitlines()
    t0 = time.monotonic()
    try:
        rr = lifecycle.restore(
            cid,
            storage,
            m.identity,
            criu_finder=lambda: Criu.find(env),
            gpu=cuda.load(),
            require_verified=False,
            verify_checksum=True,
        )
        remember(rr.pid)
        ttft, _ = first_token(t0, 240, pid=rr.pid)
        r.update(ok=True, ttft_s=round(ttft, 3), phases_s={k: round(v, 3) for k, v in rr.phases_s.items()})
        r["canary"] = greedy()
        kill_all(rr.pid)
    except Exception as e:  # noqa: BLE001
        r.update(ok=False, error=repr(e)[:2000])
    procs.reap(None)
    wait_port_free()
    wait_gpu_free()
    log(f"inject probe {label}: {r}")
    return r


def phase_inject(out: Path, asleep: bool = False) -> dict:
    """Issue 17 on the GPU: the supervisor tree laid out by ember_supervisor.inject (as the init
    container copies it), run as the engine container's command on the image's python3 and packages:
    cold start -> POST /checkpoint (live) -> stop -> a new pod (the tree laid out again at the same
    path, empty state dir) restores -> the canary must equal the cold engine's answer.
    `asleep` (issue 20, phase inject-asleep): the engine runs with sleep mode, so the supervisor's
    POST /checkpoint dumps it asleep at level 2 (its `auto`), and the new pod restores RUNS times."""
    name = "inject-asleep" if asleep else "inject"
    res: dict = {
        "dryrun": DRYRUN,
        "kv_cache_bytes": KV_BYTES,
        "verify_after_checkpoint": INJECT_VERIFY,
        "asleep": asleep,
    }
    kill_remembered()
    base = WORK / "inject"
    tree = base / "ember"  # the pod's emptyDir /ember
    state_dir = WORK / "logs/inject-state"  # survives in the carried-back tarball
    ckpt_dir = base / "checkpoints"  # the PVC
    sh(f"rm -rf {state_dir} {ckpt_dir}")
    state_dir.mkdir(parents=True)
    ckpt_dir.mkdir(parents=True)
    from ember_checkpoint.testing import counter_server_argv

    engine = counter_server_argv(PORT) if DRYRUN else server_argv(sleep_mode=asleep)
    if DRYRUN and asleep:
        engine.append("--sleep-mode")
    cfg = {
        **_sup_config(state_dir),
        # as the operator writes it (ember.kube.builders): the image's python3, Ember's vLLM entry point
        "engine_argv": ["python3", "-m", *engine[engine.index("-m") + 1 :]]
        if DRYRUN
        else ["python3", "-m", "ember_checkpoint.vllm_entry", *engine[2:]],
        "identity": {  # what the operator writes from the service's spec
            "model_digest": "sha256:random-llama3-8b-shape-seed0",
            "engine_version": "vllm 0.25.1",
            "dtype": "bfloat16",
            "max_model_len": 4096,
        },
        "checkpoint_dir": str(ckpt_dir),
        "canary": json.loads(  # the counter engine answers any POST with its count
            Canary(
                method="POST",
                path="/v1/completions",
                body=json.dumps(CANARY_BODY),
                json_field="choices.0.text",
            ).model_dump_json()
        ),
        "criu_network_lock": "skip",  # the VM has no iptables (as the bench's own dumps)
        "verify_after_checkpoint": INJECT_VERIFY,
        # asleep: the restores are measured even if the (never GPU-tried) verify fails; its result is recorded
        "require_verified": INJECT_VERIFY and not asleep,
        "restore_timeout_s": 300,
    }
    cfg_file = base / "supervisor.json"
    log_file = WORK / "logs/inject-supervisor.log"
    log_file.unlink(missing_ok=True)
    sup = None
    try:
        res["layout"] = _inject_layout(base, tree)
        log(f"inject tree {tree}: {res['layout']['tree_mb']} MB in {res['layout']['layout_s']} s")
        cfg_file.write_text(json.dumps(cfg))
        res["config"] = cfg
        res["version"] = sh(
            f"PYTHONPATH={'' if DRYRUN else WORK / 'site'} {tree}/bin/ember-supervisor --version"
        )
        # pod 1: cold
        t0 = time.monotonic()
        sup, res["pod1"] = _inject_start(tree, cfg_file, log_file, "cold")
        ttft, startup = _sup_wait_serving(t0, sup.pid, 900)
        res["cold"] = {
            "ttft_s": round(ttft, 3),
            "serving_s": round(time.monotonic() - t0, 3),
            "startup": startup,
        }
        res["canary_cold"] = greedy()
        log(f"inject cold: first token {ttft:.1f} s; canary {res['canary_cold']!r}")
        save(out, name, res)  # so far, should the run be cut off
        # the live checkpoint, through the supervisor's API
        dt, manifest = _sup_post("/checkpoint")
        res["checkpoint"] = {
            "wall_s": round(dt, 3),
            "checkpoint_id": manifest["checkpoint_id"],
            "image_bytes": manifest["sizes"]["image_bytes"],
            "timings": manifest.get("timings"),
            "verification": manifest.get("verification"),
            "gpu_pids": manifest.get("gpu_pids"),
            "canary_output": (manifest.get("canary") or {}).get("output"),
        }
        log(
            f"inject checkpoint: {dt:.1f} s, image {manifest['sizes']['image_bytes'] / 1e9:.2f} GB, {manifest.get('timings')}"
        )
        res["canary_after_checkpoint"] = greedy()
        save(out, name, res)
        t = time.monotonic()
        _sup_stop(sup, res, "pod1_exit")
        res["stop_s"] = round(time.monotonic() - t, 3)
        sup = None
        # pod 2 gets the GPU once pod 1's processes are gone (as the device plugin hands it on): the
        # memory still held right after the stop is recorded, then the GPU is waited for
        res["gpu_mib_after_stop"] = gpu_used_mib()
        wait_gpu_free()
        res["gpu_mib_before_pod2"] = gpu_used_mib()
        # which part refuses the restore (issue 17): the supervisor-made image restored by the library
        # from this process, with this process's CRIU and then with the tree's, before pod 2 tries
        for label, criu_env in INJECT_PROBES:
            res.setdefault("probes", {})[label] = _inject_probe(
                label, ckpt_dir, res["checkpoint"]["checkpoint_id"], tree, criu_env
            )
            save(out, name, res)
        # pod 2 (then 3, ...): the init container lays the tree out again at the same path; the state dir
        # starts empty; each new pod restores the same checkpoint
        restores = []
        for i in range(RUNS + DISK_RUNS if asleep else 1):
            if sup is not None:
                _sup_stop(sup, res, f"pod{i + 1}_exit")
                sup = None
                wait_gpu_free()
            from_disk = (
                asleep and i >= RUNS and drop_caches()
            )  # the last DISK_RUNS: image + weights from disk
            sh(f"rm -rf {state_dir} {tree}")
            state_dir.mkdir(parents=True)
            res["layout2"] = _inject_layout(base, tree)
            t0 = time.monotonic()
            sup, res["pod2"] = _inject_start(tree, cfg_file, log_file, "restore")
            ttft, startup = _sup_wait_serving(t0, sup.pid, 300)
            r = {
                "ttft_s": round(ttft, 3),
                "serving_s": round(time.monotonic() - t0, 3),
                "startup": startup,
                "canary": greedy(),
                "page_cache_dropped": bool(from_disk),
            }
            r["canary_identical"] = r["canary"] == res["canary_cold"]
            restores.append(r)
            log(
                f"inject restore {i + 1} ({startup.get('path')}, fallback {startup.get('fallback_reason')}): "
                f"first token {ttft:.2f} s; phases {startup.get('phases_s')}; identical={r['canary_identical']}"
            )
            save(out, name, {**res, "restores": restores})
        res["restores"] = restores
        res["restore"] = restores[0]
        res["restore_ttft"] = summary([r["ttft_s"] for r in restores if not r["page_cache_dropped"]])
        res["restore_ttft_disk"] = summary([r["ttft_s"] for r in restores if r["page_cache_dropped"]])
        res["canary_restored"] = restores[-1]["canary"]
        res["start_path"] = restores[-1]["startup"].get("path")
        res["canary_identical"] = all(r["canary_identical"] for r in restores)
        res["metrics"] = [
            line
            for line in httpx.get(SUP + "/metrics", timeout=5).text.splitlines()
            if line.startswith("ember_supervisor_") and not line.startswith("#")
        ][:60]
    except Exception:  # noqa: BLE001
        import traceback

        res["error"] = traceback.format_exc()[-3000:]
        log(f"inject FAILED: {res['error']}\n{sh(f'tail -40 {log_file}')}")
    finally:
        if sup is not None:
            _sup_stop(sup, res, "pod2_exit")
        res["supervisor_log_tail"] = sh(f"tail -40 {log_file}")
        save(out, name, res)
        sh(f"rm -rf {ckpt_dir}")  # tens of GB on the device's disk
    return res


def phase_decode(out: Path) -> dict:
    """Issue 20's open cost: decode throughput of one engine at several concurrencies (each request 128
    tokens, ignore_eos, greedy), RUNS rounds each after one warm-up round. Run once with vLLM's default
    CUDA-graph sizes and once with EMBER_BENCH_VLLM_EXTRA='--max-cudagraph-capture-size 16' (the smaller
    image's option): batches above the captured sizes run without graphs, which is what this measures."""
    from concurrent.futures import ThreadPoolExecutor

    extra = os.environ.get("EMBER_BENCH_VLLM_EXTRA", "").strip()
    name = "decode_" + (re.sub(r"[^a-z0-9]+", "_", extra.lower()).strip("_") or "default")
    res: dict = {"vllm_extra": extra or "(vLLM's defaults)", "kv_cache_bytes": KV_BYTES, "runs": RUNS}
    tokens = int(os.environ.get("EMBER_BENCH_DECODE_TOKENS", "128"))
    levels = [int(x) for x in os.environ.get("EMBER_BENCH_DECODE_CONC", "1,8,16,32,64").split(",")]
    body = {**CANARY_BODY, "max_tokens": tokens, "ignore_eos": True}
    e = Engine(WORK / f"logs/{name}-engine.log", sleep_mode=False)
    try:
        res["start"] = e.wait_first_token()
        with httpx.Client(timeout=300, limits=httpx.Limits(max_connections=256)) as client:

            def one(_: int) -> int:
                r = client.post(f"{BASE}/v1/completions", json=body)
                r.raise_for_status()
                return int(r.json()["usage"]["completion_tokens"])

            for c in levels:
                rounds = []
                for i in range(RUNS + 1):
                    with ThreadPoolExecutor(c) as ex:
                        t0 = time.monotonic()
                        got = sum(ex.map(one, range(c)))
                        wall = time.monotonic() - t0
                    if i:  # the first round warms this batch size up
                        rounds.append({"tokens": got, "wall_s": round(wall, 4)})
                res[f"c{c}"] = {
                    "rounds": rounds,
                    "tok_s": summary([r["tokens"] / r["wall_s"] for r in rounds]),
                    "ms_per_step": summary([r["wall_s"] / tokens * 1000 for r in rounds]),
                }
                log(f"{name} concurrency {c}: {res[f'c{c}']['tok_s']} tok/s")
                save(out, name, res)
    except Exception:  # noqa: BLE001
        import traceback

        res["error"] = traceback.format_exc()[-3000:]
        log(f"{name} FAILED: {res['error']}")
    finally:
        e.stop()
    save(out, name, res)
    return res


# ---------------------------------------------------------------- table


def table(out: Path) -> str:
    rows = []

    def get(name: str) -> dict:
        p = out / f"{name}.json"
        return json.loads(p.read_text()) if p.exists() else {}

    def fmt(s: dict | None) -> str:
        if not s or not s.get("n"):
            return "-"
        return f"{s['median']:.2f} [{s['min']:.2f}-{s['max']:.2f}] n={s['n']}"

    c = get("cold")
    rows += [
        ("cold, first (empty compile cache)", fmt(c.get("first"))),
        ("cold, warm page cache", fmt(c.get("warm"))),
        ("cold, dropped page cache", fmt(c.get("cold_cache"))),
    ]
    s = get("sleep_suspend")
    rows += [
        ("sleep L1 -> wake", fmt(s.get("sleep_l1", {}).get("ttft"))),
        ("suspended engine", fmt(s.get("suspend", {}).get("ttft"))),
        ("suspended after sleep L1", fmt(s.get("suspend_after_sleep_l1", {}).get("ttft"))),
    ]
    for n in ("criu", "criu_sleep1"):
        x = get(n)
        if x:
            gb = x.get("manifest", {}).get("sizes", {}).get("image_bytes", 0) / 1e9
            rows += [
                (f"{n} restore, page cache ({gb:.1f} GB)", fmt(x.get("ttft_page_cache"))),
                (f"{n} restore, disk", fmt(x.get("ttft_disk"))),
            ]
    c1, c2 = get("chain1"), get("chain2")
    rows += [
        ("chain: suspended engine", fmt(c1.get("suspend", {}).get("ttft"))),
        ("chain: suspended after sleep L1", fmt(c1.get("suspend_after_sleep_l1", {}).get("ttft"))),
    ]
    c3 = get("chain3")
    for label, x in (
        ("ember restore, awake image", c1),
        ("ember restore, asleep (L1) image", c2),
        ("ember restore, asleep (L2) image + reload", c3),
    ):
        if x.get("dump"):
            gb = x["dump"]["manifest"]["sizes"]["image_bytes"] / 1e9
            rows += [
                (f"{label} ({gb:.1f} GB), page cache", fmt(x.get("ttft_page_cache"))),
                (f"{label}, disk", fmt(x.get("ttft_disk"))),
            ]

    def one(x: float | None) -> str:
        return fmt(summary([x])) if x is not None else "-"

    for tag in ("inject", "inject-asleep"):
        i = get(tag)
        if not i:
            continue
        gb = (i.get("checkpoint", {}).get("image_bytes") or 0) / 1e9
        rows += [
            (f"{tag}: tree layout (inject.py)", one(i.get("layout", {}).get("layout_s"))),
            (f"{tag}: cold -> first token", one(i.get("cold", {}).get("ttft_s"))),
            (f"{tag}: POST /checkpoint ({gb:.1f} GB)", one(i.get("checkpoint", {}).get("wall_s"))),
            (
                f"{tag}: new-pod restore -> first token ({i.get('start_path', '?')})",
                fmt(i["restore_ttft"]) if i.get("restore_ttft") else one(i.get("restore", {}).get("ttft_s")),
            ),
        ]
        if i.get("restore_ttft_disk", {}).get("n"):
            rows.append((f"{tag}: new-pod restore, page cache dropped", fmt(i["restore_ttft_disk"])))
        rows.append((f"{tag}: canary identical to cold", str(i.get("canary_identical", "-"))))
    f = get("floor")
    if f:
        rows.append(("floor: pinned H2D of weights", fmt(f.get("h2d_pinned"))))
    w = max(len(r[0]) for r in rows)
    text = "\n".join(f"{a:<{w}}  {b}" for a, b in rows)
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.txt").write_text(text + "\n")
    return text


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("phases", nargs="+")
    ap.add_argument("--out", type=Path, default=WORK / "results")
    a = ap.parse_args()
    procs.become_subreaper()  # CRIU's `restore -d` trees reparent to us
    # The EngineCore holds a loopback TCP connection to its own torch.distributed store; CRIU locks
    # established connections with iptables, which the GPU machine lacks: `--network-lock skip`
    # (nothing outside the VM talks to the engine while it is frozen).
    extra = os.environ.get("EMBER_BENCH_CRIU_EXTRA", "--network-lock skip").split()
    if extra:
        import ember_checkpoint.criu as criu_mod

        criu_mod.COMMON_FLAGS = (*criu_mod.COMMON_FLAGS, *extra)
    for ph in a.phases:
        t0 = time.monotonic()
        log(f"=== phase {ph}")
        try:
            if ph == "env":
                print(json.dumps(phase_env(a.out), indent=1, default=str))
            elif ph == "floor":
                print(json.dumps(phase_floor(a.out), indent=1))
            elif ph == "cold":
                phase_cold(a.out)
            elif ph == "sleep":
                phase_sleep_suspend(a.out, True, True)
            elif ph == "suspend":  # the suspended engine alone (driver lock/checkpoint, restore/unlock)
                phase_sleep_suspend(a.out, False, True)
            elif ph == "criu":
                phase_criu(a.out, None)
            elif ph == "criu-sleep":
                phase_criu(a.out, 1)
            elif ph == "criu-live":  # awake, dumped live (the supervisor's way), the original then killed
                phase_criu(a.out, None, live=True)
            elif ph == "chain1":
                phase_chain1(a.out)
            elif ph == "chain2":  # asleep at level 1; the last restored engine stays for chain3
                phase_chain_asleep(a.out, 1, "chain2", keep=True)
            elif ph == "chain3":  # asleep at level 2, weights reloaded from the model's files
                phase_chain_asleep(a.out, 2, "chain3", keep=False)
            elif ph == "supervisor":  # issue 16: sleeping replicas through Ember's supervisor
                phase_supervisor(a.out)
            elif ph == "inject":  # issue 17: the injected supervisor tree, cold -> checkpoint -> restore
                phase_inject(a.out)
            elif ph == "inject-asleep":  # issue 20: the same with sleep mode: the supervisor dumps asleep
                phase_inject(a.out, asleep=True)
            elif ph == "decode":  # issue 20: decode throughput by concurrency (EMBER_BENCH_VLLM_EXTRA)
                phase_decode(a.out)
            elif ph == "cleanup":
                kill_remembered()
            else:
                raise SystemExit(f"unknown phase {ph}")
        except Exception as ex:  # noqa: BLE001
            log(f"phase {ph} raised {ex!r}")
        log(f"=== phase {ph} done in {time.monotonic() - t0:.1f} s")
    print(table(a.out))


if __name__ == "__main__":
    main()
