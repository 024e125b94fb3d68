#!/usr/bin/env bash
# No tool may write over, into or around its own inputs. For every tool that writes and every
# way of naming an input as the output — the same path, relative, absolute, with ./, a
# symlink, a hard link, a directory holding the inputs, with and without --force — the
# tool must exit 2 with one error line that names the output and the input, and every
# input file must keep its bytes (and no file may appear among them).
set -euo pipefail
cd "$SMELT_ROOT"
B="$SMELT_BIN"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# ---- the inputs: a model directory, an adapter, a GGUF, an imatrix, a text ----
w="$tmp/w"
mkdir -p "$w"
cp -r samples/tiny-mixtral "$w/base"
cp -r samples/tiny-mixtral-zh-lora "$w/lora"
cp samples/text/eval-en.txt "$w/eval.md"   # a text whose name a report prefix can hit
cp tests/fixtures/imatrix/tiny-mixtral-calib-c256.gguf "$w/imatrix.gguf"
"$B/smelt-convert" -q "$w/base" -o "$w/model.gguf" --outtype f16
snapshot() { (cd "$w" && find . -print0 | sort -z | xargs -0 -I{} sh -c 'if [ -f "{}" ]; then sha256sum "{}"; else echo "dir {}"; fi'); }
snapshot >"$tmp/before"
cd "$tmp"   # relative paths below are relative to $tmp
ln -s w/model.gguf sym-model.gguf
ln w/model.gguf hard-model.gguf
ln -s w/base/model-00001-of-00002.safetensors sym-shard.safetensors
ln w/base/model-00002-of-00002.safetensors hard-shard.safetensors
ln -s w/eval.md sym-eval.md
ln -s w/base sym-base
ln -s w/lora sym-lora

n=0
# refuse OUT INPUT -- command...: exit 2, "smelt-TOOL: error: OUT: ..." naming INPUT, inputs intact
refuse() {
  local out="$1" input="$2"; shift 3
  n=$((n+1))
  set +e
  "$@" >"$tmp/out.txt" 2>"$tmp/err.txt"; local rc=$?
  set -e
  [ $rc -eq 2 ] || { cat "$tmp/err.txt"; fail "case $n ($*): exit $rc, expected 2"; }
  [ "$(wc -l <"$tmp/err.txt")" -eq 1 ] || { cat "$tmp/err.txt"; fail "case $n: expected one error line"; }
  grep -qF -- "error: $out: " "$tmp/err.txt" || { cat "$tmp/err.txt"; fail "case $n: the message does not start with the output $out"; }
  grep -qF -- "$input" "$tmp/err.txt" || { cat "$tmp/err.txt"; fail "case $n: the message does not name the input $input"; }
  snapshot >"$tmp/after"
  cmp -s "$tmp/before" "$tmp/after" || { diff "$tmp/before" "$tmp/after" | head; fail "case $n ($*): an input changed"; }
}

# ---- smelt-convert MODEL_DIR -o OUT ----
C="$B/smelt-convert"
S1=w/base/model-00001-of-00002.safetensors
refuse "$S1" "$S1" -- "$C" w/base -o "$S1"
refuse "$tmp/$S1" "$tmp/$S1" -- "$C" "$tmp/w/base" -o "$tmp/$S1"
refuse "./$S1" "w/base" -- "$C" w/base -o "./$S1"
refuse "$tmp/$S1" "w/base" -- "$C" w/base -o "$tmp/$S1"
refuse sym-shard.safetensors "$S1" -- "$C" w/base -o sym-shard.safetensors
refuse hard-shard.safetensors w/base/model-00002-of-00002.safetensors -- "$C" w/base -o hard-shard.safetensors
refuse w/base/config.json w/base/config.json -- "$C" w/base -o w/base/config.json
refuse w/base/tokenizer.model w/base/tokenizer.model -- "$C" w/base -o w/base/tokenizer.model
refuse w/base/tokenizer.json "w/base" -- "$C" w/base -o w/base/tokenizer.json   # not there yet: would be read next time
refuse w/base "w/base" -- "$C" w/base -o w/base
refuse w "w/base" -- "$C" w/base -o w
refuse sym-base "w/base" -- "$C" w/base -o sym-base
# --lora mode: the adapter and the base are inputs
refuse w/lora/adapter_model.safetensors w/lora/adapter_model.safetensors -- "$C" --lora w/lora --base w/base -o w/lora/adapter_model.safetensors
refuse w/lora/adapter_config.json w/lora/adapter_config.json -- "$C" --lora w/lora --base w/base -o w/lora/adapter_config.json
refuse "$S1" "$S1" -- "$C" --lora w/lora --base w/base -o "$S1"
refuse sym-lora w/lora -- "$C" --lora w/lora --base w/base -o sym-lora

