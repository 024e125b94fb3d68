#!/usr/bin/env bash
# smelt-quantize as a tool: command line, errors and JSON; then against llama.cpp's own
# llama-quantize: on the ollama tiny-random Llama every ftype falls back to F16 and must be
# byte-identical; on the real sample model (converted by llama.cpp's converter) the plan of
# every ftype, with and without the reference imatrix, must equal llama-quantize --dry-run,
# float outputs must be byte-identical, and llama-perplexity must run on smelt's outputs.
set -euo pipefail
cd "$SMELT_ROOT"
Q="$SMELT_BIN/smelt-quantize"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
small=tests/fixtures/external/gguf-llama2-tiny-random-ollama/llama-2-tiny-random.gguf
imx=tests/fixtures/imatrix/tiny-mixtral-calib-c256.gguf
fail() { echo "FAIL: $*"; exit 1; }

# ---- the tool itself ----
"$Q" --help >"$tmp/help"
grep -q '^Usage: smelt-quantize \[options\] IN.gguf \[OUT.gguf\] TYPE \[NTHREADS\]' "$tmp/help"
grep -q 'Q4_K_M' "$tmp/help"
set +e
"$Q" >/dev/null 2>&1; [ $? -eq 2 ] || fail "no arguments must exit 2"
"$Q" "$small" "$tmp/o.gguf" Q9_K 2>"$tmp/err"; rc=$?
[ $rc -eq 2 ] || fail "unknown ftype: exit $rc"
grep -q "^smelt-quantize: error: unknown quantization type 'Q9_K'; valid types: Q4_0 Q4_1 " "$tmp/err" || { cat "$tmp/err"; fail "message"; }
"$Q" "$small" "$small" F16 2>"$tmp/err"; rc=$?
[ $rc -eq 2 ] || fail "output = input: exit $rc"
grep -q "output is the same file as the input $small (the model); choose another output name" "$tmp/err" || fail "output = input message"
"$Q" --tensor-type attn_v "$small" "$tmp/o.gguf" Q8_0 2>"$tmp/err"; [ $? -eq 2 ] || fail "bad --tensor-type"
grep -q "malformed tensor type 'attn_v' (expected NAME=TYPE)" "$tmp/err" || { cat "$tmp/err"; fail "tensor-type message"; }
"$Q" --output-tensor-type q9 "$small" "$tmp/o.gguf" Q8_0 2>"$tmp/err"; [ $? -eq 2 ] || fail "bad type"
grep -q "unknown ggml type 'q9'" "$tmp/err" || fail "type message"
"$Q" --override-kv foo=int:x "$small" "$tmp/o.gguf" Q8_0 2>"$tmp/err"; [ $? -eq 2 ] || fail "bad override"
"$Q" "$tmp/missing.gguf" "$tmp/o.gguf" Q8_0 2>"$tmp/err"; [ $? -eq 1 ] || fail "missing input must exit 1"
"$Q" --error-model mse "$small" "$tmp/o.gguf" Q4_K 2>"$tmp/err"; [ $? -eq 2 ] || fail "bad --error-model"
grep -qx "smelt-quantize: error: --error-model: 'mse': expected tuned, plain or BLOCK\[/imatrix|/noimatrix|/embedding\]=MODEL" "$tmp/err" ||
  { cat "$tmp/err"; fail "error-model message"; }
"$Q" --error-model q5_K/imx=1,1,0 "$small" "$tmp/o.gguf" Q4_K 2>"$tmp/err"; [ $? -eq 2 ] || fail "bad --error-model qualifier"
grep -qx "smelt-quantize: error: --error-model: 'q5_K/imx=1,1,0': the qualifier after '/' is imatrix, noimatrix or embedding" "$tmp/err" ||
  { cat "$tmp/err"; fail "error-model qualifier message"; }
"$Q" --error-model q5_K=1,1 "$small" "$tmp/o.gguf" Q4_K 2>"$tmp/err"; [ $? -eq 2 ] || fail "bad --error-model model"
grep -qx "smelt-quantize: error: --error-model: 'q5_K=1,1': the model is plain, reference or P,C,A\[,unbias\]\[,norms\]" "$tmp/err" ||
  { cat "$tmp/err"; fail "error-model model message"; }
