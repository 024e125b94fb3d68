"""Stand-in for Hugging Face `transformers`, which Debian 12 does not package.

What it stands for, and how far:

- AutoConfig, AutoModel: every from_pretrained raises. llama.cpp's converter calls
  AutoConfig.from_pretrained and, when that raises, reads config.json itself.

- AutoTokenizer.from_pretrained(DIR): the "fast" tokenizer transformers builds from
  DIR/tokenizer.json when tokenizer_config.json names a class that uses that file as it is
  (PreTrainedTokenizerFast, Qwen2Tokenizer[Fast]). That is what the converter's byte-level
  BPE path (get_vocab_base, get_vocab_base_pre) reads:
    vocab / get_vocab()    model vocabulary plus added tokens, {token: id}
    get_added_vocab()      the added tokens, {content: id}
    added_tokens_decoder   {id: AddedToken(.content .single_word .lstrip .rstrip
                           .normalized .special)}, in id order
    encode(text, add_special_tokens=True), decode(ids, skip_special_tokens=False)
  The vocabulary comes from the two JSON files. encode and decode are the real thing: they
  are delegated to @lenml/tokenizers (the JavaScript port of Hugging Face's tokenizers) run
  by tests/verify/js-tokenize.js --serve under node, one process per tokenizer, kept for its
  lifetime (the converter decodes every added token once).

Everything else raises: another tokenizer class, a remote-code tokenizer (auto_map), no
tokenizer.json, a tokenizer_config.json whose added tokens or special tokens would make
transformers add or change tokens (its added_tokens_decoder must equal tokenizer.json's
added_tokens; each named special token must already be a special added token), unknown
keyword arguments, and any attribute not listed above. So a converter path needing more
than this fails loudly instead of reading a guess.

This file is smelt's own, written for the oracle; it contains no code from transformers.
"""

import atexit
import json
import os
import shutil
import subprocess

__version__ = "0.0.0-smelt-stub"

_JS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "verify", "js-tokenize.js")
# tokenizer classes for which transformers uses tokenizer.json as it is
_AS_IS_CLASSES = ("PreTrainedTokenizerFast", "Qwen2Tokenizer", "Qwen2TokenizerFast")
_SPECIAL_KEYS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
_ADDED_FIELDS = ("content", "single_word", "lstrip", "rstrip", "normalized", "special")


class _Unavailable:
    """Any from_pretrained on these classes raises: transformers is not installed."""

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        raise OSError(f"transformers.{cls.__name__} is a smelt stand-in (transformers is not installed)")


class AutoConfig(_Unavailable):
    pass


class AutoModel(_Unavailable):
    pass


class _Refused(NotImplementedError):
    def __init__(self, where, what):
        super().__init__(f"{where}: {what} (smelt's transformers stand-in does not reproduce this)")


class AddedToken:
    """An added token as tokenizer.json's added_tokens describes it."""

    def __init__(self, entry):
        for f in _ADDED_FIELDS:
            setattr(self, f, entry[f])

    def __str__(self):
        return self.content

    def __repr__(self):
        return "AddedToken(" + ", ".join(f"{f}={getattr(self, f)!r}" for f in _ADDED_FIELDS) + ")"


def _special_name(v):
    return v.get("content") if isinstance(v, dict) else v


