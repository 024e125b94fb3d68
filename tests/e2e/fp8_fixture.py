#!/usr/bin/python3
"""fp8_fixture.py SRC FP8_DIR TWIN_DIR [MUTATION] — build a block-scaled FP8 checkpoint from
the HF model in SRC and its dequantized f32 twin.

Every 2-D linear weight of the decoder layers (attention, experts; not the norms, the
router or the embeddings, as DeepSeek-V3 leaves them) becomes F8_E4M3 with a
`….weight_scale_inv` F32 tensor of 128 × 128 block scales (scale = block amax / 448);
config.json gains quantization_config. The twin holds fp8 × scale rounded once to f32 —
exactly what a reader of the FP8 checkpoint computes — in an otherwise identical
checkpoint, so both must convert to the same GGUF. MUTATION breaks the FP8 checkpoint for
the refusal tests: scale_shape (one scale tensor one column short), e5m2 (one weight
stored as F8_E5M2), no_scale (one scale tensor left out), block64 (weight_block_size
[64, 64] in config.json), no_config (no quantization_config)."""
import json, os, shutil, struct, sys

import numpy as np

src, fp8_dir, twin_dir = sys.argv[1:4]
mutation = sys.argv[4] if len(sys.argv) > 4 else ""
B = 128

# E4M3FN: sign, 4 exponent bits (bias 7), 3 mantissa bits; no infinities, 0x7f is NaN
codes = np.arange(0x7F)
E4M3 = np.where(codes >> 3 == 0, (codes & 7) / 8.0 * 2.0**-6, (1 + (codes & 7) / 8.0) * 2.0 ** ((codes >> 3) - 7.0))


def to_e4m3(x):
    """f32 array -> E4M3FN bytes, round to nearest, ties to even (|x| <= 448)."""
    a = np.abs(x).astype(np.float64)
    hi = np.clip(np.searchsorted(E4M3, a), 1, 0x7E)
    lo = hi - 1
    dl, dh = a - E4M3[lo], E4M3[hi] - a
    pick = np.where(dl < dh, lo, np.where(dh < dl, hi, np.where(lo % 2 == 0, lo, hi)))
    return (pick | np.where(np.signbit(x), 0x80, 0)).astype(np.uint8)


def from_e4m3(b):
    v = E4M3[np.minimum(b & 0x7F, 0x7E)].astype(np.float32)
    return np.where(b & 0x80, -v, v).astype(np.float32)


def read_st(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in hdr.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        assert v["dtype"] in ("BF16", "F32"), v["dtype"]
        if v["dtype"] == "BF16":
            t = (np.frombuffer(data[a:b], dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            t = np.frombuffer(data[a:b], dtype=np.float32)
        out[k] = ("BF16" if v["dtype"] == "BF16" else "F32", t.reshape(v["shape"]), data[a:b])
    return out


def write_st(path, tensors):
    hdr, blobs, off = {}, [], 0
    for k, dt, shape, b in tensors:
        hdr[k] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for b in blobs:
            f.write(b)


tensors = {}
for name in sorted(os.listdir(src)):
    if name.endswith(".safetensors"):
        tensors.update(read_st(os.path.join(src, name)))


def fp8_target(name, t):
    return t.ndim == 2 and ".layers." in name and name.endswith(".weight") and "norm" not in name and not name.endswith(".gate.weight")


fp8, twin = [], []
n_fp8 = 0
for name in sorted(tensors):
    dt, w, raw = tensors[name]
    if not fp8_target(name, w):
        fp8.append((name, dt, w.shape, raw))
        twin.append((name, dt, w.shape, raw))
        continue
    R, C = w.shape
    rb, cb = -(-R // B), -(-C // B)
    pad = np.zeros((rb * B, cb * B), dtype=np.float32)
    pad[:R, :C] = np.abs(w)
    amax = pad.reshape(rb, B, cb, B).max(axis=(1, 3))
    scale = np.where(amax > 0, amax / np.float32(448.0), np.float32(1)).astype(np.float32)
    full = np.repeat(np.repeat(scale, B, 0), B, 1)[:R, :C]
    q = to_e4m3(np.clip(w / full, -448, 448))
    deq = (from_e4m3(q) * full).astype(np.float32)  # one f32 rounding, as the reader does
    n_fp8 += 1
    qdt = "F8_E5M2" if mutation == "e5m2" and n_fp8 == 1 else "F8_E4M3"
    if mutation == "scale_shape" and n_fp8 == 1:
        scale = np.ascontiguousarray(scale[:, :-1])
    fp8.append((name, qdt, w.shape, q.tobytes()))
    if not (mutation == "no_scale" and n_fp8 == 1):
        fp8.append((name + "_scale_inv", "F32", scale.shape, scale.tobytes()))
    twin.append((name, "F32", w.shape, deq.tobytes()))

for d, ts, quant in ((fp8_dir, fp8, True), (twin_dir, twin, False)):
    if d == "-":
        continue
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(src):
        if not f.endswith(".safetensors") and not f.endswith(".index.json") and f != "config.json":
            shutil.copy(os.path.join(src, f), os.path.join(d, f))
    cfg = json.load(open(os.path.join(src, "config.json")))
    if quant and mutation != "no_config":
        cfg["quantization_config"] = {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                                      "weight_block_size": [64, 64] if mutation == "block64" else [B, B]}
    json.dump(cfg, open(os.path.join(d, "config.json"), "w"), indent=2)
    write_st(os.path.join(d, "model.safetensors"), ts)
print(f"{n_fp8} tensors as F8_E4M3 with 128x128 block scales")
