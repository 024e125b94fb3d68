#!/usr/bin/env bash
# slurm.sh — the Slurm job-array scripts of docs/quantize.md and docs/imatrix.md, run as
# written through a real one-node Slurm (slurmctld + slurmd + munged started here in a
# temporary directory, on ports of their own, and stopped at exit) on samples/tiny-mixtral:
#   - the smelt-quantize --shard array gives the files of the one-process split, byte for
#     byte;
#   - the smelt-imatrix --chunk-range array, then the dependent --combine job, gives the
#     single run's file byte for byte.
# The scripts are cut out of the docs; only the sizes are changed (the split size, the
# number of chunks, the CPUs per task). Exit 0 pass, 77 skip (Slurm or munge not installed,
# or not root: slurmd runs jobs as their user), anything else fail.
set -uo pipefail
root=${SMELT_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$root" || exit 1
B=${SMELT_BIN:-$root/bin}
for c in slurmctld slurmd munged sbatch; do
  command -v "$c" >/dev/null || PATH=$PATH:/usr/sbin command -v "$c" >/dev/null ||
    { echo "skip: $c not installed (Debian: slurmctld slurmd slurm-client munge)"; exit 77; }
done
PATH=$PATH:/usr/sbin
[ "$(id -u)" = 0 ] || { echo "skip: a one-node Slurm needs root (slurmd)"; exit 77; }
tmp=$(mktemp -d)
fails=0
fail() { echo "FAIL: $*"; fails=$((fails+1)); }
ok() { echo "ok   $*"; }

# ---- a one-node cluster in $tmp/slurm ----
S=$tmp/slurm
mkdir -p "$S/state" "$S/spool" "$S/munge"
stop_cluster() {
  for p in "$S/slurmd.pid" "$S/slurmctld.pid" "$S/munge/pid"; do
    [ -s "$p" ] && kill "$(cat "$p")" 2>/dev/null
  done
  sleep 0.5
  rm -rf "$tmp"
}
trap stop_cluster EXIT
host=$(hostname -s)
port=$((20000 + ($$ % 10000) * 2))
head -c 1024 /dev/urandom >"$S/munge/key" && chmod 400 "$S/munge/key"
cat >"$S/slurm.conf" <<EOF
ClusterName=smelttest
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$S/munge/sock
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
StateSaveLocation=$S/state
SlurmdSpoolDir=$S/spool
SlurmctldPidFile=$S/slurmctld.pid
SlurmdPidFile=$S/slurmd.pid
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmctldLogFile=$S/slurmctld.log
SlurmdLogFile=$S/slurmd.log
ReturnToService=2
MpiDefault=none
NodeName=$host CPUs=$(nproc) State=UNKNOWN
PartitionName=smelt Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$S/slurm.conf
munged --key-file="$S/munge/key" --socket="$S/munge/sock" --pid-file="$S/munge/pid" \
  --log-file="$S/munge/log" --seed-file="$S/munge/seed" --force || { echo "FAIL: munged"; exit 1; }
slurmctld -f "$SLURM_CONF" && slurmd -f "$SLURM_CONF" || { echo "FAIL: slurmctld/slurmd"; exit 1; }
for _ in $(seq 1 60); do sinfo -h -o %T 2>/dev/null | grep -qx idle && break; sleep 0.5; done
sinfo -h -o %T | grep -qx idle || { echo "FAIL: the node did not come up"; tail "$S"/*.log; exit 1; }
ok "one-node Slurm up ($(slurmctld -V))"

# a ```sh block of a doc: the first one after the line that contains $2
doc_block() { # FILE TEXT [NTH]
  awk -v t="$2" -v nth="${3:-1}" '
    !found && index($0, t) { found = 1; next }
    found && /^```sh$/ { k++; if (k == nth) { inb = 1; next } }
    inb && /^```$/ { exit }
    inb { print }' "$1"
}
# (sbatch --wait polls every few seconds; squeue is asked more often)
wait_queue_empty() {
  for _ in $(seq 1 1200); do [ -z "$(squeue -h)" ] && return; sleep 0.25; done
  fail "jobs still queued after 5 minutes: $(squeue)"
}
export PATH=$B:$PATH
W=$tmp/work
mkdir -p "$W/one"
"$B/smelt-convert" -q samples/tiny-mixtral -o "$W/model-f16.gguf" --outtype f16 || { echo "FAIL: convert"; exit 1; }
head -c 16000 samples/text/calib.txt >"$W/calibration.txt" # 16 chunks of 512 tokens
cp tests/fixtures/imatrix/tiny-mixtral-calib-c256.gguf "$W/imatrix.gguf"

# ---- smelt-quantize --shard I/N as a job array ----
doc_block docs/quantize.md "A Slurm job array, one task per file" |
  sed -e 's/--split-max-size 4G/--split-max-size 2M/' -e 's/--cpus-per-task=16/--cpus-per-task=1/' \
    >"$W/quantize.sbatch"
grep -q -- '--shard "$SLURM_ARRAY_TASK_ID/4"' "$W/quantize.sbatch" && grep -q -- '--array=1-4' "$W/quantize.sbatch" ||
  fail "docs/quantize.md: the Slurm script was not found as expected: $(cat "$W/quantize.sbatch")"
# (from $W with the same relative paths: the first file records the imatrix path)
(cd "$W" && smelt-quantize -q --imatrix imatrix.gguf model-f16.gguf one/model-Q4_K_M.gguf Q4_K_M 2 \
  --split-max-size 2M) || fail "one-process split"
(cd "$W" && sbatch -o "$S/quantize-%a.out" quantize.sbatch >/dev/null) || fail "submitting the quantize job array"
wait_queue_empty
n=0
for f in "$W"/one/model-Q4_K_M-0000?-of-00004.gguf; do cmp -s "$f" "$W/${f##*/}" && n=$((n + 1)); done
[ $n -eq 4 ] && ok "quantize array of 4 tasks: the 4 files of the one-process split, byte for byte" ||
  fail "quantize array: $n of 4 files identical ($(ls "$W" | tr '\n' ' '); $(tail -n 3 "$S"/quantize-*.out))"

# ---- smelt-imatrix --chunk-range slices as a job array, then --combine ----
chunks=$(smelt-imatrix -q -m "$W/model-f16.gguf" -f "$W/calibration.txt" --chunk-range 0:1 --json -o "$tmp/probe.gguf" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["n_chunks_text"])') || fail "n_chunks_text"
doc_block docs/imatrix.md "A Slurm job array, one slice per task" |
  sed -e "s/^n=93;/n=$chunks;/" -e 's/--cpus-per-task=16/--cpus-per-task=1/' >"$W/imatrix.sbatch"
doc_block docs/imatrix.md "A Slurm job array, one slice per task" 2 >"$W/submit.sh"
grep -q -- "--chunk-range" "$W/imatrix.sbatch" && grep -q -- "--dependency=afterok" "$W/submit.sh" ||
  fail "docs/imatrix.md: the Slurm scripts were not found as expected"
# (the file records the text's path as given)
(cd "$W" && smelt-imatrix -q -m model-f16.gguf -f calibration.txt -o "$tmp/single.gguf") || fail "single imatrix run"
# the submission as written, then wait for the dependent combine job
(cd "$W" && sh submit.sh >"$S/submit.out") || fail "submitting the imatrix jobs: $(cat "$S/submit.out")"
wait_queue_empty
cmp -s "$tmp/single.gguf" "$W/model.imatrix.gguf" &&
  ok "imatrix array of 4 slices + dependent combine: the single run's file, byte for byte ($chunks chunks)" ||
  fail "imatrix array: combined file differs from the single run ($(ls "$W" | tr '\n' ' '); $(cat "$W"/slurm-*.out 2>/dev/null | head -5))"

[ $fails -eq 0 ] && echo "slurm: all passed" || { echo "slurm: $fails failed"; exit 1; }
