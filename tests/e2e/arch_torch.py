#!/usr/bin/python3
"""arch_torch.py — the PyTorch oracle for tests/e2e/arch_oracle: a plain re-implementation
of Hugging Face's Llama / Qwen2 / Qwen3 / Qwen3-MoE forward pass (fp32 compute from the
stored bf16 weights), run on an arch_fixture.py checkpoint.

    arch_torch.py MODEL_DIR ppl TEXT N_CTX N_CHUNKS     → the perplexity, llama-perplexity's way
    arch_torch.py MODEL_DIR experts TEXT N_CTX N_CHUNKS → per layer, tokens routed to each expert
                                                          (as JSON: [[count per expert] per layer])

Tokens as llama.cpp makes them: [BOS] + SentencePiece(text without one trailing newline),
chunk i = tokens[i·n : (i+1)·n] with its first token replaced by BOS; the perplexity scores
the second half of each chunk (samples/reference.json, "method"). This file is smelt's own.
"""

import json
import math
import struct
import sys

import numpy as np
import torch


def load(d):
    cfg = json.load(open(f"{d}/config.json"))
    b = open(f"{d}/model.safetensors", "rb").read()
    n = struct.unpack_from("<Q", b)[0]
    hdr = json.loads(b[8:8 + n])
    t = {}
    for name, v in hdr.items():
        if name == "__metadata__":
            continue
        o0, o1 = v["data_offsets"]
        u = np.frombuffer(b, dtype="<u2", count=(o1 - o0) // 2, offset=8 + n + o0).astype(np.uint32) << 16
        t[name] = torch.from_numpy(u.view(np.float32).reshape(v["shape"]).copy())
    return cfg, t


def rmsnorm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def inv_freq(cfg, hd):
    f = 1.0 / (cfg.get("rope_theta", 10000.0) ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    rs = cfg.get("rope_scaling") or {}
    if rs.get("rope_type") == "llama3":  # transformers' _compute_llama3_parameters
        factor, lo, hi = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
        old = rs["original_max_position_embeddings"]
        wl = 2 * math.pi / f
        g = torch.where(wl > old / lo, f / factor, f)
        smooth = (old / wl - lo) / (hi - lo)
        mid = (1 - smooth) * g / factor + smooth * g
        f = torch.where((wl >= old / hi) & (wl <= old / lo), mid, g)
    return f


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def forward(cfg, t, tokens, counts=None):
    H, nh, nkv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd, eps, T = cfg.get("head_dim", H // nh), cfg["rms_norm_eps"], len(tokens)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv_freq(cfg, hd)[None, :]
    cos = torch.cat((ang.cos(), ang.cos()), -1).float()[:, None, :]
    sin = torch.cat((ang.sin(), ang.sin()), -1).float()[:, None, :]
    mask = torch.full((T, T), float("-inf")).triu(1)
    x = t["model.embed_tokens.weight"][torch.tensor(tokens)]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = rmsnorm(x, t[p + "input_layernorm.weight"], eps)

        def proj(m, n):
            y = h @ t[p + f"self_attn.{m}_proj.weight"].T
            if p + f"self_attn.{m}_proj.bias" in t:
                y = y + t[p + f"self_attn.{m}_proj.bias"]
            return y.view(T, n, hd)

        q, k, v = proj("q", nh), proj("k", nkv), proj("v", nkv)
        if p + "self_attn.q_norm.weight" in t:
            q = rmsnorm(q, t[p + "self_attn.q_norm.weight"], eps)
            k = rmsnorm(k, t[p + "self_attn.k_norm.weight"], eps)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        rep = nh // nkv
        k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
        s = torch.einsum("qhd,khd->hqk", q, k) / math.sqrt(hd) + mask
        a = torch.einsum("hqk,khd->qhd", s.softmax(-1), v).reshape(T, nh * hd)
        x = x + a @ t[p + "self_attn.o_proj.weight"].T
        h = rmsnorm(x, t[p + "post_attention_layernorm.weight"], eps)

        def mlp(q_, y):
            g = y @ t[q_ + "gate_proj.weight"].T
            return (torch.nn.functional.silu(g) * (y @ t[q_ + "up_proj.weight"].T)) @ t[q_ + "down_proj.weight"].T

        if "num_experts" in cfg:
            pr = (h @ t[p + "mlp.gate.weight"].T).softmax(-1)
            w, sel = pr.topk(cfg["num_experts_per_tok"], dim=-1)
            if cfg.get("norm_topk_prob"):
                w = w / w.sum(-1, keepdim=True)
            out = torch.zeros_like(h)
            for e in range(cfg["num_experts"]):
                rows, slot = (sel == e).nonzero(as_tuple=True)
                if counts is not None:
                    counts[i][e] += len(rows)
                if len(rows):
                    out[rows] += w[rows, slot, None] * mlp(f"{p}mlp.experts.{e}.", h[rows])
            x = x + out
        else:
            x = x + mlp(p + "mlp.", h)
    x = rmsnorm(x, t["model.norm.weight"], eps)
    return x @ t.get("lm_head.weight", t["model.embed_tokens.weight"]).T


def main():
    d, what, text, n_ctx, n_chunks = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    import sentencepiece  # only here: forward() is imported without it (samples/make-tiny-bpe.py)

    cfg, t = load(d)
    sp = sentencepiece.SentencePieceProcessor(model_file=f"{d}/tokenizer.model")
    s = open(text, "rb").read().decode()
    if s.endswith("\n"):
        s = s[:-1]
    tokens = [1] + sp.encode(s)
    n_chunks = min(n_chunks, len(tokens) // n_ctx)
    counts = [[0] * cfg.get("num_experts", 0) for _ in range(cfg["num_hidden_layers"])]
    nll, cnt = 0.0, 0
    with torch.no_grad():
        for c in range(n_chunks):
            chunk = tokens[c * n_ctx:(c + 1) * n_ctx]
            chunk[0] = 1
            lg = forward(cfg, t, chunk, counts).double().log_softmax(-1)
            first = n_ctx // 2
            for j in range(first, n_ctx - 1):
                nll -= float(lg[j, chunk[j + 1]])
                cnt += 1
    if what == "ppl":
        print(f"{math.exp(nll / cnt):.6f}")
    else:
        print(json.dumps(counts))


if __name__ == "__main__":
    main()
