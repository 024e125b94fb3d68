#!/usr/bin/env bash
# imatrix_slices.sh — an importance matrix spread over processes and interrupted runs, on
# samples/tiny-mixtral with chunks of 64 tokens (no oracle needed):
#   - --chunk-range slices run at once with xargs -P, then --combine: the single run's
#     file byte for byte, in any order (the slices keep exact fixed-point sums); slices
#     written as .dat (f32 only) combine within 1e-6 relative (measured max printed);
#   - a run killed with SIGKILL after a checkpoint (--save-every) and started again resumes
#     and writes the single run's file byte for byte, with another -b;
#   - a checkpoint of another run or a damaged one is refused; bad ranges and mismatched
#     imatrices get their exact error lines;
#   - --combine of llama-imatrix's files (tests/fixtures/imatrix, GGUF and .dat) with
#     smelt's; smelt-quantize reads the result;
#   - --show-statistics, as a table and --json.
# Exit 0 pass, 77 skip, anything else fail.
set -uo pipefail
root=${SMELT_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$root" || exit 1
B=${SMELT_BIN:-$root/bin}
I=$B/smelt-imatrix
[ -x "$I" ] || { echo "FAIL: $I missing (run make)"; exit 1; }
command -v python3 >/dev/null || { echo "skip: python3 needed to read the files"; exit 77; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails+1)); }
expect_status() { # want cmd...
  local want=$1; shift
  "$@" >"$tmp/out" 2>"$tmp/err"; local rc=$?
  [ $rc -eq "$want" ] || fail "$* → exit $rc, want $want ($(head -c 300 "$tmp/err"))"
}
expect_line() { # exact stderr line
  grep -qxF -- "$1" "$tmp/err" || fail "expected the line: $1; got: $(cat "$tmp/err")"
}
C=samples/text/calib.txt
M=$tmp/m.gguf
"$B/smelt-convert" -q samples/tiny-mixtral -o "$M" --outtype f32 || { echo "FAIL: smelt-convert"; exit 1; }
run=("$I" -q -m "$M" -f $C -c 64 --chunks 12)

X=tests/e2e/imatrix_read.py

# ---- slices as separate processes, combined ----
expect_status 0 "${run[@]}" -o "$tmp/full.gguf"
printf '%s\n' 0:5 5:9 9:12 | xargs -P 3 -I{} "${run[@]}" --chunk-range {} -o "$tmp/slice-{}.gguf" >/dev/null ||
  fail "the slices"
expect_status 0 "$I" --combine "$tmp/slice-0:5.gguf" "$tmp/slice-5:9.gguf" "$tmp/slice-9:12.gguf" -o "$tmp/comb.gguf"
grep -qxF "smelt-imatrix: 3 files combined: 32 entries from 12 chunks of 64 tokens written to $tmp/comb.gguf (GGUF)" \
  "$tmp/out" || fail "combine summary: $(cat "$tmp/out")"
cmp -s "$tmp/full.gguf" "$tmp/comb.gguf" || fail "combined slices differ from the single run"
expect_status 0 "$I" --combine "$tmp/slice-9:12.gguf" "$tmp/slice-0:5.gguf" "$tmp/slice-5:9.gguf" -o "$tmp/comb2.gguf"
cmp -s "$tmp/full.gguf" "$tmp/comb2.gguf" || fail "combined slices in another order differ from the single run"
# without the exact sums (a combination's output holds f32 sums only, as llama.cpp's files):
# the same counts, sums within 1e-6
expect_status 0 "$I" --combine "$tmp/slice-0:5.gguf" -o "$tmp/plain-0:5.gguf"
expect_status 0 "$I" --combine "$tmp/plain-0:5.gguf" "$tmp/slice-5:9.gguf" "$tmp/slice-9:12.gguf" -o "$tmp/comb3.gguf"
python3 $X "$tmp/full.gguf" "$tmp/comb3.gguf" 1e-6 || fail "combined f32 slices differ from the single run"
"$B/smelt-dump" --no-tensors "$tmp/slice-5:9.gguf" | grep -q 'imatrix.chunk_count *= 4$' || fail "a slice's chunk_count"

