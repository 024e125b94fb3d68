#!/usr/bin/env bash
# smelt-convert's f32 GGUF of samples/tiny-mixtral loads in llama.cpp and its perplexity on
# eval-en.txt (n_ctx 256, reference.json's method) is within 0.5% of the PyTorch value.
# Skips (77) when llama.cpp's llama-perplexity is not built (make oracle).
set -euo pipefail
cd "$SMELT_ROOT"
bin="${SMELT_ORACLE_BIN:-$SMELT_ROOT/.oracle/build/bin}"
ppl="$bin/llama-perplexity"
[ -x "$ppl" ] || { echo "llama-perplexity not built ($ppl)"; exit 77; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$SMELT_BIN/smelt-convert" samples/tiny-mixtral -o "$tmp/tm-f32.gguf" --outtype f32 -q
# llama-perplexity sometimes exits before printing its summary (tests/oracle/llama-kld):
# the line is looked for in its output and its log file, and a run without it is repeated
got=
for attempt in 1 2 3; do
  "$SMELT_ROOT/tests/oracle/llama-run" "$ppl" -m "$tmp/tm-f32.gguf" -f samples/text/eval-en.txt -c 256 -b 256 -t 1 --log-file "$tmp/ppl.log" \
    >"$tmp/ppl.out" 2>&1 || { tail -20 "$tmp/ppl.out"; echo "llama-perplexity failed"; exit 1; }
  got=$(sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p' "$tmp/ppl.log" "$tmp/ppl.out" | tail -1)
  [ -n "$got" ] && break
done
[ -n "$got" ] || { tail -20 "$tmp/ppl.out"; echo "no final estimate in 3 runs"; exit 1; }
ref=$(python3 -c 'import json; print(json.load(open("samples/reference.json"))["perplexity"]["base"]["eval-en"]["ppl"])')
python3 - "$got" "$ref" <<'PY'
import sys
got, ref = float(sys.argv[1]), float(sys.argv[2])
rel = abs(got - ref) / ref
print(f"llama.cpp perplexity of smelt's f32 GGUF: {got} (PyTorch {ref:.5f}, {100*rel:.4f}% off)")
sys.exit(0 if rel <= 0.005 else 1)
PY
