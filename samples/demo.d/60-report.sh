#!/usr/bin/env bash
# 60-report — the model-card quality table of the zh quants (55-quantize-zh) against the
# merged model on eval-zh (first 40 chunks of 256 tokens): size, bits per weight, PPL and
# KL-divergence; Markdown, JSON and an SVG plot in $OUT/report.*.
set -euo pipefail
base="$OUT/tiny-mixtral-zh.gguf"
[ -f "$base" ] && [ -d "$OUT/zh-quants" ] || { echo "skip: run 25-merged-gguf and 55-quantize-zh first"; exit 0; }
cd "$SAMPLES" # paths in the report relative to samples/
"$SMELT_BIN/smelt-report" -q --base "$base" -f text/eval-zh.txt -c 256 --chunks 40 -o "$OUT/report" "$OUT/zh-quants"
python3 -c 'import sys, xml.dom.minidom as m; m.parse(sys.argv[1])' "$OUT/report.svg"
echo "report: samples/out/report.md, report.json, report.svg (plot of mean KLD against bits per weight)"
