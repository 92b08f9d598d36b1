#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The command-line program's contract: help for every command, exit status 2 for unknown commands and options,
# `devices` as text and valid JSON with exactly one default device. Argument: the clattn program.
set -uo pipefail
clattn=$1
fails=0
check() { # description, expected status, command...
    local what=$1 want=$2
    shift 2
    "$@" > /tmp/clattn-cli-out.$$ 2>&1
    local got=$?
    if [ "$got" != "$want" ]; then
        echo "FAIL: $what: exit $got, expected $want"; sed 's/^/    /' /tmp/clattn-cli-out.$$; fails=$((fails + 1))
    else
        echo "ok: $what"
    fi
}
check "--help" 0 "$clattn" --help
check "--version" 0 "$clattn" --version
check "no command" 2 "$clattn"
check "unknown command" 2 "$clattn" frobnicate
check "devices --help" 0 "$clattn" devices --help
check "unknown option" 2 "$clattn" devices --frobnicate
check "flag given a value" 2 "$clattn" devices --json=yes
check "option missing its value" 2 "$clattn" devices --device
check "stray argument" 2 "$clattn" devices extra
check "device matching nothing" 2 "$clattn" devices --device no-such-device-xyz
check "devices" 0 "$clattn" devices
grep -q "(default)" /tmp/clattn-cli-out.$$ || { echo "FAIL: devices marks no default"; fails=$((fails + 1)); }
check "devices --json" 0 "$clattn" devices --json
python3 - /tmp/clattn-cli-out.$$ <<'PY' || fails=$((fails + 1))
import json, sys
d = json.load(open(sys.argv[1]))["devices"]
assert len(d) >= 1, "no devices"
assert sum(1 for x in d if x["default"]) == 1, "not exactly one default"
for key in ("name", "type", "compute_units", "local_mem_bytes", "max_work_group_size", "fp16", "compiler_available"):
    assert key in d[0], key
print("ok: devices --json is valid JSON with one default")
PY
"$clattn" --help | grep devices > /dev/null || { echo "FAIL: --help lists no commands"; fails=$((fails + 1)); }
rm -f /tmp/clattn-cli-out.$$
echo "$((fails == 0 ? 1 : 0)) passed, $fails failed"
[ "$fails" -eq 0 ]
