#!/usr/bin/env bash
# smelt-merge against PEFT's merge formulas evaluated by PyTorch itself (Debian's
# /usr/bin/python3 with torch; PEFT is not installed, so the script replays PEFT's own tensor
# operations from peft/tuners/lora/{layer,variants,dora}.py): rsLoRA with rank/alpha patterns,
# Conv1D fan_in_fan_out, embedding LoRA, DoRA on a Linear, an Embedding and a Conv1D, a bf16 base.
# With OpenBLAS 0.3.21 installed (Debian's libopenblas0-pthread) torch runs the oracle's BLAS
# (Haswell kernel) and plain LoRA must match bit for bit; DoRA's norms are summed by torch in
# f32 and by smelt in f64, so a few values may sit 1 bf16 ulp apart — counted and bounded.
set -euo pipefail
cd "$SMELT_ROOT"
py=${SMELT_ORACLE_PYTHON:-/usr/bin/python3}
if [ ! -x "$py" ] || ! "$py" -c 'import torch' 2>/dev/null; then echo "skip: $py with torch not available"; exit 77; fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
ob=/usr/lib/x86_64-linux-gnu/openblas-pthread
exact=0
if [ -e "$ob/libblas.so.3" ]; then export LD_LIBRARY_PATH="$ob" OPENBLAS_CORETYPE=Haswell OPENBLAS_NUM_THREADS=1; exact=1; fi
"$py" - "$tmp" gen <<'PY'
import json, os, struct, sys, math
import torch
torch.manual_seed(0)
torch.set_num_threads(1)
out = sys.argv[1]

def save(path, tensors):
    names = sorted(tensors, key=lambda k: ({torch.float32: 0, torch.bfloat16: 1}[tensors[k].dtype], k))
    hdr, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for k in names:
        t = tensors[k].contiguous()
        raw = t.view(torch.int16).numpy().tobytes() if t.dtype == torch.bfloat16 else t.numpy().tobytes()
        hdr[k] = {"dtype": "BF16" if t.dtype == torch.bfloat16 else "F32", "shape": list(t.shape),
                  "data_offsets": [off, off + len(raw)]}
        off += len(raw); blobs.append(raw)
    h = json.dumps(hdr, separators=(",", ":")).encode(); h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))

def mk(d, cfg, tensors, cfgname, wname):
    os.makedirs(d, exist_ok=True)
    json.dump(cfg, open(os.path.join(d, cfgname), "w"))
    save(os.path.join(d, wname), tensors)

bf = torch.bfloat16
H, F, V = 96, 160, 200
# llama-like base, bf16
base = {"model.embed_tokens.weight": torch.randn(V, H).to(bf),
        "model.layers.0.self_attn.q_proj.weight": (torch.randn(H, H) * 0.05).to(bf),
        "model.layers.0.self_attn.v_proj.weight": (torch.randn(H, H) * 0.05).to(bf),
        "model.layers.1.self_attn.q_proj.weight": (torch.randn(H, H) * 0.05).to(bf),
        "model.layers.0.mlp.down_proj.weight": (torch.randn(H, F) * 0.05).to(bf),
        "lm_head.weight": (torch.randn(V, H) * 0.05).to(bf)}
