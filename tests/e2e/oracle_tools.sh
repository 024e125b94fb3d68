#!/usr/bin/env bash
# oracle_tools.sh — the llama.cpp oracle works: the CLI tools built by tests/oracle/build-tools
# run and are the expected commit, tests/oracle/convert-hf turns samples/tiny-mixtral into a
# GGUF that smelt-dump reads (43 tensors: llama.cpp stacks the 4 experts of each layer), and
# llama.cpp reproduces samples/reference.json on it (tokens, first perplexity chunks).
# Exit 0 pass, 77 skip (oracle not installed), anything else fail.
set -uo pipefail
root=${SMELT_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$root" || exit 1
obin=${SMELT_ORACLE_BIN:-$root/.oracle/build/bin}
sbin=${SMELT_BIN:-$root/bin}
src=${SMELT_LLAMA_SRC:-$root/.oracle/llama.cpp-src}
tools=(llama-perplexity llama-quantize llama-imatrix llama-tokenize llama-gguf-hash)
for t in "${tools[@]}"; do
  [ -x "$obin/$t" ] || { echo "skip: oracle tools not built ($obin/$t; run make oracle)"; exit 77; }
done
[ -x "$sbin/smelt-dump" ] || { echo "FAIL: $sbin/smelt-dump missing (run make)"; exit 1; }
command -v python3 >/dev/null || { echo "skip: python3 needed to read JSON"; exit 77; }

fails=0
fail() { echo "FAIL: $*"; fails=$((fails+1)); }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

# 1. the tools run; the common-arg tools report the source commit they were built from
want=""; [ -d "$src/.git" ] && want=$(git -C "$src" rev-parse --short=7 HEAD 2>/dev/null)
for t in llama-perplexity llama-imatrix llama-tokenize; do
  v=$("$obin/$t" --version 2>&1) || fail "$t --version exited $?"
  case "$v" in *"version: "*"commit ${want}"*) ;; *) fail "$t --version: unexpected '$v' (want commit $want)";; esac
done
"$obin/llama-gguf-hash" --help >"$tmp/h" 2>&1 || fail "llama-gguf-hash --help exited $?"
grep -q -- "--xxh64" "$tmp/h" || fail "llama-gguf-hash --help does not mention --xxh64"
"$obin/llama-quantize" --help >"$tmp/h" 2>&1   # prints usage and exits 1 by design
grep -q "Q4_K_M" "$tmp/h" || fail "llama-quantize --help does not list Q4_K_M"

# 2. llama.cpp's converter via convert-hf
tests/oracle/convert-hf samples/tiny-mixtral "$tmp/tm.gguf" --outtype f32 >"$tmp/conv.log" 2>&1
rc=$?
if [ $rc -eq 77 ]; then echo "skip: $(tail -1 "$tmp/conv.log")"; exit 77; fi
[ $rc -eq 0 ] || { tail -15 "$tmp/conv.log"; fail "convert-hf exited $rc"; echo "$fails failure(s)"; exit 1; }
"$sbin/smelt-dump" --json "$tmp/tm.gguf" >"$tmp/gguf.json" || fail "smelt-dump --json on the converted GGUF exited $?"
"$sbin/smelt-dump" --json samples/tiny-mixtral >"$tmp/hf.json" || fail "smelt-dump --json samples/tiny-mixtral exited $?"
python3 - "$tmp/gguf.json" "$tmp/hf.json" <<'PY' || fails=$((fails+1))
import json, sys
g = json.load(open(sys.argv[1])); h = json.load(open(sys.argv[2]))
bad = []
def check(what, got, want):
    if got != want: bad.append(f"{what}: got {got!r}, want {want!r}")
check("HF tensors", len(h["tensors"]), 79)      # 4 layers x (7 + 4 experts x 3) + 3
check("GGUF tensors", len(g["tensors"]), 43)    # 4 layers x 10 (experts stacked) + 3
t = {x["name"]: x for x in g["tensors"]}
check("GGUF types", sorted({x["type"] for x in g["tensors"]}), ["f32"])
check("token_embd shape", t.get("token_embd.weight", {}).get("shape"), [256, 4096])
check("ffn_gate_exps shape", t.get("blk.3.ffn_gate_exps.weight", {}).get("shape"), [256, 512, 4])
check("ffn_down_exps shape", t.get("blk.0.ffn_down_exps.weight", {}).get("shape"), [512, 256, 4])
check("ffn_gate_inp shape", t.get("blk.2.ffn_gate_inp.weight", {}).get("shape"), [256, 4])
kv = {m["key"]: m.get("value") for m in g["metadata"]}
check("architecture", kv.get("general.architecture"), "llama")
check("expert_count", kv.get("llama.expert_count"), 4)
check("expert_used_count", kv.get("llama.expert_used_count"), 2)
check("block_count", kv.get("llama.block_count"), 4)
check("tokenizer model", kv.get("tokenizer.ggml.model"), "llama")
for b in bad: print("FAIL:", b)
sys.exit(1 if bad else 0)
PY

# 3. llama.cpp on it reproduces reference.json: token ids and the first 4 running perplexities
ids=$("$obin/llama-tokenize" -m "$tmp/tm.gguf" -p "The quick brown fox" --ids --log-disable 2>/dev/null)
[ "$ids" = "[1, 339, 807, 1852, 2714, 1190, 273, 2889, 2919]" ] || fail "llama-tokenize ids: $ids"
# llama.cpp's asynchronous logger can lose its last lines at exit (console and log file
# alike) when the machine is loaded: keep both, and retry a few times before judging.
for attempt in 1 2 3 4 5; do
  "$root/tests/oracle/llama-run" "$obin/llama-perplexity" -m "$tmp/tm.gguf" -f samples/text/eval-en.txt -c 256 -b 256 -t 1 --chunks 4 \
    --log-file "$tmp/ppl.log" >"$tmp/ppl.out" 2>&1 || fail "llama-perplexity exited $?"
  [ "$(cat "$tmp/ppl.out" "$tmp/ppl.log" | grep -o '\[[0-9]\]' | sort -u | wc -l)" -ge 4 ] && break
done
python3 - "$tmp/ppl.log" samples/reference.json "$tmp/ppl.out" <<'PY' || fails=$((fails+1))
import json, re, sys
runs = [[float(x) for x in re.findall(r"\[\d+\]([0-9.]+)", open(f).read())] for f in (sys.argv[1], sys.argv[3])]
got = max(runs, key=len)
want = json.load(open(sys.argv[2]))["llamacpp_crosscheck"]["results"]["base"]["eval-en"]["llamacpp_running_first4"]
if len(got) != 4 or any(abs(a - b) > 2e-5 * b for a, b in zip(got, want)):
    print(f"FAIL: llama-perplexity first 4 chunks {got}, reference.json {want}"); sys.exit(1)
PY

[ $fails -eq 0 ] || { echo "$fails failure(s)"; exit 1; }
echo "oracle tools ok"
