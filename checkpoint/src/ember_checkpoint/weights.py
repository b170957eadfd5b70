"""A parallel pinned weight loader for the level-2 restore: safetensors straight into the engine's own
parameter tensors.

vLLM's `reload_weights` reads the model's files through its own loader (~4.5-6 GB/s from page cache
on an H200, 2.8 s for an 8B bf16 model). This loader does what the pinned-copy measurement of issue 20
showed is possible (16 threads, 0.44 s for 17.2 GB): N threads `pread` the safetensors files into
pinned 64 MiB host buffers, two per thread, and each thread copies its buffers with `cudaMemcpyAsync`
on a stream of its own into the bytes of the parameter they belong to. Nothing is allocated on the
GPU: the restored engine's parameters (and so its CUDA graphs' pointers) stay where they are.

Which file tensor goes where is planned without torch (`plan`, unit-tested): a file tensor whose
vLLM name (after the model's `hf_to_vllm_mapper`) is a parameter of the same dtype and shape is
copied whole; the parts of a packed parameter (`packed_modules_mapping`, e.g. q/k/v_proj into
qkv_proj, gate/up_proj into gate_up_proj) are copied one after the other along dim 0 when the parts'
rows add up to the parameter's exactly (only with tensor parallel size 1: a sharded parameter holds
a slice of each part). Everything else (another dtype, a shape that does not add up, a name the
model does not have) is handed to the model's own `load_weights`, vLLM's per-parameter loaders.

In the engine it runs as a vLLM worker extension (`--worker-extension-cls
ember_checkpoint.weights.EmberWorkerExtension`), called through the dev-mode `POST /collective_rpc`
`{"method": "ember_reload_weights"}`; `lifecycle.wake_steps` falls back to vLLM's `reload_weights`
when that call fails. Without CUDA the same code copies with plain memcpy (the CPU test).
torch is imported only inside the functions that copy: the planning half runs in Ember's own venv.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("ember.checkpoint.weights")

WORKER_EXTENSION = "ember_checkpoint.weights.EmberWorkerExtension"  # vLLM's --worker-extension-cls
BUFFER_BYTES = (
    8 << 20
)  # x2 per thread; pinning costs ~0.65 s/GB on the H200 VM (2 GiB of 64 MiB buffers: ~1.1 s)
DEFAULT_THREADS = 16
# safetensors dtype names -> the torch dtype names the planner compares with (str(torch.bfloat16) minus "torch.")
_DTYPES = {
    "BF16": "bfloat16",
    "F16": "float16",
    "F32": "float32",
    "F64": "float64",
    "I8": "int8",
    "U8": "uint8",
    "I16": "int16",
    "I32": "int32",
    "I64": "int64",
    "BOOL": "bool",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
}


@dataclass(frozen=True)
class FileTensor:
    """One tensor of a safetensors file: its bytes are `path[start:end]`."""

    path: Path
    name: str
    dtype: str  # torch's name, e.g. "bfloat16"
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class Copy:
    """Copy `src`'s bytes into parameter `target` starting `offset` bytes into it."""

    src: FileTensor
    target: str
    offset: int


@dataclass
class Plan:
    copies: list[Copy] = field(default_factory=list)
    leftovers: list[FileTensor] = field(default_factory=list)  # for the model's own load_weights
    reasons: dict[str, str] = field(default_factory=dict)  # leftover file name -> why


def read_header(path: Path) -> list[FileTensor]:
    """The tensors of one safetensors file (format: u64 little-endian header size, JSON header, data)."""
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise ValueError(f"{path}: not a safetensors file (shorter than 8 bytes)")
        (n,) = struct.unpack("<Q", head)
        if n > 100 << 20:
            raise ValueError(f"{path}: safetensors header of {n} bytes is implausible")
        header = json.loads(f.read(n))
    base = 8 + n
    size = path.stat().st_size
    out = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = _DTYPES.get(info["dtype"])
        if dtype is None:
            raise ValueError(f"{path}: tensor {name} has dtype {info['dtype']}, unknown here")
        a, b = info["data_offsets"]
        if not 0 <= a <= b or base + b > size:
            raise ValueError(f"{path}: tensor {name} lies outside the file")
        out.append(FileTensor(path, name, dtype, tuple(info["shape"]), base + a, base + b))
    return out


def read_index(files: list[Path]) -> list[FileTensor]:
    return [t for p in files for t in read_header(p)]


