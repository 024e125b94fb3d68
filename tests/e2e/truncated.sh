#!/usr/bin/env bash
# truncated.sh — a GGUF whose tensor data is cut off (a truncated download or copy) is
# malformed input in every tool that opens one: exit 3 and one line naming the file, the
# first tensor whose data runs past the end and the byte offset of its info record
# (docs/errors.md). Covers a model given alone, the later shard of a split model, a model
# inside a directory (smelt-report), and an imatrix GGUF (smelt-quantize --imatrix,
# smelt-imatrix --combine / --show-statistics; the one-pass smelt-merge and smelt-convert
# with --outtype Q4_K_M --imatrix).
# The reader's own corpus of cut-off files is tests/formats/test_gguf.c
# (every_truncation_is_an_error, truncation_messages).
# Exit 0 pass, 77 skip, anything else fail.
set -uo pipefail
root=${SMELT_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$root" || exit 1
B=${SMELT_BIN:-$root/bin}
X=tests/fixtures/external/llama2c-stories260K-official/validation
G=$X/reference_f32_from_bin_gguf-py.gguf
TX=$X/eval_tinystories.txt
IM=tests/fixtures/imatrix/tiny-mixtral-calib-c256.gguf
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fails=0 n=0
fail() { echo "FAIL: $*"; fails=$((fails+1)); }
cut_off() { local z; z=$(stat -c %s "$1"); head -c $((z - $2)) "$1" >"$tmp/x" && mv "$tmp/x" "$1"; }

cp "$G" "$tmp/t.gguf"; cut_off "$tmp/t.gguf" 1000
cp "$IM" "$tmp/im.gguf"; cut_off "$tmp/im.gguf" 100
mkdir "$tmp/dir"; cp "$tmp/t.gguf" "$tmp/dir/q.gguf"
"$B/smelt-quantize" -q --split-max-tensors 10 "$G" "$tmp/sp.gguf" F32 || fail "split"
cut_off "$tmp/sp-00002-of-00005.gguf" 500
M="'blk.4.ffn_up.weight' @ byte 14095 (0x370f): data [995840, 1039872) runs past the end of the file (the data section holds 1039128 bytes from file offset 14208): truncated or corrupt"
MS="'blk.1.ffn_up.weight' @ byte 635 (0x27b): data [181760, 225792) runs past the end of the file (the data section holds 225292 bytes from file offset 704): truncated or corrupt"
MI="'blk.3.ffn_up_exps.weight.in_sum2' @ byte 4235 (0x108b): data [82912, 87008) runs past the end of the file (the data section holds 86940 bytes from file offset 4384): truncated or corrupt"

expect() { # file message cmd...
  local file=$1 msg=$2; shift 2
  "$@" >/dev/null 2>"$tmp/err"; local rc=$?
  n=$((n+1))
  local tool; tool=$(basename "$1")
  local want="$tool: error: $file: $msg"
  [ $rc -eq 3 ] || fail "$* → exit $rc, want 3"
  [ "$(cat "$tmp/err")" = "$want" ] || fail "$*:
  got  $(cat "$tmp/err")
  want $want"
}
T=$tmp/t.gguf S=$tmp/sp-00001-of-00005.gguf S2=$tmp/sp-00002-of-00005.gguf
for m in "$T|$T|$M" "$S|$S2|$MS"; do
  IFS='|' read -r in file msg <<<"$m"
  expect "$file" "$msg" "$B/smelt-dump" "$in"
  expect "$file" "$msg" "$B/smelt-verify" "$in"
  expect "$file" "$msg" "$B/smelt-verify" --diff "$G" "$in"
  expect "$file" "$msg" "$B/smelt-quantize" -q "$in" "$tmp/q.gguf" Q8_0
  expect "$file" "$msg" "$B/smelt-quantize" -q --dry-run "$in" Q8_0
  expect "$file" "$msg" "$B/smelt-perplexity" -q -m "$in" -f "$TX"
  expect "$file" "$msg" "$B/smelt-imatrix" -q -m "$in" -f "$TX" -o "$tmp/i.gguf"
  expect "$file" "$msg" "$B/smelt-report" -q --no-cache --base "$in" -f "$TX" -o "$tmp/r" "$G"
  expect "$file" "$msg" "$B/smelt-report" -q --no-cache --base "$G" -f "$TX" -o "$tmp/r" "$in"
done
expect "$tmp/dir/q.gguf" "$M" "$B/smelt-report" -q --no-cache --base "$G" -f "$TX" -o "$tmp/r" "$tmp/dir"
expect "$tmp/im.gguf" "$MI" "$B/smelt-quantize" -q --imatrix "$tmp/im.gguf" "$G" "$tmp/q.gguf" Q4_K_M
expect "$tmp/im.gguf" "$MI" "$B/smelt-imatrix" --combine "$tmp/im.gguf" "$IM" -o "$tmp/c.gguf"
expect "$tmp/im.gguf" "$MI" "$B/smelt-imatrix" --show-statistics "$tmp/im.gguf"
expect "$tmp/im.gguf" "$MI" "$B/smelt-merge" -q --base samples/tiny-mixtral --lora samples/tiny-mixtral-zh-lora \
  --gguf "$tmp/m.gguf" --outtype Q4_K_M --imatrix "$tmp/im.gguf"
expect "$tmp/im.gguf" "$MI" "$B/smelt-convert" -q samples/tiny-mixtral -o "$tmp/m.gguf" --outtype Q4_K_M --imatrix "$tmp/im.gguf"
for f in q.gguf i.gguf r.md c.gguf m.gguf; do [ -e "$tmp/$f" ] && fail "$f was written"; done
[ $fails -eq 0 ] || { echo "$fails of $n failed"; exit 1; }
echo "ok: $n runs"
