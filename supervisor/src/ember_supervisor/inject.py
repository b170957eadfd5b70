"""Lay out the injected supervisor tree: `python -m ember_supervisor.inject DEST [--criu PREFIX]`.

Any vLLM image runs as an Ember replica unchanged (issue 17): an init container from Ember's own image
copies this tree into the pod's emptyDir `/ember`, and the engine container's command is
`/ember/bin/ember-supervisor`, which runs on the *engine image's* python3:

    bin/ember-supervisor     sh preamble: no python3 -> one line; PYTHONPATH=lib/ember; exec python3
    lib/boot/ember_boot.py   checks Python >= 3.11, vLLM, pydantic 2 (one line each), runs the supervisor
    lib/ember/               ember_supervisor, ember_checkpoint (pure Python; the engine imports
                             ember_checkpoint.vllm_entry from here too)
    lib/deps/                pure-Python fallbacks (httpx and its deps, prometheus_client), appended
                             *behind* the image's own packages
    criu/                    with --criu: the relocatable CRIU prefix, run through its own loader
                             (EMBER_CRIU=/ember/criu), so the engine image's glibc does not matter

Why the image's pydantic and not a vendored one: pydantic-core is compiled per Python ABI, and every
vLLM requires pydantic 2. Everything copied here is checked to be pure Python (no extension module), so
the tree runs on any CPython >= 3.11. Copied from this interpreter's installed packages (the operator
image's venv), so the tree is exactly what was tested with.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import importlib.util
import shutil
import sys
from importlib.resources import files
from pathlib import Path

OWN = {"ember-checkpoint": "ember_checkpoint", "ember-supervisor": "ember_supervisor"}
# distribution -> top-level module: what the supervisor needs besides pydantic (httpx's closure)
DEPS = {
    "httpx": "httpx",
    "httpcore": "httpcore",
    "h11": "h11",
    "anyio": "anyio",
    "sniffio": "sniffio",
    "idna": "idna",
    "certifi": "certifi",
    "prometheus-client": "prometheus_client",
    "typing-extensions": "typing_extensions",
}
COMPILED = (".so", ".pyd")


class NotPure(RuntimeError):
    """A package to inject has compiled code: it would not load on another Python."""


def _copy_module(module: str, dest: Path) -> None:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(module)
    if spec.submodule_search_locations:
        src = Path(next(iter(spec.submodule_search_locations)))
        compiled = [p.name for p in src.rglob("*") if p.suffix in COMPILED]
        if compiled:
            raise NotPure(f"{module} has compiled modules ({', '.join(sorted(compiled)[:3])})")
        shutil.copytree(src, dest / module, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    else:
        if Path(spec.origin).suffix in COMPILED:
            raise NotPure(f"{module} is a compiled module")
        shutil.copy2(spec.origin, dest / Path(spec.origin).name)


def _copy_dist(dist: str, module: str, dest: Path) -> None:
    """The module, and a dist-info with its version (the supervisor's --version reads it)."""
    _copy_module(module, dest)
    info = dest / f"{module}-{md.version(dist)}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {md.version(dist)}\n")


def layout(dest: Path, criu: Path | None = None) -> Path:
    """Write the tree into `dest` (created; must not hold a tree already) and return it."""
    here = files("ember_supervisor") / "inject_files"
    for d in ("bin", "lib/boot", "lib/ember", "lib/deps"):
        (dest / d).mkdir(parents=True)
    for dist, module in OWN.items():
        _copy_dist(dist, module, dest / "lib/ember")
    for dist, module in DEPS.items():
        try:
            md.version(dist)
        except md.PackageNotFoundError:
            continue  # not needed by this Python's httpx (e.g. sniffio for a newer anyio)
        _copy_dist(dist, module, dest / "lib/deps")
    sup = dest / "bin/ember-supervisor"
    sup.write_bytes((here / "ember-supervisor").read_bytes())
    sup.chmod(0o755)
    (dest / "lib/boot/ember_boot.py").write_bytes((here / "ember_boot.py").read_bytes())
    if criu is not None:
        shutil.copytree(criu, dest / "criu", symlinks=True)
    return dest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ember_supervisor.inject", description=__doc__.split("\n")[0])
    p.add_argument("dest", type=Path, help="where to write the tree (e.g. /opt/ember-inject)")
    p.add_argument("--criu", type=Path, help="an unpacked CRIU prefix to include (its own loader)")
    args = p.parse_args(argv)
    layout(args.dest, args.criu)
    print(args.dest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
