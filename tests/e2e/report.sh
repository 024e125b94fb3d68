#!/usr/bin/env bash
# report.sh — smelt-report on quants of samples/tiny-mixtral made by smelt-quantize in the
# test (no oracle needed): every number in the JSON equals what smelt-perplexity prints for
# the same files (base PPL; PPL(Q), ratio, KLD statistics, same top with --kld), bits per
# weight and sizes equal the files', the SVG is well-formed XML with one labelled point per
# quant, the JSON has its schema keys, the Markdown its table; outputs are byte-identical
# from the cache and without it; directories, and the error cases.
# Exit 0 pass, 77 skip, anything else fail.
set -uo pipefail
root=${SMELT_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$root" || exit 1
B=${SMELT_BIN:-$root/bin}
R=$B/smelt-report P=$B/smelt-perplexity Q=$B/smelt-quantize
[ -x "$R" ] || { echo "FAIL: $R missing (run make)"; exit 1; }
command -v python3 >/dev/null || { echo "skip: python3 needed to read JSON and XML"; exit 77; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails+1)); }
expect_status() { # want cmd...
  local want=$1; shift
  "$@" >"$tmp/out" 2>"$tmp/err"; local rc=$?
  [ $rc -eq "$want" ] || fail "$* → exit $rc, want $want ($(head -c 300 "$tmp/err"))"
}
T=samples/text/eval-en.txt
mkdir -p "$tmp/q"
M=$tmp/base-f16.gguf
"$B/smelt-convert" -q samples/tiny-mixtral -o "$M" --outtype f16 || { echo "FAIL: smelt-convert"; exit 1; }
for t in Q8_0 Q4_K_M Q2_K; do
  "$Q" -q --imatrix tests/fixtures/imatrix/tiny-mixtral-calib-c256.gguf "$M" "$tmp/q/tiny-$t.gguf" $t >/dev/null ||
    { echo "FAIL: smelt-quantize $t"; exit 1; }
done
cp tests/fixtures/imatrix/tiny-mixtral-calib-c256.gguf "$tmp/q/tiny.imatrix.gguf"   # not a model: skipped

# help, version, usage errors
expect_status 0 "$R" --help
grep -q "^Usage: smelt-report --base BASE.gguf -f TEXT -o PREFIX" "$tmp/out" || fail "--help text"
expect_status 0 "$R" --version
expect_status 2 "$R" -f $T -o "$tmp/r" "$tmp/q"
grep -q "no base model given (--base BASE.gguf)" "$tmp/err" || fail "no --base message"
expect_status 2 "$R" --base "$M" -f $T -o "$tmp/r"
grep -q "no quantized model given" "$tmp/err" || fail "no quant message"
expect_status 2 "$R" --base "$M" -f $T "$tmp/q"
grep -q "no output prefix given (-o PREFIX)" "$tmp/err" || fail "no -o message"
expect_status 2 "$R" --base "$M" -f $T -o "$tmp/r" --cache "$tmp/c" --no-cache "$tmp/q"

# the report on a directory (the base's own file and the imatrix are skipped)
A=(--base "$M" -f $T -c 256 --chunks 12 -t 2)
expect_status 0 "$R" "${A[@]}" -o "$tmp/r" "$tmp/q"
cp "$tmp/out" "$tmp/stdout.md"
grep -q "tiny.imatrix.gguf: not a model (general.type), skipped" "$tmp/err" || fail "imatrix skip note: $(cat "$tmp/err")"
cmp -s "$tmp/stdout.md" "$tmp/r.md" || fail "stdout differs from r.md"
[ -s "$tmp/r.json" ] && [ -s "$tmp/r.svg" ] || fail "outputs missing"
grep -q '^| Type | File | Size | BPW | PPL | ΔPPL | Mean KLD | 99% KLD | Same top |$' "$tmp/r.md" || fail "table header"
[ "$(grep -c '^| Q' "$tmp/r.md")" = 3 ] || fail "3 quant rows: $(cat "$tmp/r.md")"
grep -q '^| F16 (base) | `base-f16.gguf` | ' "$tmp/r.md" || fail "base row"
grep -q '^| Q8_0 | `tiny-Q8_0.gguf` | ' "$tmp/r.md" || fail "Q8_0 row"

