#!/usr/bin/env bash
# Issue check 2 with smelt's own tools: base + LoRA merged straight to GGUF (smelt-merge
# --gguf), perplexity on eval-zh by llama-perplexity's method (smelt-perplexity -c 256):
# equal to the oracle's (PyTorch on the merged model, samples/reference.json) within 0.1%,
# and far below the base's.
set -euo pipefail
cd "$SMELT_ROOT"
for t in smelt-merge smelt-convert smelt-perplexity; do
  [ -x "$SMELT_BIN/$t" ] || { echo "skip: $t not built"; exit 77; }
done
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$SMELT_BIN/smelt-merge" -q --base samples/tiny-mixtral --lora samples/tiny-mixtral-zh-lora --gguf "$tmp/tiny-mixtral-zh.gguf"
"$SMELT_BIN/smelt-convert" -q samples/tiny-mixtral -o "$tmp/base.gguf"
for m in tiny-mixtral-zh base; do
  "$SMELT_BIN/smelt-perplexity" -q --json -m "$tmp/$m.gguf" -f samples/text/eval-zh.txt -c 256 -b 256 > "$tmp/$m.json"
done
python3 - "$tmp" <<'PY'
import json, sys
t = sys.argv[1]
ref = json.load(open("samples/reference.json"))["perplexity"]
merged, base = (json.load(open(f"{t}/{m}.json"))["ppl"] for m in ("tiny-mixtral-zh", "base"))
want, want_base = ref["merged"]["eval-zh"]["ppl"], ref["base"]["eval-zh"]["ppl"]
print(f"eval-zh PPL: merged {merged:.5f} (oracle {want:.5f}, rel. diff {abs(merged - want) / want:.1e}); "
      f"base {base:.4f} (oracle {want_base:.4f})")
assert abs(merged - want) / want < 1e-3, "merged PPL is not the oracle's within 0.1%"
assert merged < base / 2, "the merge does not help on Chinese"
PY
echo "merge_ppl: ok"
