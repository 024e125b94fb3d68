#!/usr/bin/env bash
# smelt-quantize --target-size / --target-bpw / --plan on the sample model: refusal without
# an importance matrix, the budget hit within 0.5 % (file size, bits per weight), the
# --dry-run --json plan, its replay byte for byte (another thread count), the same plan
# with a split, plans that do not fit refused with their exact lines, and (when the
# oracle is built) llama-perplexity running on a budget file.
set -euo pipefail
cd "$SMELT_ROOT"
Q="$SMELT_BIN/smelt-quantize"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
imx=tests/fixtures/imatrix/tiny-mixtral-calib-c256.gguf
fail() { echo "FAIL: $*"; exit 1; }
f16=$tmp/f16.gguf
"$SMELT_BIN/smelt-convert" -q samples/tiny-mixtral -o "$f16" --outtype f16

# ---- refusals ----
set +e
"$Q" --target-bpw 4.5 "$f16" "$tmp/o.gguf" 2>"$tmp/err"; rc=$?
[ $rc -eq 2 ] || fail "no imatrix: exit $rc"
grep -qxF "smelt-quantize: error: $f16: --target-bpw/--target-size weigh each type's error by an importance matrix; pass --imatrix FILE (make one with: smelt-imatrix -m $f16 -f CALIBRATION.txt -o imatrix.gguf)" "$tmp/err" ||
  { cat "$tmp/err"; fail "no-imatrix message"; }
"$Q" -q --imatrix "$imx" --target-bpw 1 "$f16" "$tmp/o.gguf" 2>"$tmp/err"; rc=$?
[ $rc -eq 2 ] || fail "budget below the smallest plan: exit $rc"
grep -qxF "smelt-quantize: error: $f16: the budget (target-bpw 1) is below the smallest plan: 1792000 bytes of tensor data, 1.584 bits per weight" "$tmp/err" ||
  { cat "$tmp/err"; fail "small budget message"; }
set -e
[ ! -e "$tmp/o.gguf" ] || fail "an output appeared after an error"

# ---- a file size: the plan, the file, the replay ----
size=5000000
"$Q" -q --dry-run --json --imatrix "$imx" --target-size $size "$f16" >"$tmp/plan.json"
python3 - "$tmp/plan.json" $size <<'PY'
import json, sys
p, size = json.load(open(sys.argv[1])), int(sys.argv[2])
assert p["plan"]["method"] == "target-size" and p["plan"]["budget"] == str(size), p["plan"]
out = p["totals"]["output_bytes"]
assert 0.995 * size <= out <= size, out
planned = [t for t in p["tensors"] if t["rule"] == "target"]
assert len(planned) == 30, len(planned)
for t in planned:
    assert t["class"] and t["relative_errors"][t["new_type"]] >= 0, t
kept = [t for t in p["tensors"] if not t["quantizable"]]
assert all(t["new_type"] == t["type"] for t in kept)
PY
"$Q" -q --imatrix "$imx" --target-size $size "$f16" "$tmp/a.gguf" 2
actual=$(stat -c %s "$tmp/a.gguf")
want=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["totals"]["output_bytes"])' "$tmp/plan.json")
[ "$actual" = "$want" ] || fail "the file has $actual bytes, the dry run predicted $want"
"$SMELT_BIN/smelt-dump" "$tmp/a.gguf" >"$tmp/a.dump"
grep -q 'smelt.quantize.plan.method  *= "target-size"' "$tmp/a.dump" || fail "no plan method key"
"$Q" -q --imatrix "$imx" --plan "$tmp/plan.json" "$f16" "$tmp/b.gguf" 1
cmp "$tmp/a.gguf" "$tmp/b.gguf" || fail "--plan did not replay the plan byte for byte"
echo "target-size $size: $actual bytes; --plan replays it byte for byte"

