#!/usr/bin/env bash
# onepass.sh — HF (+ LoRA) → a quantized GGUF in one pass (smelt-convert --outtype TYPE,
# smelt-merge --gguf --outtype TYPE) equals the three-step path through an f16 GGUF and
# smelt-quantize, byte for byte: convert Q4_K_M (no imatrix) and IQ4_XS (imatrix), merge
# with the sample LoRA to Q4_K_M with an imatrix (and its .xxh64 manifest, checked by
# smelt-verify), a --split-max-size output file by file; an ftype that needs an imatrix
# without one is refused as smelt-quantize refuses it, and nothing is left behind.
set -uo pipefail
cd "$SMELT_ROOT"
B=$SMELT_BIN
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails+1)); }
ok() { echo "ok   $*"; }
same() { # NAME A B
  if cmp -s "$2" "$3"; then ok "$1"; else fail "$1: $2 and $3 differ"; fi
}
imx=tests/fixtures/imatrix/tiny-mixtral-calib-c256.gguf
base=samples/tiny-mixtral lora=samples/tiny-mixtral-zh-lora
mkdir "$tmp/three" "$tmp/one"

"$B/smelt-convert" -q "$base" -o "$tmp/f16.gguf" --outtype f16 || { echo "FAIL: convert f16"; exit 1; }

# ---- smelt-convert ----
"$B/smelt-quantize" -q "$tmp/f16.gguf" "$tmp/three/q4km.gguf" Q4_K_M || fail "quantize Q4_K_M"
"$B/smelt-convert" -q "$base" -o "$tmp/one/q4km.gguf" --outtype Q4_K_M || fail "convert --outtype Q4_K_M"
same "convert Q4_K_M = convert f16 + quantize" "$tmp/three/q4km.gguf" "$tmp/one/q4km.gguf"
"$B/smelt-quantize" -q --imatrix "$imx" "$tmp/f16.gguf" "$tmp/three/iq4xs.gguf" IQ4_XS || fail "quantize IQ4_XS"
"$B/smelt-convert" -q "$base" -o "$tmp/one/iq4xs.gguf" --outtype IQ4_XS --imatrix "$imx" -t 1 || fail "convert --outtype IQ4_XS"
same "convert IQ4_XS --imatrix = convert f16 + quantize --imatrix" "$tmp/three/iq4xs.gguf" "$tmp/one/iq4xs.gguf"

# ---- split output: the quantizer's files ----
"$B/smelt-quantize" -q "$tmp/f16.gguf" "$tmp/three/s.gguf" Q4_K_M --split-max-size 2M || fail "quantize split"
"$B/smelt-convert" -q "$base" -o "$tmp/one/s.gguf" --outtype Q4_K_M --split-max-size 2M || fail "convert split"
n=0 m=0
for f in "$tmp"/three/s-*.gguf; do m=$((m+1)); cmp -s "$f" "$tmp/one/${f##*/}" && n=$((n+1)); done
[ "$m" -gt 1 ] && [ "$n" -eq "$m" ] && [ ! -e "$tmp/one/s.gguf" ] && ok "split: $n of $m files identical" || fail "split: $n of $m files identical"

# ---- smelt-merge --gguf: base + LoRA → Q4_K_M with an imatrix ----
# general.name follows the output's name: both outputs are called m.gguf
mkdir "$tmp/three/m" "$tmp/one/m"
"$B/smelt-merge" -q --base "$base" --lora "$lora" --gguf "$tmp/three/m/m.gguf" --outtype f16 || fail "merge f16"
"$B/smelt-quantize" -q --imatrix "$imx" "$tmp/three/m/m.gguf" "$tmp/three/mq.gguf" Q4_K_M || fail "quantize merged"
"$B/smelt-merge" -q --base "$base" --lora "$lora" --gguf "$tmp/one/m/m.gguf" --outtype Q4_K_M --imatrix "$imx" ||
  fail "merge --outtype Q4_K_M"