# ---- smelt-merge --base B --lora A -o DIR [--gguf F] ----
M="$B/smelt-merge"
for force in "" --force; do
  refuse w/base w/base -- "$M" -q $force --base w/base --lora w/lora -o w/base
  refuse w/base/ w/base -- "$M" -q $force --base w/base --lora w/lora -o w/base/
  refuse "$tmp/w/base" w/base -- "$M" -q $force --base w/base --lora w/lora -o "$tmp/w/base"
  refuse w/lora w/lora -- "$M" -q $force --base w/base --lora w/lora -o w/lora
  refuse sym-lora w/lora -- "$M" -q $force --base w/base --lora w/lora -o sym-lora
  refuse w w/base -- "$M" -q $force --base w/base --lora w/lora -o w
  refuse . w/base -- "$M" -q $force --base w/base --lora w/lora -o .
  refuse w/base/merged w/base -- "$M" -q $force --base w/base --lora w/lora -o w/base/merged
  refuse "$S1" "$S1" -- "$M" -q $force --base w/base --lora w/lora --gguf "$S1"
  refuse hard-shard.safetensors w/base/model-00002-of-00002.safetensors -- "$M" -q $force --base w/base --lora w/lora --gguf hard-shard.safetensors
  refuse w/lora/adapter_model.safetensors w/lora/adapter_model.safetensors -- "$M" -q $force --base w/base --lora w/lora --gguf w/lora/adapter_model.safetensors
done
# the manifest beside OUT_DIR: OUT_DIR.xxh64 may not be an input either
ln -s w/base/config.json m2.xxh64
refuse m2.xxh64 w/base/config.json -- "$M" -q --base w/base --lora w/lora -o m2
rm m2.xxh64
# --force replaces only an earlier smelt-merge output
mkdir -p "$tmp/foreign"; echo keep >"$tmp/foreign/notes.txt"
refuse foreign "smelt_merge" -- "$M" -q --force --base w/base --lora w/lora -o foreign
[ "$(cat "$tmp/foreign/notes.txt")" = keep ] || fail "--force touched a foreign directory"
grep -qF "output directory exists and is not a smelt-merge output" "$tmp/err.txt" || fail "--force message: $(cat "$tmp/err.txt")"
"$M" -q --base w/base --lora w/lora -o merged
"$M" -q --force --base w/base --lora w/lora:0.5 -o merged   # an earlier merge output: replaced
grep -q '"weight": 0.5' merged/config.json || fail "--force did not replace the earlier merge output"
echo mine >merged/my-notes.txt
refuse merged "my-notes.txt" -- "$M" -q --force --base w/base --lora w/lora -o merged
grep -qF "output directory holds 'my-notes.txt', which smelt-merge does not write" "$tmp/err.txt" || fail "foreign file message"
[ -f merged/my-notes.txt ] || fail "a refused --force removed a foreign file"

# ---- smelt-quantize IN OUT TYPE ----
Q="$B/smelt-quantize"
refuse w/model.gguf w/model.gguf -- "$Q" -q w/model.gguf w/model.gguf Q8_0
refuse ./w/model.gguf w/model.gguf -- "$Q" -q w/model.gguf ./w/model.gguf Q8_0
refuse "$tmp/w/model.gguf" w/model.gguf -- "$Q" -q w/model.gguf "$tmp/w/model.gguf" Q8_0
refuse sym-model.gguf w/model.gguf -- "$Q" -q w/model.gguf sym-model.gguf Q8_0
refuse hard-model.gguf w/model.gguf -- "$Q" -q w/model.gguf hard-model.gguf Q8_0
refuse w w/model.gguf -- "$Q" -q w/model.gguf w Q8_0
refuse w/imatrix.gguf w/imatrix.gguf -- "$Q" -q --imatrix w/imatrix.gguf w/model.gguf w/imatrix.gguf Q4_K_M
# --plan FILE is an input too (the plan of a --dry-run --json run)
"$Q" -q --dry-run --json w/model.gguf Q8_0 >plan.json
refuse plan.json plan.json -- "$Q" -q --plan plan.json w/model.gguf plan.json

