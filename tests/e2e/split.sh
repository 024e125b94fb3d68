#!/usr/bin/env bash
# split.sh — split GGUF models (llama.cpp's gguf-split layout) with the built tools: every
# tool reads the first shard of a split made by llama-gguf-split --split as the whole model
# (same hash, same quantized bytes, same perplexity as the unsplit file), a missing or
# foreign shard is refused naming it.
# Exit 0 pass, 77 skip (llama-gguf-split not built), anything else fail.
set -uo pipefail
cd "$SMELT_ROOT"
B=$SMELT_BIN
GS=${SMELT_ORACLE_BIN:-$SMELT_ROOT/.oracle/build/bin}/llama-gguf-split
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails+1)); }
ok() { echo "ok   $*"; }
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
cp "$tmp/other-00002-of-00002.gguf" "$L2"
expect "smelt-perplexity: foreign shard" 3 \
  "smelt-perplexity: error: $L2: 'split.count': expected 3 as in $L1, found 2: a shard of another split" \
  "$B/smelt-perplexity" -m "$L1" -f "$TEXT" -c 256 --chunks 1
[ ! -e "$tmp/q.gguf" ] && ok "no output after a refused input" || fail "an output was written"

[ $fails -eq 0 ] || { echo "$fails check(s) failed"; exit 1; }
echo "split: ok"
