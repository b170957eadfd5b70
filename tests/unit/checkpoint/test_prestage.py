"""`ember-supervisor prestage` (ember_supervisor.prestage) on real files."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from ember_checkpoint.manifest import Identity, Manifest, Sizes, Timings, Verification
from ember_checkpoint.storage import LocalDirStorage, write_manifest_file
from ember_supervisor import main as supervisor_main
from ember_supervisor import prestage

MODEL = "hf://org/tiny"
REV = "abc123"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def publish(storage: LocalDirStorage, cid: str, digest: str, minute: int, verified: bool, size: int) -> None:
    ident = Identity(
        model_digest=digest, engine_version="e", criu_version="4.2.1", dtype="f", max_model_len=1
    )
    staging = storage.staging(cid)
    (staging / "images").mkdir()
    (staging / "images/pages-1.img").write_bytes(b"p" * size)
    write_manifest_file(
        staging,
        Manifest(
            checkpoint_id=cid,
            identity=ident,
            identity_hash=ident.hash(),
            created=T0 + timedelta(minutes=minute),
            sizes=Sizes(image_bytes=size, gpu_state_bytes=0),
            timings=Timings(),
            content_checksum="sha256:x",
            verification=Verification(verified=verified),
        ),
    )
    storage.publish(staging, cid)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, object]:
    assert prestage.main(list(argv)) == 0
    return dict(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))


def test_a_local_model_directory_is_read_whole(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "model"
    (model / "sub").mkdir(parents=True)
    (model / "model.safetensors").write_bytes(b"w" * (20 << 20))  # more than one read chunk
    (model / "sub/tokenizer.json").write_bytes(b"t" * 100)
    out = run(capsys, "--model", f"file://{model}", "--revision", "main", "--cache", str(tmp_path / "c"))
    [staged] = out["staged"]  # type: ignore[misc]
    assert staged["files"] == 2 and staged["bytes"] == (20 << 20) + 100 and staged["skipped"] is None
    assert out["bytes"] == (20 << 20) + 100 and out["notes"] == []
    assert (tmp_path / "c").is_dir()


def test_the_newest_verified_checkpoint_of_this_model_is_staged(tmp_path: Path) -> None:
    storage = LocalDirStorage(tmp_path / "ck")
    digest = f"{MODEL}@{REV}"
    publish(storage, "old", digest, 1, True, 10)
    publish(storage, "new", digest, 2, True, 30)
    publish(storage, "newer-unverified", digest, 3, False, 50)
    publish(storage, "other-model", "hf://org/other@abc123", 4, True, 70)
    args = prestage._parser().parse_args(
        [
            "--model",
            MODEL,
            "--revision",
            REV,
            "--cache",
            str(tmp_path / "c"),
            "--checkpoints",
            str(storage.root),
        ]
    )

    def offline(repo: str, rev: str, cache: Path) -> Path:
        raise OSError("offline")

    report = prestage.run(args, download=offline)
    model, ck = report["staged"]  # type: ignore[misc]
    assert model["skipped"].startswith("cannot download hf://org/tiny@abc123: OSError: offline")
    assert ck["path"] == str(storage.root / "new") and ck["files"] == 2 and ck["skipped"] is None
    assert ck["bytes"] == 30 + (storage.root / "new/manifest.json").stat().st_size


def test_an_hf_model_is_downloaded_into_the_cache_then_read(tmp_path: Path) -> None:
    calls = []

    def download(repo: str, rev: str, cache: Path) -> Path:
        calls.append((repo, rev, cache))
        snap = cache / "snap"
        snap.mkdir(parents=True)
        (snap / "w").write_bytes(b"x" * 5)
        return snap

    args = prestage._parser().parse_args(["--model", MODEL, "--revision", REV, "--cache", str(tmp_path)])
    report = prestage.run(args, download=download)
    assert calls == [("org/tiny", REV, tmp_path / "hf")]
    assert report["bytes"] == 5


def test_nothing_to_stage_exits_0_and_says_why(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = run(
        capsys,
        *("--model", "pvc://models/llama", "--revision", "main", "--cache", str(tmp_path / "c")),
        *("--checkpoints", str(tmp_path / "none")),
    )
    model, ck = out["staged"]  # type: ignore[misc]
    assert "not in the placeholder" in model["skipped"]
    assert ck["skipped"] == f"{tmp_path / 'none'} is not a directory"
    assert out["notes"] == ["nothing was staged"]


def test_more_than_the_memory_limit_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "memory.max").write_text("10\n")
    monkeypatch.setattr(prestage, "CGROUP_MEMORY_MAX", tmp_path / "memory.max")
    (tmp_path / "m").write_bytes(b"x" * 11)
    args = prestage._parser().parse_args(
        ["--model", str(tmp_path / "m"), "--revision", "r", "--cache", str(tmp_path)]
    )
    report = prestage.run(args)
    assert report["memory_limit_bytes"] == 10
    assert "evicted" in str(report["notes"])


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--model", "s3://b/m", "--revision", "r", "--cache", "/c"], "unknown scheme 's3'"),
        (["--model", "models/m", "--revision", "r", "--cache", "/c"], "a path must be absolute"),
        (["--model", "/m", "--revision", "r", "--cache", "rel"], "--cache must be an absolute path"),
        (["--model", "/m", "--revision", "r"], "required: --cache"),
    ],
    ids=["scheme", "relative-model", "relative-cache", "missing-cache"],
)
def test_a_bad_invocation_exits_2_naming_the_argument(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as e:
        supervisor_main.main(["prestage", *argv])  # through the ember-supervisor entry point
    assert e.value.code == 2
    assert message in capsys.readouterr().err
