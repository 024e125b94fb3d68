#!/usr/bin/python3
"""make-tiny-bpe.py — regenerate samples/tiny-qwen3-bpe: a tiny Qwen3 with a byte-level BPE
tokenizer of its own, the Llama 3 / Qwen path of `make demo`.

    /usr/bin/python3 samples/make-tiny-bpe.py [OUT_DIR]     (default samples/tiny-qwen3-bpe)

Needs numpy and torch only (no tokenizers, transformers or sentencepiece); takes about ten
minutes on one core (nice'd, on a busy 2-core machine with Debian's reference BLAS). Steps:

1. Tokenizer. samples/text/calib.txt (the calibration text, never the eval texts) is cut by
   Qwen2's pre-tokenizer expression (tokenizer.json's Split, `\\p{N}` one digit a piece), each
   piece mapped to GPT-2's byte characters, and byte-pair merges are learned on the pieces
   (most frequent pair first, ties by the pair's text) until there are 1021 tokens: the 256
   byte characters in GPT-2's order, then one token per merge. Three added special tokens
   follow (<|endoftext|> <|im_start|> <|im_end|>): vocabulary 1024. tokenizer.json copies the
   structure of Qwen3's (NFC normalizer, Sequence(Split, ByteLevel) pre-tokenizer, ByteLevel
   decoder, merges as pairs), tokenizer_config.json its keys and a ChatML template.
2. Model. Qwen3ForCausalLM: hidden 256, 2 layers, 4 heads of 64, 2 KV heads, intermediate
   256, q/k norms, tied embeddings; every matrix's rows are a multiple of 256 long, so
   Q4_K_M really stores Q4_K/Q6_K blocks. Trained with AdamW on calib.txt tokenized as
   above (STEPS batches of BATCH random windows of 256 tokens, seeded), with the forward
   pass of tests/e2e/arch_torch.py, and stored as bf16 model.safetensors
   (tests/e2e/arch_fixture.py's writer).
3. Reference. The PyTorch perplexity of the stored bf16 weights on eval-en.txt by
   llama-perplexity's method (n_ctx 256, no BOS for Qwen: llama.cpp adds none), printed.

The merges are deterministic. The weights depend on torch's CPU kernels (version, thread
count), so a regenerated model may differ in the last bits; the committed files are the ones
described in samples/FIXTURES.md. This file is smelt's own.
"""

import collections
import json
import math
import os
import re
import sys
import time
import unicodedata

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))
import arch_fixture  # noqa: E402  (write_safetensors: bf16, sorted, HF's header layout)
import arch_torch  # noqa: E402  (forward: Hugging Face's Qwen3 forward pass)

N_BPE, SPECIALS = 1021, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
H, F, L, NH, NKV, HD = 256, 256, 2, 4, 2, 64
N_CTX, BATCH, STEPS, LR, SEED = 256, 2, 320, 8e-3, 20251207