def _rows(shape: tuple[int, ...]) -> int:
    return shape[0] if shape else 1


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def plan(
    tensors: list[FileTensor],
    params: Mapping[str, tuple[tuple[int, ...], str]],
    rename: Callable[[str], str | None] = lambda n: n,
    packed: Mapping[str, list[str]] | None = None,
) -> Plan:
    """Pure: where each file tensor goes. `params`: vLLM parameter name -> (shape, dtype), only the
    contiguous ones the copy may write; `rename`: the model's file-name -> parameter-name mapping
    (None: the model skips that tensor); `packed`: packed parameter -> its parts in order.

    A tensor is copied whole only when it alone maps to its parameter: a mapping may send several
    file tensors to one name (vLLM 0.25.1's Llama maps q/k/v_proj to qkv_proj: seen on the GPU,
    where copying "by name" kept the last part only). Packed parts are grouped by their file names,
    and the packed parameter is found by its file-side name or by that name mapped."""
    out = Plan()
    by_name = {t.name: t for t in tensors}
    mapped_count: dict[str, int] = {}
    for t in tensors:
        m = rename(t.name)
        if m is not None:
            mapped_count[m] = mapped_count.get(m, 0) + 1
    done: set[str] = set()
    for t in tensors:
        if t.name in done:
            continue
        m = rename(t.name)
        if m is None:
            out.leftovers.append(t)
            out.reasons[t.name] = "the model's name mapping drops it"
            done.add(t.name)
            continue
        want = params.get(m)
        if want is not None and mapped_count[m] == 1:
            if want == (t.shape, t.dtype):
                out.copies.append(Copy(t, m, 0))
            else:
                out.leftovers.append(t)
                out.reasons[t.name] = f"parameter is {want}, file has {(t.shape, t.dtype)}"
            done.add(t.name)
            continue
        group = _packed_group(t.name, by_name, params, packed or {}, rename)
        if group is None:
            out.leftovers.append(t)
            out.reasons[t.name] = (
                f"{mapped_count[m]} file tensors map to {m}, and they fill no packed parameter exactly"
                if mapped_count[m] > 1
                else "no parameter of this name, and no packed parameter it fills exactly"
            )
            done.add(t.name)
            continue
        target, parts = group
        shape, dtype = params[target]
        row_bytes = _numel(shape[1:]) * _itemsize(dtype)
        offset = 0
        for name in parts:
            pt = by_name[name]
            out.copies.append(Copy(pt, target, offset))
            offset += _rows(pt.shape) * row_bytes
            done.add(name)
    return out


def _packed_group(
    n: str,
    by_name: Mapping[str, FileTensor],
    params: Mapping[str, tuple[tuple[int, ...], str]],
    packed: Mapping[str, list[str]],
    rename: Callable[[str], str | None],
) -> tuple[str, list[str]] | None:
    """(packed parameter, its parts' file names in order) when file tensor `n` is one part of a packed
    parameter whose parts are all in the files and fill it exactly along dim 0; else None."""
    stem = f".{n}"
    for packed_name, parts in packed.items():
        for part in parts:
            key = f".{part}."
            if key not in stem:
                continue
            raw = stem.replace(key, f".{packed_name}.", 1)[1:]
            names = [stem.replace(key, f".{p}.", 1)[1:] for p in parts]
            target = next((c for c in (raw, rename(raw)) if c is not None and c in params), None)
            if target is None or not all(x in by_name for x in names):
                return None
            shape, dtype = params[target]
            srcs = [by_name[x] for x in names]
            if not shape or any(s.dtype != dtype or s.shape[1:] != shape[1:] for s in srcs):
                return None
            if sum(_rows(s.shape) for s in srcs) != shape[0]:
                return None
            return target, names
    return None


_ITEMSIZE = {
    "bfloat16": 2,
    "float16": 2,
    "float32": 4,
    "float64": 8,
    "int8": 1,
    "uint8": 1,
    "int16": 2,
    "int32": 4,
    "int64": 8,
    "bool": 1,
    "float8_e4m3fn": 1,
    "float8_e5m2": 1,
}


def _itemsize(dtype: str) -> int:
    return _ITEMSIZE[dtype]


@dataclass(frozen=True)
class _Chunk:
    path: Path
    file_offset: int
    length: int
    target: str
    target_offset: int


