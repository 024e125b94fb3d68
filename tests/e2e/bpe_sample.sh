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
command -v python3 >/dev/null || { echo "skip: python3 needed to read JSON"; exit 77; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
T=samples/text/eval-en.txt
"$B/smelt-convert" -q samples/tiny-qwen3-bpe -o "$tmp/F16.gguf" --outtype f16 2>/dev/null || fail "smelt-convert"
for t in F16 Q8_0 Q4_K_M; do
  [ $t = F16 ] || "$B/smelt-quantize" -q "$tmp/F16.gguf" "$tmp/$t.gguf" $t || fail "smelt-quantize $t"
  SMELT_BIN="$B" SMELT_ORACLE_BIN="$obin" tests/oracle/perplexity-agree "tiny-qwen3-bpe $t" "$tmp/$t.gguf" "$T" \
    "$tmp/$t.kld" 0.001 1e-3 256 8 || fail "smelt-perplexity and llama.cpp disagree on $t"
done
exit 0
