#!/usr/bin/env bash
# fp8.sh — block-scaled FP8 checkpoints (F8_E4M3 + 128×128 `weight_scale_inv`, the layout of
# DeepSeek-V3 and the Qwen3 FP8 releases) are a tensor source dequantized on the fly.
# tests/e2e/fp8_fixture.py makes an FP8 copy of samples/tiny-mixtral and its dequantized
# f32 twin (fp8 × scale rounded once to f32); both must convert to byte-identical GGUFs
# (f32, bf16, and the FP8 copy's `auto`, which is bf16), and merge with a LoRA adapter to
# the same GGUF and safetensors. The FP8 model's perplexity on
# eval-en (-c 256) is printed next to the bf16 original's and must be within 0.5% of it. Broken layouts are refused with
# their exact error lines and exit statuses (errors.md), leaving no output.
# Exit 0 pass, 77 skip, anything else fail.
set -uo pipefail
root=${SMELT_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$root" || exit 1
B=${SMELT_BIN:-$root/bin}
PY=/usr/bin/python3
"$PY" -c 'import numpy' 2>/dev/null || { echo "skip: $PY with numpy needed to build the fixture"; exit 77; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails+1)); }
S=samples/tiny-mixtral

"$PY" tests/e2e/fp8_fixture.py "$S" "$tmp/fp8/tm" "$tmp/twin/tm" || { echo "FAIL: fixture"; exit 1; }
for t in f32 bf16; do
  "$B/smelt-convert" "$tmp/fp8/tm" -o "$tmp/fp8-$t.gguf" --outtype $t -q || fail "convert fp8 --outtype $t"
  "$B/smelt-convert" "$tmp/twin/tm" -o "$tmp/twin-$t.gguf" --outtype $t -q || fail "convert twin --outtype $t"
  cmp "$tmp/fp8-$t.gguf" "$tmp/twin-$t.gguf" || fail "FP8 and f32 twin differ as $t"
done
"$B/smelt-convert" "$tmp/fp8/tm" -o "$tmp/fp8-auto.gguf" 2>"$tmp/auto.err" || fail "convert fp8 auto"
cmp "$tmp/fp8-auto.gguf" "$tmp/twin-bf16.gguf" || fail "FP8 --outtype auto is not the twin's bf16"
grep -qx "smelt-convert: warning: block-scaled fp8 weights are dequantized (fp8 × scale) and rounded to bf16; --outtype f32 keeps every product exactly" \
  "$tmp/auto.err" || fail "auto note: $(cat "$tmp/auto.err")"
# the plan names the stored format; the bf16 embeddings draw no mixed-dtype warning
"$B/smelt-convert" "$tmp/fp8/tm" --dry-run >"$tmp/plan" 2>/dev/null
grep -q ' 2  blk.0.ffn_gate_exps.weight .* model.layers.0.block_sparse_moe.experts.0.w1.weight (F8_E4M3 × block scales) + 3 more, stacked$' "$tmp/plan" ||
  fail "dry-run does not show the FP8 source"
[ "$(grep -c warning "$tmp/auto.err")" -eq 1 ] || fail "auto: more than the fp8 note: $(cat "$tmp/auto.err")"
# the scale tensors are not in the output
"$B/smelt-dump" "$tmp/fp8-f32.gguf" >"$tmp/dump" || fail "dump"
grep -q scale "$tmp/dump" && fail "a scale tensor reached the GGUF"

# LoRA merge onto the FP8 base = onto the twin: one pass to GGUF, and a merged HF directory
# (the dequantized weights as F32, no quantization_config left in config.json)
Z=samples/tiny-mixtral-zh-lora
for k in fp8 twin; do
  mkdir -p "$tmp/m-$k"
  "$B/smelt-merge" --base "$tmp/$k/tm" --lora $Z --gguf "$tmp/m-$k/m.gguf" --outtype f32 -q 2>/dev/null || fail "merge --gguf $k"
  "$B/smelt-merge" --base "$tmp/$k/tm" --lora $Z -o "$tmp/m-$k/dir" -q 2>/dev/null || fail "merge $k"
done
cmp "$tmp/m-fp8/m.gguf" "$tmp/m-twin/m.gguf" || fail "merge --gguf: FP8 base and twin differ"
cmp "$tmp/m-fp8/dir/model.safetensors" "$tmp/m-twin/dir/model.safetensors" || fail "merge: FP8 base and twin differ"
grep -q quantization_config "$tmp/m-fp8/dir/config.json" && fail "merged config.json keeps quantization_config"

# perplexity of the FP8 model next to the bf16 original's (samples/reference.json, which
# smelt-perplexity matches on the original: tests/e2e/convert_ppl.sh, perplexity.sh)
p8=$("$B/smelt-perplexity" -m "$tmp/fp8-f32.gguf" -f samples/text/eval-en.txt -c 256 -q --json |
     "$PY" -c 'import json,sys; print("%.4f" % json.load(sys.stdin)["ppl"])') || fail "perplexity"
"$PY" - "$p8" <<'PY' || fail "FP8 perplexity $p8 is more than 0.5% from the original's"
import json, sys
p8 = float(sys.argv[1])
po = json.load(open("samples/reference.json"))["perplexity"]["base"]["eval-en"]["ppl"]
print(f"perplexity eval-en -c 256: FP8 (E4M3, 128x128 block scales) {p8:.4f}, bf16 original {po:.4f} "
      f"({100 * (p8 - po) / po:+.3f}%)")
sys.exit(abs(p8 - po) / po > 0.005)
PY

# refusals: exact line, exit status, no output file
refuse() { # mutation want_status want_line
  rm -rf "$tmp/bad"
  "$PY" tests/e2e/fp8_fixture.py "$S" "$tmp/bad/tm" - "$1" >/dev/null || { fail "fixture $1"; return; }
  "$B/smelt-convert" "$tmp/bad/tm" -o "$tmp/bad.gguf" -q 2>"$tmp/err"; local rc=$?
  [ $rc -eq "$2" ] || fail "$1: exit $rc, want $2"
  local line; line=$(sed "s|$tmp/||g" "$tmp/err")
  [ "$line" = "$3" ] || fail "$1: got    '$line'
                     want   '$3'"
  [ -e "$tmp/bad.gguf" ] && fail "$1: output written"
}
L0=model.layers.0.block_sparse_moe.experts.0.w1.weight
refuse scale_shape 3 "smelt-convert: error: bad/tm/model.safetensors: '${L0}_scale_inv': block scales of shape [4, 1] do not fit weight '$L0' [512, 256] in 128 × 128 blocks (expected [4, 2])"
refuse e5m2 4 "smelt-convert: error: bad/tm/model.safetensors: '$L0': F8_E5M2 weights with block scales are not supported (expected F8_E4M3)"
refuse no_scale 3 "smelt-convert: error: bad/tm/model.safetensors: '$L0': F8_E4M3 weight without block scales (expected a tensor '${L0}_scale_inv' of [4, 2] block scales)"
refuse block64 4 "smelt-convert: error: bad/tm/config.json: 'quantization_config.weight_block_size': [64, 64] is not supported: only 128 × 128 blocks (the layout of DeepSeek-V3 and the Qwen3 FP8 releases)"
refuse no_config 3 "smelt-convert: error: bad/tm/model.safetensors: '${L0}_scale_inv': block scales, but config.json has no quantization_config (expected {\"quant_method\": \"fp8\", \"fmt\": \"e4m3\", \"weight_block_size\": [128, 128]})"

[ $fails -eq 0 ] || { echo "$fails failure(s)"; exit 1; }
echo "ok"
