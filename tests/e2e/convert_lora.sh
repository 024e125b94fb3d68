#!/usr/bin/env bash
# smelt-convert --lora/--base: a PEFT adapter as a llama.cpp LoRA adapter GGUF (the
# library side, incl. llama.cpp applying it, is tested in tests/convert/test_lora.c).
set -euo pipefail
cd "$SMELT_ROOT"
C="$SMELT_BIN/smelt-convert"; D="$SMELT_BIN/smelt-dump"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$C" -q --lora samples/tiny-mixtral-zh-lora --base samples/tiny-mixtral -o "$tmp/a.gguf"
"$D" --no-tensors "$tmp/a.gguf" > "$tmp/a.txt"
grep -q 'general.type .*= "adapter"' "$tmp/a.txt"
grep -q 'adapter.type .*= "lora"' "$tmp/a.txt"
"$D" "$tmp/a.gguf" > "$tmp/t.txt"
grep -q 'blk.0.ffn_gate_exps.weight.lora_a' "$tmp/t.txt"
grep -q 'token_embd.weight.lora_a' "$tmp/t.txt"   # modules_to_save carried as full-rank pairs
"$C" --json --lora samples/tiny-mixtral-zh-lora --base samples/tiny-mixtral -o "$tmp/b.gguf" > "$tmp/b.json"
grep -q '"full_pairs": 2' "$tmp/b.json"
cmp "$tmp/a.gguf" "$tmp/b.gguf"                   # deterministic
set +e
"$C" -q --lora samples/tiny-mixtral-zh-lora --base samples/tiny-mixtral --no-full-delta -o "$tmp/c.gguf" 2>"$tmp/err"
[ $? -eq 4 ] && [ ! -e "$tmp/c.gguf" ] || { echo "--no-full-delta should refuse modules_to_save"; exit 1; }
grep -q "merge instead (smelt-merge --gguf" "$tmp/err"
"$C" -q --lora tests/fixtures/external/lora-mlx-llama3-8b-ollama-discollama/adapter --base samples/tiny-mixtral -o "$tmp/d.gguf" 2>"$tmp/err"
[ $? -eq 4 ] || { echo "MLX adapter must be refused"; exit 1; }
grep -q "this is an MLX-LM adapter" "$tmp/err"
"$C" --lora samples/tiny-mixtral-zh-lora -o "$tmp/e.gguf" 2>/dev/null; [ $? -eq 2 ] || exit 1
# NaN in lora_A: refused with the file, tensor and index, nothing left; written with --allow-nonfinite
cp -r samples/tiny-mixtral-zh-lora "$tmp/nan"
tests/e2e/poke-value "$D" "$tmp/nan/adapter_model.safetensors" base_model.model.model.layers.2.self_attn.v_proj.lora_A.weight 5 nan
"$C" -q --lora "$tmp/nan" --base samples/tiny-mixtral -o "$tmp/f.gguf" 2>"$tmp/err"; rc=$?
[ $rc -eq 3 ] && [ ! -e "$tmp/f.gguf" ] || { echo "NaN in lora_A: exit $rc"; exit 1; }
grep -qx "smelt-convert: error: $tmp/nan/adapter_model.safetensors: 'base_model.model.model.layers.2.self_attn.v_proj.lora_A.weight': value 5 is NaN; smelt refuses non-finite weights (--allow-nonfinite writes them anyway)" "$tmp/err" || { cat "$tmp/err"; exit 1; }
[ "$(ls -A "$tmp" | grep -c smelt-tmp)" -eq 0 ] || { echo "temporary file left"; exit 1; }
set -e
"$C" -q --allow-nonfinite --lora "$tmp/nan" --base samples/tiny-mixtral -o "$tmp/f.gguf" 2>"$tmp/err"
grep -qx "smelt-convert: warning: wrote 1 NaN/Inf value in 1 tensor (--allow-nonfinite)" "$tmp/err" || { cat "$tmp/err"; exit 1; }
echo "convert --lora: ok"
