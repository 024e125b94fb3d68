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

# slices combined by smelt: llama-quantize and llama-imatrix take the combination
I=$B/smelt-imatrix
for r in 0:4 4:10; do
  "$I" -q -m "$M" -f $C -c 256 --chunks 10 --chunk-range $r -o "$tmp/slice-$r.gguf" >/dev/null || fail "slice $r"
done
"$I" --combine "$tmp/slice-0:4.gguf" "$tmp/slice-4:10.gguf" -o "$tmp/comb.gguf" >/dev/null || fail "smelt --combine"
if "$L/llama-quantize" --imatrix "$tmp/comb.gguf" "$M" "$tmp/q4-comb.gguf" Q4_K_M 2 >"$tmp/q.log" 2>&1; then
  grep -q "loaded 32 importance matrix entries from $tmp/comb.gguf computed on 10 chunks" "$tmp/q.log" ||
    fail "llama-quantize with smelt's combination: $(grep -i imatrix "$tmp/q.log" | head -3)"
else
  fail "llama-quantize --imatrix (smelt's combination): $(tail -3 "$tmp/q.log")"
fi
"$L/llama-imatrix" -m "$M" -c 256 -b 256 --in-file "$tmp/comb.gguf" -o "$tmp/re-comb.gguf" >"$tmp/r.log" 2>&1 ||
  fail "llama-imatrix --in-file (smelt's combination): $(tail -3 "$tmp/r.log")"
cmp -s "$tmp/re-comb.gguf" "$tmp/comb.gguf" || fail "llama-imatrix's rewrite of smelt's combination differs"
# the same slices combined by llama-imatrix: smelt reads it, same counts, sums within 1e-6
"$L/llama-imatrix" -m "$M" -c 256 -b 256 --in-file "$tmp/slice-0:4.gguf" --in-file "$tmp/slice-4:10.gguf" \
  -o "$tmp/llama-comb.gguf" >"$tmp/r.log" 2>&1 || fail "llama-imatrix --in-file x2: $(tail -3 "$tmp/r.log")"
"$I" --combine "$tmp/llama-comb.gguf" -o "$tmp/llama-comb-re.gguf" >/dev/null || fail "smelt reads llama's combination"
python3 tests/e2e/imatrix_read.py "$tmp/llama-comb-re.gguf" "$tmp/comb.gguf" 1e-6 ||
  fail "llama's and smelt's combinations of the same slices differ"
"$I" --combine "$tmp/llama-comb.gguf" "$tmp/smelt.gguf" -o "$tmp/mixed.gguf" >"$tmp/out" ||
  fail "smelt --combine of llama's and smelt's"
grep -qF "32 entries from 103 chunks of 256 tokens" "$tmp/out" || fail "mixed combination: $(cat "$tmp/out")"
# --show-statistics: llama-imatrix prints the same per-weight sums of mean squared activations
# (its asynchronous log often loses the table when the process exits right after printing
# it — measured: 3 runs of 8 complete — so it is run until the table is there, up to 20 times)
for try in $(seq 20); do
  "$root/tests/oracle/llama-run" "$L/llama-imatrix" -m "$M" -c 256 --in-file "$tmp/smelt.gguf" --show-statistics >"$tmp/st.log" 2>&1 ||
    fail "llama-imatrix --show-statistics: $(tail -3 "$tmp/st.log")"
  grep -q "Computing weighted average statistics per layer" "$tmp/st.log" && break
done
"$I" --show-statistics "$tmp/smelt.gguf" --json >"$tmp/st.json" || fail "smelt --show-statistics"
python3 - "$tmp/st.log" "$tmp/st.json" <<'PY' || fail "statistics differ from llama-imatrix's"
import json, re, sys
ll, per_layer = {}, {}
for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
    f = [x.strip() for x in line.split("\t")]
    layer = f[0].split()[-1] if f[0] else ""  # after the log's time and level prefix
    if len(f) >= 13 and re.fullmatch(r"\d+", layer):
        ll["blk.%s.%s.weight" % (layer, f[1])] = (float(f[2]), int(f[8]), float(f[9]), float(f[12]))
    elif len(f) == 4 and re.fullmatch(r"\d+", layer):
        per_layer[int(layer)] = (float(f[1]), float(f[2].rstrip("%")) / 100, float(f[3]))
j = {x["name"]: x for x in json.load(open(sys.argv[2]))["entries"]}
assert len(ll) == 32, len(ll)
for n, (total, count, entropy, cossim) in ll.items():
    x = j[n]
    assert x["n_values"] == count and abs(x["sum"] - total) <= 0.01 + 1e-4 * total, (n, x["sum"], total)
    assert abs(x["entropy"] - entropy) <= 1e-3, (n, x["entropy"], entropy)
    assert (x["cossim"] is None and cossim == 0) or abs(x["cossim"] - cossim) <= 1e-3, (n, x["cossim"], cossim)
doc = json.load(open(sys.argv[2]))
assert sorted(per_layer) == [x["layer"] for x in doc["layers"]], per_layer
for x in doc["layers"]:
    total, zd, cossim = per_layer[x["layer"]]
    assert abs(x["sum"] - total) <= 0.01 + 1e-4 * total and abs(x["z_above_1"] - zd) <= 1e-5, (x, per_layer)
    assert (x["layer"] == 0 and x["cossim"] is None) or abs(x["cossim"] - cossim) <= 1e-3, (x, cossim)
print("statistics: %d weights and %d blocks, as llama-imatrix prints them" % (len(ll), len(per_layer)))
PY

[ $fails -eq 0 ] || { echo "$fails failure(s)"; exit 1; }
echo "ok"
