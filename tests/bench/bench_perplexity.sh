#!/usr/bin/env bash
# bench_perplexity.sh — evaluation speed of smelt-perplexity against llama.cpp's
# llama-perplexity on the same GGUF (tiny-mixtral F16 and Q8_0, made by llama.cpp's converter
# and quantizer), the same text (eval-en), threads, n_ctx and batch size.
# Throughput is tokens evaluated (chunks x n_ctx) per second of the evaluation phase: for
# smelt its own figure (--json tokens_per_second), for llama.cpp the time between its
# "calculating perplexity" and "Final estimate" log lines. Best of SMELT_BENCH_REPS runs
# (default 3) per tool, runs interleaved, since the machine may be shared.
# Environment: SMELT_BENCH_THREADS (default: all CPUs), SMELT_BENCH_CTX (256).
set -uo pipefail
root=${SMELT_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$root" || exit 1
P=${SMELT_BIN:-$root/bin}/smelt-perplexity
L=${SMELT_ORACLE_BIN:-$root/.oracle/build/bin}/llama-perplexity
reps=${SMELT_BENCH_REPS:-3}
th=${SMELT_BENCH_THREADS:-$(nproc)}
ctx=${SMELT_BENCH_CTX:-256}
text=samples/text/eval-en.txt
gdir=${SMELT_BUILD:-$root/build/release}/gguf
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
[ -x "$P" ] || { echo "bench_perplexity: $P missing (make)"; exit 1; }

# seconds between two llama.cpp log lines (timestamps M.SS.mmm.uuu)
llama_tps() {
  python3 - "$1" <<'PY'
import re, sys
t0 = t1 = None; chunks = ctx = 0
for line in open(sys.argv[1], errors="replace"):
    m = re.match(r"(\d+)\.(\d+)\.(\d+)\.(\d+) ", line)
    if not m: continue
    ts = int(m[1]) * 60 + int(m[2]) + int(m[3]) / 1e3 + int(m[4]) / 1e6
    c = re.search(r"calculating perplexity over (\d+) chunks, n_ctx=(\d+)", line)
    if c: t0, chunks, ctx = ts, int(c[1]), int(c[2])
    if "Final estimate" in line: t1 = ts
if t0 is None or t1 is None or t1 <= t0: print("0"); sys.exit()
print(f"{chunks * ctx / (t1 - t0):.1f}")
PY
}

printf 'bench_perplexity: eval-en, n_ctx %s, batch 2048, %s threads, best of %s\n' "$ctx" "$th" "$reps"
rc=0
for type in f16 q8_0; do
  g=$gdir/tiny-mixtral-$type.gguf
  if ! tests/verify/mk-gguf samples/tiny-mixtral "$g" "$type" >"$tmp/mk.log" 2>&1; then
    echo "  tiny-mixtral $type: skipped (llama.cpp converter/quantizer not installed)"; continue
  fi
  best_s=0 best_l=0
  for ((i = 0; i < reps; i++)); do
    "$P" -m "$g" -f "$text" -c "$ctx" -b 2048 -t "$th" -q --json >"$tmp/s.json" 2>/dev/null || { echo "  smelt-perplexity failed"; rc=1; break; }
    s=$(python3 -c 'import json,sys; print("%.1f" % json.load(open(sys.argv[1]))["tokens_per_second"])' "$tmp/s.json")
    best_s=$(python3 -c "print(max($best_s, $s))")
    if [ -x "$L" ]; then
      "$L" -m "$g" -f "$text" -c "$ctx" -b 2048 -t "$th" --log-file "$tmp/l.log" >"$tmp/l.out" 2>&1
      cat "$tmp/l.out" "$tmp/l.log" >"$tmp/l.all" 2>/dev/null
      l=$(llama_tps "$tmp/l.all")
      best_l=$(python3 -c "print(max($best_l, $l))")
    fi
  done
  ppl=$(python3 -c 'import json,sys; print("%.4f" % json.load(open(sys.argv[1]))["ppl"])' "$tmp/s.json")
  if [ -x "$L" ] && python3 -c "import sys; sys.exit(0 if $best_l > 0 else 1)"; then
    ratio=$(python3 -c "print('%.2f' % ($best_s / $best_l))")
    printf '  tiny-mixtral %-5s smelt-perplexity %8.0f tokens/s   llama-perplexity %8.0f tokens/s   ratio %s   (PPL %s)\n' \
      "$type" "$best_s" "$best_l" "$ratio" "$ppl"
  else
    printf '  tiny-mixtral %-5s smelt-perplexity %8.0f tokens/s   (llama-perplexity not built: no ratio)   (PPL %s)\n' \
      "$type" "$best_s" "$ppl"
  fi
done
exit $rc
