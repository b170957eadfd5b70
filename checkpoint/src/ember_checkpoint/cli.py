"""`ember-checkpoint dump | restore | inspect | verify | gc`.

The identity is given as a JSON file (`--identity`) holding the fields of `manifest.Identity` except
`criu_version`, `cuda_driver_version` and `gpu_model`, which are detected on this machine: a restore
elsewhere is compared against what that machine really has, not against what a file claims.
Exit codes: 0 done, 2 usage, 3 restore refused (the reason is printed), 1 anything else.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

from ember_checkpoint import cuda, lifecycle
from ember_checkpoint.criu import BadNetworkLock, Criu, CriuFailed, CriuNotFound
from ember_checkpoint.errors import DumpFailed, RestoreRefused
from ember_checkpoint.manifest import Canary, Identity
from ember_checkpoint.storage import CheckpointNotFound, LocalDirStorage
from ember_checkpoint.verify import verify


def local_identity(fields: dict[str, object], criu: Criu, gpu: cuda.CudaDriver | None) -> Identity:
    info = gpu.info() if gpu else None
    return Identity.model_validate(
        {
            **fields,
            "criu_version": criu.version_str,
            "cuda_driver_version": info.driver_version if info else None,
            "gpu_model": info.gpu_model if info else None,
        }
    )


IDENTITY_HELP = "JSON file of the identity: manifest.Identity without what is detected here"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ember-checkpoint",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="`ember-checkpoint --storage DIR COMMAND --help`: a command's options",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {version('ember-checkpoint')}")
    p.add_argument(
        "--storage", type=Path, required=True, help="checkpoint directory (local or a mounted PVC)"
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dump", help="checkpoint a running process tree")
    d.add_argument("--pid", type=int, required=True, help="root of the process tree (the engine)")
    d.add_argument("--id", default=None, help="checkpoint id (default: ckpt-<UTC time>)")
    d.add_argument("--identity", type=Path, required=True, help=IDENTITY_HELP)
    d.add_argument(
        "--engine-port",
        type=int,
        default=None,
        help="engine HTTP port on 127.0.0.1: the canary runs there; a restore waits on it",
    )
    d.add_argument(
        "--health-path",
        default="/health",
        help="path a restore polls until the engine answers (default: %(default)s)",
    )
    d.add_argument(
        "--canary", type=Path, default=None, help="JSON file of a manifest.Canary (without output)"
    )
    d.add_argument("--leave-running", action="store_true", help="keep the tree running after the dump")
    r = sub.add_parser("restore", help="restore a checkpoint (refused on any mismatch)")
    r.add_argument("id", help="checkpoint id")
    r.add_argument("--identity", type=Path, required=True, help=IDENTITY_HELP)
    r.add_argument("--allow-unverified", action="store_true", help="restore one never canary-verified")
    r.add_argument(
        "--health-timeout-s",
        type=float,
        default=300.0,
        help="wait this long for the restored engine to answer (default: %(default)s)",
    )
    sub.add_parser("inspect", help="print manifests").add_argument(
        "id", nargs="?", help="checkpoint id (default: all)"
    )
    v = sub.add_parser("verify", help="canary restore in a scratch namespace; mark verified if it matches")
    v.add_argument("id", help="checkpoint id")
    v.add_argument(
        "--timeout-s", type=float, default=600.0, help="give up after this long (default: %(default)s)"
    )
    g = sub.add_parser("gc", help="keep the newest N verified checkpoints per identity")
    g.add_argument("--keep", type=int, default=2, help="N (default: %(default)s)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    storage = LocalDirStorage(args.storage)
    try:
        return _run(args, storage)
    except RestoreRefused as e:
        print(json.dumps({"refused": str(e.reason), "detail": e.detail}), file=sys.stderr)
        return 3
    except BadNetworkLock as e:
        print(json.dumps({"error": "usage", "detail": str(e)}), file=sys.stderr)
        return 2
    except (CheckpointNotFound, CriuNotFound, CriuFailed, DumpFailed) as e:
        print(json.dumps({"error": type(e).__name__, "detail": str(e)}), file=sys.stderr)
        return 1


def _run(args: argparse.Namespace, storage: LocalDirStorage) -> int:
    if args.cmd == "inspect":
        ids = [args.id] if args.id else storage.list()
        print(json.dumps([storage.read_manifest(i).model_dump(mode="json") for i in ids], indent=2))
        return 0
    if args.cmd == "gc":
        print(json.dumps({"deleted": lifecycle.gc(storage, args.keep)}))
        return 0
    criu, gpu = Criu.find(), cuda.load()
    if args.cmd == "verify":
        m = verify(args.id, storage, criu, timeout_s=args.timeout_s)
        print(m.verification.model_dump_json())
        return 0 if m.verified else 1
    identity = local_identity(json.loads(args.identity.read_text()), criu, gpu)
    if args.cmd == "dump":
        canary = Canary.model_validate_json(args.canary.read_text()) if args.canary else None
        req = lifecycle.DumpRequest(
            pid=args.pid,
            checkpoint_id=args.id or datetime.now(UTC).strftime("ckpt-%Y%m%dT%H%M%SZ"),
            identity=identity,
            engine_port=args.engine_port,
            health_path=args.health_path,
            canary=canary,
            leave_running=args.leave_running,
        )
        print(lifecycle.dump(req, storage, criu, gpu).to_json())
        return 0
    res = lifecycle.restore(
        args.id,
        storage,
        identity,
        criu_finder=lambda: criu,
        gpu=gpu,
        require_verified=not args.allow_unverified,
        health_timeout_s=args.health_timeout_s,
    )
    print(json.dumps({"pid": res.pid, "phases_s": res.phases_s}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
