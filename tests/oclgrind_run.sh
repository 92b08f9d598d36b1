#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Runs a test program under Oclgrind with data-race, uninitialised-memory and API checks. Oclgrind exits 0 even
# when it finds errors, so this fails when its log is not empty (or when the program itself fails).
# OCLGRIND_CHECKS replaces the default checks.
set -uo pipefail
checks=${OCLGRIND_CHECKS:---data-races --uninitialized --check-api}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# Oclgrind 21.10's uninitialised-memory checker stops at LLVM's freeze instruction, which only the optimiser emits.
CLATTN_CACHE=0 CLATTN_BUILD_OPTIONS="${CLATTN_BUILD_OPTIONS:--cl-opt-disable}" oclgrind $checks --log "$log" "$@"
status=$?
if [ -s "$log" ]; then
  echo "Oclgrind reported errors:"
  head -c 20000 "$log"
  exit 1
fi
exit $status