# ---- smelt-imatrix -m MODEL -f TEXT -o OUT ----
I="$B/smelt-imatrix"
refuse w/model.gguf w/model.gguf -- "$I" -q -m w/model.gguf -f w/eval.md -c 64 -o w/model.gguf
refuse hard-model.gguf w/model.gguf -- "$I" -q -m w/model.gguf -f w/eval.md -c 64 -o hard-model.gguf
refuse sym-eval.md w/eval.md -- "$I" -q -m w/model.gguf -f w/eval.md -c 64 -o sym-eval.md
refuse w w/model.gguf -- "$I" -q -m w/model.gguf -f w/eval.md -c 64 -o w
# the checkpoint of --save-every is an output too; --combine's output is none of its inputs
refuse w/model.gguf w/model.gguf -- "$I" -q -m w/model.gguf -f w/eval.md -c 64 -o out.gguf --save-every 1 --checkpoint w/model.gguf
refuse sym-eval.md w/eval.md -- "$I" -q -m w/model.gguf -f w/eval.md -c 64 -o out.gguf --save-every 1 --checkpoint sym-eval.md
refuse w/imatrix.gguf w/imatrix.gguf -- "$I" --combine w/imatrix.gguf w/imatrix.gguf -o w/imatrix.gguf
refuse ./w/imatrix.gguf w/imatrix.gguf -- "$I" --combine w/imatrix.gguf -o ./w/imatrix.gguf

# ---- smelt-perplexity --kld-base OUT ----
P="$B/smelt-perplexity"
refuse w/model.gguf w/model.gguf -- "$P" -q -m w/model.gguf -f w/eval.md -c 64 --kld-base w/model.gguf
refuse ./w/eval.md w/eval.md -- "$P" -q -m w/model.gguf -f w/eval.md -c 64 --kld-base ./w/eval.md
refuse sym-model.gguf w/model.gguf -- "$P" -q -m w/model.gguf -f w/eval.md -c 64 --kld-base sym-model.gguf
refuse w w/model.gguf -- "$P" -q -m w/model.gguf -f w/eval.md -c 64 --kld-base w
# --kld-tokens OUT: neither the model nor the base distributions it reads
"$P" -q -m w/model.gguf -f w/eval.md -c 64 --kld-base base.kld >/dev/null
base_sum=$(sha256sum <base.kld)
refuse w/model.gguf w/model.gguf -- "$P" -q -m w/model.gguf --kld base.kld --kld-tokens w/model.gguf
refuse sym-model.gguf w/model.gguf -- "$P" -q -m w/model.gguf --kld base.kld --kld-tokens sym-model.gguf
refuse ./base.kld base.kld -- "$P" -q -m w/model.gguf --kld base.kld --kld-tokens ./base.kld
[ "$(sha256sum <base.kld)" = "$base_sum" ] || fail "--kld-tokens changed the base distributions"

# ---- smelt-verify --manifest OUT MODEL ----
V="$B/smelt-verify"
refuse w/model.gguf w/model.gguf -- "$V" -q --manifest w/model.gguf w/model.gguf
refuse hard-model.gguf w/model.gguf -- "$V" -q --manifest hard-model.gguf w/model.gguf
refuse "$S1" "$S1" -- "$V" -q --manifest "$S1" w/base
refuse w/base/model.safetensors.index.json w/base/model.safetensors.index.json -- "$V" -q --manifest w/base/model.safetensors.index.json w/base/model.safetensors.index.json
refuse w/base/config.json w/base/config.json -- "$V" -q --manifest w/base/config.json w/base/model.safetensors.index.json
refuse w w/model.gguf -- "$V" -q --manifest w w/model.gguf

# ---- smelt-report --base B -f TEXT -o PREFIX [--cache DIR] QUANTS ----
R="$B/smelt-report"
mkdir -p quants && cp w/model.gguf quants/q.gguf
refuse w/eval.md w/eval.md -- "$R" -q --base w/model.gguf -f w/eval.md -o w/eval quants
refuse sym-eval.md w/eval.md -- "$R" -q --base w/model.gguf -f w/eval.md -o sym-eval quants
refuse w w/model.gguf -- "$R" -q --base w/model.gguf -f w/eval.md -o r --cache w quants
refuse quants quants -- "$R" -q --base w/model.gguf -f w/eval.md -o r --cache quants quants
refuse quants/q.gguf quants/q.gguf -- "$R" -q --base w/model.gguf -f w/eval.md -o r --cache quants/q.gguf quants
rm -rf quants

snapshot >"$tmp/after"
cmp -s "$tmp/before" "$tmp/after" || fail "inputs changed"
echo "output guard: $n refusals, every input intact"