def chunks(copies: list[Copy], buffer_bytes: int = BUFFER_BYTES) -> list[_Chunk]:
    """Each copy cut into pieces of at most buffer_bytes, largest files first in file order."""
    out = []
    for c in copies:
        for off in range(0, c.src.nbytes, buffer_bytes):
            n = min(buffer_bytes, c.src.nbytes - off)
            out.append(_Chunk(c.src.path, c.src.start + off, n, c.target, c.offset + off))
    out.sort(key=lambda k: (str(k.path), k.file_offset))
    return out


def copy_into(
    copies: list[Copy],
    targets: Mapping[str, Any],
    *,
    threads: int = DEFAULT_THREADS,
    buffer_bytes: int = BUFFER_BYTES,
) -> dict[str, float]:
    """Run the copies into `targets` (name -> contiguous torch tensor, CPU or CUDA); returns stats.
    Each thread owns two host buffers (pinned when the targets are on the GPU) and a CUDA stream."""
    import torch

    work = chunks(copies, buffer_bytes)
    flat = {name: t.detach().reshape(-1).view(torch.uint8) for name, t in targets.items()}
    for c in copies:  # refuse before writing anything
        if c.offset + c.src.nbytes > flat[c.target].numel():
            raise ValueError(f"{c.src.name} does not fit {c.target} at offset {c.offset}")
    on_gpu = any(t.is_cuda for t in flat.values())
    t0 = time.monotonic()
    lock = threading.Lock()
    it: Iterator[_Chunk] = iter(work)
    errors: list[BaseException] = []
    pin_s: list[float] = []
    fds: dict[Path, int] = {p: os.open(p, os.O_RDONLY) for p in {k.path for k in work}}

    def next_chunk() -> _Chunk | None:
        with lock:
            return next(it, None)

    device = next((t.device for t in flat.values() if t.is_cuda), None)

    def worker() -> None:
        try:
            if device is not None:
                torch.cuda.set_device(device)  # a new thread starts on device 0
            size = min(buffer_bytes, max((k.length for k in work), default=1))
            tp = time.monotonic()
            bufs = [torch.empty(size, dtype=torch.uint8, pin_memory=on_gpu) for _ in range(2)]
            with lock:
                pin_s.append(time.monotonic() - tp)
            views = [memoryview(b.numpy()) for b in bufs]
            stream = torch.cuda.Stream() if on_gpu else None
            events: list[Any] = [None, None]
            i = 0
            while (k := next_chunk()) is not None:
                if events[i] is not None:
                    events[i].synchronize()  # the copy out of this buffer has finished
                _pread_full(fds[k.path], views[i][: k.length], k.file_offset)
                dst = flat[k.target][k.target_offset : k.target_offset + k.length]
                if stream is not None:
                    with torch.cuda.stream(stream):
                        dst.copy_(bufs[i][: k.length], non_blocking=True)
                        ev = torch.cuda.Event()
                        ev.record(stream)
                        events[i] = ev
                else:
                    dst.copy_(bufs[i][: k.length])
                i ^= 1
            if stream is not None:
                stream.synchronize()
        except BaseException as e:  # re-raised in the caller
            errors.append(e)

    pool = [threading.Thread(target=worker, name=f"ember-weights-{n}") for n in range(max(1, threads))]
    try:
        for th in pool:
            th.start()
        for th in pool:
            th.join()
    finally:
        for fd in fds.values():
            os.close(fd)
    if errors:
        raise errors[0]
    seconds = time.monotonic() - t0
    nbytes = sum(k.length for k in work)
    return {
        "bytes": nbytes,
        "seconds": seconds,
        "chunks": len(work),
        "threads": len(pool),
        "buffer_alloc_max_s": round(max(pin_s, default=0.0), 4),
    }


def _pread_full(fd: int, view: memoryview, offset: int) -> None:
    got = 0
    while got < len(view):
        n = os.preadv(fd, [view[got:]], offset + got)
        if n <= 0:
            raise OSError(f"short read at offset {offset + got}")
        got += n


def safetensors_files(model_dir: Path) -> list[Path]:
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors in {model_dir}")
    return files


