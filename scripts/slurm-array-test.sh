#!/usr/bin/env bash
# scripts/slurm-array-test.sh KVSTAT_BIN INPUT_DIR WORK_DIR: runs a real single-node Slurm (slurmctld +
# slurmd + munged on loopback, started here, stopped at exit), submits examples/slurm/kvstat-array.sbatch
# as a 4-task array over INPUT_DIR, merges the shards' corpus states with `kvstat merge`, and runs the same
# inputs as one single-machine batch. Writes WORK_DIR/array-corpus and WORK_DIR/single/corpus for the caller
# to compare. Exit 0 when the array ran; 77 (skip) only when Slurm or munge is not installed; 1 when they are
# installed but a daemon does not start, the node never comes up, or the array fails or takes longer than
# SLURM_TEST_LIMIT seconds (default 600): then the last lines of every daemon's log follow on stderr.
set -uo pipefail
kvstat=$(realpath "$1"); inputs=$(realpath "$2"); work=$3
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
limit=${SLURM_TEST_LIMIT:-600}
skip() { echo "slurm test skipped: $*" >&2; exit 77; }
# The tools the test needs (BatchCLITests checks the same list before it runs this script).
for tool in slurmctld slurmd sbatch sinfo squeue scancel munged; do
    command -v "$tool" >/dev/null || skip "$tool not installed (apt-get install slurm-wlm munge)"
done
fail() {
    echo "slurm test failed: $*" >&2
    for log in "$work"/munged.out "$work/munge/munged.log" "$work"/slurmctld.{out,log} "$work"/slurmd.{out,log} \
        "$work"/kvstat-*.log; do
        [[ -f $log ]] || continue
        echo "--- last lines of $log" >&2
        tail -n 20 "$log" >&2
    done
    exit 1
}

rm -rf "$work"; mkdir -p "$work"/{state,spool,munge,out}; work=$(realpath "$work")
# Close every descriptor above 2 (a caller's pipe would otherwise be held open by the daemons below).
for fd in /proc/$$/fd/*; do n=${fd##*/}; if [[ $n -gt 2 && $n -lt 255 ]]; then eval "exec $n>&-" 2>/dev/null; fi; done
# Ports of this run only, so that daemons left by another run cannot collide with these.
ctld_port=$((20000 + RANDOM % 10000)); slurmd_port=$((ctld_port + 1))
host=$(hostname -s)
cleanup() {
    scancel --user=root >/dev/null 2>&1 || true
    [[ -f $work/slurmd.pid ]] && kill "$(cat "$work/slurmd.pid")" 2>/dev/null
    [[ -f $work/slurmctld.pid ]] && kill "$(cat "$work/slurmctld.pid")" 2>/dev/null
    [[ -f $work/munge/munged.pid ]] && kill "$(cat "$work/munge/munged.pid")" 2>/dev/null
    # Whatever is left of this run's daemons: their command lines name this run's config and munge key.
    local daemons="$work/slurm.conf|$work/munge/munge.key"
    pkill -f -- "$daemons" 2>/dev/null
    for _ in $(seq 20); do pgrep -f -- "$daemons" >/dev/null || break; sleep 0.25; done
    pkill -9 -f -- "$daemons" 2>/dev/null
    true
}
trap cleanup EXIT
# munge: a fresh key and socket in the work folder.
dd if=/dev/urandom of="$work/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$work/munge/munge.key"
munged --force --key-file="$work/munge/munge.key" --socket="$work/munge/munge.socket" \
    --pid-file="$work/munge/munged.pid" --log-file="$work/munge/munged.log" --seed-file="$work/munge/seed" \
    </dev/null >"$work/munged.out" 2>&1 || fail "munged would not start"
cat >"$work/slurm.conf" <<CONF
ClusterName=kvstattest
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$work/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd.log
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
NodeName=$host NodeAddr=127.0.0.1 CPUs=$(nproc) State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF=$work/slurm.conf
# Daemons get /dev/null and files for stdin/out/err: an inherited pipe would keep the caller waiting for EOF.
slurmctld -i -f "$work/slurm.conf" </dev/null >"$work/slurmctld.out" 2>&1 || fail "slurmctld would not start"
slurmd -f "$work/slurm.conf" </dev/null >"$work/slurmd.out" 2>&1 || fail "slurmd would not start"
# Polling with a time limit: 60 tries, one second apart.
for _ in $(seq 60); do
    sinfo -h -o %T 2>/dev/null | grep -q idle && break
    sleep 1
done
sinfo -h -o %T 2>/dev/null | grep -q idle || fail "the node never became idle in 60 s (sinfo: $(sinfo -h 2>&1))"

# The array: 4 shards, each a kvstat batch, as the example script runs them; killed after $limit seconds.
KVSTAT=$kvstat INPUTS=$inputs OUT=$work/out timeout "$limit" sbatch --array=0-3 --wait --chdir="$work" \
    "$repo/examples/slurm/kvstat-array.sbatch" >"$work/sbatch.out" 2>&1
status=$?
cat "$work/sbatch.out"
if [[ $status -eq 124 ]]; then
    fail "the array did not finish in $limit s (squeue: $(squeue -h 2>&1 | head -n 8))"
elif [[ $status -ne 0 ]]; then
    fail "the array failed (sbatch exit $status)"
fi
ls "$work"/out
"$kvstat" merge "$work"/out/shard-*/corpus -o "$work/array-corpus" --quiet || fail "kvstat merge failed"
"$kvstat" batch "$inputs" -o "$work/single" --quiet || fail "the single-machine batch failed"
echo "slurm test: 4-task array and single-machine batch done"
