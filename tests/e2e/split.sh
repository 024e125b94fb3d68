#!/usr/bin/env bash
# split.sh — split GGUF models (llama.cpp's gguf-split layout) with the built tools: every
# tool reads the first shard of a split made by llama-gguf-split --split as the whole model
# (same hash, same quantized bytes, same perplexity as the unsplit file), a missing or
# foreign shard is refused naming it; smelt-convert, smelt-merge --gguf and smelt-quantize
# with --split-max-size / --split-max-tensors write the files llama-gguf-split writes from
# their single-file output, byte for byte; llama-gguf-split --merge of those gives the single
# file's KVs (but split.*) and tensor bytes; llama-perplexity on the first shard gives the
# single file's PPL; every output file goes through the output guard; smelt-quantize
# --shard I/N run as N processes by xargs -P gives the files of the one-process split.
# Exit 0 pass, 77 skip (llama-gguf-split not built), anything else fail.
set -uo pipefail
cd "$SMELT_ROOT"
B=$SMELT_BIN
GS=${SMELT_ORACLE_BIN:-$SMELT_ROOT/.oracle/build/bin}/llama-gguf-split
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails+1)); }
ok() { echo "ok   $*"; }
skipped=0
# exit status and exact stderr line of a command
expect() { # NAME STATUS LINE CMD...
  local name=$1 want=$2 line=$3; shift 3
  "$@" >/dev/null 2>"$tmp/err"; local rc=$?
  if [ $rc -ne "$want" ]; then fail "$name: exit $rc, expected $want"; cat "$tmp/err"; return; fi
  if ! grep -qxF -- "$line" "$tmp/err"; then fail "$name: message"; cat "$tmp/err"; echo "expected: $line"; return; fi
  ok "$name"
}
TEXT=samples/text/eval-en.txt
ppl() { "$B/smelt-perplexity" -q -m "$1" -f "$TEXT" -c 256 --chunks 4 -t 2 2>&1 | grep 'Final estimate'; }

"$B/smelt-convert" -q samples/tiny-mixtral -o "$tmp/f16.gguf" --outtype f16 || { echo "FAIL: convert"; exit 1; }

# ---- --shard I/N: N processes at once give the files of the one-process split ----
imx=tests/fixtures/imatrix/tiny-mixtral-calib-c256.gguf
mkdir "$tmp/one" "$tmp/par"
"$B/smelt-quantize" -q --imatrix "$imx" "$tmp/f16.gguf" "$tmp/one/q.gguf" Q4_K_M 2 --split-max-size 2M || fail "one-process split"
seq 1 4 | xargs -P 2 -I{} "$B/smelt-quantize" -q --imatrix "$imx" "$tmp/f16.gguf" "$tmp/par/q.gguf" Q4_K_M 1 \
  --split-max-size 2M --shard {}/4 || fail "xargs -P 2 --shard"
n=0; for f in "$tmp"/one/q-0000?-of-00004.gguf; do cmp -s "$f" "$tmp/par/${f##*/}" && n=$((n+1)); done
[ $n -eq 4 ] && [ "$(ls "$tmp/par" | wc -l)" -eq 4 ] && ok "--shard I/4 by xargs -P 2: the 4 files of the one-process split, byte for byte" ||
  fail "--shard: $n of 4 files identical ($(ls "$tmp/par" | tr '\n' ' '))"
mkdir "$tmp/two"
"$B/smelt-quantize" -q "$tmp/f16.gguf" "$tmp/two/q.gguf" Q8_0 --split-max-tensors 16 --shard 2/3 || fail "--shard 2/3"
[ "$(ls "$tmp/two")" = "q-00002-of-00003.gguf" ] && ok "--shard 2/3 writes its file only" || fail "--shard 2/3 wrote $(ls "$tmp/two")"
expect "--shard with the wrong N" 2 "smelt-quantize: error: $tmp/two/q.gguf: --shard 1/3: the split makes 4 files; give --shard I/4" \
  "$B/smelt-quantize" "$tmp/f16.gguf" "$tmp/two/q.gguf" Q4_K_M --split-max-size 2M --shard 1/3
expect "--shard without a split" 2 \
  "smelt-quantize: error: --shard I/N needs 1 <= I <= N and --split-max-size or --split-max-tensors (the split it is a part of)" \
  "$B/smelt-quantize" "$tmp/f16.gguf" "$tmp/two/q.gguf" Q4_K_M --shard 1/3
