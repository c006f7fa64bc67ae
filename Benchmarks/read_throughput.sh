#!/usr/bin/env bash
# Benchmarks/read_throughput.sh: how fast kvstat reads dump tensors, against h5py + numpy, in MB/s of
# stored tensor bytes (float16: 2 bytes a value, whatever the compression), from the page cache.
#
# It writes two dumps of the same Llama-shaped float16 tensors into WORKDIR (generate_llama_dump.py; chunks
# [1, 8, 256, 128]): `plain.h5` uncompressed and `gzip.h5` with shuffle + gzip (h5py's defaults, level 4),
# reads each once with `cat` (warm page cache), then, N rounds, round-robin:
#   kvstat inspect DUMP --read-all         every tensor once, as float32 rows in blocks of 4096 tokens (the
#                                          process's wall time, start-up and the NaN/Inf scan included)
#   kvstat analyze DUMP --only spectra     its `--timings` read stage (one pass, the scan included)
#   h5py + numpy                           per tensor: ds[...] → float32 → rows [tokens, heads·head_dim],
#                                          timed inside python (imports excluded)
# and prints the best (minimum) of each, the median, and kvstat ÷ numpy. The CPU, its F16C flag and the
# libdeflate and libhdf5 kvstat loads are printed first: machines differ between sessions.
#
# Usage:  Benchmarks/read_throughput.sh [KVSTAT_BIN]          (default .build/release/kvstat)
# Environment: LAYERS (8), TOKENS (16384): 8 × 2 × [1, 8, 16384, 128] float16 = 512 MiB, at most 1 GiB is
# sensible here; N (3), PYTHON (python3), WORKDIR (default: a new mktemp -d, deleted at the end unless KEEP=1;
# dumps already in it are reused).
set -euo pipefail

if [[ ${1:-} == -h || ${1:-} == --help ]]; then
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 2
fi
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KVSTAT=${1:-$HERE/../.build/release/kvstat}
PYTHON=${PYTHON:-python3}
N=${N:-3}
LAYERS=${LAYERS:-8}
TOKENS=${TOKENS:-16384}
[[ -x $KVSTAT ]] || { echo "error: no kvstat at $KVSTAT (swift build -c release)" >&2; exit 2; }
if [[ -n ${WORKDIR:-} ]]; then mkdir -p "$WORKDIR"; CREATED=0
else WORKDIR=$(mktemp -d "${TMPDIR:-/tmp}/kvstat-read.XXXXXX"); CREATED=1; fi
cleanup() { if [[ $CREATED == 1 && ${KEEP:-0} != 1 ]]; then rm -rf "$WORKDIR"; fi; }
trap cleanup EXIT

echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores," \
    "f16c: $(grep -qw f16c /proc/cpuinfo && echo yes || echo no)"
echo "libs: $(ldd "$KVSTAT" | grep -oE '(libdeflate|libhdf5[a-z_]*)\.so[.0-9]*' | sort -u | tr '\n' ' ')"
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"

PLAIN=$WORKDIR/plain.h5
GZIP=$WORKDIR/gzip.h5
if [[ ! -f $PLAIN ]]; then
    "$PYTHON" "$HERE/generate_llama_dump.py" --tokens "$TOKENS" --layers "$LAYERS" --out "$PLAIN" >/dev/null 2>&1
fi
if [[ ! -f $GZIP ]]; then
    "$PYTHON" - "$PLAIN" "$GZIP" <<'EOF'
import sys, h5py
source, target = sys.argv[1:3]
with h5py.File(source, "r") as s, h5py.File(target, "w", libver=("earliest", "v110")) as t:
    for k, v in s.attrs.items():
        t.attrs[k] = v
    def copy(name, obj):
        if isinstance(obj, h5py.Dataset):
            big = obj.ndim == 4
            d = t.create_dataset(name, data=obj[...], chunks=obj.chunks if big else None,
                                 compression="gzip" if big else None, shuffle=big)
            for k, v in obj.attrs.items():
                d.attrs[k] = v
    s.visititems(copy)
EOF
fi
# Stored tensor bytes: every key/value value at its stored width.
BYTES=$("$PYTHON" - "$PLAIN" <<'EOF'
import sys, h5py
total = 0
with h5py.File(sys.argv[1], "r") as f:
    def add(name, obj):
        global total
        if isinstance(obj, h5py.Dataset) and obj.ndim == 4:
            total += obj.size * obj.dtype.itemsize
    f.visititems(add)
print(total)
EOF
)
echo "dumps: $LAYERS layers × {key, value} × [1, 8, $TOKENS, 128] float16 = $((BYTES >> 20)) MiB of tensors;" \
    "files: plain $(($(stat -c %s "$PLAIN") >> 20)) MiB, gzip $(($(stat -c %s "$GZIP") >> 20)) MiB"
cat "$PLAIN" "$GZIP" >/dev/null

NUMPY_READ=$(cat <<'EOF'
import sys, time, h5py, numpy as np
t0 = time.perf_counter()
with h5py.File(sys.argv[1], "r") as f:
    def read(name, obj):
        if isinstance(obj, h5py.Dataset) and obj.ndim == 4:
            x = obj[...].astype(np.float32)                       # [b, h, t, d]
            for b in range(x.shape[0]):
                rows = np.ascontiguousarray(x[b].transpose(1, 0, 2)).reshape(x.shape[2], -1)
                assert rows.shape[1] == x.shape[1] * x.shape[3]
    f.visititems(read)
print(f"{time.perf_counter() - t0:.4f}")
EOF
)

declare -A TIMES
now() { date +%s.%N; }
for ((round = 1; round <= N; round++)); do
    for kind in plain gzip; do
        dump=$WORKDIR/$kind.h5
        start=$(now)
        "$KVSTAT" inspect "$dump" --read-all >/dev/null
        TIMES[$kind.inspect]+="$(echo "$(now) - $start" | bc -l) "
        read_s=$("$KVSTAT" analyze "$dump" --only spectra --timings --quiet --force -o "$WORKDIR/out-$kind" 2>&1 \
            | awk '/timing read/ {print $4}')
        TIMES[$kind.analyze]+="$read_s "
        TIMES[$kind.numpy]+="$("$PYTHON" -c "$NUMPY_READ" "$dump") "
    done
done

stats() {  # best median of the seconds in $1
    tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -g | awk '{v[NR] = $1} END {printf "%s %s", v[1], v[int((NR + 1) / 2)]}'
}
printf '\n%-8s %-34s %10s %10s %11s\n' dump reader "best s" "median s" "best MB/s"
for kind in plain gzip; do
    for reader in inspect analyze numpy; do
        read -r best median <<<"$(stats "${TIMES[$kind.$reader]}")"
        case $reader in
            inspect) label="kvstat inspect --read-all (wall)" ;;
            analyze) label="kvstat analyze read stage" ;;
            numpy) label="h5py + numpy" ;;
        esac
        printf '%-8s %-34s %10.3f %10.3f %11.0f\n' "$kind" "$label" "$best" "$median" \
            "$(echo "$BYTES / $best / 1000000" | bc -l)"
        eval "best_${kind}_${reader}=$best"
    done
    printf '%-8s %-34s %10s %10s %10.2fx\n' "$kind" "numpy ÷ kvstat inspect (best)" "" "" \
        "$(echo "$(eval echo \$best_${kind}_numpy) / $(eval echo \$best_${kind}_inspect)" | bc -l)"
done
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
