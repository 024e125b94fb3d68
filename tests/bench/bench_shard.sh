#!/usr/bin/env bash
# --shard I/N on the synthetic Mixtral-shaped layer (tests/bench/make_layer: a one-layer
# Mixtral model with SMELT_BENCH_EXPERTS experts, default 1, and its synthetic imatrix):
# Q4_K_M split by --split-max-size into N files (3 or 4), written by one process
# (SMELT_BENCH_THREADS threads, default 2) and by N processes at once (xargs -P N, one
# thread each), three alternating rounds, the best wall time of each way kept. The shards
# must equal the one-process files byte for byte: a difference prints FAIL and exits 1.
set -euo pipefail
cd "$SMELT_ROOT"
Q="$SMELT_BIN/smelt-quantize"
thr=${SMELT_BENCH_THREADS:-2}
exps=${SMELT_BENCH_EXPERTS:-1}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$SMELT_BUILD/tests/bench/make_layer" "$tmp/layer.gguf" --imatrix "$tmp/imx.gguf"
# Q4_K_M of one expert is ~135 MB of tensor data, its largest tensor ~48 MB (ffn_down, q6_K)
split=(--split-max-size "$((50 * exps))M")
secs() { python3 -c "print($2 - $1)"; }
best() { python3 -c 'import sys; print(min(float(x) for x in sys.argv[1:]))' "$@"; }
one=() par=() n=0
for round in 1 2 3; do
  rm -rf "$tmp/one" "$tmp/par"; mkdir "$tmp/one" "$tmp/par"
  s=$(date +%s.%N)
  "$Q" -q --imatrix "$tmp/imx.gguf" "$tmp/layer.gguf" "$tmp/one/q.gguf" Q4_K_M "$thr" "${split[@]}"
  one+=("$(secs "$s" "$(date +%s.%N)")")
  n=$(ls "$tmp/one" | wc -l)
  s=$(date +%s.%N)
  seq 1 "$n" | xargs -P "$n" -I{} "$Q" -q --imatrix "$tmp/imx.gguf" "$tmp/layer.gguf" "$tmp/par/q.gguf" Q4_K_M 1 \
    "${split[@]}" --shard "{}/$n"
  par+=("$(secs "$s" "$(date +%s.%N)")")
  for f in "$tmp"/one/*; do
    if ! cmp -s "$f" "$tmp/par/$(basename "$f")"; then
      echo "FAIL: --shard I/$n by xargs -P $n: $(basename "$f") differs from the one-process split's"
      exit 1
    fi
  done
  if [ "$(ls "$tmp/par" | wc -l)" -ne "$n" ]; then echo "FAIL: the shards wrote $(ls "$tmp/par" | tr '\n' ' ')"; exit 1; fi
done
o=$(best "${one[@]}") p=$(best "${par[@]}")
printf 'shard (synthetic layer, %s expert(s), Q4_K_M + imatrix, %s files, %s bytes, identical): one process (%s threads) %.2f s, %s processes at once (xargs -P %s, 1 thread each) %.2f s, ratio %.2f\n' \
  "$exps" "$n" "$(du -cb "$tmp"/one/* | tail -1 | cut -f1)" "$thr" "$o" "$n" "$n" "$p" "$(python3 -c "print($p / $o)")"
