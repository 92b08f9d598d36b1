#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds the libFuzzer targets of tests/fuzz/ with clang, AddressSanitizer and UndefinedBehaviorSanitizer, and runs
# each for a bounded time on a scratch copy of its committed seed corpus (the committed corpus never grows), after
# replaying the crash reproducers kept in tests/fuzz/regressions/. Fails if any target crashes, leaks, times out or
# reports undefined behaviour. The default 30 seconds per target is the CI smoke run; tests/fuzz/README.md describes
# longer runs.
#
#   tools/scripts/fuzz.sh [SECONDS] [TARGET...]      TARGET: fuzz_npy fuzz_cache_entry fuzz_sdpa_args fuzz_tuning_db
#                                            (default: all)
#
# Environment: CC (default clang), FUZZ_BUILD_DIR (default build-fuzz), FUZZ_ARGS (extra libFuzzer flags, e.g.
# "-jobs=4 -workers=4"), CLATTN_DEVICE (the device fuzz_sdpa_args creates its context on).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

seconds=${1:-30} # 0: build, then run the seeds and the regressions once without fuzzing
[[ $seconds =~ ^[0-9]+$ ]] || { echo "usage: tools/scripts/fuzz.sh [SECONDS] [TARGET...]" >&2; exit 2; }
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(fuzz_npy fuzz_cache_entry fuzz_sdpa_args fuzz_tuning_db)

cc=${CC:-clang}
build=${FUZZ_BUILD_DIR:-build-fuzz}
case $build in /*) ;; *) build=$root/$build ;; esac
if ! command -v "$cc" > /dev/null; then
    echo "fuzz.sh: $cc not found; on Debian: apt-get install -y clang libclang-rt-14-dev" >&2
    exit 2
fi

# Inputs longer than these only slow the search: the formats' interesting parts are their headers.
declare -A max_len=([fuzz_npy]=4096 [fuzz_cache_entry]=4096 [fuzz_sdpa_args]=512 [fuzz_tuning_db]=4096)

# shellcheck disable=SC2054 # the commas belong to the flag
sanitize=(-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)

# ---- build ----
# The library, instrumented for coverage (fuzzer-no-link) as well as sanitized, so that the fuzzer is guided by the
# branches of the validator and the cache check themselves. Only the static internal library is needed.
need_library=0
for t in "${targets[@]}"; do [ "$t" = fuzz_npy ] || need_library=1; done
if [ $need_library = 1 ]; then
    echo "== building the library with $cc in $build"
    mkdir -p "$build"
    cmake -S . -B "$build" -DCMAKE_C_COMPILER="$cc" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DCMAKE_C_FLAGS="-fsanitize=fuzzer-no-link" -DCLATTN_SANITIZE=address,undefined \
        -DCLATTN_BUILD_TESTS=OFF -DCLATTN_BUILD_TOOLS=OFF > "$build/fuzz-cmake.log" 2>&1 ||
        { cat "$build/fuzz-cmake.log"; exit 1; }
    cmake --build "$build" --target clattn_internal -j "$(nproc)" > "$build/fuzz-build.log" 2>&1 ||
        { cat "$build/fuzz-build.log"; exit 1; }
fi
mkdir -p "$build/fuzz"
common=(-g -O1 -std=c11 -Wall -Wextra "${sanitize[@]}" -Iinclude -Isrc -Isrc/attention -Isrc/layers -Isrc/tuning)
library=("$build/libclattn_internal.a" -lOpenCL -lclblast -lcjson -lm -lpthread)
for t in "${targets[@]}"; do
    echo "== building $t"
    case $t in
    fuzz_npy)
        # The .npy reader belongs to the command-line tool; it needs only the dtype conversions of the library.
        "$cc" "${common[@]}" -Itools/clattn tests/fuzz/fuzz_npy.c tools/clattn/npy.c src/dtype.c -o "$build/fuzz/$t" ;;
    fuzz_cache_entry | fuzz_sdpa_args | fuzz_tuning_db)
        "$cc" "${common[@]}" -I"$build/generated" "tests/fuzz/$t.c" "${library[@]}" -o "$build/fuzz/$t" ;;
    *)
        echo "fuzz.sh: unknown target $t" >&2; exit 2 ;;
    esac
done

# ---- run ----
# Leaks inside the OpenCL driver are not ours (tests/lsan.supp); UBSan stops at the first report, with a stack.
export LSAN_OPTIONS="suppressions=$root/tests/lsan.supp:print_suppressions=0"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export CLATTN_CACHE=off # the validator compiles nothing; keep the user's cache out of it anyway
failed=()
for t in "${targets[@]}"; do
    work=$build/fuzz/run-$t
    rm -rf "$work"
    mkdir -p "$work/corpus" "$work/artifacts"
    cp "tests/fuzz/corpus/$t"/* "$work/corpus/"
    status=0
    if compgen -G "tests/fuzz/regressions/$t/*" > /dev/null; then
        echo "== $t: replaying tests/fuzz/regressions/$t"
        "$build/fuzz/$t" "tests/fuzz/regressions/$t"/* > "$work/replay.log" 2>&1 || status=$?
        if [ $status != 0 ]; then
            tail -n 40 "$work/replay.log"
            echo "FAIL: $t: a reproducer in tests/fuzz/regressions/$t still fails"
        fi
    fi
    if [ $status = 0 ] && [ "$seconds" = 0 ]; then
        echo "== $t: running the seed corpus once"
        "$build/fuzz/$t" -runs=0 -artifact_prefix="$work/artifacts/" "$work/corpus" > "$work/fuzz.log" 2>&1 ||
            status=$?
        [ $status = 0 ] || tail -n 60 "$work/fuzz.log"
    elif [ $status = 0 ]; then
        echo "== $t: fuzzing for ${seconds}s (log: $work/fuzz.log)"
        dict=()
        [ ! -f "tests/fuzz/$t.dict" ] || dict=(-dict="tests/fuzz/$t.dict")
        # shellcheck disable=SC2086 # FUZZ_ARGS is a list of flags
        "$build/fuzz/$t" -max_total_time="$seconds" -max_len="${max_len[$t]}" -timeout=10 -rss_limit_mb=4096 \
            -print_final_stats=1 -artifact_prefix="$work/artifacts/" "${dict[@]}" ${FUZZ_ARGS:-} "$work/corpus" \
            > "$work/fuzz.log" 2>&1 || status=$?
        grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb)|Done [0-9]+ runs" "$work/fuzz.log" |
            sed 's/^/    /' || true
        [ $status = 0 ] || tail -n 60 "$work/fuzz.log"
    fi
    if [ $status != 0 ]; then
        echo "FAIL: $t (exit $status)"
        if [ -n "$(ls -A "$work/artifacts")" ]; then
            echo "    crash inputs (replay with: $build/fuzz/$t FILE):"
            find "$work/artifacts" -type f | sed 's/^/    /'
        fi
        failed+=("$t")
    else
        echo "ok: $t"
    fi
done
echo "$((${#targets[@]} - ${#failed[@]})) passed, ${#failed[@]} failed"
[ ${#failed[@]} -eq 0 ]
