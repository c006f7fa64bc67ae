#!/usr/bin/env bash
# Benchmarks/peak_rss.sh: checks that kvstat's peak memory does not grow with the
# sequence length. It generates two synthetic Llama-shaped dumps that differ only
# in token count (8192 and 32768 by default), runs each kvstat command on both
# under GNU `/usr/bin/time -v`, and prints the peak RSS (MiB) of each run, the
# ratio large/small, and PASS when the ratio is at most 1 + TOLERANCE (10 %).
#
# Commands measured (a command the binary lacks is reported as SKIP):
#   KVSTAT_BIN inspect DUMP                metadata only: tiny either way
#   KVSTAT_BIN inspect --read-all DUMP     streams every tensor through the
#                                          token-block reader (the real test);
#                                          the printed value count is checked
#   KVSTAT_BIN analyze DUMP -o DIR         if `KVSTAT_BIN analyze --help` succeeds
#
# Usage:  Benchmarks/peak_rss.sh KVSTAT_BIN          (e.g. .build/release/kvstat)
# Environment:
#   QUICK=1         4 layers instead of 32 (the dumps are 0.125 and 0.5 GiB)
#   LAYERS=N        layer count (overrides QUICK)
#   SMALL_TOKENS, LARGE_TOKENS   token counts (8192, 32768)
#   TOLERANCE       allowed relative growth of peak RSS (0.10)
#   WORKDIR         where dumps and outputs go (default: a new mktemp -d in /tmp);
#                   existing dumps with the same name are reused
#   KEEP=1          keep WORKDIR (by default it is deleted when it was created here)
#   ANALYZE_ARGS    extra analyze arguments, split on spaces (e.g. "--dct-window 4096":
#                   by default the DCT holds one whole sequence panel, which grows with T)
#   PYTHON          interpreter for the generator (python3)
# Exit status: 0 when every measured command passes, 1 when one fails, 2 on usage
# errors or a missing /usr/bin/time (install it with `apt-get install -y time`).
set -euo pipefail

