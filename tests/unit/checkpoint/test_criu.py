from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from ember_checkpoint.criu import (
    BadNetworkLock,
    Completed,
    Criu,
    CriuFailed,
    CriuNotFound,
    CriuTooOld,
    ProcStat,
    choose_network_lock,
    dump_argv,
    locate,
    needs_shell_job,
    parse_proc_stat,
    parse_version,
    restore_argv,
)


class FakeRunner:
    """Stands in for the criu subprocess: records argv, answers from a script."""

    def __init__(self, *answers: Completed) -> None:
        self.answers = list(answers)
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str], timeout_s: float) -> Completed:
        self.calls.append(list(argv))
        return self.answers.pop(0)


@pytest.mark.parametrize(
    "text,version",
    [
        ("Version: 4.2.1\n", (4, 2, 1)),
        ("Version: 4.2\nGitID: v4.2", (4, 2, 0)),
        ("Version: 3.17.1", (3, 17, 1)),
    ],
)
def test_parse_version(text: str, version: tuple[int, int, int]) -> None:
    assert parse_version(text) == version


def test_find_refuses_criu_older_than_4_2_saying_why() -> None:
    runner = FakeRunner(Completed(0, "Version: 4.1.1\n", ""))
    with pytest.raises(CriuTooOld, match=r"4\.1\.1 is too old: 4\.2\+ is required"):
        Criu.find({"EMBER_CRIU": "/bin/true"}, runner=runner)


def test_find_accepts_4_2_and_keeps_the_argv(tmp_path: Path) -> None:
    # PATH holds an iptables, so auto picks it without asking CRIU about nftables (whatever this host has)
    (tmp_path / "iptables").write_text("#!/bin/sh\n")
    (tmp_path / "iptables").chmod(0o755)
    runner = FakeRunner(Completed(0, "Version: 4.2.1\n", ""))
    c = Criu.find({"EMBER_CRIU": "/bin/true", "PATH": str(tmp_path)}, runner=runner)
    assert c.argv == ["/bin/true"] and c.version_str == "4.2.1"
    assert runner.calls == [["/bin/true", "--version"]]


def test_locate_runs_an_unpacked_prefix_through_its_own_loader(tmp_path: Path) -> None:
    prefix = tmp_path / "deb/criu/current"
    (prefix / "usr/sbin").mkdir(parents=True)
    (prefix / "usr/sbin/criu").write_text("")
    (prefix / "usr/lib/x86_64-linux-gnu").mkdir(parents=True)
    (prefix / "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2").write_text("")
    argv = locate({"EMBER_CACHE": str(tmp_path), "PATH": ""}, Path("/nonexistent"))
    lib = str(prefix.resolve() / "usr/lib/x86_64-linux-gnu")
    assert argv == [
        f"{lib}/ld-linux-x86-64.so.2",
        "--library-path",
        lib,
        str(prefix.resolve() / "usr/sbin/criu"),
    ]


def test_locate_says_how_to_install_when_nothing_is_there(tmp_path: Path) -> None:
    with pytest.raises(CriuNotFound, match=r"fetch-tools\.sh criu"):
        locate({"EMBER_CACHE": str(tmp_path), "PATH": str(tmp_path)}, tmp_path)


def test_dump_and_restore_argv_carry_the_flags_a_vllm_tree_needs(tmp_path: Path) -> None:
    d = dump_argv(["criu"], 42, tmp_path / "i", tmp_path / "d.log", shell_job=False, leave_running=True)
    r = restore_argv(["criu"], tmp_path / "i", tmp_path / "r.log", tmp_path / "p", shell_job=True)
    for argv in (d, r):
        assert {"--tcp-established", "--file-locks", "--link-remap"} <= set(argv)
    assert d[:4] == ["criu", "dump", "-t", "42"] and "--leave-running" in d and "--shell-job" not in d
    assert "-d" in r and r[r.index("--pidfile") + 1] == str(tmp_path / "p") and "--shell-job" in r
    # clients' connections to the pod's address come back closed (they cannot be rebound elsewhere)
    assert "--tcp-close" in r and "--tcp-close" not in d


@pytest.mark.parametrize(
    "stat,tree,needed",
    [
        (ProcStat(pid=10, pgrp=10, session=10, tty_nr=0), {10, 11}, False),
        (ProcStat(pid=10, pgrp=10, session=5, tty_nr=0), {10, 11}, True),
        (ProcStat(pid=10, pgrp=9, session=10, tty_nr=0), {10}, True),
        (ProcStat(pid=10, pgrp=10, session=10, tty_nr=34816), {10}, True),
    ],
    ids=["own-session", "shell-session", "foreign-group", "has-tty"],
)
def test_shell_job_only_when_the_session_group_or_tty_is_outside_the_tree(
    stat: ProcStat, tree: set[int], needed: bool
) -> None:
    assert needs_shell_job(stat, tree) is needed


