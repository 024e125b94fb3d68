#!/usr/bin/env bash
# perplexity.sh — smelt-perplexity from the command line, on the external stories260K GGUF
# (no oracle needed): output formats (running values, llama.cpp's "Final estimate" line,
# -q, --json), a .kld base file written and read back (KLD exactly 0), and the exit status
# and message of each error case.
# Exit 0 pass, 77 skip, anything else fail.
set -uo pipefail
root=${SMELT_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$root" || exit 1
P=${SMELT_BIN:-$root/bin}/smelt-perplexity
[ -x "$P" ] || { echo "FAIL: $P missing (run make)"; exit 1; }
command -v python3 >/dev/null || { echo "skip: python3 needed to read JSON"; exit 77; }
X=tests/fixtures/external
M=$X/llama2c-stories260K-official/validation/reference_f32_from_bin_gguf-py.gguf
T=$X/llama2c-stories260K-official/validation/eval_tinystories.txt
R=$X/gguf-llama2-tiny-random-ollama/llama-2-tiny-random.gguf
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails+1)); }
expect_status() { # want cmd...
  local want=$1; shift
  "$@" >"$tmp/out" 2>"$tmp/err"; local rc=$?
  [ $rc -eq "$want" ] || fail "$* → exit $rc, want $want ($(head -c 300 "$tmp/err"))"
}

# help, version, usage errors
expect_status 0 "$P" --help
grep -q "^Usage: smelt-perplexity -m MODEL.gguf -f TEXT" "$tmp/out" || fail "--help text"
expect_status 0 "$P" --version
grep -q "^smelt-perplexity (smelt) " "$tmp/out" || fail "--version text"
expect_status 2 "$P"
grep -q "no model given" "$tmp/err" || fail "no -m message"
expect_status 2 "$P" -m "$M" -f "$T" -c abc
grep -q "^smelt-perplexity: error: -c: expected 4 .. 16777216, got 'abc'" "$tmp/err" || fail "-c abc message"
expect_status 2 "$P" -m "$M" -f "$T" --kld-base a --kld b
expect_status 1 "$P" -m "$tmp/none.gguf" -f "$T"
grep -q "^smelt-perplexity: error: $tmp/none.gguf: " "$tmp/err" || fail "missing model message: $(cat "$tmp/err")"

# a run, piped: running values then llama.cpp's final line
expect_status 0 "$P" -m "$M" -f "$T" -c 128 -t 2
grep -q '^\[1\]2\.5260,\[2\]3\.1641,.*\[10\]3\.3276,$' "$tmp/out" || fail "running values: $(head -c 300 "$tmp/out")"
grep -qx 'Final estimate: PPL = 3.3276 +/- 0.20232' "$tmp/out" || fail "final line: $(cat "$tmp/out")"
grep -q 'tokens/s' "$tmp/out" || fail "speed line"
grep -q '^perplexity 10/10 (100%)' "$tmp/err" || fail "progress on stderr: $(cat "$tmp/err")"

# -q: the final line only, nothing on stderr
expect_status 0 "$P" -m "$M" -f "$T" -c 128 -q
[ "$(cat "$tmp/out")" = "Final estimate: PPL = 3.3276 +/- 0.20232" ] || fail "-q output: $(cat "$tmp/out")"
[ ! -s "$tmp/err" ] || fail "-q wrote to stderr: $(cat "$tmp/err")"

# --json
expect_status 0 "$P" -m "$M" -f "$T" -c 128 -q --json --kld-base "$tmp/base.kld"
python3 - "$tmp/out" <<'PY' || fail "--json content"
import json, sys
j = json.load(open(sys.argv[1]))
assert abs(j["ppl"] - 3.32757) < 1e-4, j["ppl"]
assert j["n_chunks"] == 10 and j["n_ctx"] == 128 and j["n_scored"] == 630, j
assert len(j["running_ppl"]) == 10 and j["running_ppl"][-1] == j["ppl"]
assert j["n_vocab"] == 512 and j["model_types"] == "f32" and j["tokens_per_second"] > 0
assert j["kld_base_written"].endswith("base.kld")
PY
[ "$(stat -c %s "$tmp/base.kld")" = $((20 + 4*128*10 + 10*63*(512+4)*2)) ] || fail ".kld size $(stat -c %s "$tmp/base.kld")"

# KLD of the model against itself: exactly 0, text and JSON
expect_status 0 "$P" -m "$M" --kld "$tmp/base.kld"
grep -qx 'Mean    KLD:   0.000000 ±   0.000000' "$tmp/out" || fail "KLD text: $(grep KLD "$tmp/out" | head -3)"
grep -qx 'Same top p: 100.000 ± 0.000 %' "$tmp/out" || fail "same top text"
grep -q '^chunk  *PPL' "$tmp/out" || fail "per-chunk KLD table"
expect_status 0 "$P" -m "$M" --kld "$tmp/base.kld" --json -q
python3 - "$tmp/out" <<'PY' || fail "KLD --json content"
import json, sys
k = json.load(open(sys.argv[1]))["kld"]
assert k["mean"] == 0 and k["max"] == 0 and k["same_top"] == 1 and k["ppl_diff"] == 0, k
assert k["count"] == 630 and abs(k["ppl"] - 3.32757) < 1e-4
PY
expect_status 2 "$P" -m "$M" --kld "$tmp/base.kld" -c 256
grep -q "the base file was computed with a context of 128; -c 256 differs" "$tmp/err" || fail "-c vs base message"