expect "--shard 0/3" 2 "smelt-quantize: error: --shard: '0/3' is not I/N with 1 <= I <= N (e.g. 2/4)" \
  "$B/smelt-quantize" "$tmp/f16.gguf" "$tmp/two/q.gguf" Q4_K_M --split-max-size 2M --shard 0/3

[ -x "$GS" ] || { echo "skip: $GS not built (run make oracle)"; exit 77; }

# ---- llama-gguf-split's shards, read by every tool ----
"$GS" --split-max-tensors 16 "$tmp/f16.gguf" "$tmp/ls" >/dev/null 2>&1 || { echo "FAIL: llama-gguf-split"; exit 1; }
L1=$tmp/ls-00001-of-00003.gguf
"$B/smelt-dump" "$L1" >"$tmp/dump" || fail "smelt-dump on the first shard"
[ "$(grep -c '^ *[0-9]*  [a-z_.0-9]*weight ' "$tmp/dump")" -eq 43 ] && ok "smelt-dump lists the 43 tensors of the 3 shards" ||
  fail "smelt-dump tensor count $(grep -c '^ *[0-9]*  [a-z_.0-9]*weight ' "$tmp/dump")"
grep -qx "shard 3 of 3: $tmp/ls-00003-of-00003.gguf, [0-9]* bytes, data at [0-9]*" "$tmp/dump" && ok "smelt-dump shard lines" || fail "shard lines"
grep -q '^validation: ok (a llama model: 4 layers' "$tmp/dump" && ok "model check on the shards" || fail "validation"
h1=$("$B/smelt-verify" -q "$L1" | grep '^model xxh64'); h0=$("$B/smelt-verify" -q "$tmp/f16.gguf" | grep '^model xxh64')
[ -n "$h0" ] && [ "$h1" = "$h0" ] && ok "smelt-verify: same model hash as the unsplit file" || fail "hash '$h1' vs '$h0'"
"$B/smelt-quantize" -q "$L1" "$tmp/q-split.gguf" Q8_0 && "$B/smelt-quantize" -q "$tmp/f16.gguf" "$tmp/q-one.gguf" Q8_0 &&
  cmp -s "$tmp/q-split.gguf" "$tmp/q-one.gguf" && ok "smelt-quantize: the same bytes from the shards" || fail "quantize from shards"
p1=$(ppl "$L1"); p0=$(ppl "$tmp/f16.gguf")
[ -n "$p0" ] && [ "$p1" = "$p0" ] && ok "smelt-perplexity: same PPL ($p0)" || fail "ppl '$p1' vs '$p0'"
"$B/smelt-imatrix" -q -m "$L1" -f "$TEXT" -c 256 --chunks 2 -t 2 -o "$tmp/i-split.gguf" >/dev/null 2>&1 &&
  "$B/smelt-imatrix" -q -m "$tmp/f16.gguf" -f "$TEXT" -c 256 --chunks 2 -t 2 -o "$tmp/i-one.gguf" >/dev/null 2>&1 &&
  cmp -s "$tmp/i-split.gguf" "$tmp/i-one.gguf" && ok "smelt-imatrix: the same file from the shards" || fail "imatrix from shards"

# ---- a later shard, a missing shard, a foreign shard ----
L2=$tmp/ls-00002-of-00003.gguf L3=$tmp/ls-00003-of-00003.gguf
"$B/smelt-dump" "$L2" | grep -qx 'note: shard 2 of 3 of a split model, listed alone (give the first shard for the whole model)' &&
  ok "smelt-dump lists a later shard alone" || fail "later shard in smelt-dump"
expect "a later shard given to smelt-verify" 2 \
  "smelt-verify: error: $L2: 'split.no': this file is shard 2 of 3; give the first shard (split.no 0), which finds the others" \
  "$B/smelt-verify" -q "$L2"
mv "$L3" "$tmp/away.gguf"
for t in smelt-dump smelt-verify; do
  expect "$t: missing shard" 1 "$t: error: $L3: shard 3 of 3 is missing ($L1 says the model has 3 files)" "$B/$t" "$L1"
done
expect "smelt-quantize: missing shard" 1 "smelt-quantize: error: $L3: shard 3 of 3 is missing ($L1 says the model has 3 files)" \
  "$B/smelt-quantize" "$L1" "$tmp/q.gguf" Q8_0
