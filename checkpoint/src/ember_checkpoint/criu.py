"""CRIU: find it, check its version, dump and restore a process tree.

The argv builders and parsers are pure; `Criu` runs them through a `Runner` (a seam: tests of the
logic use a fake runner, integration tests the real binary).

Where CRIU comes from: `EMBER_CRIU` (a binary, a wrapper, or an unpacked Debian prefix), else the
prefix `tests/cluster/fetch-tools.sh criu` unpacks (~/.cache/ember/deb/criu/current, or under
$EMBER_CACHE), else `criu` on PATH. A prefix is run through its own ld-linux loader with
`--library-path`, because Debian sid's CRIU needs a newer glibc than the host has.

Flags, and why (see shared/design/components.md):
- `--tcp-established`: the engine's API server holds connections (keep-alive clients, probes);
- `--file-locks`: vLLM and torch take flock()s;
- `--link-remap`: vLLM keeps an unlinked semaphore in /dev/shm; without it the dump fails;
- `--shell-job` only when the tree's session or process group lives outside the tree, or it has a
  controlling terminal (a process started from a shell): the supervisor starts engines with setsid,
  so it is normally off;
- `--leave-running` when the engine keeps serving after the dump (a live checkpoint);
- `--network-lock METHOD` on dump and restore: with `--tcp-established`, CRIU locks every TCP
  connection of the tree while it is frozen, by default with the `iptables` binary, which many
  images lack (vLLM on a GPU keeps a loopback connection to its torch.distributed store: `sh: 1:
  iptables: not found`, `Failed to lock TCP connection`). `choose_network_lock` picks the method by
  what exists: iptables when the binary is on PATH, else nftables when this CRIU has it built in
  (`criu check --feature network_lock_nftables`), else `skip` with a warning (nothing outside the
  pod talks to the engine's frozen connections: the Service sends new requests elsewhere while a
  replica is being dumped). EMBER_CRIU_NETWORK_LOCK or the supervisor's config overrides it.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, cast, get_args

log = logging.getLogger("ember.checkpoint")

MIN_VERSION = (4, 2)
NetworkLock = Literal["iptables", "nftables", "skip"]
NETWORK_LOCKS: tuple[str, ...] = (*get_args(NetworkLock), "auto")
COMMON_FLAGS = ("--tcp-established", "--file-locks", "--link-remap")
_VERSION_RE = re.compile(r"Version:\s*(\d+)\.(\d+)(?:\.(\d+))?")
_FETCH_HINT = "run `bash tests/cluster/fetch-tools.sh criu` or set EMBER_CRIU"


class CriuNotFound(RuntimeError):
    pass


class CriuTooOld(RuntimeError):
    pass


class BadNetworkLock(ValueError):
    pass


class CriuFailed(RuntimeError):
    def __init__(self, action: str, returncode: int, log_tail: str) -> None:
        super().__init__(f"criu {action} failed (exit {returncode}):\n{log_tail}")
        self.action = action
        self.returncode = returncode
        self.log_tail = log_tail


@dataclass(frozen=True)
class Completed:
    returncode: int
    stdout: str
    stderr: str


class Runner(Protocol):
    def __call__(self, argv: Sequence[str], timeout_s: float) -> Completed: ...


def subprocess_runner(argv: Sequence[str], timeout_s: float) -> Completed:
    # stdin closed: CRIU must not inherit a terminal it would then try to dump or restore.
    p = subprocess.run(
        list(argv), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout_s, check=False
    )
    return Completed(p.returncode, p.stdout, p.stderr)


# ---------------------------------------------------------------- locating (pure given env + fs)


def prefix_argv(prefix: Path) -> list[str]:
    libdir = prefix / "usr/lib/x86_64-linux-gnu"
    return [
        str(libdir / "ld-linux-x86-64.so.2"),
        "--library-path",
        str(libdir),
        str(prefix / "usr/sbin/criu"),
    ]


def _is_prefix(path: Path) -> bool:
    return (path / "usr/sbin/criu").is_file() and (
        path / "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
    ).exists()


def locate(env: Mapping[str, str], home: Path) -> list[str]:
    """The argv prefix that runs CRIU; raises CriuNotFound saying where it looked."""
    explicit = env.get("EMBER_CRIU")
    if explicit:
        path = Path(explicit)
        if path.is_dir() and _is_prefix(path):
            return prefix_argv(path)
        if path.is_file() and os.access(path, os.X_OK):
            return [str(path)]
        raise CriuNotFound(f"EMBER_CRIU={explicit} is neither an executable nor an unpacked criu prefix")
    cache = Path(env.get("EMBER_CACHE") or home / ".cache/ember")
    prefix = cache / "deb/criu/current"
    if _is_prefix(prefix):
        return prefix_argv(prefix.resolve())
    on_path = shutil.which("criu", path=env.get("PATH"))
    if on_path:
        return [on_path]
    raise CriuNotFound(f"CRIU not found (EMBER_CRIU unset, no {prefix}, no criu on PATH): {_FETCH_HINT}")


def parse_version(text: str) -> tuple[int, int, int]:
    m = _VERSION_RE.search(text)
    if not m:
        raise CriuNotFound(f"cannot read a version from `criu --version` output: {text.strip()[:200]!r}")
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def check_version(version: tuple[int, int, int]) -> None:
    if version[:2] < MIN_VERSION:
        have = ".".join(map(str, version))
        raise CriuTooOld(
            f"CRIU {have} is too old: 4.2+ is required (older ones cannot dump a TCP listening socket "
            f"on current kernels, and 3.x fails on the [vvar_vclock] mapping); {_FETCH_HINT}"
        )


def parse_network_lock(value: str) -> NetworkLock | Literal["auto"]:
    if value not in NETWORK_LOCKS:
        raise BadNetworkLock(
            f"invalid CRIU network lock {value!r}: use one of {', '.join(NETWORK_LOCKS)} "
            "(EMBER_CRIU_NETWORK_LOCK or the supervisor's criu_network_lock)"
        )
    return cast("NetworkLock | Literal['auto']", value)


def choose_network_lock(
    requested: str, *, has_iptables: bool, criu_has_nftables: Callable[[], bool]
) -> tuple[NetworkLock, str | None]:
    """The method to pass as --network-lock, and a warning when connections go unlocked (pure but
    for the nftables probe, called only when it decides)."""
    wanted = parse_network_lock(requested)
    if wanted != "auto":
        return wanted, None
    if has_iptables:
        return "iptables", None
    if criu_has_nftables():
        return "nftables", None
    return "skip", (
        "neither the iptables binary nor CRIU's nftables support is here: --network-lock skip, so the "
        "engine's TCP connections are not locked while it is frozen (a peer that sends meanwhile can "
        "desynchronise a connection the restored engine then drops); install iptables to lock them"
    )


# ---------------------------------------------------------------- argv builders (pure)


def dump_argv(
    criu: Sequence[str],
    pid: int,
    images: Path,
    log_file: Path,
    *,
    shell_job: bool,
    leave_running: bool,
    action_script: str | None = None,
    network_lock: NetworkLock = "iptables",
) -> list[str]:
    argv = [*criu, "dump", "-t", str(pid), "-D", str(images), "-o", str(log_file), "-v4", *COMMON_FLAGS]
    argv += ["--network-lock", network_lock]
    if shell_job:
        argv.append("--shell-job")
    if leave_running:
        argv.append("--leave-running")
    if action_script:  # an executable CRIU runs at each stage, $CRTOOLS_SCRIPT_ACTION naming it
        argv += ["--action-script", action_script]
    return argv


def restore_argv(
    criu: Sequence[str],
    images: Path,
    log_file: Path,
    pidfile: Path,
    *,
    shell_job: bool,
    network_lock: NetworkLock = "iptables",
    leave_stopped: bool = False,
) -> list[str]:
    argv = [*criu, "restore", "-D", str(images), "-o", str(log_file), "-v4", "-d", "--pidfile", str(pidfile)]
    if leave_stopped:  # every task stopped: the caller gives GPU state back first (resume_tree)
        argv.append("--leave-stopped")
    # --tcp-close: connections are restored closed. A replica's clients (kubelet probes, Prometheus'
    # keep-alive scrapes, the Service's callers) connect to the pod's address, which a canary's scratch
    # namespace and any other pod lack: restoring them open fails ("Can't bind inet socket back", seen in
    # the kind e2e test). Closed, their clients reconnect; listening sockets are restored as they were.
    argv += [*COMMON_FLAGS, "--tcp-close", "--network-lock", network_lock]
    if shell_job:
        argv.append("--shell-job")
    return argv


@dataclass(frozen=True)
class ProcStat:
    pid: int
    pgrp: int
    session: int
    tty_nr: int


def parse_proc_stat(text: str) -> ProcStat:
    # comm (field 2) may hold spaces and parentheses: split after its last ')'.
    head, _, rest = text.rpartition(")")
    pid = int(head.split("(", 1)[0])
    fields = rest.split()
    return ProcStat(pid=pid, pgrp=int(fields[2]), session=int(fields[3]), tty_nr=int(fields[4]))


def needs_shell_job(root: ProcStat, tree_pids: set[int]) -> bool:
    """CRIU refuses a tree whose session or group leader is outside it, or that has a terminal."""
    return root.tty_nr != 0 or root.session not in tree_pids or root.pgrp not in tree_pids


def process_tree(pid: int, proc: Path = Path("/proc")) -> set[int]:
    seen, todo = set(), [pid]
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        for children in (proc / str(p) / "task").glob("*/children"):
            try:
                todo += [int(c) for c in children.read_text().split()]
            except OSError:
                continue  # the thread exited while we looked
    return seen


def tree_depths(pid: int, proc: Path = Path("/proc")) -> dict[int, int]:
    """Every process of the tree under `pid` with its depth (the root 0)."""
    depth, todo = {pid: 0}, [pid]
    while todo:
        p = todo.pop()
        for children in (proc / str(p) / "task").glob("*/children"):
            try:
                kids = [int(c) for c in children.read_text().split()]
            except OSError:
                continue
            for c in kids:
                if c not in depth:
                    depth[c] = depth[p] + 1
                    todo.append(c)
    return depth


def log_tail(log_file: Path, lines: int = 25) -> str:
    try:
        text = log_file.read_text(errors="replace").splitlines()
    except OSError:
        return f"(no log at {log_file})"
    # CRIU prefixes each line with a timestamp (and a pid in restored tasks): "(00.055405) Error (...)"
    errors = [line for line in text if "Error (" in line]
    return "\n".join(([*errors[-5:], "..."] if errors else []) + text[-lines:])


# ---------------------------------------------------------------- the tool


@dataclass
class Criu:
    argv: list[str]
    version: tuple[int, int, int]
    runner: Runner = subprocess_runner
    network_lock: NetworkLock = "iptables"

    @classmethod
    def find(
        cls,
        env: Mapping[str, str] | None = None,
        runner: Runner = subprocess_runner,
        network_lock: str | None = None,
    ) -> Criu:
        """CRIU located and version-checked, with its --network-lock method: `network_lock` if given,
        else EMBER_CRIU_NETWORK_LOCK, else auto (see `choose_network_lock`). Raises CriuNotFound,
        CriuTooOld, BadNetworkLock."""
        env = os.environ if env is None else env
        requested = network_lock or env.get("EMBER_CRIU_NETWORK_LOCK") or "auto"
        parse_network_lock(requested)  # a bad value fails before anything runs
        argv = locate(env, Path.home())
        done = runner([*argv, "--version"], 30.0)
        if done.returncode != 0:
            raise CriuNotFound(f"{' '.join(argv)} --version failed: {done.stderr.strip()[:300]}")
        version = parse_version(done.stdout + done.stderr)
        check_version(version)
        lock, warning = choose_network_lock(
            requested,
            has_iptables=shutil.which("iptables", path=env.get("PATH")) is not None,
            criu_has_nftables=lambda: (
                runner([*argv, "check", "--feature", "network_lock_nftables"], 30.0).returncode == 0
            ),
        )
        if warning:
            log.warning(warning)
        return cls(argv=argv, version=version, runner=runner, network_lock=lock)

    @property
    def version_str(self) -> str:
        return ".".join(map(str, self.version))

    def check(self) -> Completed:
        return self.runner([*self.argv, "check"], 60.0)

    def dump(
        self,
        pid: int,
        images: Path,
        log_file: Path,
        *,
        shell_job: bool,
        leave_running: bool,
        timeout_s: float,
        action_script: str | None = None,
    ) -> float:
        """Dump the tree rooted at pid into images; returns the seconds it took."""
        images, log_file = images.resolve(), log_file.resolve()  # CRIU reads -o relative to -D
        images.mkdir(parents=True, exist_ok=True)
        log_file.parent.mkdir(parents=True, exist_ok=True)
        argv = dump_argv(
            self.argv,
            pid,
            images,
            log_file,
            shell_job=shell_job,
            leave_running=leave_running,
            action_script=action_script,
            network_lock=self.network_lock,
        )
        t0 = time.monotonic()
        done = self.runner(argv, timeout_s)
        if done.returncode != 0:
            raise CriuFailed("dump", done.returncode, log_tail(log_file) + done.stderr[-2000:])
        return time.monotonic() - t0

    def restore(
        self,
        images: Path,
        log_file: Path,
        pidfile: Path,
        *,
        shell_job: bool,
        timeout_s: float,
        leave_stopped: bool = False,
    ) -> int:
        """Restore detached; returns the restored root's pid (as CRIU wrote it to pidfile).
        `leave_stopped`: every restored task is left stopped (SIGCONT continues it)."""
        images, log_file, pidfile = images.resolve(), log_file.resolve(), pidfile.resolve()
        log_file.parent.mkdir(parents=True, exist_ok=True)
        pidfile.unlink(missing_ok=True)
        argv = restore_argv(
            self.argv,
            images,
            log_file,
            pidfile,
            shell_job=shell_job,
            network_lock=self.network_lock,
            leave_stopped=leave_stopped,
        )
        done = self.runner(argv, timeout_s)
        if done.returncode != 0:
            raise CriuFailed("restore", done.returncode, log_tail(log_file) + done.stderr[-2000:])
        return int(pidfile.read_text().strip())