CONFIG = {
    "architectures": ["Qwen3ForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
    "bos_token_id": N_BPE, "eos_token_id": N_BPE + 2, "head_dim": HD, "hidden_act": "silu",
    "hidden_size": H, "initializer_range": 0.02, "intermediate_size": F,
    "max_position_embeddings": 4096, "max_window_layers": L, "model_type": "qwen3",
    "num_attention_heads": NH, "num_hidden_layers": L, "num_key_value_heads": NKV,
    "rms_norm_eps": 1e-06, "rope_scaling": None, "rope_theta": 1000000.0,
    "sliding_window": None, "tie_word_embeddings": True, "torch_dtype": "bfloat16",
    "transformers_version": "4.51.0", "use_cache": True, "use_sliding_window": False,
    "vocab_size": N_BPE + len(SPECIALS),
}

# Qwen2's split expression, exactly as Qwen3's tokenizer.json stores it
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
                 r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
CHAT_TEMPLATE = ("{%- for message in messages %}{{- '<|im_start|>' + message.role + '\\n' + "
                 "message.content + '<|im_end|>' + '\\n' }}{%- endfor %}"
                 "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}")


def category_class(major):
    """A `re` character class of every code point whose general category starts with major
    (Python's `re` has no \\p{..}); Python's Unicode tables, close enough to train merges."""
    out, start = [], None
    for cp in range(0x110001):
        inside = cp <= 0x10FFFF and unicodedata.category(chr(cp)).startswith(major)
        if inside and start is None:
            start = cp
        elif not inside and start is not None:
            out.append(re.escape(chr(start)) + ("-" + re.escape(chr(cp - 1)) if cp - 1 > start else ""))
            start = None
    return "".join(out)


def pre_tokenizer():
    letter, number = category_class("L"), category_class("N")
    p = QWEN2_PATTERN.replace(r"\p{L}+", "[" + letter + "]+").replace(r"|\p{N}|", "|[" + number + "]|")
    return re.compile(p.replace(r"\p{L}", letter).replace(r"\p{N}", number))  # the rest: inside [..]


def bytes_to_unicode():
    """GPT-2's byte characters: printable Latin-1 stands for itself, the rest U+0100.."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


BYTE_CHAR = bytes_to_unicode()


def pieces(split, text):
    return ["".join(BYTE_CHAR[b] for b in p.encode("utf-8")) for p in split.findall(text)]


def learn_merges(words, n_merges):
    """Classic BPE over piece counts: merge the most frequent adjacent pair (ties: the
    smallest pair by text), n_merges times."""
    words = [(list(w), c) for w, c in words.items()]
    merges = []
    for _ in range(n_merges):
        pairs = collections.Counter()
        for sym, c in words:
            for a, b in zip(sym, sym[1:]):
                pairs[a, b] += c
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        a, b = best
        for sym, _ in words:
            i = 0
            while i < len(sym) - 1:
                if sym[i] == a and sym[i + 1] == b:
                    sym[i:i + 2] = [a + b]
                i += 1
    return merges


class Encoder:
    def __init__(self, vocab, merges, split):
        self.vocab, self.split, self.cache = vocab, split, {}
        self.rank = {m: i for i, m in enumerate(merges)}

    def piece(self, w):
        if w in self.cache:
            return self.cache[w]
        sym = list(w)
        while len(sym) > 1:
            r, i = min((self.rank.get((sym[j], sym[j + 1]), math.inf), j) for j in range(len(sym) - 1))
            if r == math.inf:
                break
            sym[i:i + 2] = [sym[i] + sym[i + 1]]
        ids = self.cache[w] = [self.vocab[s] for s in sym]
        return ids

    def encode(self, text):
        return [i for w in pieces(self.split, text) for i in self.piece(w)]


def write_tokenizer(out, vocab, merges):
    added = [{"id": N_BPE + i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i, s in enumerate(SPECIALS)]
    bl = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    tj = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": QWEN2_PATTERN}, "behavior": "Isolated", "invert": False},
            bl]},
        "post_processor": bl, "decoder": bl,
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False,
                  "ignore_merges": False, "vocab": vocab, "merges": [list(m) for m in merges]},
    }
    with open(os.path.join(out, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False, indent=2)
        f.write("\n")
    cfg = {
        "add_bos_token": False, "add_prefix_space": False,
        "added_tokens_decoder": {str(a["id"]): {k: a[k] for k in ("content", "lstrip", "normalized", "rstrip",
                                                                 "single_word", "special")} for a in added},
        "additional_special_tokens": SPECIALS[1:], "bos_token": None, "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False, "eos_token": "<|im_end|>", "errors": "replace",
        "model_max_length": 4096, "pad_token": "<|endoftext|>", "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer", "unk_token": None,
    }
    with open(os.path.join(out, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, ensure_ascii=False, indent=2)
        f.write("\n")


def init_weights(g):
    def rnd(*shape):
        return torch.nn.Parameter(torch.randn(*shape, generator=g) * 0.02)

    def ones(n):
        return torch.nn.Parameter(torch.ones(n))

    V = CONFIG["vocab_size"]
    t = {"model.embed_tokens.weight": rnd(V, H), "model.norm.weight": ones(H)}
    for i in range(L):
        p = f"model.layers.{i}."
        t[p + "input_layernorm.weight"] = ones(H)
        t[p + "post_attention_layernorm.weight"] = ones(H)
        t[p + "self_attn.q_proj.weight"] = rnd(NH * HD, H)
        t[p + "self_attn.k_proj.weight"] = rnd(NKV * HD, H)
        t[p + "self_attn.v_proj.weight"] = rnd(NKV * HD, H)
        t[p + "self_attn.o_proj.weight"] = rnd(H, NH * HD)
        t[p + "self_attn.q_norm.weight"] = ones(HD)
        t[p + "self_attn.k_norm.weight"] = ones(HD)
        t[p + "mlp.gate_proj.weight"] = rnd(F, H)
        t[p + "mlp.up_proj.weight"] = rnd(F, H)
        t[p + "mlp.down_proj.weight"] = rnd(H, F)
    return t


def train(t, ids):
    g = torch.Generator().manual_seed(SEED)
    data = torch.tensor(ids)
    decay = [p for n, p in t.items() if p.dim() == 2]
    other = [p for n, p in t.items() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}],
                            lr=LR, betas=(0.9, 0.95))
    t0 = time.time()
    for step in range(STEPS):
        lr = LR * min(1.0, (step + 1) / 10) * 0.5 * (1 + math.cos(math.pi * step / STEPS))
        for grp in opt.param_groups:
            grp["lr"] = lr
        starts = torch.randint(0, len(ids) - N_CTX - 1, (BATCH,), generator=g)
        loss = 0.0
        for s in starts.tolist():
            seq = data[s:s + N_CTX + 1].tolist()
            lg = arch_torch.forward(CONFIG, t, seq[:-1])
            loss = loss + torch.nn.functional.cross_entropy(lg, torch.tensor(seq[1:]))
        loss = loss / BATCH
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(t.values()), 1.0)
        opt.step()
        if step % 40 == 0 or step == STEPS - 1:
            print(f"step {step:4d}  loss {loss.item():.3f}  lr {lr:.2e}  {time.time() - t0:.0f} s", flush=True)


def ppl(t, ids, n_ctx):
    """llama-perplexity's method without BOS: chunks of n_ctx, the second half scored."""
    nll, cnt = 0.0, 0
    with torch.no_grad():
        for c in range(len(ids) // n_ctx):
            chunk = ids[c * n_ctx:(c + 1) * n_ctx]
            lg = arch_torch.forward(CONFIG, t, chunk).double().log_softmax(-1)
            for j in range(n_ctx // 2, n_ctx - 1):
                nll -= float(lg[j, chunk[j + 1]])
                cnt += 1
    return math.exp(nll / cnt), len(ids) // n_ctx


def read_text(name):
    s = open(os.path.join(HERE, "text", name), encoding="utf-8").read()
    return s[:-1] if s.endswith("\n") else s  # as llama-perplexity -f reads it


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "tiny-qwen3-bpe")
    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    split = pre_tokenizer()
    calib = read_text("calib.txt")
    words = collections.Counter(pieces(split, calib))
    merges = learn_merges(words, N_BPE - 256)
    vocab = {c: i for i, c in enumerate(BYTE_CHAR[b] for b in sorted(BYTE_CHAR, key=lambda b: ord(BYTE_CHAR[b])))}
    for a, b in merges:
        vocab[a + b] = len(vocab)
    assert len(vocab) == N_BPE, len(vocab)
    enc = Encoder(vocab, merges, split)
    ids = enc.encode(calib)
    print(f"tokenizer: {len(merges)} merges, calib.txt {len(calib.encode())} bytes -> {len(ids)} tokens")
    os.makedirs(out, exist_ok=True)
    write_tokenizer(out, vocab, merges)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(CONFIG, f, indent=2)
        f.write("\n")

    t = init_weights(torch.Generator().manual_seed(SEED))
    train(t, ids)
    st = os.path.join(out, "model.safetensors")
    arch_fixture.write_safetensors(st, {n: p.detach().numpy() for n, p in t.items()})
    _, stored = arch_torch.load(out)  # the bf16 weights as written, back in fp32
    for name in ("eval-en.txt",):
        p, n = ppl(stored, enc.encode(read_text(name)), N_CTX)
        print(f"PyTorch reference, bf16 weights: {name} PPL {p:.4f} ({n} chunks of {N_CTX})")


if __name__ == "__main__":
    main()
