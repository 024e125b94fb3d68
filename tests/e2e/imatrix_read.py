"""imatrix_read.py — a GGUF imatrix for the e2e tests: read(path) gives its KVs and
{tensor name: f32 values}; run as a script, A B BOUND checks that the two files have the
same KVs, tensors and counts and sums within BOUND relative, and prints the largest
relative difference."""
import struct, sys
def read(path):
    b = open(path, "rb").read(); o = 0
    def u(fmt):
        nonlocal o; v = struct.unpack_from("<" + fmt, b, o); o += struct.calcsize("<" + fmt); return v[0]
    def s():
        nonlocal o; n = u("Q"); v = b[o:o + n].decode(); o += n; return v
    assert b[:4] == b"GGUF"; o = 8
    nt, nkv = u("Q"), u("Q"); kv = {}
    for _ in range(nkv):
        k, t = s(), u("I")
        if t == 8: kv[k] = s()
        elif t == 4: kv[k] = u("I")
        elif t == 9:
            at, n = u("I"), u("Q"); assert at == 8; kv[k] = [s() for _ in range(n)]
        else: raise SystemExit("unexpected KV type %d" % t)
    infos = []
    for _ in range(nt):
        name, nd = s(), u("I"); ne = 1
        for _ in range(nd): ne *= u("Q")
        assert u("I") == 0; infos.append((name, ne, u("Q")))
    data = (o + 31) // 32 * 32
    return kv, {n: struct.unpack_from("<%df" % ne, b, data + off) for n, ne, off in infos}
if __name__ == "__main__":
    ka, ta = read(sys.argv[1]); kb, tb = read(sys.argv[2]); bound = float(sys.argv[3])
    assert ka == kb, (ka, kb)
    assert sorted(ta) == sorted(tb)
    worst = 0.0
    for n in ta:
        if n.endswith(".counts"): assert ta[n] == tb[n], n; continue
        for x, y in zip(ta[n], tb[n]):
            d = abs(x - y) / max(abs(x), abs(y)) if x != y else 0.0
            worst = max(worst, d)
    print("max relative difference of the sums: %.3g" % worst)
    assert worst <= bound, worst
