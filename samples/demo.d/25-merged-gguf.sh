#!/usr/bin/env bash
# 25-merged-gguf — the merged model (05-merge) as GGUF, two ways: smelt-convert of the merged
# directory, and smelt-merge --gguf straight from base + LoRA in one pass (no intermediate
# directory) — the same bytes. Then what the adapter did: eval-zh perplexity (first 20
# chunks of n_ctx 256) of the base and of the merged model.
set -euo pipefail
[ -d "$OUT/tiny-mixtral-zh" ] || { echo "skip: run 05-merge first"; exit 0; }
"$SMELT_BIN/smelt-convert" -q "$OUT/tiny-mixtral-zh" -o "$OUT/tiny-mixtral-zh.gguf"
mkdir -p "$OUT/one-pass"
"$SMELT_BIN/smelt-merge" -q --base "$SAMPLES/tiny-mixtral" --lora "$SAMPLES/tiny-mixtral-zh-lora" \
  --gguf "$OUT/one-pass/tiny-mixtral-zh.gguf" 2>/dev/null
if cmp -s "$OUT/tiny-mixtral-zh.gguf" "$OUT/one-pass/tiny-mixtral-zh.gguf"; then
  echo "smelt-merge --gguf = smelt-convert of the merged directory: identical ($(wc -c <"$OUT/tiny-mixtral-zh.gguf") bytes)"
else
  echo "smelt-merge --gguf and smelt-convert of the merged directory DIFFER"; exit 1
fi
[ -f "$OUT/tiny-mixtral-bf16.gguf" ] || "$SMELT_BIN/smelt-convert" -q "$SAMPLES/tiny-mixtral" -o "$OUT/tiny-mixtral-bf16.gguf"
for m in tiny-mixtral-bf16 tiny-mixtral-zh; do
  ppl=$("$SMELT_BIN/smelt-perplexity" -q --json -m "$OUT/$m.gguf" -f "$SAMPLES/text/eval-zh.txt" -c 256 --chunks 20 \
        | sed -n 's/^ *"ppl": \([0-9.]*\),*$/\1/p')
  echo "eval-zh PPL (20 chunks), $m: $ppl"
done
