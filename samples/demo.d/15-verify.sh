#!/usr/bin/env bash
# 15-verify — integrity check and hash manifest of the sample checkpoint (every tensor read,
# NaN/Inf counted, xxh64 per tensor as llama-gguf-hash prints it), the manifest checked back,
# and what the LoRA merge changed (base vs the merge oracle, tensor by tensor).
set -euo pipefail
v="$SMELT_BIN/smelt-verify"
"$v" -q --manifest "$OUT/tiny-mixtral.xxh64" --label tiny-mixtral "$SAMPLES/tiny-mixtral"
"$v" -q --check "$OUT/tiny-mixtral.xxh64" "$SAMPLES/tiny-mixtral"
echo "manifest: $OUT/tiny-mixtral.xxh64 ($(wc -l <"$OUT/tiny-mixtral.xxh64") lines)"
merged="$SAMPLES/../tests/fixtures/tiny-mixtral-zh-merged"
if [ -d "$merged" ]; then
  # exit status 5 means "different", which is expected here
  "$v" --diff "$SAMPLES/tiny-mixtral" "$merged" >"$OUT/merge-diff.txt" || [ $? -eq 5 ]
  head -6 "$OUT/merge-diff.txt"; echo "  … (full list: $OUT/merge-diff.txt)"; tail -1 "$OUT/merge-diff.txt"
fi