def load_model_weights(
    model: Any,
    model_dir: Path,
    *,
    threads: int = DEFAULT_THREADS,
    allow_packed: bool = True,
    buffer_bytes: int = BUFFER_BYTES,
) -> dict[str, Any]:
    """Load `model_dir`'s safetensors into `model` (a torch module with vLLM's `load_weights`):
    planned copies by this loader, the leftovers through `model.load_weights`. Returns stats."""
    import torch

    t0 = time.monotonic()
    tensors = read_index(safetensors_files(model_dir))
    named = {n: p for n, p in model.named_parameters() if p.is_contiguous()}
    params = {n: (tuple(p.shape), str(p.dtype).removeprefix("torch.")) for n, p in named.items()}
    mapper = getattr(model, "hf_to_vllm_mapper", None)
    rename: Callable[[str], str | None] = mapper._map_name if mapper is not None else (lambda n: n)
    packed = getattr(model, "packed_modules_mapping", None) if allow_packed else None
    p = plan(tensors, params, rename, dict(packed or {}))
    emptied = [n for n, t in named.items() if t.numel() == 0]
    if emptied:  # refuse before writing anything: the caller's fallback (vLLM's reload) starts clean
        raise RuntimeError(
            f"{len(emptied)} parameters are empty (e.g. {emptied[0]}): the model transformed its weights "
            "after loading (vLLM on CPU repacks them); this loader cannot write them, vLLM's reload_weights can"
        )
    stats: dict[str, Any] = copy_into(p.copies, named, threads=threads, buffer_bytes=buffer_bytes)
    t1 = time.monotonic()
    if p.leftovers:
        load = getattr(model, "load_weights", None)
        if load is None:
            raise RuntimeError(f"{len(p.leftovers)} tensors need the model's load_weights, which it lacks")
        load(_read_tensors(p.leftovers, torch))
    stats.update(
        copied_tensors=len(p.copies),
        leftover_tensors=len(p.leftovers),
        leftover_bytes=sum(t.nbytes for t in p.leftovers),
        leftover_seconds=round(time.monotonic() - t1, 4),
        total_seconds=round(time.monotonic() - t0, 4),
    )
    if p.leftovers:
        sample = dict(list(p.reasons.items())[:5])
        log.info(json.dumps({"event": "ember_weights_leftovers", "count": len(p.leftovers), "why": sample}))
    return stats


def _read_tensors(tensors: list[FileTensor], torch: Any) -> Iterator[tuple[str, Any]]:
    for t in tensors:
        with t.path.open("rb") as f:
            f.seek(t.start)
            raw = bytearray(f.read(t.nbytes))
        dtype = getattr(torch, t.dtype)
        yield t.name, torch.frombuffer(raw, dtype=torch.uint8).view(dtype).reshape(t.shape)


class EmberWorkerExtension:
    """Mixed into vLLM's worker (`--worker-extension-cls ember_checkpoint.weights.EmberWorkerExtension`);
    `POST /collective_rpc {"method": "ember_reload_weights"}` runs it on every worker."""

    model_runner: Any

    def ember_reload_weights(
        self, model_dir: str | None = None, threads: str | int | None = None
    ) -> dict[str, Any]:
        import torch

        runner = self.model_runner
        model = runner.get_model() if hasattr(runner, "get_model") else runner.model
        path = Path(model_dir or runner.model_config.model)
        world = 1
        try:
            world = runner.vllm_config.parallel_config.tensor_parallel_size
        except AttributeError:
            pass
        stats = load_model_weights(
            model, path, threads=int(threads or DEFAULT_THREADS), allow_packed=world == 1
        )
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        _report({"event": "ember_reload_weights", "model_dir": str(path), **stats})
        return stats

    def ember_release_memory(self) -> dict[str, Any]:
        """Give back what PyTorch's caching allocators hold unused (GPU blocks, pinned host blocks), so
        a GPU checkpoint taken next does not carry it. vLLM's sleep-mode pool is not touched."""
        import gc

        import torch

        gc.collect()
        out: dict[str, Any] = {"event": "ember_release_memory"}
        if torch.cuda.is_available():
            out["reserved_before"] = torch.cuda.memory_reserved()
            torch.cuda.empty_cache()
            out["reserved_after"] = torch.cuda.memory_reserved()
        host_empty = getattr(torch._C, "_host_emptyCache", None)
        if host_empty is not None:
            host_empty()
            out["host_cache_emptied"] = True
        out.update(trim_host_heap())
        _report(out)
        return out


def trim_host_heap() -> dict[str, Any]:
    """glibc's malloc_trim(0) in this process (the EngineCore): `vllm_entry.trim_heap`."""
    from ember_checkpoint.vllm_entry import trim_heap

    return trim_heap()


def _report(event: dict[str, Any]) -> None:
    # vLLM configures only its own loggers: print, so that the line lands in the engine's log
    print(json.dumps(event), file=sys.stderr, flush=True)