same "merge Q4_K_M --imatrix = merge f16 + quantize --imatrix" "$tmp/three/mq.gguf" "$tmp/one/m/m.gguf"
if "$B/smelt-verify" -q --check "$tmp/one/m/m.gguf.xxh64" "$tmp/one/m/m.gguf" >/dev/null 2>&1 &&
   grep -q "m.gguf:blk.0.ffn_down_exps.weight" "$tmp/one/m/m.gguf.xxh64"; then
  ok "merge one pass: manifest beside the output"
else fail "merge one pass: manifest"; fi

# ---- refusals: the quantizer's, before any byte is written ----
"$B/smelt-quantize" -q "$tmp/f16.gguf" "$tmp/x.gguf" IQ2_XXS 2>"$tmp/err3"; r3=$?
"$B/smelt-convert" -q "$base" -o "$tmp/x.gguf" --outtype IQ2_XXS 2>"$tmp/err1"; r1=$?
# the same refusal; only the hint says how to get a GGUF for smelt-imatrix
head="'blk.0.attn_k.weight': IQ2_XXS iq2_xxs needs importance weights (pass --imatrix FILE; make one with: smelt-imatrix -m"
want="smelt-convert: error: $base: $head F16.gguf -f CALIB.txt -o FILE, F16.gguf a float GGUF of $base); quantizing it without them gives garbage"
if [ $r1 -eq 4 ] && [ $r3 -eq 4 ] && grep -qxF -- "$want" "$tmp/err1" &&
   grep -qF -- "smelt-quantize: error: $tmp/f16.gguf: $head $tmp/f16.gguf -f CALIB.txt" "$tmp/err3"; then
  ok "IQ2_XXS without an imatrix: smelt-quantize's refusal, exit 4"
else fail "IQ2_XXS without an imatrix: exit $r1/$r3"; cat "$tmp/err1" "$tmp/err3"; fi
"$B/smelt-merge" -q --base "$base" --lora "$lora" --gguf "$tmp/x.gguf" --outtype IQ2_XXS 2>"$tmp/err"; r=$?
[ $r -eq 4 ] && grep -q "IQ2_XXS iq2_xxs needs importance weights" "$tmp/err" && ok "merge IQ2_XXS without an imatrix: exit 4" ||
  { fail "merge IQ2_XXS without an imatrix: exit $r"; cat "$tmp/err"; }
cp "$imx" "$tmp/imx.gguf"
"$B/smelt-convert" -q "$base" -o "$tmp/imx.gguf" --outtype Q4_K_M --imatrix "$tmp/imx.gguf" 2>"$tmp/err"; r=$?
[ $r -eq 2 ] && grep -q "(the importance matrix)" "$tmp/err" && cmp -s "$imx" "$tmp/imx.gguf" &&
  ok "output = the imatrix: refused, exit 2" || { fail "output = the imatrix: exit $r"; cat "$tmp/err"; }
"$B/smelt-convert" -q "$base" -o "$tmp/x.gguf" --outtype Q9_K 2>"$tmp/err"; r=$?
[ $r -eq 2 ] && grep -qxF "smelt-convert: error: --outtype must be f32, f16, bf16, q8_0, auto or a smelt-quantize type such as Q4_K_M (got 'Q9_K')" "$tmp/err" &&
  ok "unknown --outtype: exit 2" || { fail "unknown --outtype: exit $r"; cat "$tmp/err"; }
"$B/smelt-convert" -q "$base" -o "$tmp/x.gguf" --outtype f16 --imatrix "$imx" 2>/dev/null; r=$?
[ $r -eq 2 ] && ok "--imatrix with a float --outtype: exit 2" || fail "--imatrix with --outtype f16: exit $r"
leftover=$(ls -A "$tmp" | grep -v -e '^three$' -e '^one$' -e '^f16.gguf$' -e '^err' -e '^imx.gguf$')
[ -z "$leftover" ] && ok "no output left after the refusals" || fail "left behind: $leftover"

[ $fails -eq 0 ] || { echo "onepass: $fails failure(s)"; exit 1; }
echo "onepass: ok"
