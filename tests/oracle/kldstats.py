"""kldstats — shared by paired-kld and quality-table: read `smelt-perplexity --kld-tokens`
files and compare two quants token by token, with a bootstrap over chunks for the noise.

A chunk is the unit of resampling: tokens inside one chunk share their context, so they are
not independent draws. Several pairs of files (one pair per dithered copy of a model) pool
their chunks: each (pair, chunk) is one unit. Standard library only."""
import random

HEADER = ["chunk", "position", "token", "kld"]


def read(path):
    """(keys, values): keys[i] = (chunk, position, token) of scored token i, values[i] its KLD."""
    keys, values = [], []
    with open(path) as f:
        head = f.readline().rstrip("\n").split("\t")
        if head != HEADER:
            raise SystemExit(f"{path}: not a --kld-tokens file (header {head})")
        for n, line in enumerate(f, 2):
            p = line.rstrip("\n").split("\t")
            if len(p) != 4:
                raise SystemExit(f"{path}:{n}: expected 4 tab-separated fields, got {len(p)}")
            keys.append((int(p[0]), int(p[1]), int(p[2])))
            values.append(float(p[3]))
    return keys, values


def read_pair(path_a, path_b):
    ka, a = read(path_a)
    kb, b = read(path_b)
    if ka != kb:
        raise SystemExit(f"{path_a} and {path_b} score different tokens: they come from different base files")
    return ka, a, b


def ratio_ci(pairs, n_boot=2000, seed=1):
    """pairs: [(keys, a, b)]. Returns (sum a / sum b, 2.5% and 97.5% bootstrap bounds)."""
    units = []
    for p, (keys, a, b) in enumerate(pairs):
        sums = {}
        for k, x, y in zip(keys, a, b):
            s = sums.setdefault((p, k[0]), [0.0, 0.0])
            s[0] += x
            s[1] += y
        units += sums.values()
    total_a = sum(u[0] for u in units)
    total_b = sum(u[1] for u in units)
    rng = random.Random(seed)
    ratios = []
    for _ in range(n_boot):
        sa = sb = 0.0
        for _ in range(len(units)):
            x, y = units[rng.randrange(len(units))]
            sa += x
            sb += y
        ratios.append(sa / sb if sb > 0 else float("inf"))
    ratios.sort()
    return total_a / total_b, ratios[int(0.025 * n_boot)], ratios[int(0.975 * n_boot) - 1]
