#!/usr/bin/env bash
# verify.sh — smelt-verify from the command line: exit statuses, text and --json output,
# manifests written and checked, diffs of GGUF files and of safetensors checkpoints.
set -u
cd "$(dirname "$0")/../.."
bin="${SMELT_BIN:-$PWD/bin}/smelt-verify"
[ -x "$bin" ] || { echo "smelt-verify not built"; exit 1; }
tmp="$(mktemp -d "${TMPDIR:-/tmp}/smelt-e2e-verify-XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
fails=0
check() { # check NAME EXPECTED_STATUS CMD...
  local name="$1" want="$2"; shift 2
  "$@" >"$tmp/out" 2>"$tmp/err"; local rc=$?
  if [ "$rc" -ne "$want" ]; then
    echo "FAIL $name: exit $rc, expected $want"; sed 's/^/  | /' "$tmp/out" "$tmp/err" | head -20; fails=$((fails+1))
  else echo "ok   $name"; fi
}
has() { # has NAME PATTERN (in the last stdout)
  if grep -q -- "$2" "$tmp/out"; then echo "ok   $1"; else echo "FAIL $1: no '$2' in output"; head -20 "$tmp/out"; fails=$((fails+1)); fi
}
json() { # json NAME PYTHON-EXPR (on the last stdout, as d)
  if python3 -c "import json,sys; d=json.load(open('$tmp/out')); sys.exit(0 if ($2) else 1)"; then echo "ok   $1"
  else echo "FAIL $1: $2"; head -30 "$tmp/out"; fails=$((fails+1)); fi
}
G=tests/fixtures/external/gguf-llama2-tiny-random-ollama/llama-2-tiny-random.gguf
HF=samples/tiny-mixtral
MERGED=tests/fixtures/tiny-mixtral-zh-merged

check "help" 0 "$bin" --help
check "no argument is a usage error" 2 "$bin"
check "--all without --diff" 2 "$bin" --all "$G"
check "GGUF check" 0 "$bin" "$G"
has "model hash as llama-gguf-hash" "model xxh64 3d83ed08b93846cb"
has "per-tensor line" "39cd019f4143653b  f16"
has "model check of a llama GGUF" "^model check: ok (llama, 1 layers, 2 heads, 0 experts, 32000 tokens)$"
check "GGUF check --json" 0 "$bin" --json "$G"
json "json fields" "d['ok'] and d['n_tensors']==12 and d['model_xxh64']=='3d83ed08b93846cb' and d['tensors'][0]['nan']==0 and d['model_check'].startswith('ok (llama')"
check "HF dir check -q" 0 "$bin" -q "$HF"
has "no model check on safetensors" "^model check: skipped (a safetensors checkpoint: the check reads GGUF models)$"
has "HF summary" "79 tensors read in full, no NaN or Inf"
check "write manifest" 0 "$bin" -q --manifest "$tmp/m" --label tiny "$HF"
[ "$(wc -l <"$tmp/m")" -eq 80 ] && echo "ok   manifest has 79 tensor lines + model line" || { echo "FAIL manifest lines"; fails=$((fails+1)); }
check "check manifest" 0 "$bin" -q --check "$tmp/m" "$HF"
has "manifest verdict" "79 of 79 tensors match, 0 mismatch, 0 not listed; model hash matches"
check "merged checkpoint fails the base manifest" 5 "$bin" -q --check "$tmp/m" "$MERGED"
has "mismatch count" "13 of 79 tensors match, 66 mismatch"
check "missing file is an I/O error (1)" 1 "$bin" "$tmp/nope.gguf"
check "PyTorch .bin directory is unsupported (4)" 4 "$bin" samples/tiny-mixtral-zh-lora-bin
head -c 1000000 "$G" >"$tmp/trunc.gguf"
check "truncated GGUF is malformed (3)" 3 "$bin" "$tmp/trunc.gguf"
grep -q "trunc.gguf: 'token_embd.weight' @ byte 723709 (0xb0afd): data \[0, 512000) runs past the end of the file (the data section holds 275584 bytes from file offset 724416): truncated or corrupt$" "$tmp/err" \
  && echo "ok   truncation message" || { echo "FAIL truncation message"; cat "$tmp/err"; fails=$((fails+1)); }
# the model check every tool shares: an invalid llama GGUF is refused before hashing, with
# the message smelt-quantize and smelt-perplexity give (tests/convert/test_model_corpus.c)
python3 - "$G" "$tmp/h0.gguf" <<'PY'
import sys
b = bytearray(open(sys.argv[1], 'rb').read())
k = b'llama.attention.head_count'
i = b.index(k + b'\x04\x00\x00\x00')            # the u32 head_count record (not head_count_kv)
b[i + len(k) + 4:i + len(k) + 8] = (0).to_bytes(4, 'little')
open(sys.argv[2], 'wb').write(b)
PY
check "GGUF with 0 heads is malformed (3)" 3 "$bin" -q "$tmp/h0.gguf"
grep -qx "smelt-verify: error: $tmp/h0.gguf: 'llama.attention.head_count': expected at least 1, found 0" "$tmp/err" \
  && echo "ok   0-head message" || { echo "FAIL 0-head message"; cat "$tmp/err"; fails=$((fails+1)); }
check "--diff compares an invalid model too" 5 "$bin" --diff "$G" "$tmp/h0.gguf"
check "malformed manifest (3)" 3 sh -c "echo 'xxh64 zz x' > '$tmp/bad' && '$bin' -q --check '$tmp/bad' '$G'"

# a safetensors file with one NaN and one -Inf
python3 - "$tmp/nan.safetensors" <<'PY'
import json, struct, sys
vals = [1.0, float('nan'), float('-inf'), 2.5]
data = struct.pack('<4f', *vals)
hdr = json.dumps({"__metadata__": {"format": "pt"}, "w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, len(data)]}}).encode()
hdr += b' ' * (-len(hdr) % 8)
open(sys.argv[1], 'wb').write(struct.pack('<Q', len(hdr)) + hdr + data)
PY
check "NaN/Inf fail the check (5)" 5 "$bin" "$tmp/nan.safetensors"
has "non-finite summary" "FAILED: 1 tensor(s) hold non-finite values (1 NaN, 1 Inf)"
check "--allow-nonfinite" 0 "$bin" --allow-nonfinite "$tmp/nan.safetensors"
check "--no-values" 0 "$bin" --no-values "$tmp/nan.safetensors"

check "diff of a file with itself" 0 "$bin" --diff "$G" "$G"
has "identical verdict" "12 identical, 0 different"
check "diff base vs merged (5)" 5 "$bin" --diff "$HF" "$MERGED"
has "diff summary" "13 identical, 66 different, 0 reshaped, 0 only in A, 0 only in B; 0 metadata difference(s): DIFFERENT"
has "bf16 ulps" "bf16  model.layers.3.self_attn.v_proj.weight"
check "diff --json" 5 "$bin" --diff --json "$HF" "$MERGED"
json "diff json" "not d['identical'] and d['summary']['different']==66 and len(d['tensors'])==79 and any(t['status']=='different' and t['ulp_type']=='bf16' and t['max_ulp']>1 for t in d['tensors'])"
check "diff GGUF with safetensors is unsupported (4)" 4 "$bin" --diff "$G" "$HF"
check "diff needs two models" 2 "$bin" --diff "$G"

[ $fails -eq 0 ] || { echo "$fails check(s) failed"; exit 1; }
