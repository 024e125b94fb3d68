#!/usr/bin/env bash
# 45-imatrix — smelt's own importance matrix of the merged zh model (25-merged-gguf) on
# calib.txt (chunks of 256 tokens), through the reference forward pass, in the GGUF imatrix
# format llama-quantize reads. Run from the repository root, so that the text's path stored in
# the file (imatrix.datasets) is samples/text/calib.txt, as in llama-imatrix's reference
# matrix of the base (tests/fixtures/imatrix), not a path of this machine.
set -euo pipefail
in="$OUT/tiny-mixtral-zh.gguf"
[ -f "$in" ] || { echo "skip: $in not found (it comes from 25-merged-gguf)"; exit 0; }
out="$OUT/tiny-mixtral-zh.imatrix.gguf"
cd "$SAMPLES/.."
"$SMELT_BIN/smelt-imatrix" -q --json -m "$in" -f samples/text/calib.txt -c 256 -o "$out" >"$OUT/imatrix.json"
python3 - "$OUT/imatrix.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
print("imatrix: %d entries from %d chunks x %d tokens of calib.txt (PPL %.2f during collection), %.1f s -> %s"
      % (j["n_entries"], j["n_chunks"], j["n_ctx"], j["ppl"], j["seconds"], j["output"].split("/")[-1]))
PY