mv "$tmp/away.gguf" "$L3"
"$GS" --split-max-tensors 30 "$tmp/f16.gguf" "$tmp/other" >/dev/null 2>&1 || fail "llama-gguf-split (2 shards)"
cp "$L2" "$tmp/l2.gguf"
cp "$tmp/other-00002-of-00002.gguf" "$L2"
expect "smelt-perplexity: foreign shard" 3 \
  "smelt-perplexity: error: $L2: 'split.count': expected 3 as in $L1, found 2: a shard of another split" \
  "$B/smelt-perplexity" -m "$L1" -f "$TEXT" -c 256 --chunks 1
[ ! -e "$tmp/q.gguf" ] && ok "no output after a refused input" || fail "an output was written"
mv "$tmp/l2.gguf" "$L2"

# ---- smelt's split outputs: llama-gguf-split's layout, byte for byte ----
Q=$B/smelt-quantize
# OUT-0000i-of-0000N.gguf of smelt equal llama-gguf-split's split of smelt's single file
same_split() { # NAME SMELT_PREFIX LLAMA_PREFIX N
  local i ok_all=1
  for i in $(seq 1 "$4"); do
    f=$(printf '%s-%05d-of-%05d.gguf' "$2" "$i" "$4"); l=$(printf '%s-%05d-of-%05d.gguf' "$3" "$i" "$4")
    cmp -s "$f" "$l" || { ok_all=0; echo "differs: $f $l"; }
  done
  [ -e "$(printf '%s-%05d-of-%05d.gguf' "$2" 1 "$(($4 + 1))")" ] && ok_all=0
  [ $ok_all = 1 ] && ok "$1: the $4 files of llama-gguf-split, byte for byte" || fail "$1"
}
"$B/smelt-convert" -q samples/tiny-mixtral -o "$tmp/cs.gguf" --outtype f16 --split-max-tensors 16 || fail "convert --split-max-tensors"
same_split "smelt-convert --split-max-tensors 16" "$tmp/cs" "$tmp/ls" 3
"$B/smelt-convert" -q samples/tiny-mixtral -o "$tmp/cm.gguf" --outtype f16 --split-max-size 5M || fail "convert --split-max-size"
"$GS" --split-max-size 5M "$tmp/f16.gguf" "$tmp/lm" >/dev/null 2>&1 || fail "llama-gguf-split --split-max-size"
same_split "smelt-convert --split-max-size 5M" "$tmp/cm" "$tmp/lm" 4
"$Q" -q "$tmp/f16.gguf" "$tmp/q4.gguf" Q4_K_M 2 || fail "quantize"
"$Q" -q "$tmp/f16.gguf" "$tmp/q4s.gguf" Q4_K_M 2 --split-max-size 2M || fail "quantize --split-max-size"
"$GS" --split-max-size 2M "$tmp/q4.gguf" "$tmp/lq4" >/dev/null 2>&1 || fail "llama-gguf-split of the Q4_K_M"
same_split "smelt-quantize Q4_K_M --split-max-size 2M" "$tmp/q4s" "$tmp/lq4" 4
"$Q" -q "$L1" "$tmp/q8s.gguf" Q8_0 2 --split-max-tensors 20 || fail "quantize split to split"
"$GS" --split-max-tensors 20 "$tmp/q-one.gguf" "$tmp/lq8" >/dev/null 2>&1 || fail "llama-gguf-split of the Q8_0"
same_split "smelt-quantize of a split, --split-max-tensors 20" "$tmp/q8s" "$tmp/lq8" 3
M=(samples/tiny-mixtral samples/tiny-mixtral-zh-lora)
mkdir "$tmp/m1" "$tmp/m2" # the same output name: general.name comes from it
"$B/smelt-merge" -q --base "${M[0]}" --lora "${M[1]}" --gguf "$tmp/m1/m.gguf" --outtype f16 || fail "merge --gguf"
"$B/smelt-merge" -q --base "${M[0]}" --lora "${M[1]}" --gguf "$tmp/m2/m.gguf" --outtype f16 --split-max-tensors 10 ||
  fail "merge --gguf --split-max-tensors"
"$GS" --split-max-tensors 10 "$tmp/m1/m.gguf" "$tmp/lmg" >/dev/null 2>&1 || fail "llama-gguf-split of the merge"
same_split "smelt-merge --gguf --split-max-tensors 10" "$tmp/m2/m" "$tmp/lmg" 5
grep -q "^xxh64 *[0-9a-f]*  $tmp/m2/m-00001-of-00005.gguf\$" "$tmp/m2/m.gguf.xxh64" &&
  grep -q "^xxh64 *[0-9a-f]*  $tmp/m2/m-00005-of-00005.gguf:output_norm.weight\$" "$tmp/m2/m.gguf.xxh64" &&
  [ "$(grep -v ':' "$tmp/m2/m.gguf.xxh64" | awk '{print $2}')" = "$(grep -v ':' "$tmp/m1/m.gguf.xxh64" | awk '{print $2}')" ] &&
  ok "smelt-merge manifest of the split: the model hash of the single file" || fail "merge manifest"

