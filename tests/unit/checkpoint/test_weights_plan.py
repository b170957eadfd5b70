"""The weight loader's planning half (no torch): safetensors headers, and which file tensor goes where."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from ember_checkpoint import weights


def write_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    """The safetensors layout, written by hand: u64 header size, JSON header, the raw bytes."""
    names = {np.dtype("float32"): "F32", np.dtype("float16"): "F16"}
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    data = b""
    for name, a in tensors.items():
        raw = np.ascontiguousarray(a).tobytes()
        header[name] = {
            "dtype": names[a.dtype],
            "shape": list(a.shape),
            "data_offsets": [len(data), len(data) + len(raw)],
        }
        data += raw
    h = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(h)) + h + data)


def test_read_header_gives_each_tensors_absolute_byte_range(tmp_path: Path) -> None:
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.ones(4, dtype=np.float16)
    f = tmp_path / "m.safetensors"
    write_safetensors(f, {"a": a, "b": b})
    got = {t.name: t for t in weights.read_header(f)}
    assert set(got) == {"a", "b"}
    raw = f.read_bytes()
    assert got["a"].shape == (2, 3) and got["a"].dtype == "float32"
    assert raw[got["a"].start : got["a"].end] == a.tobytes()
    assert raw[got["b"].start : got["b"].end] == b.tobytes()


def test_read_header_refuses_a_tensor_outside_the_file(tmp_path: Path) -> None:
    f = tmp_path / "bad.safetensors"
    h = json.dumps({"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
    f.write_bytes(struct.pack("<Q", len(h)) + h + b"\0" * 8)  # 8 of the 16 bytes
    with pytest.raises(ValueError, match="outside the file"):
        weights.read_header(f)


def _t(name: str, shape: tuple[int, ...], dtype: str = "bfloat16", start: int = 0) -> weights.FileTensor:
    n = 1
    for d in shape:
        n *= d
    return weights.FileTensor(Path("/m.safetensors"), name, dtype, shape, start, start + n * 2)


LLAMA_PACKED = {"qkv_proj": ["q_proj", "k_proj", "v_proj"], "gate_up_proj": ["gate_proj", "up_proj"]}


def test_plan_copies_same_named_tensors_whole_and_packed_parts_one_after_another() -> None:
    pre = "model.layers.0."
    files = [
        _t("model.embed_tokens.weight", (10, 4)),
        _t(pre + "self_attn.q_proj.weight", (4, 4)),
        _t(pre + "self_attn.k_proj.weight", (2, 4)),
        _t(pre + "self_attn.v_proj.weight", (2, 4)),
        _t(pre + "mlp.up_proj.weight", (6, 4)),  # file order differs from the packed order
        _t(pre + "mlp.gate_proj.weight", (6, 4)),
    ]
    params = {
        "model.embed_tokens.weight": ((10, 4), "bfloat16"),
        pre + "self_attn.qkv_proj.weight": ((8, 4), "bfloat16"),
        pre + "mlp.gate_up_proj.weight": ((12, 4), "bfloat16"),
    }
    p = weights.plan(files, params, packed=LLAMA_PACKED)
    assert p.leftovers == []
    where = {c.src.name: (c.target, c.offset) for c in p.copies}
    row = 4 * 2  # 4 bf16 columns
    assert where == {
        "model.embed_tokens.weight": ("model.embed_tokens.weight", 0),
        pre + "self_attn.q_proj.weight": (pre + "self_attn.qkv_proj.weight", 0),
        pre + "self_attn.k_proj.weight": (pre + "self_attn.qkv_proj.weight", 4 * row),
        pre + "self_attn.v_proj.weight": (pre + "self_attn.qkv_proj.weight", 6 * row),
        pre + "mlp.gate_proj.weight": (pre + "mlp.gate_up_proj.weight", 0),
        pre + "mlp.up_proj.weight": (pre + "mlp.gate_up_proj.weight", 6 * row),
    }


def test_plan_hands_what_it_cannot_map_one_to_one_to_the_models_loader() -> None:
    pre = "model.layers.0.self_attn."
    files = [
        _t("lm_head.weight", (10, 4)),  # parameter in another dtype
        _t(pre + "q_proj.weight", (4, 4)),  # packed, but the rows do not add up (a TP shard)
        _t(pre + "k_proj.weight", (2, 4)),
        _t(pre + "v_proj.weight", (2, 4)),
        _t("rotary.inv_freq", (2,)),  # no such parameter
        _t("dropped", (2,)),  # the mapper drops it
    ]
    params = {"lm_head.weight": ((10, 4), "float32"), pre + "qkv_proj.weight": ((4, 4), "bfloat16")}
    p = weights.plan(files, params, rename=lambda n: None if n == "dropped" else n, packed=LLAMA_PACKED)
    assert p.copies == []
    assert {t.name for t in p.leftovers} == {t.name for t in files}
    assert "float32" in p.reasons["lm_head.weight"]
    assert "drops" in p.reasons["dropped"]


def test_plan_without_packed_mapping_leaves_packed_parts_to_the_model() -> None:
    files = [_t("a.q_proj.w", (2, 2)), _t("a.k_proj.w", (2, 2)), _t("a.v_proj.w", (2, 2))]
    p = weights.plan(files, {"a.qkv_proj.w": ((6, 2), "bfloat16")}, packed=None)
    assert p.copies == [] and len(p.leftovers) == 3


def test_plan_applies_the_models_name_mapping() -> None:
    files = [_t("transformer.wte.weight", (3, 2))]
    p = weights.plan(
        files,
        {"model.embed_tokens.weight": ((3, 2), "bfloat16")},
        rename=lambda n: "model.embed_tokens.weight",
    )
    assert [(c.src.name, c.target) for c in p.copies] == [
        ("transformer.wte.weight", "model.embed_tokens.weight")
    ]


def test_chunks_cut_each_copy_into_buffer_sized_pieces_that_cover_it_exactly() -> None:
    c = weights.Copy(_t("x", (10, 10), start=100), "p", 40)  # 200 bytes
    got = weights.chunks([c], buffer_bytes=64)
    assert [(k.file_offset, k.length, k.target_offset) for k in got] == [
        (100, 64, 40),
        (164, 64, 104),
        (228, 64, 168),
        (292, 8, 232),
    ]


def test_a_mapping_that_sends_several_parts_to_one_name_still_copies_every_part() -> None:
    """vLLM 0.25.1's Llama (on the GPU) maps q/k/v_proj to qkv_proj: by mapped name only the last part
    survived, the canary failed. Parts are grouped by their file names."""
    pre = "model.layers.0."
    files = [
        _t(pre + "self_attn.q_proj.weight", (4, 4)),
        _t(pre + "self_attn.k_proj.weight", (2, 4)),
        _t(pre + "self_attn.v_proj.weight", (2, 4)),
        _t(pre + "mlp.gate_proj.weight", (6, 4)),
        _t(pre + "mlp.up_proj.weight", (6, 4)),
    ]
    params = {
        pre + "self_attn.qkv_proj.weight": ((8, 4), "bfloat16"),
        pre + "mlp.gate_up_proj.weight": ((12, 4), "bfloat16"),
    }

    def to_packed(n: str) -> str:
        for a, b in ((".q_proj.", ".qkv_proj."), (".k_proj.", ".qkv_proj."), (".v_proj.", ".qkv_proj.")):
            n = n.replace(a, b)
        return n.replace(".gate_proj.", ".gate_up_proj.").replace(".up_proj.", ".gate_up_proj.")

    p = weights.plan(files, params, rename=to_packed, packed=LLAMA_PACKED)
    assert p.leftovers == []
    assert sorted(c.src.name for c in p.copies) == sorted(t.name for t in files)
    row = 8
    assert {c.src.name: c.offset for c in p.copies}[pre + "self_attn.v_proj.weight"] == 6 * row
    assert {c.src.name: c.offset for c in p.copies}[pre + "mlp.up_proj.weight"] == 6 * row


def test_every_file_tensor_is_either_copied_or_left_to_the_model() -> None:
    files = [_t("a.x", (2, 2)), _t("a.y", (2, 2)), _t("b.q_proj.w", (2, 2))]
    p = weights.plan(files, {"same": ((2, 2), "bfloat16")}, rename=lambda n: "same", packed=LLAMA_PACKED)
    assert sorted(t.name for t in p.leftovers) == ["a.x", "a.y", "b.q_proj.w"]
    assert "3 file tensors map to same" in p.reasons["a.x"]
