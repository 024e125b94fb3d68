#!/usr/bin/env bash
# merge_qwen3.sh — smelt-merge of a PEFT LoRA adapter on a Qwen3 checkpoint (the tiny random
# fixture of arch_fixture.py; r-4 adapter on q_proj and v_proj of both layers, made here with
# PEFT's key names) equals PyTorch's merge, `W += (B @ A) * alpha / r` on the bf16 weight,
# bit for bit in every tensor; the one-pass GGUF of the same merge loads in smelt-perplexity.
# Exit 0 pass, 77 skip (PyTorch missing), anything else fail.
set -uo pipefail
root=${SMELT_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$root" || exit 1
B=${SMELT_BIN:-$root/bin}
py=/usr/bin/python3
"$py" -c 'import torch, numpy' 2>/dev/null || { echo "skip: PyTorch (python3-torch) not installed"; exit 77; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$py" tests/e2e/arch_fixture.py qwen3 "$tmp/base" >/dev/null || { echo "FAIL: fixture"; exit 1; }
"$py" - "$tmp" <<'PY' || { echo "FAIL: adapter"; exit 1; }
import json, os, struct, sys
import numpy as np
d = sys.argv[1]
cfg = json.load(open(f"{d}/base/config.json"))
H, hd = cfg["hidden_size"], cfg["head_dim"]
shapes = {"q_proj": (cfg["num_attention_heads"] * hd, H), "v_proj": (cfg["num_key_value_heads"] * hd, H)}
r, rng, t = 4, np.random.default_rng(0), {}
for i in range(cfg["num_hidden_layers"]):
    for name, (o, n) in shapes.items():
        k = f"base_model.model.model.layers.{i}.self_attn.{name}"
        t[f"{k}.lora_A.weight"] = (rng.standard_normal((r, n)) * 0.05).astype(np.float32)
        t[f"{k}.lora_B.weight"] = (rng.standard_normal((o, r)) * 0.05).astype(np.float32)
hdr, blobs, off = {}, [], 0
for k in sorted(t):
    b = t[k].tobytes()
    hdr[k] = {"dtype": "F32", "shape": list(t[k].shape), "data_offsets": [off, off + len(b)]}
    blobs.append(b)
    off += len(b)
h = json.dumps(hdr).encode()
h += b" " * ((8 - len(h) % 8) % 8)
os.makedirs(f"{d}/lora")
open(f"{d}/lora/adapter_model.safetensors", "wb").write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
json.dump({"peft_type": "LORA", "r": r, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"],
           "base_model_name_or_path": "qwen3-fixture", "task_type": "CAUSAL_LM"}, open(f"{d}/lora/adapter_config.json", "w"))
PY
"$B/smelt-merge" -q --base "$tmp/base" --lora "$tmp/lora" -o "$tmp/merged" 2>"$tmp/err" || { cat "$tmp/err"; echo "FAIL: merge"; exit 1; }
"$py" - "$tmp" <<'PY' || exit 1
import glob, json, struct, sys
import torch
d = sys.argv[1]
def load(pattern):
    out = {}
    for p in glob.glob(pattern):
        b = open(p, "rb").read()
        n = struct.unpack("<Q", b[:8])[0]
        h = json.loads(b[8:8 + n])
        for k, v in h.items():
            if k == "__metadata__":
                continue
            s, e = v["data_offsets"]
            dt = {"BF16": torch.bfloat16, "F32": torch.float32}[v["dtype"]]
            out[k] = torch.frombuffer(bytearray(b[8 + n + s:8 + n + e]), dtype=dt).reshape(v["shape"])
    return out
base, merged = load(f"{d}/base/*.safetensors"), load(f"{d}/merged/*.safetensors")
lora = load(f"{d}/lora/adapter_model.safetensors")
assert set(base) == set(merged), "tensor names differ"
changed = bad = 0
for k, w in base.items():
    ref = w.clone()
    a = "base_model.model." + k.replace(".weight", ".lora_A.weight")
    if a in lora:
        ref += (lora[a.replace("lora_A", "lora_B")] @ lora[a]) * (8 / 4)  # PEFT's merge: weight.data += delta
        changed += 1
    if not torch.equal(ref.view(torch.int16), merged[k].view(torch.int16)):
        print(f"FAIL: {k} differs from PyTorch's merge")
        bad += 1
assert changed == 4, changed
print(f"{changed} merged tensors and {len(base) - changed} others equal PyTorch's bit for bit")
sys.exit(1 if bad else 0)
PY
"$B/smelt-merge" -q --base "$tmp/base" --lora "$tmp/lora" --gguf "$tmp/m.gguf" --outtype Q4_K_M 2>"$tmp/err" ||
  { cat "$tmp/err"; echo "FAIL: one-pass merge to Q4_K_M"; exit 1; }
"$B/smelt-perplexity" -q -m "$tmp/m.gguf" -f samples/text/eval-en.txt -c 128 --chunks 2 2>&1 | grep -q "Final estimate" ||
  { echo "FAIL: smelt-perplexity on the merged Q4_K_M"; exit 1; }
echo ok
