#!/usr/bin/env bash
# degenerate_inputs.sh — inputs every tool must refuse the same way, and temporaries of killed
# runs:
#   - a tensor with a dimension of 0 (GGUF and safetensors) is malformed input (exit 3) for
#     smelt-dump, smelt-verify, smelt-quantize (also --dry-run), smelt-perplexity and
#     smelt-convert, with the same error line, and no temporary file is left;
#   - a FIFO or a link to /dev/zero given as a model or as a shard is "not a regular file"
#     (exit 1), never "missing", and never blocks;
#   - a temporary output left by a run that was killed (its pid is gone) is removed, with a
#     note, by the next run writing the same output; a live run's is kept.
set -u
cd "$(dirname "$0")/../.."
B="${SMELT_BIN:-$PWD/bin}"
for t in smelt-dump smelt-verify smelt-quantize smelt-perplexity smelt-convert smelt-merge; do
  [ -x "$B/$t" ] || { echo "$t not built"; exit 1; }
done
tmp="$(mktemp -d "${TMPDIR:-/tmp}/smelt-e2e-degenerate-XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
. tests/e2e/check.bash
# check_line NAME STATUS EXPECTED_STDERR_LINE CMD... — exit status and that exact line in stderr
check_line() {
  local name="$1" want="$2" line="$3"; shift 3
  timeout 60 "$@" >"$tmp/out" 2>"$tmp/err"; local rc=$?
  if [ "$rc" -ne "$want" ]; then fail "$name: exit $rc, expected $want"; sed 's/^/  | /' "$tmp/err" | head -5; return; fi
  if ! grep -Fxq -- "$line" "$tmp/err"; then
    fail "$name: stderr"; echo "  expected: $line"; sed 's/^/  | /' "$tmp/err" | head -5; return
  fi
  echo "ok   $name"
}
G=tests/fixtures/external/gguf-llama2-tiny-random-ollama/llama-2-tiny-random.gguf
T=tests/fixtures/external/llama2c-stories260K-official/validation/eval_tinystories.txt

# ==== a dimension of 0 ====
# the GGUF fixture with blk.0.ffn_down.weight's ne[0] (32) set to 0
python3 - "$G" "$tmp/zero.gguf" <<'PY'
import struct, sys
b = bytearray(open(sys.argv[1], 'rb').read())
i = b.index(b'blk.0.ffn_down.weight') + len('blk.0.ffn_down.weight')
assert struct.unpack_from('<Iq', b, i) == (2, 32)
struct.pack_into('<q', b, i + 4, 0)
open(sys.argv[2], 'wb').write(b)
PY
Z="$tmp/zero.gguf: 'blk.0.ffn_down.weight' @ byte 724160 (0xb0cc0): dimension 0 is 0: a tensor without elements"
mkdir -p "$tmp/dest"
check "dump: GGUF dimension 0" 3 "smelt-dump: error: $Z" "$B/smelt-dump" "$tmp/zero.gguf"
check "verify: GGUF dimension 0" 3 "smelt-verify: error: $Z" "$B/smelt-verify" "$tmp/zero.gguf"
check "quantize: GGUF dimension 0" 3 "smelt-quantize: error: $Z" "$B/smelt-quantize" "$tmp/zero.gguf" "$tmp/dest/q.gguf" Q8_0
check "quantize --dry-run: GGUF dimension 0" 3 "smelt-quantize: error: $Z" "$B/smelt-quantize" --dry-run "$tmp/zero.gguf" Q8_0
check "perplexity: GGUF dimension 0" 3 "smelt-perplexity: error: $Z" "$B/smelt-perplexity" -m "$tmp/zero.gguf" -f "$T"
[ -z "$(ls -A "$tmp/dest")" ] && echo "ok   no output and no temporary file" || { fail "left in the output directory:"; ls -A "$tmp/dest"; }

# the sample checkpoint with a [4, 256] gate written as [0, 256]
cp -r samples/tiny-mixtral "$tmp/hf0"
python3 - "$tmp/hf0/model-00001-of-00002.safetensors" <<'PY'
import struct, sys
b = bytearray(open(sys.argv[1], 'rb').read())
n, = struct.unpack_from('<Q', b, 0)
i = b.index(b'"model.layers.0.block_sparse_moe.gate.weight"', 8, 8 + n)
j = b.index(b'"shape":[4,256]', i, 8 + n)
b[j:j + 15] = b'"shape":[0,256]'
open(sys.argv[1], 'wb').write(b)
PY
off=$(python3 -c "import sys; b=open(sys.argv[1],'rb').read(); print(b.index(b'\"model.layers.0.block_sparse_moe.gate.weight\"'))" "$tmp/hf0/model-00001-of-00002.safetensors")
S="$tmp/hf0/model-00001-of-00002.safetensors: 'model.layers.0.block_sparse_moe.gate.weight' @ byte $off ($(printf '0x%x' "$off")): shape[0] is 0: a tensor without elements"
check "dump: safetensors dimension 0" 3 "smelt-dump: error: $S" "$B/smelt-dump" "$tmp/hf0"
check "verify: safetensors dimension 0" 3 "smelt-verify: error: $S" "$B/smelt-verify" "$tmp/hf0"
check "convert: safetensors dimension 0" 3 "smelt-convert: error: $S" "$B/smelt-convert" "$tmp/hf0" -o "$tmp/dest/c.gguf"
[ -z "$(ls -A "$tmp/dest")" ] && echo "ok   no output and no temporary file" || { fail "left in the output directory:"; ls -A "$tmp/dest"; }