# every number as smelt-perplexity gives it for the same files; sizes as smelt-quantize plans them
for t in Q8_0 Q4_K_M Q2_K; do
  "$Q" --dry-run --json --imatrix tests/fixtures/imatrix/tiny-mixtral-calib-c256.gguf "$M" $t >"$tmp/plan-$t.json" 2>/dev/null ||
    fail "plan $t"
done
"$P" -q --json -m "$M" -f $T -c 256 --chunks 12 --kld-base "$tmp/base.kld" >"$tmp/p-base.json" || fail "smelt-perplexity base"
for t in Q8_0 Q4_K_M Q2_K; do
  "$P" -q --json -m "$tmp/q/tiny-$t.gguf" --kld "$tmp/base.kld" >"$tmp/p-$t.json" || fail "smelt-perplexity $t"
done
python3 - "$tmp" <<'PY' || fail "report numbers vs smelt-perplexity"
import json, os, sys, struct
d = sys.argv[1]
r = json.load(open(d + "/r.json"))
for k in ("schema", "model", "eval", "base", "quants"):
    assert k in r, k
assert r["schema"] == "smelt-report/1" and r["model"] == "Tiny Mixtral", r["model"]
assert r["eval"] == {"text": "samples/text/eval-en.txt", "n_ctx": 256, "n_chunks": 12, "n_scored": 12 * 127}, r["eval"]
b = json.load(open(d + "/p-base.json"))
assert r["base"]["ppl"] == b["ppl"] and r["base"]["ppl_err"] == b["ppl_err"], (r["base"], b["ppl"])
assert r["base"]["type"] == "F16" and r["base"]["file_type"] == 1 and 16.0 < r["base"]["bpw"] < 16.02, r["base"]
assert [q["type"] for q in r["quants"]] == ["Q8_0", "Q4_K_M", "Q2_K"], "sorted by bpw"
keys = {"path", "file", "type", "file_type", "file_bytes", "tensor_bytes", "n_params", "bpw", "ppl", "ppl_err",
        "ppl_ratio", "ppl_ratio_err", "delta_ppl_pct", "delta_ppl_pct_err", "kld", "same_top", "same_top_err",
        "delta_p_rms"}
for q in r["quants"]:
    assert keys <= set(q), keys - set(q)
    assert set(q["kld"]) == {"mean", "mean_err", "median", "p99", "p99_9", "max"}, q["kld"]
    p = json.load(open("%s/p-%s.json" % (d, q["type"])))["kld"]
    pairs = [(q["ppl"], p["ppl"]), (q["ppl_err"], p["ppl_err"]), (q["ppl_ratio"], p["ppl_ratio"]),
             (q["ppl_ratio_err"], p["ppl_ratio_err"]), (q["kld"]["mean"], p["mean"]),
             (q["kld"]["mean_err"], p["mean_err"]), (q["kld"]["median"], p["median"]), (q["kld"]["p99"], p["p99"]),
             (q["kld"]["p99_9"], p["p99_9"]), (q["kld"]["max"], p["max"]), (q["same_top"], p["same_top"]),
             (q["same_top_err"], p["same_top_err"]), (q["delta_p_rms"], p["delta_p_rms"])]
    for i, (a, c) in enumerate(pairs):
        assert a == c, (q["type"], i, a, c)
    assert abs(q["delta_ppl_pct"] - 100 * (p["ppl_ratio"] - 1)) < 1e-6
    # sizes and bits per weight from the file itself
    f = q["path"]
    assert q["file_bytes"] == os.path.getsize(f)
    assert abs(q["bpw"] - 8.0 * q["tensor_bytes"] / q["n_params"]) < 1e-8
    plan = json.load(open("%s/plan-%s.json" % (d, q["type"])))["totals"]
    assert q["tensor_bytes"] == plan["new_bytes"] and q["n_params"] == plan["elements"], (q, plan)
    assert q["file_bytes"] == plan["output_bytes"] and abs(q["bpw"] - plan["new_bpw"]) < 1e-8