set -e
# the tuned error model (default: llama.cpp's reference blocks for q8_0) and the plain one
# (smelt's least-squares q8_0) give different bytes; tuned is the default
"$Q" -q --pure "$small" "$tmp/t.gguf" Q8_0
"$Q" -q --pure --error-model tuned "$small" "$tmp/t2.gguf" Q8_0
"$Q" -q --pure --error-model plain "$small" "$tmp/p.gguf" Q8_0
cmp -s "$tmp/t.gguf" "$tmp/t2.gguf" || fail "--error-model tuned is not the default"
! cmp -s "$tmp/t.gguf" "$tmp/p.gguf" || fail "--error-model plain gave the tuned bytes"
# per-block overrides
"$Q" -q --pure --error-model q8_0=plain "$small" "$tmp/o1.gguf" Q8_0
cmp -s "$tmp/o1.gguf" "$tmp/p.gguf" || fail "--error-model q8_0=plain differs from --error-model plain"
"$Q" -q --pure --error-model plain --error-model q8_0=reference "$small" "$tmp/o1.gguf" Q8_0
cmp -s "$tmp/o1.gguf" "$tmp/t.gguf" || fail "--error-model q8_0=reference differs from the default"
"$Q" -q --pure --error-model q8_0/imatrix=plain "$small" "$tmp/o1.gguf" Q8_0
cmp -s "$tmp/o1.gguf" "$tmp/t.gguf" || fail "an /imatrix override applied without an imatrix"
"$Q" -q --pure --error-model q8_0/noimatrix=plain "$small" "$tmp/o1.gguf" Q8_0
! cmp -s "$tmp/o1.gguf" "$tmp/t.gguf" || fail "a /noimatrix override did not apply without an imatrix"
rm -f "$tmp/t.gguf" "$tmp/t2.gguf" "$tmp/p.gguf" "$tmp/o1.gguf"
[ ! -e "$tmp/o.gguf" ] || fail "an output appeared after an error"
# IN TYPE form: ggml-model-TYPE.gguf beside the input
cp "$small" "$tmp/in.gguf"
"$Q" -q "$tmp/in.gguf" F32 1
[ -f "$tmp/ggml-model-F32.gguf" ] || fail "IN TYPE did not write ggml-model-F32.gguf"
# --json dry run
"$Q" --dry-run --json "$small" Q4_K_M > "$tmp/plan.json"
python3 - "$tmp/plan.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
assert d["ftype"] == "Q4_K_M" and d["dry_run"] is True, d["ftype"]
assert len(d["tensors"]) == 12 and d["totals"]["tensors"] == 12
t = {x["name"]: x for x in d["tensors"]}
# 8-wide rows fit no block: every weight falls back to F16
assert t["blk.0.attn_q.weight"]["new_type"] == "f16" and t["blk.0.attn_q.weight"]["fallback"]
assert t["blk.0.attn_norm.weight"]["quantizable"] is False
assert d["totals"]["fallback"] == 9, d["totals"]
PY
# NaN/Inf in the input: refused with the file, the tensor and the first index, nothing
# written; --allow-nonfinite writes them, with warnings counting them
nonfinite() { # input tensor index kind ftype message-tail
  tests/e2e/poke-value "$SMELT_BIN/smelt-dump" "$1" "$2" "$3" "$4"
  set +e; "$Q" -q "$1" "$tmp/nf.gguf" "$5" 2>"$tmp/err"; local rc=$?; set -e
  [ $rc -eq 3 ] || { cat "$tmp/err"; fail "$2 $4: exit $rc"; }
  grep -qxF "smelt-quantize: error: $1: '$2': value $3 is $6; smelt refuses non-finite weights (--allow-nonfinite writes them anyway)" "$tmp/err" ||
    { cat "$tmp/err"; fail "$2 $4: message"; }
  [ ! -e "$tmp/nf.gguf" ] && [ "$(ls -A "$tmp" | grep -c smelt-tmp || true)" -eq 0 ] || fail "$2 $4: output left behind"
}
cp "$small" "$tmp/nan16.gguf"     # F16 weights: ffn_down (32-wide rows) is quantized to Q8_0
nonfinite "$tmp/nan16.gguf" blk.0.ffn_down.weight 40 nan Q8_0 NaN
"$Q" -q --allow-nonfinite "$tmp/nan16.gguf" "$tmp/nf.gguf" Q8_0 2>"$tmp/err" || { cat "$tmp/err"; fail "--allow-nonfinite"; }
grep -qx "smelt-quantize: warning: tensor 'blk.0.ffn_down.weight': 1 NaN/Inf value in the input, quantized as 0" "$tmp/err" || { cat "$tmp/err"; fail "per-tensor warning"; }
grep -qx "smelt-quantize: warning: wrote 1 NaN/Inf value in 1 tensor (--allow-nonfinite)" "$tmp/err" || { cat "$tmp/err"; fail "total warning"; }
rm -f "$tmp/nf.gguf"
"$Q" -q "$small" "$tmp/inf32.gguf" F32   # F32 weights, converted to F16; the norms are copied
nonfinite "$tmp/inf32.gguf" output_norm.weight 3 -inf F16 -Inf
"$Q" --help >"$tmp/help-text"; grep -q -- '--allow-nonfinite' "$tmp/help-text" || fail "--help lacks --allow-nonfinite"

