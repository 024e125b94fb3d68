#!/usr/bin/env bash
# smelt-dump on the sample checkpoint, a third-party GGUF, and bad inputs.
set -euo pipefail
cd "$SMELT_ROOT"
D="$SMELT_BIN/smelt-dump"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
# the sharded HF checkpoint: 4 layers x (2 norms + 4 attn + gate + 4x3 experts) + 3
"$D" --json samples/tiny-mixtral > "$tmp/st.json"
n=$(grep -c '"dtype"' "$tmp/st.json")
[ "$n" -eq 79 ] || { echo "expected 79 tensors, got $n"; exit 1; }
grep -q '"name": "model.layers.0.self_attn.q_proj.weight"' "$tmp/st.json"
# GGUF text listing and JSON
g=tests/fixtures/external/gguf-llama2-tiny-random-ollama/llama-2-tiny-random.gguf
"$D" "$g" > "$tmp/g.txt"
grep -q 'tokenizer.ggml.tokens .*(32000 total)' "$tmp/g.txt"
"$D" --json "$g" > "$tmp/g.json"
grep -q '"file_size": 1750560' "$tmp/g.json"
# tensor values: first row of a norm tensor (F32) and of a BF16 tensor
"$D" --tensor blk.0.attn_norm.weight --rows 1 "$g" > "$tmp/v.txt"
grep -q '^  \[0\]' "$tmp/v.txt"
"$D" --tensor model.norm.weight --rows 1 samples/tiny-mixtral > "$tmp/v2.txt"
grep -q 'BF16' "$tmp/v2.txt"
# the verdict of the model check every tool applies, on the line after the header
"$D" --no-tensors "$g" > "$tmp/g2.txt"
sed -n 2p "$tmp/g2.txt" | grep -qx 'validation: ok (a llama model: 1 layers, 2 heads, 0 experts, 32000 tokens)' || { head -3 "$tmp/g2.txt"; exit 1; }
"$D" --json --no-tensors "$g" | grep -q '"validation": "ok (a llama model: 1 layers'
# -q: the data only (18 KV lines, 12 tensor rows; with --tensor the value rows)
"$D" -q "$g" > "$tmp/q.txt"
[ "$(wc -l < "$tmp/q.txt")" -eq 30 ] || { echo "-q: $(wc -l < "$tmp/q.txt") lines"; exit 1; }
head -1 "$tmp/q.txt" | grep -q '^      0: string   general.architecture'
! grep -q -e 'validation:' -e 'GGUF v3' -e 'shape (ne)' "$tmp/q.txt"
"$D" -q --tensor token_embd.weight --rows 2 "$g" > "$tmp/qv.txt"
[ "$(wc -l < "$tmp/qv.txt")" -eq 2 ] && head -1 "$tmp/qv.txt" | grep -q '^  \[0\] ' || { cat "$tmp/qv.txt"; exit 1; }
"$D" -q --no-tensors samples/tiny-mixtral | grep -q '^  file 0: .*model-00001-of-00002.safetensors'
# PyTorch checkpoints: listed, values printed (the .bin of the sample adapter)
P=samples/tiny-mixtral-zh-lora-bin
"$D" "$P" > "$tmp/pt.txt"
head -1 "$tmp/pt.txt" | grep -qx "$P: PyTorch checkpoint (torch.save), 130 tensors" || { head -3 "$tmp/pt.txt"; exit 1; }
grep -q ' base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight F32 *\[8, 256\] *8192 adapter_model.bin$' "$tmp/pt.txt"
"$D" --json "$P/adapter_model.bin" > "$tmp/pt.json"
grep -q '"format": "pytorch"' "$tmp/pt.json" && grep -q '"n_tensors": 130' "$tmp/pt.json"
"$D" -q --tensor base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight --rows 1 "$P" | grep -q '^  \[0\] 0.00994096 '
# errors: missing file (exit 1), bad usage (2), malformed GGUF (3)
set +e
"$D" "$tmp/none.gguf" 2>"$tmp/err"; rc=$?
[ $rc -eq 1 ] || { echo "missing file: exit $rc"; exit 1; }
"$D" 2>/dev/null; [ $? -eq 2 ] || { echo "no args should be a usage error"; exit 1; }
head -c 100 "$g" > "$tmp/trunc.gguf"
"$D" "$tmp/trunc.gguf" 2>"$tmp/err"; rc=$?
[ $rc -eq 3 ] || { echo "truncated GGUF: exit $rc"; cat "$tmp/err"; exit 1; }
grep -q "trunc.gguf: @ byte 8 (0x8): tensor count 12 cannot fit in the 76 bytes that follow" "$tmp/err" || { cat "$tmp/err"; exit 1; }
head -c 5000 "$g" > "$tmp/trunc2.gguf"
"$D" "$tmp/trunc2.gguf" 2>"$tmp/err"; rc=$?
[ $rc -eq 3 ] || { echo "truncated GGUF: exit $rc"; exit 1; }
grep -q "trunc2.gguf: 'tokenizer.ggml.tokens' @ byte 555 (0x22b): array of 32000 strings cannot fit in the 4437 bytes left" "$tmp/err" || { cat "$tmp/err"; exit 1; }
"$D" --tensor nope "$g" 2>"$tmp/err"; [ $? -eq 2 ] || exit 1
grep -q "no tensor named 'nope'" "$tmp/err"
# a legacy (bare pickle) PyTorch file is named as such (exit 4), not as a bad safetensors header
python3 -c "import pickle,sys; open(sys.argv[1],'wb').write(pickle.dumps({'w': list(range(30))}, protocol=2))" "$tmp/old.bin"
"$D" "$tmp/old.bin" 2>"$tmp/err"; rc=$?
[ $rc -eq 4 ] || { echo "legacy .bin: exit $rc"; cat "$tmp/err"; exit 1; }
grep -qx "smelt-dump: error: $tmp/old.bin: legacy PyTorch serialization (a bare pickle, torch < 1.6 or _use_new_zipfile_serialization=False) is not supported; re-save it with torch.save from torch >= 1.6 or as safetensors" "$tmp/err" || { cat "$tmp/err"; exit 1; }
# an invalid model is listed, with the reason (exit 0)
python3 - "$g" "$tmp/h0.gguf" <<'PY'
import sys
b = bytearray(open(sys.argv[1], 'rb').read())
k = b'llama.attention.head_count'
i = b.index(k + b'\x04\x00\x00\x00')
b[i + len(k) + 4:i + len(k) + 8] = (0).to_bytes(4, 'little')
open(sys.argv[2], 'wb').write(b)
PY
"$D" --no-tensors "$tmp/h0.gguf" > "$tmp/h0.txt"; rc=$?
[ $rc -eq 0 ] || { echo "invalid model: exit $rc"; exit 1; }
grep -qx "validation: FAILED: 'llama.attention.head_count': expected at least 1, found 0" "$tmp/h0.txt" || { head -3 "$tmp/h0.txt"; exit 1; }
set -e
echo "dump: ok"
