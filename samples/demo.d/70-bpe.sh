#!/usr/bin/env bash
# 70-bpe — the Llama 3 / Qwen path: a tiny Qwen3 whose tokenizer is a byte-level BPE
# tokenizer.json (no tokenizer.model), samples/tiny-qwen3-bpe, made by
# samples/make-tiny-bpe.py. Convert it to GGUF (tokenizer.ggml.model gpt2, the pre-tokenizer
# qwen2 recognized from tokenizer.json), quantize to Q4_K_M, and report both on eval-en
# (n_ctx 256, no BOS: Qwen adds none): size, bits per weight, PPL, KL-divergence from f16.
set -euo pipefail
root="$(cd "$SAMPLES/.." && pwd)"
m="$OUT/tiny-qwen3-bpe"
rm -rf "$m.quants"
mkdir -p "$m.quants"
# stderr: the note that llama.cpp (and so smelt) does not apply tokenizer.json's NFC normalizer
"$SMELT_BIN/smelt-convert" -q "$SAMPLES/tiny-qwen3-bpe" -o "$m-f16.gguf" --outtype f16 2>"$m.convert.txt"
"$SMELT_BIN/smelt-dump" --no-tensors "$m-f16.gguf" >"$m-f16.meta.txt"
grep -E 'general.architecture|tokenizer.ggml.(model|pre|tokens|merges) ' "$m-f16.meta.txt"
"$SMELT_BIN/smelt-quantize" -q "$m-f16.gguf" "$m.quants/tiny-qwen3-bpe-Q4_K_M.gguf" Q4_K_M
cd "$root"
"$SMELT_BIN/smelt-report" -q --no-cache --base "${m#"$root"/}-f16.gguf" -f samples/text/eval-en.txt -c 256 \
  -o "$OUT/bpe-report" "${m#"$root"/}.quants"
echo "PyTorch on the bf16 weights (samples/FIXTURES.md): eval-en PPL 160.7449"
echo "report: samples/out/bpe-report.md, bpe-report.json, bpe-report.svg"
