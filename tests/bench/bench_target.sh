#!/usr/bin/env bash
# Planning cost of smelt-quantize --target-bpw against one quantization of the same model:
# the sample model (f16, the reference imatrix), best of three alternating runs of
# `--dry-run --target-bpw 4.5` (estimates + choice; no output) and of a Q4_K_M quantization
# (SMELT_BENCH_THREADS threads, default 2). The planner must not take longer.
set -euo pipefail
cd "$SMELT_ROOT"
Q="$SMELT_BIN/smelt-quantize"
imx=tests/fixtures/imatrix/tiny-mixtral-calib-c256.gguf
thr=${SMELT_BENCH_THREADS:-2}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$SMELT_BIN/smelt-convert" -q samples/tiny-mixtral -o "$tmp/f16.gguf" --outtype f16
best() { python3 -c 'import sys; print(min(float(x) for x in sys.argv[1:]))' "$@"; }
plan=() quant=()
for round in 1 2 3; do
  s=$(date +%s.%N); "$Q" -q --dry-run --imatrix "$imx" --target-bpw 4.5 "$tmp/f16.gguf" "$thr" >/dev/null; e=$(date +%s.%N)
  plan+=("$(python3 -c "print($e - $s)")")
  s=$(date +%s.%N); "$Q" -q --imatrix "$imx" "$tmp/f16.gguf" "$tmp/q.gguf" Q4_K_M "$thr"; e=$(date +%s.%N)
  quant+=("$(python3 -c "print($e - $s)")")
done
p=$(best "${plan[@]}") q=$(best "${quant[@]}")
printf 'target plan (sample, %s threads): planning %.3f s, one Q4_K_M quantization %.3f s, ratio %.2f\n' "$thr" "$p" "$q" \
  "$(python3 -c "print($p / $q)")"
