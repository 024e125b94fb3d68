#!/usr/bin/env bash
# convert_bpe.sh — smelt-convert on byte-level BPE tokenizer.json files it cannot express:
# each is refused with exit 4 and one line naming the part (model type, pre-tokenizer,
# split expression, decoder, normalizer, byte fallback), and a tokenizer larger than
# config.json's vocab_size is exit 5. A small synthetic tokenizer (256 byte characters, 3
# merges, one added token) converts into a GGUF with the gpt2 model, the qwen2 pre-tokenizer,
# its merges and its EOS; a refused conversion leaves no output.
set -u
cd "$(dirname "$0")/../.."
B="${SMELT_BIN:-$PWD/bin}"
[ -x "$B/smelt-convert" ] && [ -x "$B/smelt-dump" ] || { echo "tools not built"; exit 1; }
tmp="$(mktemp -d "${TMPDIR:-/tmp}/smelt-e2e-bpe-XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
. tests/e2e/check.bash
# mk NAME VOCAB_SIZE PYTHON_EDIT — a model directory whose tokenizer.json is the synthetic
# one after PYTHON_EDIT (statements on the dict t)
mk() {
  local d="$tmp/$1"
  mkdir -p "$d/tok"
  /usr/bin/python3 - "$d/tok" "$3" <<'PY'
import json, sys
out, edit = sys.argv[1], sys.argv[2]
def ch(b):  # GPT-2's byte-to-character map
    if 0x21 <= b <= 0x7E or 0xA1 <= b <= 0xAC or 0xAE <= b <= 0xFF: return chr(b)
    return chr(0x100 + (b if b <= 0x20 else 33 + b - 0x7F if b <= 0xA0 else 67))
vocab = {ch(b): b for b in range(256)}
for i, t in enumerate(["\u0120t", "he", "\u0120the"]): vocab[t] = 256 + i
QWEN2 = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
         "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")
t = {"version": "1.0", "added_tokens": [{"id": 259, "content": "<|endoftext|>", "single_word": False, "lstrip": False,
     "rstrip": False, "normalized": False, "special": True}],
     "normalizer": None,
     "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
         {"type": "Split", "pattern": {"Regex": QWEN2}, "behavior": "Isolated", "invert": False},
         {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]},
     "post_processor": None, "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
     "use_regex": False},
     "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
               "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
               "vocab": vocab, "merges": [["\u0120", "t"], ["h", "e"], ["\u0120t", "he"]]}}
exec(edit)
json.dump(t, open(out + "/tokenizer.json", "w"), ensure_ascii=False)
json.dump({"eos_token": "<|endoftext|>", "add_bos_token": False}, open(out + "/tokenizer_config.json", "w"))
PY
  tests/convert/mk-bpe-model "$d/tok" "$d/m" "$2" >/dev/null
}
T=tokenizer.json
tail_msg="; smelt-convert reads byte-level BPE tokenizers whose pre-tokenizer is the llama3 or qwen2 split expression followed by ByteLevel (Llama 3, Qwen2/2.5/3), and SentencePiece tokenizer.model files"

mk ok 264 "pass"
check "synthetic BPE converts" 0 "" "$B/smelt-convert" -q "$tmp/ok/m" -o "$tmp/ok.gguf"
"$B/smelt-dump" "$tmp/ok.gguf" >"$tmp/dump" 2>&1
for want in 'tokenizer.ggml.model.*"gpt2"' 'tokenizer.ggml.pre.*"qwen2"' 'tokenizer.ggml.merges.*"Ġt he"]' 'tokenizer.ggml.eos_token_id.*259'; do
  grep -q "$want" "$tmp/dump" || fail "dump of ok.gguf lacks $want"
done

mk unigram 264 't["model"]["type"] = "Unigram"'
check "Unigram model: exit 4" 4 "smelt-convert: error: $tmp/unigram/m/$T: 'model.type': model type 'Unigram' is not BPE$tail_msg" \
  "$B/smelt-convert" -q "$tmp/unigram/m" -o "$tmp/x.gguf"
mk wordpiece 264 't["model"]["type"] = "WordPiece"'
check "WordPiece model: exit 4" 4 "smelt-convert: error: $tmp/wordpiece/m/$T: 'model.type': model type 'WordPiece' is not BPE$tail_msg" \
  "$B/smelt-convert" -q "$tmp/wordpiece/m" -o "$tmp/x.gguf"
mk gpt2pre 264 't["pre_tokenizer"] = {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}'
check "GPT-2 ByteLevel pre-tokenizer: exit 4" 4 "smelt-convert: error: $tmp/gpt2pre/m/$T: 'pre_tokenizer': pre_tokenizer 'ByteLevel' is not a Sequence of Split and ByteLevel$tail_msg" \
  "$B/smelt-convert" -q "$tmp/gpt2pre/m" -o "$tmp/x.gguf"
mk regex 264 't["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "\\p{N}{1,3}"'
check "unknown split expression: exit 4" 4 "smelt-convert: error: $tmp/regex/m/$T: 'pre_tokenizer.pretokenizers[0].pattern': split expression '\\p{N}{1,3}' is not llama3's or qwen2's$tail_msg" \
  "$B/smelt-convert" -q "$tmp/regex/m" -o "$tmp/x.gguf"
mk decoder 264 't["decoder"] = {"type": "Metaspace"}'
check "Metaspace decoder: exit 4" 4 "smelt-convert: error: $tmp/decoder/m/$T: 'decoder': decoder 'Metaspace' is not ByteLevel$tail_msg" \
  "$B/smelt-convert" -q "$tmp/decoder/m" -o "$tmp/x.gguf"
mk lower 264 't["normalizer"] = {"type": "Lowercase"}'
check "Lowercase normalizer: exit 4" 4 "smelt-convert: error: $tmp/lower/m/$T: 'normalizer': normalizer 'Lowercase' has no llama.cpp equivalent$tail_msg" \
  "$B/smelt-convert" -q "$tmp/lower/m" -o "$tmp/x.gguf"
mk fallback 264 't["model"]["byte_fallback"] = True'
check "byte fallback: exit 4" 4 "smelt-convert: error: $tmp/fallback/m/$T: 'model.byte_fallback': a BPE model with byte fallback (SentencePiece-style BPE)$tail_msg" \
  "$B/smelt-convert" -q "$tmp/fallback/m" -o "$tmp/x.gguf"
mk small 200 "pass"
check "vocab_size below the tokenizer: exit 5" 5 "" "$B/smelt-convert" -q "$tmp/small/m" -o "$tmp/x.gguf"
grep -q "the tokenizer defines 260 tokens (tokenizer.json's vocabulary reaches id 258 and its added tokens go further) but vocab_size is 200" "$tmp/err" \
  || { fail "vocab_size message"; sed 's/^/  | /' "$tmp/err"; }
[ -e "$tmp/x.gguf" ] && fail "a refused conversion left x.gguf"
[ "$fails" -eq 0 ] && echo "convert_bpe: all ok"
exit $((fails > 0))
