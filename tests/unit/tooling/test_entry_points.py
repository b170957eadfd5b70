"""Every console script of every pyproject.toml answers --help and --version, run for real.

The entry points installed in this environment are run as subprocesses, the way a newcomer runs
them: `ember-operator --help` used to start the operator (a traceback about a missing kubeconfig),
and no script knew --version.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent


def console_scripts() -> dict[str, str]:
    """script -> distribution, from the workspace's members (and any other pyproject.toml)."""
    out: dict[str, str] = {}
    for path in sorted(ROOT.glob("**/pyproject.toml")):
        if ".venv" in path.parts or "node_modules" in path.parts:
            continue
        project = tomllib.loads(path.read_text()).get("project", {})
        for script in project.get("scripts", {}):
            out[script] = project["name"]
    return out


SCRIPTS = console_scripts()


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / argv[0]), *argv[1:]], capture_output=True, text=True, timeout=60, check=False
    )


def undocumented_options(help_text: str) -> list[str]:
    """Options in an argparse help's `options:` section without a description."""
    section = help_text.split("\noptions:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    bad = []
    for i, line in enumerate(section):
        m = re.match(r"^  (-\S.*?)(?:\s{2,}(\S.*))?$", line)
        if not m or m[2]:
            continue
        described_below = i + 1 < len(section) and re.match(r"^\s{6,}\S", section[i + 1])
        if not described_below:
            bad.append(m[1])
    return bad


def test_every_pyproject_script_is_covered() -> None:
    assert set(SCRIPTS) >= {
        "ember-operator", "ember-crdgen", "ember-checkpoint", "ember-supervisor",
        "ember-sim", "ember-demo", "ember-cluster",
    }, SCRIPTS  # fmt: skip


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_version(script: str) -> None:
    r = run(script, "--version")
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == f"{script} {version(SCRIPTS[script])}", r.stdout
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_help_and_every_subcommands_help_document_each_option(script: str) -> None:
    r = run(script, "--help")
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.startswith(f"usage: {script}"), r.stdout[:300]
    assert "Traceback" not in r.stdout + r.stderr
    assert undocumented_options(r.stdout) == [], r.stdout
    usage = r.stdout.split("\n\n", 1)[0]
    subcommands = re.findall(r"\{([a-z,-]+)\}", usage)
    names = subcommands[0].split(",") if subcommands else []
    if "prestage --help" in r.stdout:  # ember-supervisor's second mode, named in its epilog
        names.append("prestage")
    for sub in names:
        s = run(script, sub, "--help")
        assert s.returncode == 0, (sub, s.stderr[-2000:])
        assert s.stdout.startswith(f"usage: {script} {sub}") or s.stdout.startswith("usage: "), s.stdout
        assert undocumented_options(s.stdout) == [], (sub, s.stdout)


def test_the_operator_refuses_arguments_instead_of_starting() -> None:
    r = run("ember-operator", "--no-such-flag")
    assert r.returncode == 2 and "unrecognized arguments: --no-such-flag" in r.stderr, r.stderr[-2000:]
    assert "EMBER_PROMETHEUS_URL" in run("ember-operator", "--help").stdout
