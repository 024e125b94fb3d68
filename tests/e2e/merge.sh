#!/usr/bin/env bash
# smelt-merge on the sample base + LoRA: the oracle directory reproduced byte for byte,
# report, manifest, options, and the guards' exit statuses and messages.
set -euo pipefail
cd "$SMELT_ROOT"
M="$SMELT_BIN/smelt-merge"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
base=samples/tiny-mixtral lora=samples/tiny-mixtral-zh-lora oracle=tests/fixtures/tiny-mixtral-zh-merged
fail() { echo "FAIL: $*"; exit 1; }

"$M" --help | grep '^Usage: smelt-merge --base' >/dev/null || fail "--help"
# the merge, reported as JSON
"$M" -q --json --base "$base" --lora "$lora" -o "$tmp/m" > "$tmp/report.json"
python3 - "$tmp/report.json" <<'PY' || fail "report"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["pairs_total"] == 64, r
assert r["pairs_merged"] == {"w1": 16, "w2": 16, "w3": 16, "k_proj": 4, "o_proj": 4, "q_proj": 4, "v_proj": 4}, r
assert r["replaced"] == ["lm_head.weight (modules_to_save)", "model.embed_tokens.weight (modules_to_save)"], r
assert r["tensors_changed"] == 66 and r["tensors_total"] == 79 and r["vocab_new"] is None, r
assert r["adapters"][0]["xxh64"] == "8b4326d7d6eae36b", r
PY
for f in model-00001-of-00002.safetensors model-00002-of-00002.safetensors model.safetensors.index.json \
         tokenizer.model tokenizer_config.json special_tokens_map.json generation_config.json; do
  cmp -s "$tmp/m/$f" "$oracle/$f" || fail "$f differs from the oracle"
done
grep -q '"smelt_merge": {' "$tmp/m/config.json" || fail "config record"
[ "$(wc -l < "$tmp/m.xxh64")" -eq 80 ] || fail "manifest lines"
if [ -x "$SMELT_BIN/smelt-verify" ]; then
  "$SMELT_BIN/smelt-verify" -q --check "$tmp/m.xxh64" "$tmp/m" || fail "smelt-verify --check of the manifest"
fi
# one thread gives the same bytes; text report
"$M" -t 1 --base "$base" --lora "$lora" -o "$tmp/m1" > "$tmp/report.txt" 2>/dev/null
cmp -s "$tmp/m/model-00002-of-00002.safetensors" "$tmp/m1/model-00002-of-00002.safetensors" || fail "thread count changed the output"
grep -q '^merged 64 LoRA pairs (w1 16, w2 16, w3 16, k_proj 4, o_proj 4, q_proj 4, v_proj 4)$' "$tmp/report.txt" || fail "text report"
grep -q '^66 of 79 tensors changed; wrote ' "$tmp/report.txt" || fail "text report tail"
# options: weight, dtype, re-sharding
"$M" -q --base "$base" --lora "$lora:0.5" --dtype f32 --max-shard-size 10MB -o "$tmp/w" 2>"$tmp/w.err"
# modules_to_save copies are taken whole whatever the weight (as PEFT does), and it is said
grep -qx "smelt-merge: warning: $lora: modules_to_save tensors (lm_head.weight, model.embed_tokens.weight) replace the base at full weight; the weight 0.5 scales only the LoRA pairs (as PEFT does)" "$tmp/w.err" || fail "weight note: $(cat "$tmp/w.err")"
ls "$tmp/w"/model-0000?-of-0000?.safetensors | wc -l | grep -qx 4 || fail "10MB shards of f32"
grep -q '"weight": 0.5' "$tmp/w/config.json" || fail "weight recorded"
"$SMELT_BIN/smelt-dump" --json "$tmp/w" | grep -c '"dtype": "F32"' | grep -qx 79 || fail "--dtype f32"
# guards
set +e
"$M" -q --base "$base" --lora "$lora" -o "$tmp/m" 2>"$tmp/err"; rc=$?
[ $rc -eq 2 ] && grep -q "m: output directory exists (use --force to replace it)" "$tmp/err" || fail "existing output: $rc $(cat "$tmp/err")"
"$M" -q --base "$tmp/m" --lora "$lora" -o "$tmp/twice" 2>"$tmp/err"; rc=$?
[ $rc -eq 5 ] && grep -q "is already merged into the base" "$tmp/err" || fail "merged twice: $rc"
[ ! -e "$tmp/twice" ] || fail "a refused merge left an output"
"$M" -q --base "$base" --lora tests/fixtures/external/lora-mlx-llama3-8b-ollama-discollama/adapter -o "$tmp/mlx" 2>"$tmp/err"; rc=$?
[ $rc -eq 4 ] && grep -q "this is an MLX-LM adapter" "$tmp/err" || fail "MLX adapter: $rc"
"$M" -q --base "$tmp/none" --lora "$lora" -o "$tmp/x" 2>"$tmp/err"; rc=$?
[ $rc -eq 1 ] || fail "missing base: $rc"
"$M" -q --base "$base" -o "$tmp/x" 2>/dev/null; [ $? -eq 2 ] || fail "no --lora should be a usage error"
"$M" -q --base "$base" --lora "$lora" --dtype f8 -o "$tmp/x" 2>/dev/null; [ $? -eq 2 ] || fail "bad --dtype"
set -e
"$M" -q --force --base "$tmp/m" --lora "$lora" -o "$tmp/m" 2>"$tmp/err" && fail "merging a directory into itself"
grep -q "output directory is the input directory $tmp/m (the base model); choose a new directory" "$tmp/err" || fail "self-merge message: $(cat "$tmp/err")"
"$M" -q --force --base "$tmp/m" --lora "$lora:-1" -o "$tmp/back"
# weight -1 subtracts the adapter again (the base back up to bf16 rounding); the
# config history now lists the adapter twice
grep -c '"xxh64": "8b4326d7d6eae36b"' "$tmp/back/config.json" | grep -qx 2 || fail "history"
# NaN/Inf: weights that are not finite numbers are usage errors; a ':' in a path still works
set +e
for w in nan inf -inf; do
  "$M" -q --base "$base" --lora "$lora:$w" -o "$tmp/x" 2>"$tmp/err"; rc=$?
  [ $rc -eq 2 ] && grep -qx "smelt-merge: error: --lora $lora:$w: the adapter weight must be a finite number (e.g. DIR:0.5)" "$tmp/err" \
    || fail "--lora :$w: $rc $(cat "$tmp/err")"