ft = {q["type"]: q["file_type"] for q in r["quants"]}
assert ft == {"Q8_0": 7, "Q4_K_M": 15, "Q2_K": 10}, ft
assert 8.4 < r["quants"][0]["bpw"] < 8.6 and 4.9 < r["quants"][1]["bpw"] < 5.1, [q["bpw"] for q in r["quants"]]
PY

# the SVG: well-formed XML, one point and one label per quant, base PPL in the title
python3 - "$tmp/r.svg" <<'PY' || fail "SVG"
import sys, xml.etree.ElementTree as ET
t = ET.parse(sys.argv[1]).getroot()
ns = "{http://www.w3.org/2000/svg}"
assert t.tag == ns + "svg"
circles = t.findall(ns + "circle")
texts = [x.text for x in t.iter(ns + "text")]
assert len(circles) == 3, len(circles)
for lab in ("Q8_0", "Q4_K_M", "Q2_K", "bits per weight"):
    assert lab in texts, (lab, texts)
assert any(x and "PPL" in x and "Tiny Mixtral" in x for x in texts[:1]), texts[:2]
PY

# determinism: cached (no measurement), and without the cache, the same bytes
for f in md json svg; do cp "$tmp/r.$f" "$tmp/first.$f"; done
expect_status 0 "$R" "${A[@]}" -o "$tmp/r" "$tmp/q"
[ "$(grep -c ', cached$' "$tmp/err")" = 4 ] || fail "cached notes: $(cat "$tmp/err")"
for f in md json svg; do cmp -s "$tmp/r.$f" "$tmp/first.$f" || fail "cached run: r.$f differs"; done
expect_status 0 "$R" "${A[@]}" -o "$tmp/n" --no-cache -q "$tmp/q/tiny-Q2_K.gguf" "$tmp/q/tiny-Q8_0.gguf" "$tmp/q/tiny-Q4_K_M.gguf"
[ ! -e "$tmp/n.cache" ] || fail "--no-cache made a cache"
[ ! -s "$tmp/err" ] || fail "-q wrote to stderr"
for f in md svg; do cmp -s "$tmp/n.$f" "$tmp/first.$f" || fail "--no-cache: n.$f differs"; done
expect_status 0 "$R" "${A[@]}" -o "$tmp/j" --json -q "$tmp/q"
cmp -s "$tmp/out" "$tmp/j.json" || fail "--json stdout differs from j.json"
touch "$tmp/q/tiny-Q2_K.gguf"          # a changed file is measured again
expect_status 0 "$R" "${A[@]}" -o "$tmp/r" "$tmp/q"
[ "$(grep -c ', cached$' "$tmp/err")" = 3 ] || fail "after touch: $(cat "$tmp/err")"

# --ctx-sweep: every PPL and KLD by context length is smelt-perplexity's at that -c (the
# same chunk count at each length); the plot has one line per model, the base's points square
expect_status 0 "$R" --base "$M" -f $T --chunks 6 -q --no-cache -o "$tmp/s" --ctx-sweep 64,128 "$tmp/q/tiny-Q8_0.gguf" "$tmp/q/tiny-Q2_K.gguf"
[ -s "$tmp/s-ctx.svg" ] || fail "--ctx-sweep wrote no $tmp/s-ctx.svg"
grep -q '^### Perplexity by context length' "$tmp/s.md" || fail "--ctx-sweep Markdown section"
for c in 64 128; do
  "$P" -q --json -m "$M" -f $T -c $c --chunks 6 --kld-base "$tmp/s$c.kld" >"$tmp/s-base-$c.json" || fail "perplexity base -c $c"
  for t in Q8_0 Q2_K; do
    "$P" -q --json -m "$tmp/q/tiny-$t.gguf" --kld "$tmp/s$c.kld" >"$tmp/s-$t-$c.json" || fail "perplexity $t -c $c"
  done
