#!/usr/bin/env bash
# imatrix_llama.sh — llama.cpp's own tools read smelt-imatrix's files: llama-quantize
# quantizes Q4_K_M with smelt's GGUF imatrix and with its legacy .dat (and reports the
# entries and chunks), and llama-imatrix --in-file rewrites smelt's GGUF imatrix
# byte-identically and converts it to exactly smelt's .dat.
# Needs the oracle's CLI tools (make oracle). Exit 0 pass, 77 skip, else fail.
set -uo pipefail
root=${SMELT_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$root" || exit 1
B=${SMELT_BIN:-$root/bin}
L=${SMELT_ORACLE_BIN:-$root/.oracle/build/bin}
[ -x "$L/llama-quantize" ] && [ -x "$L/llama-imatrix" ] ||
  { echo "skip: llama-quantize / llama-imatrix not built (make oracle)"; exit 77; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails+1)); }
C=samples/text/calib.txt
M=$tmp/tiny-f32.gguf
"$B/smelt-convert" -q samples/tiny-mixtral -o "$M" --outtype f32 || { echo "FAIL: smelt-convert"; exit 1; }
"$B/smelt-imatrix" -q -m "$M" -f $C -c 256 -o "$tmp/smelt.gguf" >/dev/null || { echo "FAIL: smelt-imatrix"; exit 1; }
"$B/smelt-imatrix" -q -m "$M" -f $C -c 256 -o "$tmp/smelt.dat" --output-format dat >/dev/null ||
  { echo "FAIL: smelt-imatrix dat"; exit 1; }

for f in smelt.gguf smelt.dat; do
  if "$L/llama-quantize" --imatrix "$tmp/$f" "$M" "$tmp/q4-$f.gguf" Q4_K_M 2 >"$tmp/q.log" 2>&1; then
    grep -q "loaded 32 importance matrix entries from $tmp/$f computed on 93 chunks" "$tmp/q.log" ||
      fail "llama-quantize with $f: $(grep -i imatrix "$tmp/q.log" | head -3)"
    grep -q "prepare_imatrix: have 32 importance matrix entries" "$tmp/q.log" || fail "prepare_imatrix with $f"
    # the quantized file runs in smelt (and records the imatrix)
    "$B/smelt-dump" --no-tensors "$tmp/q4-$f.gguf" | grep -q 'quantize.imatrix.entries_count *= 32$' ||
      fail "quantize.imatrix.entries_count in llama-quantize's output with $f"
  else
    fail "llama-quantize --imatrix $f: $(tail -3 "$tmp/q.log")"
  fi
done

# llama-imatrix reads smelt's file back: same bytes when rewritten, smelt's .dat when converted
# (-c 256 gives it the chunk size; -m is required by its parser but not loaded)
"$L/llama-imatrix" -m "$M" -c 256 -b 256 --in-file "$tmp/smelt.gguf" -o "$tmp/re.gguf" >"$tmp/r.log" 2>&1 ||
  fail "llama-imatrix --in-file: $(tail -3 "$tmp/r.log")"
cmp -s "$tmp/re.gguf" "$tmp/smelt.gguf" || fail "llama-imatrix's rewrite of smelt's imatrix differs"
"$L/llama-imatrix" -m "$M" -c 256 -b 256 --in-file "$tmp/smelt.gguf" --output-format dat -o "$tmp/re.dat" \
  >"$tmp/r.log" 2>&1 || fail "llama-imatrix --in-file → dat: $(tail -3 "$tmp/r.log")"
cmp -s "$tmp/re.dat" "$tmp/smelt.dat" || fail "llama-imatrix's .dat of smelt's imatrix differs from smelt's .dat"

[ $fails -eq 0 ] || { echo "$fails failure(s)"; exit 1; }
echo "ok"
