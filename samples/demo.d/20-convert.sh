# Convert the released checkpoint to GGUF, as llama.cpp's converter would: f16, and auto
# (the weights' own dtype: bf16 here). Then a look at the metadata of the result.
set -euo pipefail
"$SMELT_BIN/smelt-convert" "$SAMPLES/tiny-mixtral" -o "$OUT/tiny-mixtral-f16.gguf" --outtype f16 -q
"$SMELT_BIN/smelt-convert" "$SAMPLES/tiny-mixtral" -o "$OUT/tiny-mixtral-bf16.gguf" --outtype auto -q
for f in f16 bf16; do
  "$SMELT_BIN/smelt-dump" --no-tensors "$OUT/tiny-mixtral-$f.gguf" > "$OUT/tiny-mixtral-$f.meta.txt"
  echo "tiny-mixtral-$f.gguf: $(head -1 "$OUT/tiny-mixtral-$f.meta.txt" | sed 's/^[^:]*: //')"
done
grep -E 'general.name|general.file_type|llama.expert_count|tokenizer.ggml.model|tokenizer.ggml.tokens' "$OUT/tiny-mixtral-bf16.meta.txt"
echo "  ... (full metadata in samples/out/tiny-mixtral-*.meta.txt)"