done
set -e
cp -r "$lora" "$tmp/ad:x"
"$M" -q --base "$base" --lora "$tmp/ad:x" --gguf "$tmp/colon.gguf" 2>/dev/null || fail "an adapter path with ':'"
# lora_alpha <= 0 in adapter_config.json (the content of an input: exit 3)
refused() { # status message-line args...
  local want=$1 line=$2; shift 2
  set +e; "$M" -q "$@" 2>"$tmp/err"; local rc=$?; set -e
  [ $rc -eq "$want" ] && grep -qxF "$line" "$tmp/err" || fail "$*: exit $rc, $(cat "$tmp/err")"
  [ ! -e "$tmp/nf" ] && [ ! -e "$tmp/nf.gguf" ] || fail "$*: a refused merge left an output"
  [ "$(ls -A "$tmp" | grep -c -e '^\.nf' || true)" -eq 0 ] || fail "$*: temporary files left: $(ls -A "$tmp")"
}
for a in 0 -16; do
  rm -rf "$tmp/alpha"; cp -r "$lora" "$tmp/alpha"
  sed -i "s/\"lora_alpha\": 16/\"lora_alpha\": $a/" "$tmp/alpha/adapter_config.json"
  refused 3 "smelt-merge: error: $tmp/alpha/adapter_config.json: 'lora_alpha': expected a positive number (the LoRA scaling is lora_alpha / r), found $a" \
    --base "$base" --lora "$tmp/alpha" -o "$tmp/nf"
done
# NaN in lora_A, +Inf in a base weight: refused (HF directory and --gguf), or written with --allow-nonfinite
cp -r "$lora" "$tmp/nan"
tests/e2e/poke-value "$SMELT_BIN/smelt-dump" "$tmp/nan/adapter_model.safetensors" base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight 100 nan
msg="smelt-merge: error: $tmp/nan/adapter_model.safetensors: 'base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight': value 100 is NaN; smelt refuses non-finite weights (--allow-nonfinite writes them anyway)"
refused 3 "$msg" --base "$base" --lora "$tmp/nan" -o "$tmp/nf"
refused 3 "$msg" --base "$base" --lora "$tmp/nan" --gguf "$tmp/nf.gguf"
"$M" -q --allow-nonfinite --base "$base" --lora "$tmp/nan" -o "$tmp/nf" 2>"$tmp/err" || fail "--allow-nonfinite: $(cat "$tmp/err")"
# lora_A [8, 256]: column 100 is NaN, so is column 100 of every row of q_proj [256, 256]
grep -qx "smelt-merge: warning: wrote 256 NaN/Inf values in 1 tensor (--allow-nonfinite)" "$tmp/err" || fail "--allow-nonfinite warning: $(cat "$tmp/err")"
rm -rf "$tmp/nf" "$tmp/nf.xxh64"
mkdir "$tmp/inf"; cp "$base"/* "$tmp/inf/"
tests/e2e/poke-value "$SMELT_BIN/smelt-dump" "$tmp/inf/model-00002-of-00002.safetensors" model.norm.weight 17 inf
refused 3 "smelt-merge: error: $tmp/inf/model-00002-of-00002.safetensors: 'model.norm.weight': value 17 is +Inf; smelt refuses non-finite weights (--allow-nonfinite writes them anyway)" \
  --base "$tmp/inf" --lora "$lora" -o "$tmp/nf"
"$M" --help | grep -- '--allow-nonfinite' >/dev/null || fail "--help lacks --allow-nonfinite"
echo "merge: ok"
