#!/usr/bin/env bash
# 60-report — the model-card quality table of the zh quants (55-quantize-zh) against the
# merged model on eval-zh (first 40 chunks of 256 tokens): size, bits per weight, PPL and
# KL-divergence; Markdown, JSON and an SVG plot in $OUT/report.*. Paths in the report are
# relative to the repository root (the JSON names no directory of this machine). No cache:
# 25 and 55 rewrite the models on every run, so it would never be hit (and would leave the
# base's distributions, 40 MB, in $OUT).
set -euo pipefail
root="$(cd "$SAMPLES/.." && pwd)"
base="$OUT/tiny-mixtral-zh.gguf"
[ -f "$base" ] && [ -d "$OUT/zh-quants" ] || { echo "skip: run 25-merged-gguf and 55-quantize-zh first"; exit 0; }
cd "$root"
"$SMELT_BIN/smelt-report" -q --no-cache --base "${base#"$root"/}" -f samples/text/eval-zh.txt -c 256 --chunks 40 \
  -o "$OUT/report" "${OUT#"$root"/}/zh-quants"
python3 -c 'import sys, xml.dom.minidom as m; m.parse(sys.argv[1])' "$OUT/report.svg"
echo "report: samples/out/report.md, report.json, report.svg (plot of mean KLD against bits per weight)"
