#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The command-line program under Valgrind's memcheck: every command a user is likely to run, on small inputs, must
# finish without an invalid read or write, a use of uninitialised memory or a leak in clattn's own code. Errors
# inside the OpenCL driver (PoCL, its LLVM), the ICD loader, CLBlast and the C++ runtime are suppressed by
# tests/valgrind.supp, which names only frames in those libraries; anything left fails the test.
#
#   tests/valgrind_cli.sh PATH/TO/clattn
#
# Needs valgrind and /usr/bin/python3 with numpy (for the .npy inputs). Takes about 3 minutes on a 2-core machine
# with PoCL (Valgrind runs every thread on one core). The program must be built without sanitizers.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
clattn=${1:?usage: tests/valgrind_cli.sh PATH/TO/clattn}
command -v valgrind > /dev/null || { echo "valgrind not found (apt-get install -y valgrind)"; exit 2; }
if nm -D "$clattn" 2> /dev/null | grep -q __asan_init; then
    echo "$clattn is built with AddressSanitizer, which cannot run under Valgrind"; exit 2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/clattn-valgrind.XXXXXX")
# VALGRIND_CLI_KEEP=1 keeps the logs (the path is printed at the end).
[ -n "${VALGRIND_CLI_KEEP:-}" ] || trap 'rm -rf "$work"' EXIT
# Each command runs natively first, which fills PoCL's kernel cache (a private one here), so that under Valgrind
# PoCL loads its compiled kernels instead of running LLVM's code generator 50 times slower: minutes per kernel.
# clattn's own program cache starts empty for the Valgrind run, so that clattn's build-from-source and cache-write
# paths are checked too.
export POCL_CACHE_DIR=$work/pocl-cache
# Valgrind emulates a CPU without AVX-512, and Debian's PoCL picks its kernel library (and LLVM target) from the
# CPU features it sees. On a machine with AVX-512 the warm-up would fill the cache for one target and the run under
# Valgrind look for another, so every kernel would be compiled again under memcheck (a fresh CI machine took more
# than 15 minutes). Both runs use the AVX2 library, which Valgrind supports, unless the caller chose one.
if [ "$(uname -m)" = x86_64 ] && grep -qw avx2 /proc/cpuinfo 2> /dev/null; then
    export POCL_KERNELLIB_NAME=${POCL_KERNELLIB_NAME:-avx2}
fi
native_device=$("$clattn" devices 2> /dev/null | grep -m1 '(default)')
valgrind_device=$(valgrind --tool=none -q "$clattn" devices 2> /dev/null | grep -m1 '(default)')
if [ "$native_device" != "$valgrind_device" ]; then
    echo "warning: the default device differs under Valgrind ('$valgrind_device', natively '$native_device'):"
    echo "         the warm-up cannot fill PoCL's cache for it, so kernels compile under Valgrind (slow)"
fi
warm_cache=$work/warm-cache
vg_cache=$work/cache

# Inputs: attention on files (with a mask and key lengths), and a file that is not a valid .npy.
/usr/bin/python3 - "$work" <<'PY' || { echo "cannot write the .npy inputs (is python3-numpy installed?)"; exit 2; }
import sys, numpy as np
d = sys.argv[1]
r = np.random.default_rng(1)
for name, shape in (("q", (1, 2, 5, 8)), ("k", (1, 2, 7, 8)), ("v", (1, 2, 7, 8))):
    np.save(f"{d}/{name}.npy", r.uniform(-2, 2, shape).astype(np.float32))
np.save(f"{d}/mask.npy", r.uniform(size=(1, 1, 5, 7)) > 0.3)
np.save(f"{d}/lengths.npy", np.array([6], np.int32))
good = open(f"{d}/q.npy", "rb").read()
open(f"{d}/truncated.npy", "wb").write(good[:-4])
# A one-byte header: shorter than the bytes a reader takes in before it knows the header length.
open(f"{d}/tiny_header.npy", "wb").write(b"\x93NUMPY\x01\x00\x01\x00\nX")
PY

passed=0
failed=0
# shellcheck disable=SC2054 # the commas belong to the options
vg=(valgrind --tool=memcheck --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,possible
    --show-leak-kinds=definite,possible --num-callers=40 --track-origins=yes --suppressions="$here/valgrind.supp")
check() { # name, expected exit status, arguments of clattn...
    local name=$1 want=$2
    shift 2
    local log=$work/$name.log start got
    CLATTN_CACHE_DIR=$warm_cache "$clattn" "$@" > /dev/null 2>&1
    start=$SECONDS
    CLATTN_CACHE_DIR=$vg_cache "${vg[@]}" --log-file="$log.vg" "$clattn" "$@" > "$log" 2>&1
    got=$?
    local errors
    errors=$(sed -n 's/.*ERROR SUMMARY: \([0-9]*\) errors.*/\1/p' "$log.vg" | tail -n 1)
    if [ "$got" = "$want" ] && [ "${errors:-x}" = 0 ]; then
        echo "ok: $name ($((SECONDS - start))s)"
        passed=$((passed + 1))
    else
        echo "FAIL: $name: exit $got (expected $want), ${errors:-unknown} memcheck errors ($((SECONDS - start))s)"
        sed 's/^/    | /' "$log" | tail -n 20
        # The error reports with their stacks, without the preamble and the suppression counts.
        grep -v -E "^==[0-9]+== (Memcheck|Copyright|Using Valgrind|Command|Parent PID|$)" "$log.vg" |
            sed 's/^/    /' | head -n 200
        failed=$((failed + 1))
    fi
}

check help 0 --help
check devices 0 devices
check devices_json 0 devices --json
check run_random 0 run sdpa --random 1,2,1,8,8,16 --check
check run_files 0 run sdpa --q "$work/q.npy" --k "$work/k.npy" --v "$work/v.npy" --mask "$work/mask.npy" \
    --key-lengths "$work/lengths.npy" --causal bottom-right --check -o "$work/out.npy" --lse "$work/lse.npy"
check run_files_unfused 0 run sdpa --q "$work/q.npy" --k "$work/k.npy" --v "$work/v.npy" --impl unfused \
    --weights "$work/weights.npy" -o "$work/out2.npy"
check run_truncated 2 run sdpa --q "$work/truncated.npy" --k "$work/k.npy" --v "$work/v.npy" -o "$work/never.npy"
check run_tiny_header 2 run sdpa --q "$work/q.npy" --k "$work/tiny_header.npy" --v "$work/v.npy" \
    -o "$work/never.npy"
[ ! -e "$work/never.npy" ] || { echo "FAIL: a malformed input still wrote an output"; failed=$((failed + 1)); }
check bench 0 bench sdpa --seq 32 --repeat 2 --impl all

[ -z "${VALGRIND_CLI_KEEP:-}" ] || echo "logs kept in $work"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
