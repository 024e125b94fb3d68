"""safetensors.torch.load_file for Debian's torch 1.13: reads the file into CPU tensors, keys sorted by name as
safe_open().keys() returns them.
smelt's own stand-in for the oracle tests (the real package is not installed)."""
import json, struct
import torch

_DT = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64,
       "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
       "BOOL": torch.bool}

def load_file(path, device="cpu"):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    hdr = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for k in sorted(hdr):
        if k == "__metadata__":
            continue
        v = hdr[k]
        s, e = v["data_offsets"]
        dt = _DT[v["dtype"]]
        buf = bytearray(data[base + s:base + e])
        t = torch.frombuffer(buf, dtype=dt) if len(buf) else torch.empty(0, dtype=dt)
        out[k] = t.reshape(v["shape"]).clone()
    return out
