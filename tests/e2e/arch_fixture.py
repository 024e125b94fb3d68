#!/usr/bin/python3
"""arch_fixture.py — a tiny random-weight Hugging Face checkpoint of one architecture, for
tests/e2e/arch_oracle.sh:

    arch_fixture.py ARCH OUT_DIR        ARCH: llama3 | qwen2 | qwen3 | qwen3moe

config.json uses Hugging Face's field names and class names (LlamaForCausalLM with Llama
3.1's rope_scaling "llama3" and tied embeddings, Qwen2ForCausalLM with q/k/v biases,
Qwen3ForCausalLM with q_norm/k_norm and an explicit head_dim, Qwen3MoeForCausalLM with
stacked experts and moe_intermediate_size); model.safetensors holds bf16 weights; the
SentencePiece tokenizer is copied from samples/tiny-mixtral (vocabulary 4096, so the sample
texts tokenize). Weights are seeded and scaled so that attention and logits are peaked: a
mistake in RoPE pairing, norms or routing changes the perplexity by far more than the
tolerance. Only numpy is needed. This file is smelt's own.
"""

import json
import os
import shutil
import struct
import sys

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SAMPLE = os.path.join(ROOT, "samples", "tiny-mixtral")

H, F, L, NH, NKV, V = 128, 256, 2, 4, 2, 4096

CONFIGS = {
    "llama3": {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "head_dim": 32,
        "rope_theta": 500000.0, "tie_word_embeddings": True, "rms_norm_eps": 1e-05,
        "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                         "original_max_position_embeddings": 8192, "rope_type": "llama3"},
        "attention_bias": False, "mlp_bias": False,
    },
    "qwen2": {
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "rope_theta": 1000000.0,
        "tie_word_embeddings": False, "rms_norm_eps": 1e-06, "use_sliding_window": False,
        "sliding_window": 2048, "max_window_layers": L,
    },
    "qwen3": {
        "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "head_dim": 48,
        "rope_theta": 1000000.0, "tie_word_embeddings": True, "rms_norm_eps": 1e-06,
        "attention_bias": False, "use_sliding_window": False, "max_window_layers": L,
    },
    "qwen3moe": {
        "architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "head_dim": 32,
        "rope_theta": 1000000.0, "tie_word_embeddings": False, "rms_norm_eps": 1e-06,
        "moe_intermediate_size": 64, "num_experts": 8, "num_experts_per_tok": 2,
        "norm_topk_prob": True, "decoder_sparse_step": 1, "mlp_only_layers": [],
        "attention_bias": False, "output_router_logits": False,
    },
}


def bf16_bytes(a):
    """float32 array → bf16 bytes, round to nearest even (as torch's .to(torch.bfloat16))."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype("<u2").tobytes()


def write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        a = tensors[name]
        b = bf16_bytes(a)
        header[name] = {"dtype": "BF16", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in CONFIGS:
        sys.exit("usage: arch_fixture.py llama3|qwen2|qwen3|qwen3moe OUT_DIR")
    arch, out = sys.argv[1], sys.argv[2]
    extra = CONFIGS[arch]
    cfg = {
        "hidden_size": H, "intermediate_size": F, "num_hidden_layers": L,
        "num_attention_heads": NH, "num_key_value_heads": NKV, "vocab_size": V,
        "max_position_embeddings": 2048, "hidden_act": "silu", "bos_token_id": 1,
        "eos_token_id": 2, "torch_dtype": "bfloat16", "use_cache": True,
        "initializer_range": 0.02, "transformers_version": "4.51.0",
    }
    cfg.update(extra)
    hd = cfg.get("head_dim", H // NH)
    rng = np.random.default_rng(1234 + sorted(CONFIGS).index(arch))

    def rnd(*shape, std):
        return (rng.standard_normal(shape) * std).astype(np.float32)

    def norm(n):
        return (1.0 + rng.standard_normal(n) * 0.2).astype(np.float32)

    t = {"model.embed_tokens.weight": rnd(V, H, std=0.15), "model.norm.weight": norm(H)}
    if not cfg["tie_word_embeddings"]:
        t["lm_head.weight"] = rnd(V, H, std=0.15)
    for i in range(L):
        p = f"model.layers.{i}."
        t[p + "input_layernorm.weight"] = norm(H)
        t[p + "post_attention_layernorm.weight"] = norm(H)
        t[p + "self_attn.q_proj.weight"] = rnd(NH * hd, H, std=0.25)
        t[p + "self_attn.k_proj.weight"] = rnd(NKV * hd, H, std=0.25)
        t[p + "self_attn.v_proj.weight"] = rnd(NKV * hd, H, std=0.15)
        t[p + "self_attn.o_proj.weight"] = rnd(H, NH * hd, std=0.15)
        if arch == "qwen2":
            t[p + "self_attn.q_proj.bias"] = rnd(NH * hd, std=0.5)
            t[p + "self_attn.k_proj.bias"] = rnd(NKV * hd, std=0.5)
            t[p + "self_attn.v_proj.bias"] = rnd(NKV * hd, std=0.2)
        if arch in ("qwen3", "qwen3moe"):
            t[p + "self_attn.q_norm.weight"] = norm(hd) * 2
            t[p + "self_attn.k_norm.weight"] = norm(hd) * 2
        if arch == "qwen3moe":
            X, FX = cfg["num_experts"], cfg["moe_intermediate_size"]
            t[p + "mlp.gate.weight"] = rnd(X, H, std=0.3)
            for e in range(X):
                q = f"{p}mlp.experts.{e}."
                t[q + "gate_proj.weight"] = rnd(FX, H, std=0.15)
                t[q + "up_proj.weight"] = rnd(FX, H, std=0.15)
                t[q + "down_proj.weight"] = rnd(H, FX, std=0.15)
        else:
            t[p + "mlp.gate_proj.weight"] = rnd(F, H, std=0.15)
            t[p + "mlp.up_proj.weight"] = rnd(F, H, std=0.15)
            t[p + "mlp.down_proj.weight"] = rnd(H, F, std=0.15)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    write_safetensors(os.path.join(out, "model.safetensors"), t)
    for name in ("tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(os.path.join(SAMPLE, name), os.path.join(out, name))


if __name__ == "__main__":
    main()
