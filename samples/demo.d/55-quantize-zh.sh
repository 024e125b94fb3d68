#!/usr/bin/env bash
# 55-quantize-zh — the publisher's quant set of the MERGED zh model, weighted by smelt's own
# imatrix of it (45-imatrix): Q8_0 Q6_K Q5_K_M Q4_K_M Q3_K_M Q2_K and the i-quants IQ4_XS
# IQ3_XXS IQ2_XS IQ2_XXS (the 2-bit ones need the imatrix) into $OUT/zh-quants/.
set -euo pipefail
in="$OUT/tiny-mixtral-zh.gguf" imx="$OUT/tiny-mixtral-zh.imatrix.gguf"
for f in "$in" "$imx"; do [ -f "$f" ] || { echo "skip: $f not found (25-merged-gguf, 45-imatrix)"; exit 0; }; done
mkdir -p "$OUT/zh-quants"
for t in Q8_0 Q6_K Q5_K_M Q4_K_M Q3_K_M Q2_K IQ4_XS IQ3_XXS IQ2_XS IQ2_XXS; do
  "$SMELT_BIN/smelt-quantize" -q --imatrix "$imx" "$in" "$OUT/zh-quants/tiny-mixtral-zh-$t.gguf" "$t"
done
echo "quantized the merged zh model with its imatrix: $(ls "$OUT/zh-quants" | tr '\n' ' ')"
