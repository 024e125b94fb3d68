#!/usr/bin/env bash
# smelt-convert as a tool: help, usage errors, dry runs that write nothing, conversions,
# JSON output, and bad inputs that exit nonzero with a clear message and leave no file.
set -euo pipefail
cd "$SMELT_ROOT"
C="$SMELT_BIN/smelt-convert"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
"$C" --help > "$tmp/help.txt"
grep -q '^Usage: smelt-convert MODEL_DIR -o OUT.gguf' "$tmp/help.txt" || fail "--help"
set +e
"$C" 2>/dev/null; [ $? -eq 2 ] || fail "no arguments must be a usage error"
"$C" samples/tiny-mixtral 2>/dev/null; [ $? -eq 2 ] || fail "missing -o must be a usage error"
"$C" samples/tiny-mixtral -o "$tmp/x.gguf" --outtype q4 2>"$tmp/err"; [ $? -eq 2 ] || fail "bad --outtype"
grep -q "outtype must be f32, f16, bf16, q8_0, auto or a smelt-quantize type such as Q4_K_M (got 'q4')" "$tmp/err" || fail "bad --outtype message"
set -e
# dry run: the plan, nothing written
"$C" samples/tiny-mixtral -o "$tmp/x.gguf" --dry-run > "$tmp/plan.txt"
[ ! -e "$tmp/x.gguf" ] || fail "--dry-run wrote a file"
grep -q '→ GGUF (llama), outtype bf16, 43 tensors' "$tmp/plan.txt" || fail "plan header"
grep -q 'blk.0.attn_q.weight .*RoPE-permuted over 8 heads' "$tmp/plan.txt" || fail "plan permutation"
"$C" samples/tiny-mixtral --dry-run --json > "$tmp/plan.json"
python3 - "$tmp/plan.json" <<'PY' || fail "plan JSON"
import json, sys
p = json.load(open(sys.argv[1]))
assert p["n_tensors"] == 43 and p["outtype"] == "bf16" and p["file_type"] == 32, p
kv = {k["key"]: k["value"] for k in p["kv"]}
assert kv["llama.expert_count"] == 4 and len(kv["tokenizer.ggml.tokens"]) == 4096
t = {x["name"]: x for x in p["tensors"]}
assert t["blk.0.ffn_gate_inp.weight"]["type"] == "f32"
assert len(t["blk.3.ffn_up_exps.weight"]["sources"]) == 4
PY
# a conversion, quiet, with a JSON summary; the output is a valid GGUF and nothing else is left
"$C" samples/tiny-mixtral -o "$tmp/tm.gguf" --outtype f16 -q --json > "$tmp/sum.json"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["tensors"]==43 and d["outtype"]=="f16", d' "$tmp/sum.json" || fail "summary"
[ "$(ls -A "$tmp" | grep -c smelt-tmp || true)" -eq 0 ] || fail "temporary file left"
"$SMELT_BIN/smelt-dump" "$tmp/tm.gguf" > "$tmp/dump.txt"
grep -q 'general.file_type *= 1' "$tmp/dump.txt" || fail "smelt-dump of the output"
# --vocab-only
"$C" tests/fixtures/external/llama2c-babyllama-tok105/hf -o "$tmp/v.gguf" --vocab-only -q
"$SMELT_BIN/smelt-dump" "$tmp/v.gguf" > "$tmp/vdump.txt"
grep -q '0 tensors' "$tmp/vdump.txt" || fail "vocab-only has tensors"
# bad inputs: exit status, message, no output
expect() { # status pattern dir
  set +e; "$C" "$3" -o "$tmp/bad.gguf" -q 2>"$tmp/err"; local rc=$?; set -e
  [ $rc -eq "$1" ] || { cat "$tmp/err"; fail "$3: exit $rc, expected $1"; }
  grep -q -- "$2" "$tmp/err" || { cat "$tmp/err"; fail "$3: message"; }
  [ ! -e "$tmp/bad.gguf" ] || fail "$3: output left behind"
}
mk() { rm -rf "$tmp/$1"; mkdir -p "$tmp/$1"; cp tests/fixtures/external/llama2c-babyllama-tok105/hf/* "$tmp/$1/"; }
mk phi; sed -i 's/LlamaForCausalLM/Phi3ForCausalLM/; s/"llama"/"phi3"/' "$tmp/phi/config.json"
expect 4 "architecture 'Phi3ForCausalLM' (model_type 'phi3') is not supported; smelt-convert handles LlamaForCausalLM, MistralForCausalLM, MixtralForCausalLM, Qwen2ForCausalLM" "$tmp/phi"
mk nokey; sed -i '/"num_attention_heads"/d' "$tmp/nokey/config.json"
expect 3 "config.json: 'num_attention_heads': required key is missing" "$tmp/nokey"
mk shape; sed -i 's/"intermediate_size": 352/"intermediate_size": 350/' "$tmp/shape/config.json"
expect 3 "gate_proj.weight': shape \[352, 128\] contradicts config.json: expected \[intermediate_size, hidden_size\] = \[350, 128\]" "$tmp/shape"
mk evil; rm "$tmp/evil/model.safetensors"
python3 - "$tmp/evil/pytorch_model.bin" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1], "w") as z:
    z.writestr("archive/data.pkl", b"\x80\x02cos\nsystem\nX\x05\x00\x00\x00touchtR.")
PY
expect 3 "pytorch_model.bin: 'archive/data.pkl' @ byte 2 (0x2): GLOBAL 'os system' is not allowed" "$tmp/evil"
mk trunc; rm "$tmp/trunc/model.safetensors"
python3 - "$tmp/trunc/pytorch_model.bin" <<'PY'
import sys, zipfile, io
b = io.BytesIO()
with zipfile.ZipFile(b, "w") as z:
    z.writestr("archive/data.pkl", b"\x80\x02}q\x00." * 100)
open(sys.argv[1], "wb").write(b.getvalue()[:-30])
PY
expect 3 "not a zip archive, or truncated" "$tmp/trunc"
mkdir -p "$tmp/shards"; cp samples/tiny-mixtral/* "$tmp/shards/"; rm "$tmp/shards/model-00001-of-00002.safetensors"
expect 3 "'model-00001-of-00002.safetensors': shard listed in weight_map is missing" "$tmp/shards"
# NaN/Inf weights: refused with the file, the tensor and the first index; --allow-nonfinite
# writes them with a warning that counts them
mk nan; tests/e2e/poke-value "$SMELT_BIN/smelt-dump" "$tmp/nan/model.safetensors" model.layers.0.mlp.up_proj.weight 1234 nan
expect 3 "^smelt-convert: error: $tmp/nan/model.safetensors: 'model.layers.0.mlp.up_proj.weight': value 1234 is NaN; smelt refuses non-finite weights (--allow-nonfinite writes them anyway)$" "$tmp/nan"
[ "$(ls -A "$tmp" | grep -c smelt-tmp || true)" -eq 0 ] || fail "temporary file left by a refusal"
"$C" "$tmp/nan" -o "$tmp/nan.gguf" --outtype f16 -q --allow-nonfinite 2>"$tmp/err" || { cat "$tmp/err"; fail "--allow-nonfinite"; }
grep -qx "smelt-convert: warning: wrote 1 NaN/Inf value in 1 tensor (--allow-nonfinite)" "$tmp/err" || { cat "$tmp/err"; fail "--allow-nonfinite warning"; }
"$C" --help | grep -- '--allow-nonfinite' >/dev/null || fail "--help lacks --allow-nonfinite"
echo "convert: ok"