# ---- a run killed after a checkpoint, resumed ----
# (SMELT_IMATRIX_TEST_KILL_AFTER: the tool sends itself SIGKILL after that chunk, so the
# kill lands at the same place on any machine; the checkpoint is from chunk 6)
rc=$(sh -c 'SMELT_IMATRIX_TEST_KILL_AFTER=7 "$@" >/dev/null 2>&1; echo $?' sh "${run[@]}" -b 64 --save-every 3 \
  -o "$tmp/res.gguf" 2>/dev/null)
[ $rc -eq 137 ] || fail "the killed run: exit $rc, want 137 (SIGKILL)"
[ -f "$tmp/res.gguf.checkpoint" ] && [ ! -e "$tmp/res.gguf" ] || fail "after the kill: $(ls "$tmp")"
cp "$tmp/res.gguf.checkpoint" "$tmp/saved.checkpoint"
expect_status 0 "$I" -m "$M" -f $C -c 64 --chunks 12 -b 128 --save-every 3 -o "$tmp/res.gguf"
grep -qxF "smelt-imatrix: note: resuming from the checkpoint $tmp/res.gguf.checkpoint" "$tmp/err" ||
  fail "resume note: $(head -3 "$tmp/err")"
grep -qxF "chunks 0..11: 6 restored from the checkpoint, 6 evaluated; 1 checkpoints written" "$tmp/out" ||
  fail "resume summary: $(tail -3 "$tmp/out")"
cmp -s "$tmp/res.gguf" "$tmp/full.gguf" || fail "the resumed run's imatrix differs from the single run's"
[ ! -e "$tmp/res.gguf.checkpoint" ] || fail "the checkpoint was not removed at the end"

# a checkpoint of another run, a damaged one
cp "$tmp/saved.checkpoint" "$tmp/x.ck"
expect_status 5 "$I" -q -m "$M" -f $C -c 64 --chunks 11 --save-every 3 --checkpoint "$tmp/x.ck" -o "$tmp/x.gguf"
expect_line "smelt-imatrix: error: $tmp/x.ck: checkpoint of another run (the number of chunks (--chunks) differs): remove it to start over, or give another --checkpoint path"
expect_status 5 "$I" -q -m "$M" -f samples/text/eval-en.txt -c 64 --chunks 12 --save-every 3 --checkpoint "$tmp/x.ck" \
  -o "$tmp/x.gguf"
expect_line "smelt-imatrix: error: $tmp/x.ck: checkpoint of another run (the calibration text differs): remove it to start over, or give another --checkpoint path"
head -c 5000 "$tmp/saved.checkpoint" >"$tmp/x.ck"
expect_status 3 "$I" -q "${run[@]:2}" --save-every 3 --checkpoint "$tmp/x.ck" -o "$tmp/x.gguf"
expect_line "smelt-imatrix: error: $tmp/x.ck: @ byte 4992 (0x1380): checksum mismatch: the checkpoint is damaged"
[ ! -e "$tmp/x.gguf" ] || fail "output written after a refused checkpoint"

# ---- bad ranges, bad combinations ----
expect_status 2 "${run[@]}" --chunk-range 5:3 -o "$tmp/x.gguf"
expect_line "smelt-imatrix: error: --chunk-range: expected A:B with 0 <= A < B, got '5:3'"
expect_status 2 "$I" -q -m "$M" -f $C -c 256 --chunk-range 90:94 -o "$tmp/x.gguf"
expect_line "smelt-imatrix: error: $C: chunk range 90:94 is outside the text's 93 chunks of 256 tokens (0 <= A < B <= 93)"
expect_status 2 "${run[@]}" --chunk-range 10:13 -o "$tmp/x.gguf"
expect_line "smelt-imatrix: error: $C: chunk range 10:13 is outside the first 12 chunks of 64 tokens kept by --chunks (0 <= A < B <= 12)"
# a legacy file whose blk.0.attn_q.weight has 8 columns
python3 -c 'import struct,sys; n=b"blk.0.attn_q.weight"; sys.stdout.buffer.write(struct.pack("<ii",1,len(n))+n+struct.pack("<ii",1,8)+struct.pack("<8f",*[1.0]*8)+struct.pack("<ii",1,0))' \
  >"$tmp/other.dat"
