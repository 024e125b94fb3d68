#!/usr/bin/env bash
# Planning cost of smelt-quantize --target-bpw against one quantization of the same model,
# on two models: the sample (f16, the reference imatrix) and the synthetic Mixtral-shaped
# layer (tests/bench/make_layer: a one-layer Mixtral model with SMELT_BENCH_EXPERTS
# experts, default 1, and its synthetic imatrix). Best of three alternating rounds of
# `--dry-run --target-bpw 4.5`, of `--dry-run --target-bpw 2.5` (a budget where the grid
# i-quants are candidates: their estimates take a second pass) and of one Q4_K_M
# quantization (SMELT_BENCH_THREADS threads, default 2). The planner must not take longer.
# SMELT_BENCH_LOW_QUANT=1 also times, once each, quantizing the 2.5-bpw plan itself
# (--plan) and llama-quantize IQ2_XS of the same file when the oracle is installed:
# minutes on the layer, the 2-bit grid encoders run at about 1 MB/s.
set -euo pipefail
cd "$SMELT_ROOT"
Q="$SMELT_BIN/smelt-quantize"
L=.oracle/build/bin/llama-quantize
thr=${SMELT_BENCH_THREADS:-2}
exps=${SMELT_BENCH_EXPERTS:-1}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
# wall seconds of a command (its stdout dropped)
secs() {
  local s e
  s=$(date +%s.%N); "$@" >/dev/null; e=$(date +%s.%N)
  python3 -c "print($e - $s)"
}
best() { python3 -c 'import sys; print(min(float(x) for x in sys.argv[1:]))' "$@"; }
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }

measure() { # NAME F16 IMATRIX
  local name=$1 f16=$2 imx=$3 p45=() p25=() quant=() round
  for round in 1 2 3; do
    p45+=("$(secs "$Q" -q --dry-run --imatrix "$imx" --target-bpw 4.5 "$f16" "$thr")")
    p25+=("$(secs "$Q" -q --dry-run --imatrix "$imx" --target-bpw 2.5 "$f16" "$thr")")
    quant+=("$(secs "$Q" -q --imatrix "$imx" "$f16" "$tmp/q.gguf" Q4_K_M "$thr")")
    rm -f "$tmp/q.gguf"
  done
  local a b q
  a=$(best "${p45[@]}") b=$(best "${p25[@]}") q=$(best "${quant[@]}")
  printf 'target plan (%s, %s threads): planning 4.5 bpw %.3f s, 2.5 bpw %.3f s; one Q4_K_M quantization %.3f s; ratios %s, %s\n' \
    "$name" "$thr" "$a" "$b" "$q" "$(ratio "$a" "$q")" "$(ratio "$b" "$q")"
  [ "${SMELT_BENCH_LOW_QUANT:-0}" = 1 ] || return 0
  "$Q" -q --dry-run --json --imatrix "$imx" --target-bpw 2.5 "$f16" "$thr" >"$tmp/plan.json"
  local p l=""
  p=$(secs "$Q" -q --imatrix "$imx" --plan "$tmp/plan.json" "$f16" "$tmp/p.gguf" "$thr")
  rm -f "$tmp/p.gguf"
  if [ -x "$L" ]; then
    l=$(secs tests/oracle/llama-run "$L" --imatrix "$imx" "$f16" "$tmp/l.gguf" IQ2_XS "$thr" 2>/dev/null)
    rm -f "$tmp/l.gguf"
  fi
  printf 'target plan (%s): quantizing the 2.5-bpw plan %.3f s (planning / that %s)' "$name" "$p" "$(ratio "$b" "$p")"
  if [ -n "$l" ]; then printf '; llama-quantize IQ2_XS %.3f s (planning / that %s)\n' "$l" "$(ratio "$b" "$l")"
  else printf '; llama-quantize IQ2_XS: no oracle\n'; fi
}

"$SMELT_BIN/smelt-convert" -q samples/tiny-mixtral -o "$tmp/f16.gguf" --outtype f16
measure sample "$tmp/f16.gguf" tests/fixtures/imatrix/tiny-mixtral-calib-c256.gguf
rm -f "$tmp/f16.gguf"
"$SMELT_BUILD/tests/bench/make_layer" "$tmp/layer.gguf" --imatrix "$tmp/imx.gguf"
measure "synthetic layer, $exps expert(s)" "$tmp/layer.gguf" "$tmp/imx.gguf"