# ---- bits per weight; the same types whatever the split (so --shard I/N processes agree) ----
"$Q" -q --dry-run --json --imatrix "$imx" --target-bpw 3.3 "$f16" >"$tmp/bpw.json"
"$Q" -q --dry-run --json --imatrix "$imx" --target-bpw 3.3 --split-max-tensors 25 --shard 2/2 "$f16" "$tmp/s.gguf" 1 >"$tmp/split.json"
python3 - "$tmp/bpw.json" "$tmp/split.json" <<'PY'
import json, sys
a, b = (json.load(open(f)) for f in sys.argv[1:])
assert 3.3 * 0.995 <= a["totals"]["new_bpw"] <= 3.3, a["totals"]["new_bpw"]
assert [t["new_type"] for t in a["tensors"]] == [t["new_type"] for t in b["tensors"]], "the split changed the plan"
assert b["totals"]["shards_out"] == 2
PY

# ---- plans that do not fit ----
bad() { # bad EXIT LINE PYTHON-EDIT: the edited plan is refused with exactly LINE
  python3 -c "import json,sys; p=json.load(open(sys.argv[1])); t={x['name']: x for x in p['tensors']}; $3; json.dump(p, open(sys.argv[2], 'w'))" \
    "$tmp/plan.json" "$tmp/bad.json"
  set +e; "$Q" -q --imatrix "$imx" --plan "$tmp/bad.json" "$f16" "$tmp/o.gguf" 2>"$tmp/err"; local rc=$?; set -e
  [ $rc -eq "$1" ] || { cat "$tmp/err"; fail "bad plan ($3): exit $rc, expected $1"; }
  grep -qxF "smelt-quantize: error: $2" "$tmp/err" || { cat "$tmp/err"; fail "bad plan ($3): message"; }
}
bad 5 "$tmp/bad.json: 'blk.9.attn_q.weight': the plan names a tensor that $f16 does not have" \
  "t['blk.0.attn_q.weight']['name'] = 'blk.9.attn_q.weight'"
bad 5 "$tmp/bad.json: 'blk.0.attn_k.weight': the plan has no type for this tensor of $f16" \
  "p['tensors'].remove(t['blk.0.attn_k.weight'])"
bad 5 "$tmp/bad.json: 'blk.0.attn_norm.weight': this tensor is kept as it is (f32) in every plan; the plan gives it q4_K" \
  "t['blk.0.attn_norm.weight']['new_type'] = 'q4_K'"
bad 3 "$tmp/bad.json: 'output.weight': unknown ggml type 'q9_K'" "t['output.weight']['new_type'] = 'q9_K'"
bad 3 "$tmp/bad.json: 'tensors': expected an array of {\"name\", \"new_type\"} (smelt-quantize --dry-run --json)" \
  "p['tensors'] = 3"
[ ! -e "$tmp/o.gguf" ] || fail "an output appeared after a refused plan"
echo "plans that do not fit are refused"

# ---- llama.cpp loads and runs a budget file ----
LP="${SMELT_ORACLE_BIN:-.oracle/build/bin}/llama-perplexity"
if [ -x "$LP" ]; then
  head -c 2500 samples/text/eval-en.txt >"$tmp/ev.txt"
  for try in 1 2 3; do # its last log lines are sometimes lost at exit: run again
    "$SMELT_ROOT/tests/oracle/llama-run" "$LP" -m "$tmp/a.gguf" -f "$tmp/ev.txt" -c 128 -b 128 -t 2 --log-file "$tmp/p2.log" >"$tmp/p.log" 2>&1 ||
      { tail -5 "$tmp/p.log"; fail "llama-perplexity on a budget file"; }
    cat "$tmp/p2.log" >>"$tmp/p.log"
    grep -q "Final estimate: PPL = " "$tmp/p.log" && break
  done
  grep -q "Final estimate: PPL = " "$tmp/p.log" || fail "no PPL for the budget file"
  echo "llama-perplexity runs on the budget file: $(grep -o 'PPL = [0-9.]*' "$tmp/p.log" | head -1)"
else
  echo "llama-perplexity not built (make oracle): load check skipped"
fi