def test_parse_proc_stat_survives_a_comm_with_spaces_and_parens() -> None:
    text = "1234 (my (odd) name) S 1 1230 1229 0 -1 4194560 0 0"
    assert parse_proc_stat(text) == ProcStat(pid=1234, pgrp=1230, session=1229, tty_nr=0)


def test_failed_dump_raises_with_the_error_lines_of_the_log(tmp_path: Path) -> None:
    log = tmp_path / "logs/dump.log"
    log.parent.mkdir()
    log.write_text("(00.01) info\nError (criu/sk-inet.c:1): Can't get 1:16 opt\n(00.02) more\n")
    criu = Criu(argv=["criu"], version=(4, 2, 1), runner=FakeRunner(Completed(1, "", "")))
    with pytest.raises(CriuFailed, match="Can't get 1:16 opt"):
        criu.dump(1, tmp_path / "images", log, shell_job=False, leave_running=False, timeout_s=5)


# ---------------------------------------------------------------- --network-lock


def _never() -> bool:
    raise AssertionError("the nftables probe must not run when the choice is already made")


@pytest.mark.parametrize(
    "requested,iptables,nft,expected,warns",
    [
        ("auto", True, False, "iptables", False),
        ("auto", False, True, "nftables", False),
        ("auto", False, False, "skip", True),
        ("skip", True, True, "skip", False),
        ("nftables", True, False, "nftables", False),
    ],
    ids=["iptables-found", "nft-built-in", "neither-skips-with-warning", "override-skip", "override-nft"],
)
def test_network_lock_is_chosen_by_what_exists(
    requested: str, iptables: bool, nft: bool, expected: str, warns: bool
) -> None:
    probe = (lambda: nft) if requested == "auto" and not iptables else _never
    lock, warning = choose_network_lock(requested, has_iptables=iptables, criu_has_nftables=probe)
    assert lock == expected
    assert (warning is not None) is warns
    if warns:
        assert "install iptables" in str(warning)


def test_a_bad_network_lock_is_refused_before_criu_runs(tmp_path: Path) -> None:
    runner = FakeRunner()
    with pytest.raises(BadNetworkLock, match=r"'iptable'.*iptables, nftables, skip, auto"):
        Criu.find({"EMBER_CRIU_NETWORK_LOCK": "iptable", "PATH": ""}, runner)
    assert runner.calls == []


def test_find_probes_criu_for_nftables_when_there_is_no_iptables(tmp_path: Path) -> None:
    fake = tmp_path / "criu"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    env = {"EMBER_CRIU": str(fake), "PATH": str(tmp_path)}  # no iptables on this PATH
    runner = FakeRunner(Completed(0, "Version: 4.2.1\n", ""), Completed(0, "supported", ""))
    criu = Criu.find(env, runner)
    assert runner.calls[1] == [str(fake), "check", "--feature", "network_lock_nftables"]
    assert criu.network_lock == "nftables"
    runner = FakeRunner(Completed(0, "Version: 4.2.1\n", ""), Completed(1, "", "Unknown feature"))
    assert Criu.find(env, runner).network_lock == "skip"
    (tmp_path / "iptables").write_text("#!/bin/sh\n")
    (tmp_path / "iptables").chmod(0o755)
    runner = FakeRunner(Completed(0, "Version: 4.2.1\n", ""))
    assert Criu.find(env, runner).network_lock == "iptables"
    # the supervisor's config (an argument) wins over the environment
    runner = FakeRunner(Completed(0, "Version: 4.2.1\n", ""))
    assert Criu.find({**env, "EMBER_CRIU_NETWORK_LOCK": "nftables"}, runner, "skip").network_lock == "skip"


def test_dump_and_restore_pass_the_chosen_network_lock(tmp_path: Path) -> None:
    calls: list[list[str]] = []

    def runner(argv: Sequence[str], timeout_s: float) -> Completed:
        calls.append(list(argv))
        if "--pidfile" in argv:  # as CRIU does on a restore
            Path(argv[list(argv).index("--pidfile") + 1]).write_text("77\n")
        return Completed(0, "", "")

    criu = Criu(argv=["criu"], version=(4, 2, 1), runner=runner, network_lock="skip")
    criu.dump(1, tmp_path / "images", tmp_path / "d.log", shell_job=False, leave_running=False, timeout_s=5)
    pid = criu.restore(
        tmp_path / "images", tmp_path / "r.log", tmp_path / "pid", shell_job=False, timeout_s=5
    )
    assert pid == 77 and len(calls) == 2
    for argv in calls:
        assert argv[argv.index("--network-lock") + 1] == "skip"
