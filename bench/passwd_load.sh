#!/bin/sh
# Build bench/passwd_load against a build directory's libpostern.a and
# posternd's user-file loader, then run it (arguments go to the program:
# -n USERS, -r RUNS, -f FILE).
#   bench/passwd_load.sh [BUILD_DIR] [-n 100000] [-r 10]
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
[ $# -gt 0 ] && shift
out=${TMPDIR:-/tmp}/passwd_load.$$
cc -O2 -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE \
    -I"$root/include" -I"$build/include" -I"$root/src/posternd" \
    "$root/bench/passwd_load.c" "$root/src/posternd/userdb_file.c" \
    "$build/lib/libpostern.a" \
    $(pkg-config --libs libcrypto libidn) -lcrypt -lpthread -o "$out"
trap 'rm -f "$out"' EXIT
"$out" "$@"
