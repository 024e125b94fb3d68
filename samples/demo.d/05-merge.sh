#!/usr/bin/env bash
# 05-merge — where a Chinese-Mixtral user starts: a base model and a PEFT LoRA release
# (attention + expert LoRA, full embed_tokens/lm_head in modules_to_save). Merge them as
# PEFT's merge_and_unload() would, into $OUT/tiny-mixtral-zh (an HF directory the later
# steps convert), and show that it is the merge oracle, byte for byte.
set -euo pipefail
rm -rf "$OUT/tiny-mixtral-zh"
"$SMELT_BIN/smelt-merge" --base "$SAMPLES/tiny-mixtral" --lora "$SAMPLES/tiny-mixtral-zh-lora" \
  -o "$OUT/tiny-mixtral-zh" 2>/dev/null
oracle="$SAMPLES/../tests/fixtures/tiny-mixtral-zh-merged"
if [ -d "$oracle" ]; then
  same=0 total=0
  for f in "$oracle"/*.safetensors; do
    total=$((total + 1))
    cmp -s "$f" "$OUT/tiny-mixtral-zh/$(basename "$f")" && same=$((same + 1))
  done
  echo "shards identical to PEFT's merge (tests/fixtures/tiny-mixtral-zh-merged): $same of $total"
fi
echo "manifest: $OUT/tiny-mixtral-zh.xxh64 ($(($(wc -l <"$OUT/tiny-mixtral-zh.xxh64") - 1)) tensors)"
