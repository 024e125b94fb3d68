#!/usr/bin/env bash
# smelt-dump on the sample checkpoint, a third-party GGUF, and bad inputs.
set -euo pipefail
cd "$SMELT_ROOT"
D="$SMELT_BIN/smelt-dump"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
# the sharded HF checkpoint: 4 layers x (2 norms + 4 attn + gate + 4x3 experts) + 3
"$D" --json samples/tiny-mixtral > "$tmp/st.json"
n=$(grep -c '"dtype"' "$tmp/st.json")
[ "$n" -eq 79 ] || { echo "expected 79 tensors, got $n"; exit 1; }
grep -q '"name": "model.layers.0.self_attn.q_proj.weight"' "$tmp/st.json"
# GGUF text listing and JSON
g=tests/fixtures/external/gguf-llama2-tiny-random-ollama/llama-2-tiny-random.gguf
"$D" "$g" > "$tmp/g.txt"
grep -q 'tokenizer.ggml.tokens .*(32000 total)' "$tmp/g.txt"
"$D" --json "$g" > "$tmp/g.json"
grep -q '"file_size": 1750560' "$tmp/g.json"
# tensor values: first row of a norm tensor (F32) and of a BF16 tensor
"$D" --tensor blk.0.attn_norm.weight --rows 1 "$g" > "$tmp/v.txt"
grep -q '^  \[0\]' "$tmp/v.txt"
"$D" --tensor model.norm.weight --rows 1 samples/tiny-mixtral > "$tmp/v2.txt"
grep -q 'BF16' "$tmp/v2.txt"
# errors: missing file (exit 1), bad usage (2), malformed GGUF (3)
set +e
"$D" "$tmp/none.gguf" 2>"$tmp/err"; rc=$?
[ $rc -eq 1 ] || { echo "missing file: exit $rc"; exit 1; }
"$D" 2>/dev/null; [ $? -eq 2 ] || { echo "no args should be a usage error"; exit 1; }
head -c 100 "$g" > "$tmp/trunc.gguf"
"$D" "$tmp/trunc.gguf" 2>"$tmp/err"; rc=$?
[ $rc -eq 3 ] || { echo "truncated GGUF: exit $rc"; cat "$tmp/err"; exit 1; }
grep -q "trunc.gguf: @ byte 8 (0x8): tensor count 12 cannot fit in the 76 bytes that follow" "$tmp/err" || { cat "$tmp/err"; exit 1; }
head -c 5000 "$g" > "$tmp/trunc2.gguf"
"$D" "$tmp/trunc2.gguf" 2>"$tmp/err"; rc=$?
[ $rc -eq 3 ] || { echo "truncated GGUF: exit $rc"; exit 1; }
grep -q "trunc2.gguf: 'tokenizer.ggml.tokens' @ byte 555 (0x22b): array of 32000 strings cannot fit in the 4437 bytes left" "$tmp/err" || { cat "$tmp/err"; exit 1; }
"$D" --tensor nope "$g" 2>"$tmp/err"; [ $? -eq 2 ] || exit 1
grep -q "no tensor named 'nope'" "$tmp/err"
set -e
echo "dump: ok"
