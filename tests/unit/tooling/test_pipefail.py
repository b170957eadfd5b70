"""No pipeline that runs under pipefail ends in a reader that stops early.

`awk '{...; exit}'`, `head`, `grep -q`/`-m`, `sed ...q` stop reading once they have what they want;
the writer's next write then kills it with SIGPIPE, and under `set -o pipefail` the pipeline fails
with status 141. That is how `make test` on a fresh clone failed in 2 s (`Error 141`, 3 of 6 runs):
fetch-tools.sh piped `apt-cache show` into `awk '/^Version:/{print $2; exit}'`. Readers that read
to the end (awk/sed/grep without those, `tail`) are safe.
"""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PIPE = re.compile(r"(?<![|>&])\|(?![|&])")  # a pipe; not ||, |&, >|
EARLY = [
    (re.compile(r"^head\b"), "head stops after its lines"),
    (re.compile(r"^grep\b(?:\s+-\w+|\s+--[\w-]+)*?\s+(?:-\w*[qm]|--quiet|--silent|--max-count)"), "grep -q/-m stops at the first match"),
    (re.compile(r"^awk\b.*\bexit\b"), "awk's exit stops reading"),
    (re.compile(r"^sed\b.*(?:^|[\s'\";{}0-9/$])q(?:[\s'\";}]|$)"), "sed's q stops reading"),
]  # fmt: skip


def early_readers(script: str) -> list[str]:
    """Each `reader (why)` of a pipeline in `script` that may stop before the writer is done."""
    text = re.sub(r"\\\n", " ", script)  # continuation lines are one command
    text = re.sub(r"\n\s*\|", " |", text)  # a line that starts with `|` continues the pipeline
    found = []
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        for seg in PIPE.split(line)[1:]:
            reader = seg.strip().lstrip("(").strip()
            for pattern, why in EARLY:
                if pattern.search(reader):
                    found.append(f"{reader[:80]!r} ({why})")
    return found


def _docstring(node: ast.AST) -> ast.Constant | None:
    body = getattr(node, "body", None)
    if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and body:
        first = body[0]
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
            return first.value
    return None


def pipefail_sources() -> dict[str, str]:
    """Every tracked shell script, Makefile and Python string literal that turns pipefail on."""
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True)
    out: dict[str, str] = {}
    for name in files.stdout.splitlines():
        path = ROOT / name
        if not path.is_file():
            continue
        if name.endswith(".sh") or path.name == "Makefile" or name.endswith(".mk"):
            text = path.read_text(errors="replace")
            if "pipefail" in text:
                out[name] = text
        elif name.endswith(".py") and "pipefail" in (text := path.read_text(errors="replace")):
            tree = ast.parse(text)
            prose = {id(d) for n in ast.walk(tree) if (d := _docstring(n)) is not None}
            for node in ast.walk(tree):  # a command run under pipefail, not prose about one
                value = node.value if isinstance(node, ast.Constant) else None
                if isinstance(value, str) and "pipefail" in value and id(node) not in prose:
                    out[f"{name}:{node.lineno}"] = value  # type: ignore[attr-defined]
    return out


def test_the_checker_catches_the_fetch_tools_bug_and_its_kin() -> None:
    bad = """ver=$(apt-cache show x 2>/dev/null | awk '/^Version:/{print $2; exit}')
if [ -z "$(find d -name '*P*' | head -1)" ]; then :; fi
kind get clusters | grep -qx "$name"
docker info \\
  | grep --quiet ember
seq 9 | sed -n '/3/{p;q}'
seq 9 | sed 1q
"""
    assert len(early_readers(bad)) == 6, early_readers(bad)
    good = """v=$(apt-cache show x | awk '/^Version:/ && !v {v = $2} END {print v}')
find d -print -quit; free -g | sed -n 1,2p; build | tail -1; a || head -1 f; grep -q x file
printf '%s|%s' a b | sha256sum | cut -c1-16
"""
    assert early_readers(good) == []


def test_no_script_pipes_into_an_early_exit_reader_under_pipefail() -> None:
    sources = pipefail_sources()
    assert "tests/cluster/fetch-tools.sh" in sources and "Makefile" in sources
    bad = {name: found for name, text in sources.items() if (found := early_readers(text))}
    assert not bad, f"pipelines that fail with SIGPIPE (141) under pipefail: {bad}"
