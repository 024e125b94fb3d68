#!/usr/bin/env bash
# json_paths.sh — every tool's --json output is valid JSON and carries its input and output
# paths exactly when they hold a double quote, a single quote, backslashes, spaces and
# non-ASCII characters (UTF-8). Runs each tool on samples/ under such a directory.
# Exit 0 pass, 77 skip, anything else fail.
set -uo pipefail
root=${SMELT_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$root" || exit 1
B=${SMELT_BIN:-$root/bin}
[ -x "$B/smelt-convert" ] || { echo "FAIL: $B/smelt-convert missing (run make)"; exit 1; }
py=/usr/bin/python3
[ -x "$py" ] || py=$(command -v python3) || { echo "skip: python3 needed to read JSON"; exit 77; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
W="$tmp/"'a "quoted" it'"'"'s \back\\slash é模型'
mkdir -p "$W" || exit 1
ln -s "$root/samples/tiny-mixtral" "$W/hf"
ln -s "$root/samples/tiny-mixtral-zh-lora" "$W/lora"
T=samples/text/eval-en.txt
fails=0
# carries NAME STATUS PATH... -- CMD...: CMD exits with STATUS, its stdout parses as JSON
# and each PATH is in one of its strings (or keys), escaped so that it reads back byte for
# byte.
carries() {
  local name=$1 want=$2; shift 2
  local paths=()
  while [ "$1" != -- ]; do paths+=("$1"); shift; done
  shift
  "$@" >"$tmp/out" 2>"$tmp/err"; local rc=$?
  if [ $rc -ne "$want" ]; then
    echo "FAIL $name: exit $rc, want $want: $(head -c 400 "$tmp/err")"; fails=$((fails+1)); return
  fi
  if "$py" - "$tmp/out" "${paths[@]}" <<'PY'; then echo "ok   $name"; else echo "FAIL $name"; fails=$((fails+1)); fi
import json, sys
text = open(sys.argv[1], "rb").read().decode("utf-8")
try:
    doc = json.loads(text)
except ValueError as e:
    print("  not JSON: %s: %s" % (e, text[:300]))
    sys.exit(1)
strings = []
def walk(v):
    if isinstance(v, str): strings.append(v)
    elif isinstance(v, dict):
        for k, x in v.items(): strings.append(k); walk(x)
    elif isinstance(v, list):
        for x in v: walk(x)
walk(doc)
bad = [p for p in sys.argv[2:] if not any(p in s for s in strings)]
for p in bad: print("  path not carried: %r" % p)
sys.exit(1 if bad else 0)
PY
}

carries "smelt-dump (HF directory)" 0 "$W/hf" -- "$B/smelt-dump" --json --no-tensors "$W/hf"
carries "smelt-convert --dry-run (no path in the plan)" 0 -- "$B/smelt-convert" --dry-run --json "$W/hf"
carries "smelt-convert" 0 "$W/m.gguf" -- "$B/smelt-convert" -q --json --outtype f16 "$W/hf" -o "$W/m.gguf"
carries "smelt-convert --lora" 0 "$W/a.gguf" -- \
  "$B/smelt-convert" --json --lora "$W/lora" --base "$W/hf" -o "$W/a.gguf"
carries "smelt-merge" 0 "$W/merged" -- "$B/smelt-merge" -q --json --base "$W/hf" --lora "$W/lora" -o "$W/merged"
carries "smelt-dump (GGUF)" 0 "$W/m.gguf" -- "$B/smelt-dump" --json --no-tensors "$W/m.gguf"
carries "smelt-quantize --dry-run" 0 "$W/m.gguf" -- "$B/smelt-quantize" --dry-run --json "$W/m.gguf" Q8_0
carries "smelt-quantize" 0 "$W/m.gguf" -- "$B/smelt-quantize" -q --json "$W/m.gguf" "$W/q8.gguf" Q8_0
carries "smelt-verify" 0 "$W/q8.gguf" -- "$B/smelt-verify" --json "$W/q8.gguf"
carries "smelt-verify --diff" 5 "$W/hf" "$W/merged" -- "$B/smelt-verify" --diff --json "$W/hf" "$W/merged"
carries "smelt-perplexity" 0 "$W/q8.gguf" -- "$B/smelt-perplexity" -q --json -m "$W/q8.gguf" -f "$T" -c 128 --chunks 2
carries "smelt-imatrix" 0 "$W/imatrix.gguf" -- \
  "$B/smelt-imatrix" -q --json -m "$W/m.gguf" -f "$T" -c 128 --chunks 2 -o "$W/imatrix.gguf"
carries "smelt-imatrix --combine" 0 "$W/imatrix.gguf" "$W/both.gguf" -- \
  "$B/smelt-imatrix" --json --combine "$W/imatrix.gguf" "$W/imatrix.gguf" -o "$W/both.gguf"
carries "smelt-imatrix --show-statistics" 0 "$W/both.gguf" -- "$B/smelt-imatrix" --json --show-statistics "$W/both.gguf"
carries "smelt-report" 0 "$W/m.gguf" "$W/q8.gguf" -- \
  "$B/smelt-report" -q --json --no-cache --base "$W/m.gguf" -f "$T" -c 128 --chunks 2 -o "$W/card" "$W/q8.gguf"
[ $fails -eq 0 ] || { echo "$fails failure(s)"; exit 1; }
echo "json_paths: ok"
