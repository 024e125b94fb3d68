#!/usr/bin/env bash
# 50-quantize — the publisher's quant set of the converted sample: Q8_0 Q6_K Q5_K_M Q4_K_M
# Q3_K_M Q2_K with llama.cpp's per-tensor mixes, weighted by the reference importance
# matrix, and a size / bits-per-weight / perplexity table (PPL when smelt-perplexity runs).
set -euo pipefail
q="$SMELT_BIN/smelt-quantize" p="$SMELT_BIN/smelt-perplexity"
in="$OUT/tiny-mixtral-f16.gguf"
if [ ! -f "$in" ]; then
  echo "skip: $in not found (it comes from the convert step)"
  exit 0
fi
imx="$SAMPLES/../tests/fixtures/imatrix/tiny-mixtral-calib-c256.gguf"
args=(); [ -f "$imx" ] && args=(--imatrix "$imx")
[ -f "$imx" ] && echo "imatrix: llama-imatrix on calib.txt (93 chunks of 256 tokens)"
printf '%-7s %10s %6s %9s  %s\n' type MB bpw PPL-en file
ppl_of() { [ -x "$p" ] || { echo -; return; }
  "$p" -q --json -m "$1" -f "$SAMPLES/text/eval-en.txt" -c 256 2>/dev/null |
    python3 -c 'import json,sys; print("%.4f" % json.load(sys.stdin)["ppl"])' 2>/dev/null || echo -; }
printf '%-7s %10s %6s %9s  %s\n' F16 "$(awk -v s="$(stat -c %s "$in")" 'BEGIN { printf "%.2f", s / 1e6 }')" 16.00 \
  "$(ppl_of "$in")" "${in#"$OUT"/} (input)"
for t in Q8_0 Q6_K Q5_K_M Q4_K_M Q3_K_M Q2_K; do
  out="$OUT/tiny-mixtral-$t.gguf"
  plan=$("$q" --dry-run --json "${args[@]}" "$in" "$t" 2>/dev/null)
  bpw=$(printf '%s' "$plan" | python3 -c 'import json,sys; print("%.2f" % json.load(sys.stdin)["totals"]["new_bpw"])')
  if ! printf '%s' "$plan" | python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["can_run"] else 1)'; then
    mb=$(printf '%s' "$plan" | python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["totals"]["output_bytes"] / 1e6))')
    printf '%-7s %10s %6s %9s  %s\n' "$t" "$mb" "$bpw" - "(plan only: this type's encoder is not built in yet)"
    continue
  fi
  "$q" -q "${args[@]}" "$in" "$out" "$t"
  mb=$(awk -v s="$(stat -c %s "$out")" 'BEGIN { printf "%.2f", s / 1e6 }')
  ppl=$(ppl_of "$out")
  printf '%-7s %10s %6s %9s  %s\n' "$t" "$mb" "$bpw" "$ppl" "${out#"$OUT"/}"
done