# llama-gguf-split --merge of smelt's shards = smelt's single file, but the split.* keys it keeps
"$GS" --merge "$tmp/q4s-00001-of-00004.gguf" "$tmp/q4m.gguf" >/dev/null 2>&1 || fail "llama-gguf-split --merge"
PYTHONPATH=${SMELT_LLAMA_SRC:-$SMELT_ROOT/.oracle/llama.cpp-src}/gguf-py /usr/bin/python3 - "$tmp/q4m.gguf" "$tmp/q4.gguf" <<'PY' &&
import sys
from gguf import GGUFReader
a, b = GGUFReader(sys.argv[1]), GGUFReader(sys.argv[2])
def kvs(r):
    return [(k, f.types, [bytes(p) for p in f.parts[1:]]) for k, f in r.fields.items()
            if not k.startswith('split.') and not k.startswith('GGUF.')]
assert kvs(a) == kvs(b), "KVs differ"
assert [k for k in a.fields if k.startswith('split.')] == ['split.no', 'split.tensors.count', 'split.count'], list(a.fields)
ta, tb = a.tensors, b.tensors
assert [(t.name, t.tensor_type, list(t.shape)) for t in ta] == [(t.name, t.tensor_type, list(t.shape)) for t in tb]
assert all(bytes(x.data) == bytes(y.data) for x, y in zip(ta, tb)), "tensor bytes differ"
print(len(ta), "tensors")
PY
  ok "llama-gguf-split --merge of smelt's shards: every KV but split.* and every tensor byte of the single file" ||
  fail "merged shards differ from the single file"

# llama.cpp loads smelt's shards: the same perplexity as the single file
LP=${GS%/*}/llama-perplexity
lppl() {
  for try in 1 2 3 4 5; do # its last log lines are sometimes lost at exit: run again
    "$LP" -m "$1" -f "$TEXT" -c 256 -b 256 -t 2 --chunks 4 --log-file "$tmp/p2.log" >"$tmp/p.log" 2>&1 || return 1
    cat "$tmp/p2.log" >>"$tmp/p.log"
    grep -q "Final estimate: PPL = " "$tmp/p.log" && break
  done
  grep -o 'Final estimate: PPL = [0-9.]* +/- [0-9.]*' "$tmp/p.log" | head -1
}
if [ -x "$LP" ]; then
  a=$(lppl "$tmp/q4s-00001-of-00004.gguf"); b=$(lppl "$tmp/q4.gguf")
  [ -n "$b" ] && [ "$a" = "$b" ] && ok "llama-perplexity on smelt's Q4_K_M shards: $a, as the single file" || fail "llama ppl '$a' vs '$b'"
else
  echo "skip: llama-perplexity not built"; skipped=1
fi

# the outputs of a split go through the output guard, each file
cp "$tmp/f16.gguf" "$tmp/o-00002-of-00002.gguf"
expect "a shard output that is the input" 2 \
  "smelt-quantize: error: $tmp/o-00002-of-00002.gguf: output is the same file as the input $tmp/o-00002-of-00002.gguf (the model); choose another output name" \
  "$Q" "$tmp/o-00002-of-00002.gguf" "$tmp/o.gguf" Q8_0 --split-max-tensors 30
[ "$(ls "$tmp" | grep -c '^o-')" -eq 1 ] && ok "nothing written" || fail "an output was written"
expect "--keep-split with --split-max-size" 2 \
  "smelt-quantize: error: --keep-split keeps the input's shards; --split-max-size/--split-max-tensors make new ones: give one" \
  "$Q" --keep-split "$L1" "$tmp/k.gguf" Q8_0 --split-max-size 1G
expect "--split-max-size 0" 2 "smelt-convert: error: --split-max-size needs a size such as 500M or 4G (got '0')" \
  "$B/smelt-convert" samples/tiny-mixtral -o "$tmp/z.gguf" --split-max-size 0

[ $fails -eq 0 ] || { echo "$fails check(s) failed"; exit 1; }
[ "${skipped:-0}" = 0 ] || exit 77
echo "split: ok"