class _JsonTokenizer:
    def __init__(self, path):
        self._path = path
        tj_path = os.path.join(path, "tokenizer.json")
        tc_path = os.path.join(path, "tokenizer_config.json")
        if not os.path.isfile(tj_path):
            raise _Refused(path, "no tokenizer.json")
        tc = {}
        if os.path.isfile(tc_path):
            with open(tc_path, encoding="utf-8") as f:
                tc = json.load(f)
        cls = tc.get("tokenizer_class")
        if cls not in _AS_IS_CLASSES:
            raise _Refused(tc_path, f"tokenizer_class {cls!r} is not one of {', '.join(_AS_IS_CLASSES)}")
        if "auto_map" in tc:
            raise _Refused(tc_path, "a tokenizer with remote code (auto_map)")
        self._start_node()  # it loads the tokenizer (seconds) while we read tokenizer.json
        with open(tj_path, encoding="utf-8") as f:
            tj = json.load(f)

        added = sorted(tj.get("added_tokens", []), key=lambda a: a["id"])
        self._decoder = {a["id"]: AddedToken(a) for a in added}
        if "added_tokens_decoder" in tc:
            theirs = {int(k): {f: v.get(f) for f in _ADDED_FIELDS} for k, v in tc["added_tokens_decoder"].items()}
            ours = {a["id"]: {f: a[f] for f in _ADDED_FIELDS} for a in added}
            if theirs != ours:
                raise _Refused(tc_path, "added_tokens_decoder differs from tokenizer.json's added_tokens")
        by_content = {t.content: t for t in self._decoder.values()}
        named = [_special_name(tc.get(k)) for k in _SPECIAL_KEYS] + [
            _special_name(v) for v in tc.get("additional_special_tokens", [])]
        for name in named:
            if name is not None and not (name in by_content and by_content[name].special):
                raise _Refused(tc_path, f"special token {name!r} is not a special added token of tokenizer.json")

        vocab = dict(tj["model"]["vocab"])
        for i, t in self._decoder.items():
            if vocab.setdefault(t.content, i) != i:
                raise _Refused(tj_path, f"added token {t.content!r} has id {i} but the model gives it {vocab[t.content]}")
        self._vocab = vocab

    # what transformers' PreTrainedTokenizerFast offers, for the parts the converter reads
    @property
    def vocab(self):
        return self.get_vocab()

    def get_vocab(self):
        return dict(self._vocab)

    def get_added_vocab(self):
        return {t.content: i for i, t in self._decoder.items()}

    @property
    def added_tokens_decoder(self):
        return dict(self._decoder)

    def encode(self, text, add_special_tokens=True, **kwargs):
        if kwargs or not isinstance(text, str):
            raise _Refused("encode", f"input of type {type(text).__name__}, arguments {sorted(kwargs)}")
        return self._ask({"encode": text, "add_special_tokens": bool(add_special_tokens)})["ids"]

    def decode(self, ids, skip_special_tokens=False, **kwargs):
        if kwargs:
            raise _Refused("decode", f"arguments {sorted(kwargs)}")
        ids = [int(i) for i in ids]
        return self._ask({"decode": ids, "skip_special_tokens": bool(skip_special_tokens)})["text"]

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        raise _Refused(f"tokenizer of {self._path}", f"attribute {name!r}")

    def _start_node(self):
        node = shutil.which("node")
        if node is None:
            raise OSError("node is not on PATH: encode/decode run @lenml/tokenizers under node")
        self._node = subprocess.Popen([node, _JS, "--serve", self._path], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, encoding="utf-8")
        atexit.register(self._close)

    def _ask(self, request):
        self._node.stdin.write(json.dumps(request) + "\n")
        self._node.stdin.flush()
        line = self._node.stdout.readline()
        if not line:
            raise OSError(f"{_JS} --serve {self._path} exited with {self._node.wait()}")
        answer = json.loads(line)
        if "error" in answer:
            raise ValueError(f"@lenml/tokenizers on {self._path}: {answer['error']}")
        return answer

    def _close(self):
        if self._node is not None:
            self._node.stdin.close()
            self._node.wait()
            self._node = None


class AutoTokenizer:
    """from_pretrained(DIR) gives the tokenizer of DIR/tokenizer.json (see the module's docstring)."""

    @classmethod
    def from_pretrained(cls, path, *args, trust_remote_code=False, **kwargs):
        if args or kwargs:
            raise _Refused("AutoTokenizer.from_pretrained", f"arguments {args!r} {sorted(kwargs)!r}")
        return _JsonTokenizer(os.fspath(path))