# ==== FIFOs and devices ====
mkfifo "$tmp/fifo.gguf"
ln -s /dev/zero "$tmp/zero-link.gguf"
check "dump: a FIFO" 1 "smelt-dump: error: $tmp/fifo.gguf: not a regular file (it is a FIFO)" "$B/smelt-dump" "$tmp/fifo.gguf"
check "quantize: a FIFO" 1 "smelt-quantize: error: $tmp/fifo.gguf: not a regular file (it is a FIFO)" \
  "$B/smelt-quantize" "$tmp/fifo.gguf" "$tmp/dest/q.gguf" Q8_0
check "dump: a link to /dev/zero" 1 "smelt-dump: error: $tmp/zero-link.gguf: not a regular file (it is a character device)" \
  "$B/smelt-dump" "$tmp/zero-link.gguf"
check "perplexity: a link to /dev/zero" 1 \
  "smelt-perplexity: error: $tmp/zero-link.gguf: not a regular file (it is a character device)" \
  "$B/smelt-perplexity" -m "$tmp/zero-link.gguf" -f "$T"
cp -r samples/tiny-mixtral "$tmp/hf-fifo"
rm "$tmp/hf-fifo/model-00002-of-00002.safetensors"
mkfifo "$tmp/hf-fifo/model-00002-of-00002.safetensors"
check "convert: a FIFO as a shard" 1 \
  "smelt-convert: error: $tmp/hf-fifo/model-00002-of-00002.safetensors: not a regular file (it is a FIFO)" \
  "$B/smelt-convert" "$tmp/hf-fifo" -o "$tmp/dest/c.gguf"
rm "$tmp/hf-fifo/model-00002-of-00002.safetensors"
ln -s /dev/zero "$tmp/hf-fifo/model-00002-of-00002.safetensors"
check "dump: a link to /dev/zero as a shard" 1 \
  "smelt-dump: error: $tmp/hf-fifo/model-00002-of-00002.safetensors: not a regular file (it is a character device)" \
  "$B/smelt-dump" "$tmp/hf-fifo"
rm "$tmp/hf-fifo/config.json"
mkfifo "$tmp/hf-fifo/config.json"
check "convert: a FIFO as config.json" 1 "smelt-convert: error: $tmp/hf-fifo/config.json: not a regular file (it is a FIFO)" \
  "$B/smelt-convert" "$tmp/hf-fifo" -o "$tmp/dest/c.gguf"
[ -z "$(ls -A "$tmp/dest")" ] && echo "ok   no output and no temporary file" || { fail "left in the output directory:"; ls -A "$tmp/dest"; }

# ==== temporaries of killed runs ====
true & dead=$!; wait "$dead"   # a pid whose process has exited
live=$$
mkdir -p "$tmp/q"
printf x >"$tmp/q/.q.gguf.smelt-tmp-$dead-aB3dE9"
printf x >"$tmp/q/.q.gguf.smelt-tmp-$live-aB3dE9"
printf x >"$tmp/q/.other.gguf.smelt-tmp-$dead-aB3dE9"
check_line "quantize removes a dead run's temporary file" 0 \
  "smelt-quantize: note: removed stale temporary file $tmp/q/.q.gguf.smelt-tmp-$dead-aB3dE9 left by an interrupted run (pid $dead)" \
  "$B/smelt-quantize" -q "$G" "$tmp/q/q.gguf" Q8_0
[ ! -e "$tmp/q/.q.gguf.smelt-tmp-$dead-aB3dE9" ] && echo "ok   the dead run's file is gone" || fail "the dead run's file is still there"
[ -e "$tmp/q/.q.gguf.smelt-tmp-$live-aB3dE9" ] && echo "ok   the live run's file is kept" || fail "the live run's file was removed"
[ -e "$tmp/q/.other.gguf.smelt-tmp-$dead-aB3dE9" ] && echo "ok   another output's file is kept" || fail "another output's file was removed"
[ -s "$tmp/q/q.gguf" ] && echo "ok   the output was written" || fail "no output"

mkdir -p "$tmp/m/.merged.smelt-tmp-$dead-Xy12Zw/sub" "$tmp/m/.merged.smelt-tmp-$live-Xy12Zw"
printf x >"$tmp/m/.merged.smelt-tmp-$dead-Xy12Zw/model-00001-of-00002.safetensors"
printf x >"$tmp/m/.merged.smelt-tmp-$dead-Xy12Zw/sub/file"
check_line "merge removes a dead run's temporary directory" 0 \
  "smelt-merge: note: removed stale temporary directory $tmp/m/.merged.smelt-tmp-$dead-Xy12Zw left by an interrupted run (pid $dead)" \
  "$B/smelt-merge" -q --base samples/tiny-mixtral --lora samples/tiny-mixtral-zh-lora -o "$tmp/m/merged"
[ ! -e "$tmp/m/.merged.smelt-tmp-$dead-Xy12Zw" ] && echo "ok   the dead run's directory is gone" || fail "the dead run's directory is still there"
[ -d "$tmp/m/.merged.smelt-tmp-$live-Xy12Zw" ] && echo "ok   the live run's directory is kept" || fail "the live run's directory was removed"
[ -f "$tmp/m/merged/config.json" ] && echo "ok   the merge was written" || fail "no merged output"

echo "----"
[ "$fails" -eq 0 ] && echo "degenerate_inputs: all passed" || { echo "degenerate_inputs: $fails failed"; exit 1; }
