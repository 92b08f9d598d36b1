#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The two quick-start commands and the CI steps, in one place:
#   tools/scripts/dev.sh demo       install dependencies, build, list devices and benchmark attention on the default device
#   tools/scripts/dev.sh test       install dependencies, build (warnings are errors) and run the whole test suite, `large`
#                           tier included
#   tools/scripts/dev.sh python     the Python package: `pip install .` into a fresh virtual environment (BUILD_DIR/python-venv)
#                           and its tests (tests/python, NumPy only); `test` runs it after the C suite
#   tools/scripts/dev.sh sanitize   the test suite built with AddressSanitizer, UndefinedBehaviorSanitizer and LeakSanitizer,
#                           without the `large` tier
# BUILD_DIR (default build) and JOBS (default: all cores) can be set in the environment.
set -euo pipefail
cd "$(dirname "$0")/../.."
jobs=${JOBS:-$(nproc)}
what=${1:-}

build() { # dir, extra cmake arguments...
  local dir=$1
  shift
  cmake -S . -B "$dir" -DCLATTN_WERROR=ON "$@" > "$dir.configure.log" 2>&1 || { cat "$dir.configure.log"; exit 1; }
  cmake --build "$dir" -j "$jobs"
}

python_tests() { # a fresh virtual environment, the package installed from this tree, pytest on tests/python
  local venv
  venv="$(pwd)/${BUILD_DIR:-build}/python-venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q . pytest
  # From outside the tree, so that `import clattn` is the installed package.
  (cd "$venv" && "$venv/bin/python" -m pytest -q -p no:cacheprovider "$OLDPWD/tests/python")
}

case "$what" in
  demo)
    tools/scripts/setup-deps.sh
    build "${BUILD_DIR:-build}"
    "${BUILD_DIR:-build}/clattn" devices
    echo
    "${BUILD_DIR:-build}/clattn" bench
    ;;
  test)
    tools/scripts/setup-deps.sh
    build "${BUILD_DIR:-build}"
    (cd "${BUILD_DIR:-build}" && ctest --output-on-failure -j "$jobs")
    python_tests
    ;;
  python)
    tools/scripts/setup-deps.sh
    python_tests
    ;;
  sanitize)
    tools/scripts/setup-deps.sh
    build "${BUILD_DIR:-build-sanitize}" -DCLATTN_SANITIZE=address,undefined -DCMAKE_BUILD_TYPE=Debug
    # Without the `large` tier: AddressSanitizer and an unoptimised build would make its references and multi-GiB
    # buffers take hours; `tools/scripts/dev.sh test` runs it.
    (cd "${BUILD_DIR:-build-sanitize}" && ctest --output-on-failure -j "$jobs" -LE large)
    ;;
  *)
    echo "usage: tools/scripts/dev.sh demo|test|python|sanitize" >&2
    exit 2
    ;;
esac
