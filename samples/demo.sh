#!/usr/bin/env bash
# demo.sh — the main job on samples/: what a Chinese-Mixtral publisher does, end to end.
# Each capability adds a step script in samples/demo.d/ (run in name order); every step
# reads and writes under samples/out/. Tools come from $SMELT_BIN (bin/ by default).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
export SMELT_BIN="${SMELT_BIN:-$here/../bin}"
export SAMPLES="$here"
export OUT="$here/out"
mkdir -p "$OUT"
for step in "$here"/demo.d/*.sh; do
  [ -e "$step" ] || continue
  echo
  echo "==== $(basename "$step" .sh) ===="
  bash "$step"
done
echo
echo "demo: done; outputs in samples/out/"
