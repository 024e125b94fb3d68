#!/usr/bin/env bash
# input_changes.sh — an input truncated while a tool reads it (another process rewriting it,
# a network filesystem): smelt-convert, smelt-quantize and smelt-verify end with one error line
# naming the file, exit status 1, and leave no temporary output file behind.
#
# No sleeps as synchronization: a watcher polls /proc/PID/maps until the tool has mapped the
# input (and, for a tool that writes, created its temporary output), stops the tool with
# SIGSTOP, truncates the input to 4096 bytes, and lets the tool continue with SIGCONT. If the
# tool had already finished when the watcher looked, the case is run again with an input twice
# as large instead of passing without having tested anything.
set -u
cd "$(dirname "$0")/../.."
B="${SMELT_BIN:-$PWD/bin}"
for t in smelt-convert smelt-quantize smelt-verify; do [ -x "$B/$t" ] || { echo "$t not built"; exit 1; }; done
[ -d /proc/self ] || { echo "no /proc: cannot watch the tool's mappings"; exit 77; }
tmp="$(mktemp -d "${TMPDIR:-/tmp}/smelt-e2e-input-changes-XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL $*"; fails=$((fails+1)); }

# A Mixtral HF directory like samples/tiny-mixtral but with intermediate_size $3: one
# model.safetensors of about 25 MB per 1024 of intermediate size, finite random bf16 values.
cat >"$tmp/mkhf.py" <<'PY'
import array, json, os, random, shutil, struct, sys
src, dst, inter = sys.argv[1], sys.argv[2], int(sys.argv[3])
os.makedirs(dst, exist_ok=True)
cfg = json.load(open(os.path.join(src, 'config.json')))
old_i = cfg['intermediate_size']
cfg['intermediate_size'] = inter
json.dump(cfg, open(os.path.join(dst, 'config.json'), 'w'), indent=2)
for f in os.listdir(src):
    if f.startswith('tokenizer') or f in ('special_tokens_map.json', 'generation_config.json'):
        shutil.copy(os.path.join(src, f), dst)
shapes = {}
for shard in sorted(f for f in os.listdir(src) if f.endswith('.safetensors')):
    with open(os.path.join(src, shard), 'rb') as fh:
        n, = struct.unpack('<Q', fh.read(8))
        for k, v in json.loads(fh.read(n)).items():
            if k != '__metadata__':
                shapes[k] = [inter if d == old_i else d for d in v['shape']]
rnd = random.Random(1)
# finite bf16 values of magnitude 2^-27 .. 2^-6, either sign
block = array.array('H', ((rnd.getrandbits(1) << 15) | ((100 + rnd.getrandbits(4) + rnd.getrandbits(3)) << 7) |
                          rnd.getrandbits(7) for _ in range(1 << 19))).tobytes()
hdr, off = {'__metadata__': {'format': 'pt'}}, 0
for k in sorted(shapes):
    nb = 2
    for d in shapes[k]:
        nb *= d
    hdr[k] = {'dtype': 'BF16', 'shape': shapes[k], 'data_offsets': [off, off + nb]}
    off += nb
h = json.dumps(hdr, separators=(',', ':')).encode()
h += b' ' * (-len(h) % 8)
with open(os.path.join(dst, 'model.safetensors'), 'wb') as fh:
    fh.write(struct.pack('<Q', len(h)) + h)
    left = off
    while left:
        k = min(left, len(block))
        fh.write(block[:k])
        left -= k
PY

