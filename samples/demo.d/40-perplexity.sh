#!/usr/bin/env bash
# 40-perplexity — perplexity of the converted sample on eval-en (n_ctx 256), by
# llama-perplexity's method; needs the GGUF written by the convert step (20-convert).
set -euo pipefail
p="$SMELT_BIN/smelt-perplexity"
gguf=""
for f in "$OUT/tiny-mixtral-f16.gguf" "$OUT/tiny-mixtral.gguf" "$OUT/tiny-mixtral-f32.gguf" "$OUT/tiny-mixtral-bf16.gguf"; do
  [ -f "$f" ] && { gguf=$f; break; }
done
if [ -z "$gguf" ]; then
  echo "skip: no converted GGUF in $OUT (tiny-mixtral-f16.gguf comes from the convert step)"
  exit 0
fi
echo "model: $gguf (PyTorch reference on eval-en: PPL 58.6602)"
"$p" -m "$gguf" -f "$SAMPLES/text/eval-en.txt" -c 256 2>/dev/null >"$OUT/perplexity-eval-en.txt"
tail -2 "$OUT/perplexity-eval-en.txt"
echo "running values: $OUT/perplexity-eval-en.txt"
