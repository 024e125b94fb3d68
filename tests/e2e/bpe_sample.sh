#!/usr/bin/env bash
# bpe_sample.sh — the trained byte-level BPE sample (samples/tiny-qwen3-bpe: Qwen3, its own
# tokenizer.json) through smelt and llama.cpp. smelt-convert --outtype f16, smelt-quantize
# Q8_0 and Q4_K_M; on eval-en (-c 256, 8 chunks) smelt-perplexity's PPL of each file is
# within 0.1% of llama-perplexity's on the same file, and the mean KL-divergence of
# llama.cpp's token distributions from smelt's is below 1e-3 (llama.cpp tokenizes the text
# itself, so a tokenizer difference would show in both).
# Exit 0 pass, 77 skip (no llama.cpp tools), else fail.
set -uo pipefail
root=${SMELT_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$root" || exit 1
B=${SMELT_BIN:-$root/bin}
obin="${SMELT_ORACLE_BIN:-$root/.oracle/build/bin}"
[ -x "$obin/llama-perplexity" ] || { echo "skip: llama-perplexity not built (make oracle)"; exit 77; }
py=$(command -v python3) || { echo "skip: python3 needed to read JSON"; exit 77; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
T=samples/text/eval-en.txt
"$B/smelt-convert" -q samples/tiny-qwen3-bpe -o "$tmp/F16.gguf" --outtype f16 2>/dev/null || fail "smelt-convert"
for t in F16 Q8_0 Q4_K_M; do
  [ $t = F16 ] || "$B/smelt-quantize" -q "$tmp/F16.gguf" "$tmp/$t.gguf" $t || fail "smelt-quantize $t"
  "$B/smelt-perplexity" -m "$tmp/$t.gguf" -f "$T" -c 256 --chunks 8 -q --json --kld-base "$tmp/$t.kld" \
    >"$tmp/$t.json" || fail "smelt-perplexity on $t"
  r=$(tests/oracle/llama-kld "$obin/llama-perplexity" "$tmp/$t.gguf" "$T" "$tmp/$t.kld" --chunks 8) ||
    fail "llama-perplexity on $t"
  "$py" - "$tmp/$t.json" $r "$t" <<'PY' || fail "smelt-perplexity and llama.cpp disagree on $t"
import json, sys
ppl, kld, ppl_llama, t = json.load(open(sys.argv[1]))["ppl"], float(sys.argv[2]), float(sys.argv[4]), sys.argv[6]
rel = abs(ppl_llama - ppl) / ppl
print(f"tiny-qwen3-bpe {t}: PPL smelt {ppl:.4f}, llama.cpp {ppl_llama:.4f} ({100 * rel:.4f}% apart); "
      f"KLD llama.cpp vs smelt {kld:.3g}")
sys.exit(0 if rel <= 0.001 and kld < 1e-3 else 1)
PY
done
exit 0