# ---- against llama-quantize ----
LQ="${SMELT_ORACLE_BIN:-.oracle/build/bin}/llama-quantize"
[ -x "$LQ" ] || { echo "llama-quantize not built (make oracle): oracle checks skipped"; exit 77; }

# plans: llama-quantize --dry-run prints "[ i/ n] name - [shape], type = T, size = … (NEW)"
llama_plan() { awk '/^\[ *[0-9]+\/ *[0-9]+\]/ { l=$0; sub(/^\[[^]]*\] */, "", l); split(l, f, " "); name=f[1]; match($0, /type = *[a-z0-9_]+/); t=substr($0, RSTART, RLENGTH);
  sub(/type = */, "", t); if ($0 ~ /->/) { n=$NF; gsub(/[()]/, "", n); t=n } print name, t }'; }
smelt_plan() { python3 -c 'import json,sys; [print(t["name"], t["new_type"]) for t in json.load(sys.stdin)["tensors"]]'; }

# every ftype on a model with 8- and 32-wide rows (fallbacks everywhere): the plan equals
# llama-quantize's, and where smelt can already produce every type, so do the bytes
# metadata, tensor names, types, shapes, offsets and file size equal; data may differ
# only in block-quantized tensors
same_layout() {
  "$SMELT_BIN/smelt-dump" --json --full "$1" >"$tmp/d1.json" && "$SMELT_BIN/smelt-dump" --json --full "$2" >"$tmp/d2.json" &&
  python3 - "$tmp/d1.json" "$tmp/d2.json" <<'PY'
import json, sys
a, b = (json.load(open(f)) for f in sys.argv[1:3])
strip = lambda d: {k: v for k, v in d.items() if k != "file"}
assert strip(a) == strip(b), "layouts differ"
PY
}
nb=0 np=0 nl=0
for t in $(awk '/^ +[0-9]+ +or +[A-Z]/ {print $3} /^ +COPY/ {print $1}' "$tmp/help"); do
  "$LQ" --dry-run "$small" "$t" >"$tmp/lq.txt" 2>&1 || { tail -3 "$tmp/lq.txt"; fail "llama-quantize --dry-run $t"; }
  llama_plan <"$tmp/lq.txt" >"$tmp/a"
  "$Q" --dry-run --json "$small" "$t" 2>/dev/null | smelt_plan >"$tmp/b"
  diff "$tmp/a" "$tmp/b" >"$tmp/d" || { head "$tmp/d"; fail "$t: plan of the tiny-random Llama differs"; }
  np=$((np+1))
  "$Q" -q "$small" "$tmp/s.gguf" "$t" 2 2>/dev/null || continue
  "$LQ" "$small" "$tmp/l.gguf" "$t" 2 >"$tmp/lq.log" 2>&1 || { tail -3 "$tmp/lq.log"; fail "llama-quantize $t"; }
  if cmp -s "$tmp/s.gguf" "$tmp/l.gguf"; then nb=$((nb+1)); continue; fi
  # block-quantized data may differ (smelt's encoders search further); the file may not
  same_layout "$tmp/s.gguf" "$tmp/l.gguf" || fail "$t on the tiny-random Llama: layout differs from llama-quantize"
  nl=$((nl+1))
done
[ "$np" -ge 36 ] || fail "only $np ftypes compared"
echo "tiny-random llama: $np plans equal to llama-quantize's; outputs: $nb byte-identical, $nl same layout"

# the real sample model, converted by llama.cpp's converter
f16="$tmp/tiny-mixtral-f16.gguf"
if [ -f samples/out/tiny-mixtral-f16.gguf ]; then cp samples/out/tiny-mixtral-f16.gguf "$f16"
else
  set +e; tests/oracle/convert-hf samples/tiny-mixtral "$f16" --outtype f16 >"$tmp/conv.log" 2>&1; rc=$?; set -e
  [ $rc -eq 0 ] || { tail -3 "$tmp/conv.log"; echo "no f16 sample (convert-hf exit $rc)"; exit 77; }
fi

# the /embedding role and the 'norms' importance touch the token embedding and nothing else
V="$SMELT_BIN/smelt-verify"
"$Q" -q --pure --error-model q8_0=plain "$f16" "$tmp/e1.gguf" Q8_0 2
"$Q" -q --pure --error-model q8_0=plain --error-model q8_0/embedding=0,0,0,norms "$f16" "$tmp/e2.gguf" Q8_0 2
"$V" -q --manifest "$tmp/e1.xxh64" "$tmp/e1.gguf" >/dev/null
"$V" -q --manifest "$tmp/e2.xxh64" "$tmp/e2.gguf" >/dev/null
changed=$(diff <(sed "s|$tmp/e2.gguf:||" "$tmp/e2.xxh64") <(sed "s|$tmp/e1.gguf:||" "$tmp/e1.xxh64") |
  awk '/^< / && $4 !~ /gguf$/ {print $4}' || true)