done
python3 - "$tmp" <<'PY' || fail "--ctx-sweep numbers"
import json, sys, xml.dom.minidom
d = sys.argv[1]
sw = json.load(open(d + "/s.json"))["ctx_sweep"]
assert sw["n_ctx"] == [64, 128], sw["n_ctx"]
models = {m["type"]: m for m in sw["models"]}
assert [m["base"] for m in sw["models"]] == [True, False, False]
for i, c in enumerate((64, 128)):
    base = json.load(open("%s/s-base-%d.json" % (d, c)))
    assert abs(sw["models"][0]["ppl"][i] - base["ppl"]) <= 1e-9 * base["ppl"], (c, sw["models"][0]["ppl"][i], base["ppl"])
    for t in ("Q8_0", "Q2_K"):
        k = json.load(open("%s/s-%s-%d.json" % (d, t, c)))["kld"]
        assert abs(models[t]["ppl"][i] - k["ppl"]) <= 1e-9 * k["ppl"], (t, c)
        assert abs(models[t]["kld"][i] - k["mean"]) <= 1e-9 * k["mean"], (t, c)
svg = xml.dom.minidom.parse(d + "/s-ctx.svg")
assert len(svg.getElementsByTagName("polyline")) == 3
assert len(svg.getElementsByTagName("circle")) == 4 and len(svg.getElementsByTagName("rect")) == 2 + 2
labels = [t.firstChild.data for t in svg.getElementsByTagName("text") if t.firstChild]
assert "Q8_0" in labels and "Q2_K" in labels and "64" in labels and "128" in labels, labels
PY
expect_status 2 "$R" --base "$M" -f $T -o "$tmp/e" --ctx-sweep 64,x "$tmp/q"
grep -q "^smelt-report: error: --ctx-sweep: expected 4 .. 16777216, got 'x'" "$tmp/err" || fail "--ctx-sweep x: $(cat "$tmp/err")"
expect_status 2 "$R" --base "$M" -f $T -o "$tmp/e" --ctx-sweep 64,64 "$tmp/q"
grep -q "^smelt-report: error: --ctx-sweep: 64 is listed twice" "$tmp/err" || fail "--ctx-sweep 64,64: $(cat "$tmp/err")"

# errors
expect_status 2 "$R" "${A[@]}" -o "$tmp/e" "$tmp/q/tiny-Q8_0.gguf" "$tmp/q/../q/tiny-Q8_0.gguf"
grep -q "listed twice" "$tmp/err" || fail "listed twice message: $(cat "$tmp/err")"
printf 'not a gguf' >"$tmp/bad.gguf"
expect_status 3 "$R" "${A[@]}" -o "$tmp/e" "$tmp/bad.gguf"
grep -q "^smelt-report: error: $tmp/bad.gguf: " "$tmp/err" || fail "bad gguf message: $(cat "$tmp/err")"
S=tests/fixtures/external/llama2c-stories260K-official/validation/reference_f32_from_bin_gguf-py.gguf
expect_status 5 "$R" "${A[@]}" -o "$tmp/e" "$S"
grep -q "the base distributions are over 4096 tokens but .* has a vocabulary of 512: not the same tokenizer" "$tmp/err" ||
  fail "vocabulary message: $(cat "$tmp/err")"
[ ! -e "$tmp/e.md" ] || fail "a report was written after an error"

[ $fails -eq 0 ] || { echo "$fails failure(s)"; exit 1; }
echo "ok"