expect_status 5 "$I" --combine "$tmp/full.gguf" "$tmp/other.dat" -o "$tmp/x.gguf"
expect_line "smelt-imatrix: error: $tmp/other.dat: 'blk.0.attn_q.weight': 8 values in 1 matrices, but $tmp/full.gguf has 256 in 1 (imatrices of different models?)"
expect_status 5 "$I" --combine "$tmp/full.gguf" tests/fixtures/imatrix/tiny-mixtral-calib-c256.gguf -o "$tmp/x.gguf"
expect_line "smelt-imatrix: error: tests/fixtures/imatrix/tiny-mixtral-calib-c256.gguf: collected over chunks of 256 tokens, but $tmp/full.gguf over chunks of 64: combine imatrices made with the same context size"
[ ! -e "$tmp/x.gguf" ] || fail "output written after a refused combination"

# ---- llama-imatrix's files (GGUF and legacy .dat) with smelt's ----
L=tests/fixtures/imatrix/tiny-mixtral-calib-c256
expect_status 0 "$I" -q -m "$M" -f samples/text/eval-en.txt -c 256 --chunks 2 -o "$tmp/s256.gguf"
expect_status 0 "$I" --combine $L.gguf "$tmp/s256.gguf" -o "$tmp/ls.gguf"
grep -qF "32 entries from 95 chunks of 256 tokens" "$tmp/out" || fail "llama + smelt: $(cat "$tmp/out")"
"$B/smelt-dump" --no-tensors "$tmp/ls.gguf" | grep -qE 'imatrix.datasets *= \["samples/text/calib.txt", "samples/text/eval-en.txt"\]$' ||
  fail "datasets of the combination: $("$B/smelt-dump" --no-tensors "$tmp/ls.gguf" | grep datasets)"
expect_status 0 "$I" --combine "$tmp/s256.gguf" $L.dat -o "$tmp/sl.gguf"  # legacy: -c defaults to the GGUF's 256
python3 - $X $L.gguf "$tmp/s256.gguf" "$tmp/ls.gguf" "$tmp/sl.gguf" <<'PY' || fail "llama + smelt sums"
import sys, importlib.util
spec = importlib.util.spec_from_file_location("imx", sys.argv[1]); imx = importlib.util.module_from_spec(spec)
spec.loader.exec_module(imx)
(_, l), (_, s), (_, ls), (_, sl) = (imx.read(p) for p in sys.argv[2:6])
for n in l:
    for a, b, c in zip(l[n], s[n], ls[n]):
        assert abs(a + b - c) <= 1e-6 * abs(c) + 1e-30, (n, a, b, c)
    if n.endswith(".counts"): assert l[n] == sl[n] or sum(sl[n]) >= sum(l[n]), n
PY
expect_status 0 "$B/smelt-quantize" -q --imatrix "$tmp/ls.gguf" "$M" "$tmp/q.gguf" Q4_K_M

# ---- --show-statistics ----
expect_status 0 "$I" --show-statistics "$tmp/full.gguf"
grep -q "^blk.1.ffn_up_exps.weight  " "$tmp/out" || fail "statistics table: $(head -5 "$tmp/out")"
expect_status 0 "$I" --show-statistics $L.dat --json
python3 - "$tmp/out" <<'PY' || fail "statistics --json"
import json, math, sys
j = json.load(open(sys.argv[1]))
assert j["format"] == "dat" and len(j["entries"]) == 32, j.keys()
e = {x["name"]: x for x in j["entries"]}
q0, q1 = e["blk.0.attn_q.weight"], e["blk.1.attn_q.weight"]
assert q0["cossim"] is None and 0 < q1["cossim"] <= 1 and q0["n_values"] == 256, (q0, q1)
for x in j["entries"]:
    assert 0 <= x["entropy_norm"] <= 1 and 0 <= x["active"] <= 1 and x["min"] <= x["mean"] <= x["max"], x
    assert math.isclose(x["sum"], x["mean"] * x["n_values"], rel_tol=1e-9), x
PY
expect_status 2 "$I" --show-statistics "$tmp/full.gguf" -m "$M"
expect_line "smelt-imatrix: error: --show-statistics takes one imatrix and no model, text or --combine"

[ $fails -eq 0 ] || { echo "$fails failure(s)"; exit 1; }
echo "ok"