mk(f"{out}/base", {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": V}, base,
   "config.json", "model.safetensors")
# adapter 1: rsLoRA with patterns, plain LoRA ops
ad1 = {}
def pair(mod, r, i, o, tensors):
    tensors[f"base_model.model.{mod}.lora_A.weight"] = torch.randn(r, i) * 0.1
    tensors[f"base_model.model.{mod}.lora_B.weight"] = torch.randn(o, r) * 0.1
pair("model.layers.0.self_attn.q_proj", 12, H, H, ad1)
pair("model.layers.1.self_attn.q_proj", 12, H, H, ad1)
pair("model.layers.0.self_attn.v_proj", 8, H, H, ad1)
pair("model.layers.0.mlp.down_proj", 8, F, H, ad1)
ad1["base_model.model.model.embed_tokens.lora_embedding_A"] = torch.randn(8, V) * 0.1
ad1["base_model.model.model.embed_tokens.lora_embedding_B"] = torch.randn(H, 8) * 0.1
cfg1 = {"peft_type": "LORA", "r": 8, "lora_alpha": 16, "use_rslora": True,
        "target_modules": ["q_proj", "v_proj", "down_proj", "embed_tokens"],
        "rank_pattern": {"q_proj": 12}, "alpha_pattern": {"layers.1.self_attn.q_proj": 5}}
mk(f"{out}/ad1", cfg1, ad1, "adapter_config.json", "adapter_model.safetensors")
# adapter 2: DoRA on a Linear and on the embedding
ad2 = {}
pair("model.layers.0.self_attn.v_proj", 8, H, H, ad2)
ad2["base_model.model.model.layers.0.self_attn.v_proj.lora_magnitude_vector"] = torch.rand(H) + 0.5
ad2["base_model.model.model.embed_tokens.lora_embedding_A"] = torch.randn(8, V) * 0.1
ad2["base_model.model.model.embed_tokens.lora_embedding_B"] = torch.randn(H, 8) * 0.1
ad2["base_model.model.model.embed_tokens.lora_magnitude_vector"] = torch.rand(H) + 0.5
cfg2 = {"peft_type": "LORA", "r": 8, "lora_alpha": 8, "use_dora": True, "target_modules": ["v_proj", "embed_tokens"]}
mk(f"{out}/ad2", cfg2, ad2, "adapter_config.json", "adapter_model.safetensors")
# GPT-2 Conv1D base (weights [in, out]) and a fan_in_fan_out adapter
g = {"transformer.h.0.attn.c_attn.weight": (torch.randn(H, 3 * H) * 0.05).to(bf),
     "transformer.h.0.attn.c_proj.weight": (torch.randn(H, H) * 0.05).to(bf)}
mk(f"{out}/gpt2", {"model_type": "gpt2", "vocab_size": V}, g, "config.json", "model.safetensors")
ad3 = {}
pair("transformer.h.0.attn.c_attn", 8, H, 3 * H, ad3)
pair("transformer.h.0.attn.c_proj", 8, H, H, ad3)
mk(f"{out}/ad3", {"peft_type": "LORA", "r": 8, "lora_alpha": 32, "fan_in_fan_out": True,
                  "target_modules": ["c_attn", "c_proj"]}, ad3, "adapter_config.json", "adapter_model.safetensors")
ad4 = {}
pair("transformer.h.0.attn.c_attn", 8, H, 3 * H, ad4)
ad4["base_model.model.transformer.h.0.attn.c_attn.lora_magnitude_vector"] = torch.rand(3 * H) + 0.5
mk(f"{out}/ad4", {"peft_type": "LORA", "r": 8, "lora_alpha": 16, "fan_in_fan_out": True, "use_dora": True,
                  "target_modules": ["c_attn"]}, ad4, "adapter_config.json", "adapter_model.safetensors")

# ---- PEFT's merge, operation for operation (fp32 adapter weights, bf16 base, safe_merge=False)
def load(path):
    b = open(path, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n]); o = {}
    for k, v in h.items():
        if k == "__metadata__": continue
        s, e = v["data_offsets"]; raw = bytearray(b[8 + n + s:8 + n + e])
        t = torch.frombuffer(raw, dtype=torch.int16).view(bf) if v["dtype"] == "BF16" else torch.frombuffer(raw, dtype=torch.float32)
        o[k] = t.reshape(v["shape"]).clone()
    return o
def scaling(cfg, mod, r):
    import re
    def pat(p):
        for k in p:
            if re.match(rf"(.*\.)?({k})$", mod): return p[k]
    rr = pat(cfg.get("rank_pattern", {})) or cfg["r"]; al = pat(cfg.get("alpha_pattern", {})) or cfg["lora_alpha"]
    assert rr == r
    return al / math.sqrt(r) if cfg.get("use_rslora") else al / r
