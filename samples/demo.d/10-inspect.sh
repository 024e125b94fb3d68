# Inspect the released checkpoint: shards, dtypes, tensor table (first lines).
set -euo pipefail
"$SMELT_BIN/smelt-dump" "$SAMPLES/tiny-mixtral" > "$OUT/tiny-mixtral.dump.txt"
head -8 "$OUT/tiny-mixtral.dump.txt"
echo "  ... (full table in samples/out/tiny-mixtral.dump.txt)"
"$SMELT_BIN/smelt-dump" --json "$SAMPLES/tiny-mixtral" > "$OUT/tiny-mixtral.dump.json"
echo "tiny-mixtral: $(grep -c '"dtype"' "$OUT/tiny-mixtral.dump.json") tensors"