# --kld-tokens: one row per scored token, in order; its mean is the reported mean. A Q8_0
# copy of the model gives non-zero values to compare with.
Q=${SMELT_BIN:-$root/bin}/smelt-quantize
if [ -x "$Q" ] && "$Q" -q "$M" "$tmp/q8.gguf" Q8_0 >/dev/null 2>&1; then
  expect_status 0 "$P" -m "$tmp/q8.gguf" --kld "$tmp/base.kld" --json -q --kld-tokens "$tmp/tokens.tsv"
  python3 - "$tmp/out" "$tmp/tokens.tsv" "$tmp/base.kld" <<'PY' || fail "--kld-tokens content"
import json, struct, sys
k = json.load(open(sys.argv[1]))["kld"]
lines = open(sys.argv[2]).read().splitlines()
assert lines[0] == "chunk\tposition\ttoken\tkld", lines[0]
rows = [l.split("\t") for l in lines[1:]]
assert len(rows) == 630, len(rows)
# chunks 0..9, positions 65..127 (the second half after n_ctx/2 = 64), 63 per chunk
assert [(int(r[0]), int(r[1])) for r in rows[:2]] == [(0, 65), (0, 66)], rows[:2]
assert (int(rows[62][0]), int(rows[62][1])) == (0, 127) and (int(rows[63][0]), int(rows[63][1])) == (1, 65)
vals = [float(r[3]) for r in rows]
assert abs(sum(vals) / len(vals) - k["mean"]) <= 1e-6 * k["mean"], (sum(vals) / len(vals), k)
assert abs(max(vals) - k["max"]) <= 1e-6 * k["max"] and abs(min(vals) - k["min"]) <= 1e-6 * abs(k["min"]) and k["mean"] > 0
PY
  # the token column is the scored token of the base file (tokens start at byte 20, n_ctx per chunk)
  python3 - "$tmp/tokens.tsv" "$tmp/base.kld" <<'PY' || fail "--kld-tokens token ids"
import struct, sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().splitlines()[1:]]
base = open(sys.argv[2], "rb").read()
toks = struct.unpack_from("<%di" % (128 * 10), base, 20)
assert all(int(r[2]) == toks[int(r[0]) * 128 + int(r[1])] for r in rows)
PY
else
  fail "could not make a Q8_0 copy for --kld-tokens"
fi
expect_status 2 "$P" -m "$M" -f "$T" -c 128 --kld-tokens "$tmp/x.tsv"
grep -q "^smelt-perplexity: error: --kld-tokens needs --kld BASE.kld" "$tmp/err" || fail "--kld-tokens without --kld: $(cat "$tmp/err")"
expect_status 2 "$P" -m "$M" --kld "$tmp/base.kld" --kld-tokens "$tmp/base.kld"
grep -q "^smelt-perplexity: error: $tmp/base.kld: .*the base distributions" "$tmp/err" || fail "--kld-tokens over the base: $(cat "$tmp/err")"
[ -s "$tmp/base.kld" ] || fail "the base file was harmed"

# errors: text too short (and no .kld left behind), context beyond the model's, vocabulary
printf 'Once upon a time.\n' >"$tmp/short.txt"
expect_status 2 "$P" -m "$M" -f "$tmp/short.txt" -c 128 --kld-base "$tmp/short.kld"
grep -q "the text tokenizes to only 6 tokens; perplexity with a context of 128 needs at least 256" "$tmp/err" || fail "short text message"
[ ! -e "$tmp/short.kld" ] || fail "a .kld file was left after an error"
ls -a "$tmp" | grep -q smelt-tmp && fail "temporary file left behind"
expect_status 2 "$P" -m "$M" -f samples/text/eval-en.txt -c 1024
grep -q "context of 1024 tokens exceeds the model's training context of 512" "$tmp/err" || fail "context message"
expect_status 0 "$P" -m "$R" -f "$T" -c 128 --chunks 2 -q --kld-base "$tmp/v32000.kld"
expect_status 5 "$P" -m "$M" --kld "$tmp/v32000.kld"
grep -q "the base distributions are over 32000 tokens but .* has a vocabulary of 512: not the same tokenizer" "$tmp/err" || fail "vocab message: $(cat "$tmp/err")"
head -c 1000 "$tmp/base.kld" >"$tmp/trunc.kld"
expect_status 3 "$P" -m "$M" --kld "$tmp/trunc.kld"
grep -q "truncated: the header announces 10 chunks x 63 records" "$tmp/err" || fail "truncated message: $(cat "$tmp/err")"

[ $fails -eq 0 ] || { echo "$fails failure(s)"; exit 1; }
echo "ok"