# watch.py INPUT OUTDIR OUTPREFIX TOOL ARGS...: start the tool (stdout and stderr to $tmp/out
# and $tmp/err), truncate INPUT under it once it is mapped, and print the tool's exit status.
# Exit 0 when the input was truncated under the running tool, 2 if the tool ended (or stopped
# mapping the input) first, 3 on a 20 s timeout. It starts the tool itself so that its own
# start-up time cannot let the tool finish unobserved.
cat >"$tmp/watch.py" <<'PY'
import os, signal, subprocess, sys, time
path, outdir, prefix, argv = os.path.realpath(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
tmp = os.environ['WATCH_TMP']
with open(os.path.join(tmp, 'out'), 'wb') as out, open(os.path.join(tmp, 'err'), 'wb') as err:
    p = subprocess.Popen(argv, stdout=out, stderr=err)
pid = p.pid
def mapped():
    try:
        with open(f'/proc/{pid}/maps') as f:
            return any(line.rstrip('\n').endswith(' ' + path) for line in f)
    except OSError:
        return False
def writing():
    return not outdir or any(n.startswith(prefix) for n in os.listdir(outdir))
def stopped():
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[0] in ('T', 't')
    except OSError:
        return False
def finish(code):
    print(p.wait())
    sys.exit(code)
deadline = time.monotonic() + 20
while not (mapped() and writing()):
    if p.poll() is not None:
        finish(2)
    if time.monotonic() > deadline:
        p.kill()
        finish(3)
os.kill(pid, signal.SIGSTOP)
while not stopped():
    if p.poll() is not None:
        finish(2)
if not mapped():  # it unmapped the input between the look and the stop
    os.kill(pid, signal.SIGCONT)
    finish(2)
os.truncate(path, 4096)
os.kill(pid, signal.SIGCONT)
finish(0)
PY

# run_case NAME INPUT OUTDIR OUTPREFIX TOOL ARGS... — run the tool on INPUT (which it maps),
# truncate INPUT under it; returns 2 when the tool finished first (the caller retries).
run_case() {
  local name="$1" input="$2" outdir="$3" prefix="$4" tool="$5"; shift 5
  local size; size=$(stat -c %s "$input")
  local rc
  rc=$(WATCH_TMP="$tmp" python3 "$tmp/watch.py" "$input" "$outdir" "$prefix" "$B/$tool" "$@"); local w=$?
  if [ "$w" -eq 2 ]; then echo "note $name: the tool finished before the input could be truncated (exit $rc)"; return 2; fi
  if [ "$w" -ne 0 ]; then fail "$name: the watcher gave up (status $w)"; return 0; fi
  [ "$rc" = 1 ] && echo "ok   $name: exit status 1" || { fail "$name: exit $rc, expected 1"; sed 's/^/  | /' "$tmp/err" | head; }
  local want="^$tool: error: $input: changed or truncated while reading \\(the read at byte [0-9]+ failed; the file was $size bytes when opened, 4096 now\\)\$"
  if [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -Eq "$want" "$tmp/err"; then echo "ok   $name: one error line naming the file"
  else fail "$name: stderr is not the one expected line"; sed 's/^/  | /' "$tmp/err" | head; fi
  if [ -n "$outdir" ]; then
    local left; left=$(ls -A "$outdir" | grep -c 'smelt-tmp' || true)
    [ "$left" -eq 0 ] && echo "ok   $name: no temporary file left" || { fail "$name: temporary files left"; ls -A "$outdir"; }
  fi
  return 0
}

# Each case starts from a fresh copy of the input (the previous case truncated its own);
# on a race it doubles the input and tries again, at most three times.
inter=8192
raced=1
for attempt in 1 2 3; do
  rm -rf "$tmp/hf" "$tmp/out-convert" "$tmp/big.gguf"
  python3 "$tmp/mkhf.py" samples/tiny-mixtral "$tmp/hf" "$inter" || { fail "cannot build the input"; raced=0; break; }
  "$B/smelt-convert" -q "$tmp/hf" -o "$tmp/big.gguf" >/dev/null 2>"$tmp/err" || { fail "convert of the intact input"; cat "$tmp/err"; raced=0; break; }
  raced=0
  mkdir -p "$tmp/out-convert"
  run_case "smelt-convert" "$tmp/hf/model.safetensors" "$tmp/out-convert" ".m.gguf.smelt-tmp-" \
    smelt-convert -q "$tmp/hf" -o "$tmp/out-convert/m.gguf" || raced=1
  for tool in quantize verify; do
    [ "$raced" -eq 0 ] || break
    rm -rf "$tmp/out-$tool"; mkdir -p "$tmp/out-$tool"
    cp "$tmp/big.gguf" "$tmp/in-$tool.gguf"
    if [ "$tool" = quantize ]; then
      run_case "smelt-quantize" "$tmp/in-$tool.gguf" "$tmp/out-$tool" ".q.gguf.smelt-tmp-" \
        smelt-quantize -q -t 1 "$tmp/in-$tool.gguf" "$tmp/out-$tool/q.gguf" Q8_0 || raced=1
    else
      run_case "smelt-verify" "$tmp/in-$tool.gguf" "" "" smelt-verify -q -t 1 "$tmp/in-$tool.gguf" || raced=1
    fi
    rm -f "$tmp/in-$tool.gguf"
  done
  [ "$raced" -eq 0 ] && break
  inter=$((inter * 2))
done
[ "$raced" -eq 0 ] || fail "every attempt raced: the tools finished before the input could be truncated"

echo "----"
[ "$fails" -eq 0 ] && echo "input_changes: all passed" || { echo "input_changes: $fails failed"; exit 1; }
