"""A Llama-3-8B-shaped model with random bf16 weights and a tokenizer trained here: no model hub.

Run on the GPU machine (weights are drawn on the GPU, then written as safetensors shards):
    python3 bench/build_model.py /tmp/ember-bench/model
The shape is Llama-3-8B's (32 layers, hidden 4096, 32 heads, 8 KV heads, MLP 14336, vocab 128256):
8.03e9 parameters, 16.06 GB in bf16. The tokenizer is a WordLevel model trained with `tokenizers` on a
synthetic corpus of the words t0 .. t128255, so every id the random model emits decodes to a word.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

VOCAB = 128256


def build_tokenizer(out: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    specials = ["<unk>", "<s>", "</s>"]
    trainer = trainers.WordLevelTrainer(vocab_size=VOCAB, special_tokens=specials, min_frequency=1)
    words = [f"t{i}" for i in range(VOCAB - len(specials))]
    tok.train_from_iterator((" ".join(words[i : i + 1000]) for i in range(0, len(words), 1000)), trainer)
    assert tok.get_vocab_size() == VOCAB, tok.get_vocab_size()
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "unk_token": "<unk>",
                "bos_token": "<s>",
                "eos_token": "</s>",
                "model_max_length": 8192,
                "clean_up_tokenization_spaces": False,
            }
        )
    )
    (out / "special_tokens_map.json").write_text(
        json.dumps({"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>"})
    )


def build_model(out: Path) -> dict:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        max_position_embeddings=8192,
        rope_theta=500000.0,
        rms_norm_eps=1e-5,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=False,
    )
    t0 = time.monotonic()
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg)
    torch.cuda.synchronize()
    t_init = time.monotonic() - t0
    n = sum(p.numel() for p in model.parameters())
    t0 = time.monotonic()
    model.save_pretrained(out, max_shard_size="5GB", safe_serialization=True)
    t_save = time.monotonic() - t0
    conf = json.loads((out / "config.json").read_text())
    conf["torch_dtype"] = conf["dtype"] = "bfloat16"
    (out / "config.json").write_text(json.dumps(conf, indent=1))
    return {"params": n, "bytes_bf16": 2 * n, "init_s": round(t_init, 2), "save_s": round(t_save, 2)}


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    if (out / ".complete").exists():
        print(json.loads((out / ".complete").read_text()))
        return
    build_tokenizer(out)
    info = build_model(out)
    info["files_bytes"] = sum(p.stat().st_size for p in out.glob("*.safetensors"))
    (out / ".complete").write_text(json.dumps(info))
    print(info)


if __name__ == "__main__":
    main()