[ "$changed" = token_embd.weight ] || fail "--error-model q8_0/embedding=0,0,0,norms changed: ${changed:-nothing}"
rm -f "$tmp"/e1.* "$tmp"/e2.*

nplans=0
for t in $(awk '/^ +[0-9]+ +or +[A-Z]/ {print $3}' "$tmp/help"); do
  for im in "" "$imx"; do
    [ -n "$im" ] && [ ! -f "$im" ] && continue
    args=(); [ -n "$im" ] && args=(--imatrix "$im")
    "$LQ" --dry-run "${args[@]}" "$f16" "$t" >"$tmp/lq.txt" 2>&1 || { tail -3 "$tmp/lq.txt"; fail "llama-quantize --dry-run $t"; }
    llama_plan <"$tmp/lq.txt" >"$tmp/a"
    "$Q" --dry-run --json "${args[@]}" "$f16" "$t" 2>/dev/null | smelt_plan >"$tmp/b"
    [ "$(wc -l <"$tmp/a")" -eq 43 ] || fail "$t: parsed $(wc -l <"$tmp/a") tensors from llama-quantize"
    diff "$tmp/a" "$tmp/b" >"$tmp/d" || { head "$tmp/d"; fail "$t ${im:+(imatrix)}: plan differs from llama-quantize"; }
    nplans=$((nplans+1))
  done
done
echo "tiny-mixtral: $nplans plans (ftype x imatrix) equal to llama-quantize --dry-run"

# float ftypes and Q8_0 (whose error model is ggml's reference encoding): byte-identical,
# with the imatrix provenance keys and overrides
for t in F32 F16 BF16 COPY Q8_0; do
  "$Q" -q --imatrix "$imx" --override-kv general.name=str:zh-test --override-kv x.n=int:-3 "$f16" "$tmp/s.gguf" "$t" 1
  "$LQ" --imatrix "$imx" --override-kv general.name=str:zh-test --override-kv x.n=int:-3 "$f16" "$tmp/l.gguf" "$t" 1 >/dev/null 2>&1
  cmp "$tmp/s.gguf" "$tmp/l.gguf" || fail "$t with --imatrix/--override-kv differs from llama-quantize"
done
"$Q" -q --error-model plain "$f16" "$tmp/s.gguf" Q8_0 1
"$LQ" "$f16" "$tmp/l.gguf" Q8_0 1 >/dev/null 2>&1
! cmp -s "$tmp/s.gguf" "$tmp/l.gguf" || fail "Q8_0 --error-model plain: expected smelt's own least-squares blocks"
echo "tiny-mixtral: F32 F16 BF16 COPY Q8_0 byte-identical to llama-quantize (imatrix keys, overrides)"

# outputs load and run in llama.cpp
LP="${LQ%/*}/llama-perplexity"
if [ -x "$LP" ]; then
  # a few mixes (test_quantize loads every ftype's output with libllama already)
  runnable=$(awk '/^ +[0-9]+ +or +[A-Z]/ && !/plan only/ {print $3}' "$tmp/help" | grep -xE 'Q8_0|Q4_K_M|Q2_K|IQ4_NL|IQ4_XS|TQ1_0|TQ2_0|MXFP4_MOE|F16')
  for t in $runnable; do
    "$Q" -q --imatrix "$imx" "$f16" "$tmp/r.gguf" "$t" 2 2>/dev/null || continue
    head -c 8000 samples/text/eval-en.txt >"$tmp/ev.txt"
    for try in 1 2 3 4 5; do # its last log lines are sometimes lost at exit: run again
      "$SMELT_ROOT/tests/oracle/llama-run" "$LP" -m "$tmp/r.gguf" -f "$tmp/ev.txt" -c 128 -b 128 -t 2 --log-file "$tmp/p2.log" >"$tmp/p.log" 2>&1 ||
        { tail -5 "$tmp/p.log"; fail "llama-perplexity on smelt's $t"; }
      cat "$tmp/p2.log" >>"$tmp/p.log"
      grep -q "Final estimate: PPL = " "$tmp/p.log" && break
    done
    grep -q "Final estimate: PPL = " "$tmp/p.log" || fail "no PPL for $t"
    echo "llama-perplexity runs on smelt's $t: $(grep -o 'PPL = [0-9.]*' "$tmp/p.log" | head -1)"
  done
fi
echo "quantize: ok"