def merge(base, ad, cfg, fifo=False):
    W = {k: v.clone() for k, v in base.items()}
    mods = sorted({k.split(".lora_")[0][len("base_model.model."):] for k in ad})
    for m in mods:
        w = W[m + ".weight"]
        if f"base_model.model.{m}.lora_A.weight" in ad:
            A = ad[f"base_model.model.{m}.lora_A.weight"]; B = ad[f"base_model.model.{m}.lora_B.weight"]
            s = scaling(cfg, m, A.shape[0])
            delta = (B @ A).T * s if fifo else (B @ A) * s            # Linear.get_delta_weight
            emb = False
        else:
            A = ad[f"base_model.model.{m}.lora_embedding_A"]; B = ad[f"base_model.model.{m}.lora_embedding_B"]
            s = scaling(cfg, m, A.shape[0])
            delta = (B @ A).T * s                                    # Embedding.get_delta_weight
            emb = True
        mag = ad.get(f"base_model.model.{m}.lora_magnitude_vector")
        if mag is None:
            w.data += delta                                          # merge_unsafe, vanilla LoRA
            continue
        if not emb:                                                  # DoraLinearVariant.merge_unsafe
            dT = delta.T if fifo else delta                          # transpose(delta_weight, fan_in_fan_out)
            weight = (w.T if fifo else w) + 1 * dT                   # get_weight_norm
            norm = torch.linalg.norm(weight, dim=1).to(weight.dtype)
            f = (mag / norm).view(-1, 1)
            f = f.T if fifo else f                                   # transpose(dora_factor, fan_in_fan_out)
        else:                                                        # DoraEmbeddingVariant.merge_unsafe
            weight = w.T + 1 * delta.T                               # DoraEmbeddingLayer(fan_in_fan_out=True)
            norm = torch.linalg.norm(weight, dim=1).to(weight.dtype)
            f = (mag / norm).view(1, -1)
        W[m + ".weight"] = (f * (w.data + delta)).to(w.dtype)
    return W
def save_expect(name, W):
    save(f"{out}/{name}.expect.safetensors", W)
b = load(f"{out}/base/model.safetensors")
save_expect("ad1", merge(b, load(f"{out}/ad1/adapter_model.safetensors"), cfg1))
save_expect("ad2", merge(b, load(f"{out}/ad2/adapter_model.safetensors"), cfg2))
save_expect("ad3", merge(load(f"{out}/gpt2/model.safetensors"), load(f"{out}/ad3/adapter_model.safetensors"),
                         {"r": 8, "lora_alpha": 32}, fifo=True))
save_expect("ad4", merge(load(f"{out}/gpt2/model.safetensors"), load(f"{out}/ad4/adapter_model.safetensors"),
                         {"r": 8, "lora_alpha": 16}, fifo=True))
PY
M="$SMELT_BIN/smelt-merge"
"$M" -q --base "$tmp/base" --lora "$tmp/ad1" -o "$tmp/m1"
"$M" -q --base "$tmp/base" --lora "$tmp/ad2" -o "$tmp/m2"
"$M" -q --base "$tmp/gpt2" --lora "$tmp/ad3" -o "$tmp/m3"
"$M" -q --base "$tmp/gpt2" --lora "$tmp/ad4" -o "$tmp/m4"
"$py" - "$tmp" "$exact" <<'PY'
import json, struct, sys
import torch
tmp, exact = sys.argv[1], sys.argv[2] == "1"
def load(path):
    b = open(path, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n]); o = {}
    for k, v in h.items():
        if k == "__metadata__": continue
        s, e = v["data_offsets"]; o[k] = torch.frombuffer(bytearray(b[8 + n + s:8 + n + e]), dtype=torch.int16)
    return o
bad = 0
for ad, out, dora in (("ad1", "m1", False), ("ad2", "m2", True), ("ad3", "m3", False), ("ad4", "m4", True)):
    want, got = load(f"{tmp}/{ad}.expect.safetensors"), load(f"{tmp}/{out}/model.safetensors")
    total = diff = ulp1 = 0
    for k in want:
        a, b = want[k].int(), got[k].int()
        d = (a - b).abs()
        total += a.numel(); diff += int((d != 0).sum()); ulp1 += int((d == 1).sum())
    print(f"{ad}: {diff} of {total} bf16 values differ from PyTorch-evaluated PEFT ({ulp1} by 1 ulp)"
          f"{' (DoRA norms: f32 vs f64 sums)' if dora else ''}{'' if exact else ' [reference BLAS: order differs]'}")
    if diff != ulp1: bad = 1                       # never more than 1 ulp
    if exact and not dora and diff: bad = 1        # the oracle's BLAS: bit for bit
    if diff > total // 1000: bad = 1
sys.exit(bad)
PY
echo "merge_torch: ok"