if [[ $# -ne 1 || $1 == -h || $1 == --help ]]; then
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 2
fi
KVSTAT=$1
if [[ ! -x $KVSTAT ]] && ! command -v "$KVSTAT" >/dev/null 2>&1; then
    echo "error: $KVSTAT is not an executable" >&2
    exit 2
fi
TIME_BIN=/usr/bin/time
if ! "$TIME_BIN" -v -o /dev/null true >/dev/null 2>&1; then
    echo "error: GNU time ($TIME_BIN -v) is not available; install it with: apt-get install -y time" >&2
    exit 2
fi

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PYTHON=${PYTHON:-python3}
if [[ ${QUICK:-0} == 1 ]]; then LAYERS=${LAYERS:-4}; else LAYERS=${LAYERS:-32}; fi
SMALL_TOKENS=${SMALL_TOKENS:-8192}
LARGE_TOKENS=${LARGE_TOKENS:-32768}
TOLERANCE=${TOLERANCE:-0.10}
KV_HEADS=8
read -r -a ANALYZE_EXTRA <<<"${ANALYZE_ARGS:-}"
HEAD_DIM=128
if [[ -n ${WORKDIR:-} ]]; then
    mkdir -p "$WORKDIR"
    CREATED=0
else
    WORKDIR=$(mktemp -d "${TMPDIR:-/tmp}/kvstat-rss.XXXXXX")
    CREATED=1
fi
cleanup() { if [[ $CREATED == 1 && ${KEEP:-0} != 1 ]]; then rm -rf "$WORKDIR"; fi; }
trap cleanup EXIT

dump_path() { echo "$WORKDIR/llama_L${LAYERS}_T$1.h5"; }

for tokens in "$SMALL_TOKENS" "$LARGE_TOKENS"; do
    dump=$(dump_path "$tokens")
    if [[ -f $dump ]]; then
        echo "reusing $dump"
    else
        "$PYTHON" "$HERE/generate_llama_dump.py" --tokens "$tokens" --layers "$LAYERS" \
            --kv-heads "$KV_HEADS" --head-dim "$HEAD_DIM" --out "$dump" 2>/dev/null
    fi
done

# measure NAME TOKENS CMD...: runs CMD under /usr/bin/time -v; sets RSS_MIB (or "")
# and WALL; prints the command's stderr tail when it fails.
measure() {
    local name=$1 tokens=$2
    shift 2
    local tag="${name// /_}_$tokens"
    local rc=0
    "$TIME_BIN" -v -o "$WORKDIR/$tag.time" -- "$@" >"$WORKDIR/$tag.out" 2>"$WORKDIR/$tag.err" || rc=$?
    WALL=$(sed -n 's/^\tElapsed (wall clock) time (h:mm:ss or m:ss): //p' "$WORKDIR/$tag.time")
    if [[ $rc -ne 0 ]]; then
        RSS_MIB=""
        echo "  $name ($tokens tokens) failed with exit status $rc: $*" >&2
        tail -n 5 "$WORKDIR/$tag.err" | sed 's/^/    /' >&2
        return 0
    fi
    RSS_MIB=$(awk -F': ' '/Maximum resident set size \(kbytes\)/ {printf "%.1f", $2 / 1024}' \
        "$WORKDIR/$tag.time")
}

# check_count TOKENS: warns unless --read-all printed the expected number of values.
check_count() {
    local tokens=$1 tag="inspect_--read-all_$1"
    local expected=$((LAYERS * 2 * KV_HEADS * tokens * HEAD_DIM))
    # accept 1234567, 1,234,567, 1_234_567 and 1 234 567
    if sed -E ':a; s/([0-9])[,_ ]([0-9]{3})/\1\2/; ta' "$WORKDIR/$tag.out" | grep -w "$expected" >/dev/null; then
        echo "  read-all ($tokens tokens): value count $expected found in the output"
    else
        echo "  warning: read-all ($tokens tokens) did not print the expected value count $expected" >&2
        head -n 3 "$WORKDIR/$tag.out" | sed 's/^/    output: /' >&2
    fi
}

NAMES=("inspect")
if "$KVSTAT" inspect --help 2>&1 | grep -- '--read-all' >/dev/null; then NAMES+=("inspect --read-all")
else echo "note: '$KVSTAT inspect --help' does not mention --read-all; skipping the full-read test" >&2; fi
if "$KVSTAT" analyze --help >/dev/null 2>&1; then NAMES+=("analyze")
else echo "note: '$KVSTAT analyze --help' failed; skipping analyze" >&2; fi

declare -A RSS WALLS
for name in "${NAMES[@]}"; do
    for tokens in "$SMALL_TOKENS" "$LARGE_TOKENS"; do
        dump=$(dump_path "$tokens")
        case $name in
            "inspect")            measure "$name" "$tokens" "$KVSTAT" inspect "$dump" ;;
            "inspect --read-all") measure "$name" "$tokens" "$KVSTAT" inspect --read-all "$dump"
                                  if [[ -n $RSS_MIB ]]; then check_count "$tokens"; fi ;;
            "analyze")            rm -rf "$WORKDIR/analyze_$tokens"
                                  measure "$name" "$tokens" "$KVSTAT" analyze "$dump" -o "$WORKDIR/analyze_$tokens" \
                                      "${ANALYZE_EXTRA[@]}" ;;
        esac
        RSS["$name/$tokens"]=$RSS_MIB
        WALLS["$name/$tokens"]=$WALL
    done
done

echo
echo "peak RSS, $LAYERS layers x key/value [1, $KV_HEADS, T, $HEAD_DIM] float16, binary $KVSTAT${ANALYZE_ARGS:+, analyze $ANALYZE_ARGS}"
printf '%-20s %14s %14s %8s  %s\n' "command" "T=$SMALL_TOKENS MiB" "T=$LARGE_TOKENS MiB" "ratio" \
    "result (ratio <= $(awk -v t="$TOLERANCE" 'BEGIN {print 1 + t}'))"
status=0
for name in "${NAMES[@]}"; do
    small=${RSS["$name/$SMALL_TOKENS"]}
    large=${RSS["$name/$LARGE_TOKENS"]}
    if [[ -z $small || -z $large ]]; then
        printf '%-20s %14s %14s %8s  %s\n' "$name" "${small:-error}" "${large:-error}" "-" "FAIL (command failed)"
        status=1
        continue
    fi
    read -r ratio verdict < <(awk -v s="$small" -v l="$large" -v t="$TOLERANCE" \
        'BEGIN {r = l / s; printf "%.3f %s\n", r, (r <= 1 + t) ? "PASS" : "FAIL"}')
    [[ $verdict == PASS ]] || status=1
    printf '%-20s %14s %14s %8s  %s   (wall %s / %s)\n' "$name" "$small" "$large" "$ratio" "$verdict" \
        "${WALLS["$name/$SMALL_TOKENS"]}" "${WALLS["$name/$LARGE_TOKENS"]}"
done
[[ $CREATED == 1 && ${KEEP:-0} != 1 ]] || echo "dumps and logs kept in $WORKDIR"
exit $status
