"""fetch-tools.sh's package-version lookup, run for real many times against the cached apt lists.

Before the fix, `apt-cache show | awk '{...; exit}'` under pipefail failed with status 141 (SIGPIPE)
in about half of the runs (12 of 20 measured here): `make test` right after `make demo` died in 2 s.
"""

from __future__ import annotations

import subprocess

from ember_cluster.paths import SCRIPTS, cache_root, versions

RUNS = 15  # each run takes ~1-3 s; at the old failure rate, 15 clean runs by luck: p < 1e-4


def test_deb_version_never_dies_of_sigpipe() -> None:
    suite = versions()["PROMETHEUS_DEB_SUITE"]
    assert (cache_root() / "apt" / suite / "sources.list").exists(), "run `make cluster-binaries` first"
    script = f"""
source {SCRIPTS / "fetch-tools.sh"}
for i in $(seq {RUNS}); do deb_version {suite} prometheus || {{ echo "run $i: exit $?"; exit 1; }}; done
"""
    r = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.split()
    assert len(lines) == RUNS and len(set(lines)) == 1, lines
    assert lines[0][0].isdigit(), lines[0]  # a Debian version such as 2.53.3+ds1-2
