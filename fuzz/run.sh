#!/bin/sh
# Run the libFuzzer targets (fuzz/README.md).
#
#   fuzz/run.sh [-b BUILD] [-t SECONDS] [-j PARALLEL] [TARGET...]
#
# Configures BUILD (default build-fuzz) with clang and -Dfuzzing=true if
# it is not configured yet, builds it, then runs each TARGET (default:
# all) for SECONDS (default $FUZZ_TIME, else 60), at most PARALLEL at
# once (default 1).  Each target starts from its seed corpus,
# fuzz/corpus/<target>/, which it only reads; what it finds goes to
# BUILD/fuzz-out/<target>/corpus, crashes, leaks and timeouts to
# BUILD/fuzz-out/<target>/<kind>-<sha1>.  A summary line per target goes
# to BUILD/fuzz-out/summary.txt; the exit status is 1 if any target
# found something.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
src=$(dirname "$here")
build=build-fuzz
secs=${FUZZ_TIME:-60}
par=1
while getopts b:t:j: o; do
    case $o in
    b) build=$OPTARG ;;
    t) secs=$OPTARG ;;
    j) par=$OPTARG ;;
    *) sed -n '3,4p' "$0" >&2; exit 64 ;;
    esac
done
shift $((OPTIND - 1))

all="base64 sasl_server sasl_client digest_parse scram_parse smtp_client
smtp_server passwd cred config mime"
targets=${*:-$all}

if [ ! -f "$build/build.ninja" ]; then
    CC=clang meson setup "$build" "$src" -Dfuzzing=true -Dtests=disabled
fi
ninja -C "$build"

# Longest input per target: past each parser's own limit, not much more.
max_len() {
    case $1 in
    smtp_server) echo 20000 ;;
    sasl_server|sasl_client|mime) echo 16384 ;;
    smtp_client|digest_parse|passwd|config) echo 8192 ;;
    cred) echo 2048 ;;
    *) echo 4096 ;;
    esac
}

dict() {
    case $1 in
    smtp_server|smtp_client) echo "$here/dict/smtp.dict" ;;
    sasl_*|digest_parse|scram_parse) echo "$here/dict/sasl.dict" ;;
    cred|passwd) echo "$here/dict/cred.dict" ;;
    config) echo "$here/dict/config.dict" ;;
    proxy) echo "$here/dict/proxy.dict" ;;
    mime) echo "$here/dict/mime.dict" ;;
    *) echo "" ;;
    esac
}

out=$build/fuzz-out
mkdir -p "$out"
: > "$out/summary.txt"

run_one() {
    t=$1
    o=$out/$t
    mkdir -p "$o/corpus"
    d=$(dict "$t")
    set -- -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -max_len="$(max_len "$t")" -print_final_stats=1 \
        -artifact_prefix="$o/"
    [ -n "$d" ] && set -- "$@" -dict="$d"
    rc=0
    "$build/fuzz/fuzz_$t" "$@" "$o/corpus" "$here/corpus/$t" \
        > "$o/log.txt" 2>&1 || rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$o/log.txt")
    cov=$(grep -o 'cov: [0-9]*' "$o/log.txt" | tail -1 | cut -d' ' -f2)
    found=$(ls "$o" | grep -cE '^(crash|leak|timeout|oom)-' || true)
    echo "$t seconds=$secs runs=${runs:-?} cov=${cov:-?}" \
        "findings=$found exit=$rc" >> "$out/summary.txt"
}

n=0
for t in $targets; do
    run_one "$t" &
    n=$((n + 1))
    if [ "$n" -ge "$par" ]; then
        wait
        n=0
    fi
done
wait
cat "$out/summary.txt"
! grep -q 'findings=[1-9]' "$out/summary.txt"
