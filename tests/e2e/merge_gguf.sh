#!/usr/bin/env bash
# smelt-merge --gguf: base + LoRA merged and converted in one pass equals smelt-convert of the
# merged directory, byte for byte (f32 and bf16), for the safetensors and the .bin adapter.
set -euo pipefail
cd "$SMELT_ROOT"
M="$SMELT_BIN/smelt-merge" C="$SMELT_BIN/smelt-convert"
[ -x "$C" ] || { echo "skip: smelt-convert not built"; exit 77; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/one"
"$M" -q --base samples/tiny-mixtral --lora samples/tiny-mixtral-zh-lora -o "$tmp/tiny-mixtral-zh"
for t in f32 bf16; do
  "$C" -q "$tmp/tiny-mixtral-zh" -o "$tmp/two-$t.gguf" --outtype $t
  "$M" -q --base samples/tiny-mixtral --lora samples/tiny-mixtral-zh-lora --gguf "$tmp/one/tiny-mixtral-zh.gguf" --outtype $t
  cmp "$tmp/two-$t.gguf" "$tmp/one/tiny-mixtral-zh.gguf" || { echo "FAIL: --gguf --outtype $t differs from smelt-convert of the merged directory"; exit 1; }
  [ -s "$tmp/one/tiny-mixtral-zh.gguf.xxh64" ] || { echo "FAIL: no manifest beside the GGUF"; exit 1; }
  rm -f "$tmp/one/tiny-mixtral-zh.gguf"
done
# the .bin adapter (when the .bin reader is built)
if "$M" -q --base samples/tiny-mixtral --lora samples/tiny-mixtral-zh-lora-bin --gguf "$tmp/one/tiny-mixtral-zh.gguf" --outtype f32 2>"$tmp/err"; then
  cmp "$tmp/two-f32.gguf" "$tmp/one/tiny-mixtral-zh.gguf" || { echo "FAIL: .bin adapter --gguf differs"; exit 1; }
else
  grep -q "not supported yet" "$tmp/err" || { cat "$tmp/err"; exit 1; }
fi
if [ -x "$SMELT_BIN/smelt-verify" ]; then
  "$SMELT_BIN/smelt-verify" -q --check "$tmp/one/tiny-mixtral-zh.gguf.xxh64" "$tmp/one/tiny-mixtral-zh.gguf" >/dev/null
fi
echo "merge_gguf: ok"
