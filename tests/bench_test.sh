#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The contract of `clattn bench`: tiny benchmarks run and print a table, valid JSON (with reference errors under
# --check, one object per implementation and swept size) and CSV, for sdpa and for the mha and additive layers; usage
# errors and unknown operations exit with status 2. Shapes are tiny on purpose: this checks the command, not the speed.
# Argument: the clattn program. Needs /usr/bin/python3 (its json module) to validate the JSON.
set -uo pipefail
clattn=$1
python=/usr/bin/python3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0

check() { # description, expected status, command...; the output is kept in $tmp/out for later checks
    local what=$1 want=$2
    shift 2
    "$@" > "$tmp/out" 2> "$tmp/err"
    local got=$?
    if [ "$got" != "$want" ]; then
        echo "FAIL: $what: exit $got, expected $want"
        sed 's/^/    /' "$tmp/out" "$tmp/err"
        failed=$((failed + 1))
        return 1
    fi
    echo "ok: $what"
    passed=$((passed + 1))
}

expect() { # description, command...: a further condition on the last output
    local what=$1
    shift
    if "$@"; then
        echo "ok: $what"
        passed=$((passed + 1))
    else
        echo "FAIL: $what"
        sed 's/^/    /' "$tmp/out" "$tmp/err"
        failed=$((failed + 1))
    fi
}

check "bench --help" 0 "$clattn" bench --help
check "bench sdpa --help" 0 "$clattn" bench sdpa --help

if check "table, both implementations" 0 "$clattn" bench sdpa --seq 64 --repeat 3; then
    expect "table names the device" grep -q '^device: ' "$tmp/out"
    expect "table has a fused and an unfused row" \
        bash -c "grep -Eq ' fused +[0-9]' '$tmp/out' && grep -Eq ' unfused +[0-9]' '$tmp/out'"
fi

if check "--json --check with a sweep and GQA" 0 "$clattn" bench sdpa --json --check --sweep seq=32,48 --heads 4 \
    --kv-heads 2 --head-dim 32 --causal none,bottom-right --repeat 2; then
    expect "JSON: one object per implementation, size and causal mode, errors within tolerance" \
        "$python" - "$tmp/out" <<'PY'
import json, sys
rows = json.load(open(sys.argv[1]))
assert isinstance(rows, list) and len(rows) == 8, f"expected 8 objects, got {len(rows)}"
need = ("op", "impl", "batch", "heads", "kv_heads", "seq", "kv_seq", "head_dim", "dtype", "causal", "median_ms",
        "min_ms", "max_ms", "gflops", "gbps", "temp_bytes", "max_error")
for r in rows:
    missing = [k for k in need if k not in r]
    assert not missing, f"missing {missing}"
    assert r["op"] == "sdpa" and r["dtype"] == "f32" and r["heads"] == 4 and r["kv_heads"] == 2
    assert 0 < r["min_ms"] <= r["median_ms"] <= r["max_ms"], r
    assert r["gflops"] > 0 and r["gbps"] > 0 and r["temp_bytes"] >= 0, r
    assert r["max_error"] is not None and r["max_error"] <= r["tolerance"], r
    # FLOPs count only the (query, key) pairs that take part: Lq*Lk without causal masking, fewer with it.
    full = 4 * r["batch"] * r["heads"] * r["seq"] * r["kv_seq"] * r["head_dim"]
    assert (r["flops"] == full) == (r["causal"] == "none"), r
assert sorted({r["seq"] for r in rows}) == [32, 48]
assert sorted({r["impl"] for r in rows}) == ["fused", "unfused"]
assert all(r["seq"] == r["kv_seq"] for r in rows), "a seq sweep moves kv_seq along"
PY
fi

if check "--json with masks, window, key length and f16" 0 "$clattn" bench sdpa --json --check --seq 24 \
    --kv-seq 40 --mask additive --window 8,2 --key-length 30 --dtype f16 --impl fused --repeat 2; then
    expect "JSON: one fused object with the options recorded" "$python" - "$tmp/out" <<'PY'
import json, sys
rows = json.load(open(sys.argv[1]))
assert len(rows) == 1, rows
r = rows[0]
assert r["impl"] == "fused" and r["mask"] == "additive" and r["dtype"] == "f16", r
assert r["window_left"] == 8 and r["window_right"] == 2 and r["key_length"] == 30, r
assert r["max_error"] is not None and r["max_error"] <= r["tolerance"], r
PY
fi

if check "--csv" 0 "$clattn" bench sdpa --csv --seq 32 --mask bool --causal top-left --repeat 2; then
    expect "CSV: a header and one row per implementation, all of the same width" "$python" - "$tmp/out" <<'PY'
import csv, sys
rows = list(csv.reader(open(sys.argv[1])))
assert len(rows) == 3, rows
assert rows[0][:2] == ["op", "impl"] and "median_ms" in rows[0] and "gflops" in rows[0], rows[0]
assert all(len(r) == len(rows[0]) for r in rows), [len(r) for r in rows]
assert float(rows[1][rows[0].index("median_ms")]) > 0
PY
fi

# Score modifiers: a row group per modifier, each checked against the reference, with its speed relative to the
# plain row of the same implementation.
if check "--csv --mods with --check" 0 "$clattn" bench sdpa --csv --check --seq 24 --kv-seq 40 --heads 2 \
    --mods none,softcap,sinks,alibi,all --causal bottom-right --repeat 2; then
    expect "CSV: ten rows, every modifier for both implementations, ratios on the modified rows" "$python" - "$tmp/out" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
assert len(rows) == 10, rows
assert sorted({r["mods"] for r in rows}) == ["alibi", "all", "none", "sinks", "softcap"], rows
for r in rows:
    assert float(r["max_error"]) <= float(r["tolerance"]), r
    assert (r["vs_plain"] == "") == (r["mods"] == "none"), r
    assert r["vs_plain"] == "" or float(r["vs_plain"]) > 0, r
PY
fi
# The softcap and ALiBi written as a score_mod: fused rows only, checked against the built-in modifiers' reference
# (ALiBi bottom-right with Lq != Lk, so the expression must shift the query position as the built-in does).
if check "--csv --mods softcap-fn,alibi-fn with --check" 0 "$clattn" bench sdpa --csv --check --seq 24 --kv-seq 40 \
    --heads 2 --mods none,softcap-fn,alibi-fn --causal bottom-right,none --repeat 2; then
    expect "CSV: plain rows for both implementations, score_mod rows fused only, all within tolerance" "$python" - \
        "$tmp/out" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
assert len(rows) == 8, rows
assert sorted((r["mods"], r["impl"]) for r in rows if r["causal"] == "none") == [
    ("alibi-fn", "fused"), ("none", "fused"), ("none", "unfused"), ("softcap-fn", "fused")], rows
for r in rows:
    assert float(r["max_error"]) <= float(r["tolerance"]), r
    assert (r["vs_plain"] == "") == (r["mods"] == "none"), r
PY
fi
check "a score_mod row with packed sequences" 2 "$clattn" bench sdpa --mods alibi-fn --varlen 3,4
# The serving formats, one tiny row each, checked per sequence against the reference: packed prefill with an empty
# and a one-row sequence, paged decode over shuffled pages, int8 K/V; and the padded batch --varlen compares with.
serving_row() { # expected kv_layout, kv_dtype, then the python condition on the one row `r`
    "$python" - "$tmp/out" "$1" "$2" "$3" <<'PY'
import json, sys
rows = json.load(open(sys.argv[1]))
assert len(rows) == 1, rows
r = rows[0]
assert r["impl"] == "fused" and r["kv_layout"] == sys.argv[2] and r["kv_dtype"] == sys.argv[3], r
assert r["max_error"] is not None and r["max_error"] <= r["tolerance"], r
assert 0 < r["min_ms"] <= r["median_ms"] <= r["max_ms"] and r["gflops"] > 0 and r["gbps"] > 0, r
assert eval(sys.argv[4], {"r": r}), r
PY
}
if check "--varlen: packed prefill" 0 "$clattn" bench sdpa --json --check --varlen 3,0,1,40 --heads 4 --kv-heads 2 \
    --head-dim 16 --causal top-left --repeat 2; then
    # FLOPs: 4 H D times the causal pairs of each sequence alone, L (L + 1) / 2.
    expect "JSON: one packed row, FLOPs of the real lengths" serving_row packed f32 \
        'r["varlen"] == [3, 0, 1, 40] and r["batch"] == 4 and r["seq"] == 40 and r["flops"] == 4 * 4 * 16 * (6 + 1 + 820)'
fi
if check "--paged: decode over a shuffled cache" 0 "$clattn" bench sdpa --json --check --paged 8 --batch 2 --seq 1 \
    --kv-seq 45 --heads 4 --kv-heads 2 --head-dim 16 --causal bottom-right --repeat 2; then
    expect "JSON: one paged row" serving_row paged f32 'r["page"] == 8 and r["varlen"] is None'
fi
if check "--kv-dtype i8: int8 keys and values" 0 "$clattn" bench sdpa --json --check --kv-dtype i8 --seq 1 \
    --kv-seq 70 --heads 2 --head-dim 16 --mods sinks --repeat 2; then
    expect "JSON: one int8 row, bytes of one byte per K/V element plus a scale per token and head" serving_row dense i8 \
        'r["io_bytes"] == 2 * 2 * 16 * 4 + 2 * 70 * 2 * (16 + 4)'
fi
if check "--key-length per batch item (a padded batch)" 0 "$clattn" bench sdpa --json --check --batch 3 --seq 20 \
    --key-length 3,20,0 --heads 2 --head-dim 16 --impl fused --repeat 2; then
    expect "JSON: key lengths listed, FLOPs of the unpadded keys" "$python" - "$tmp/out" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))[0]
assert r["key_length"] == [3, 20, 0] and r["flops"] == 4 * 2 * 16 * 20 * 23, r
assert r["max_error"] <= r["tolerance"], r
PY
fi
check "--varlen with --batch" 2 "$clattn" bench sdpa --varlen 3,4 --batch 2
check "--paged with a block size that is not a power of two" 2 "$clattn" bench sdpa --paged 24
check "--kv-dtype with --impl unfused" 2 "$clattn" bench sdpa --kv-dtype i8 --impl unfused
check "--key-length: a length per item, for the wrong batch" 2 "$clattn" bench sdpa --batch 3 --key-length 1,2
check "an unknown --mods value" 2 "$clattn" bench sdpa --mods softcap,tanh
check "a repeated --mods value" 2 "$clattn" bench sdpa --mods sinks,sinks

# Heads past the fused kernels' 576 run unfused alone when both are compared, and --impl fused is an error.
if check "a wide head: the unfused row alone" 0 "$clattn" bench sdpa --seq 16 --head-dim 640 --repeat 2; then
    expect "wide head: an unfused row and no fused one" \
        bash -c "! grep -Eq ' fused +[0-9]' '$tmp/out' && grep -Eq ' unfused +[0-9]' '$tmp/out'"
fi
check "a wide head with --impl fused" 2 "$clattn" bench sdpa --seq 16 --head-dim 640 --impl fused --repeat 2
check "unknown option" 2 "$clattn" bench sdpa --frobnicate
check "bad value" 2 "$clattn" bench sdpa --seq 0
check "bad sweep" 2 "$clattn" bench sdpa --sweep depth=1,2
check "heads not a multiple of kv-heads" 2 "$clattn" bench sdpa --heads 6 --kv-heads 4 --seq 8
check "--json with --csv" 2 "$clattn" bench sdpa --json --csv
check "unknown operation" 2 "$clattn" bench frobnicate
check "bench mha --help" 0 "$clattn" bench mha --help
check "bench additive --help" 0 "$clattn" bench additive --help
if check "bench mha: fused and unfused rows" 0 "$clattn" bench mha --seq 16 --d-model 32 --heads 2 --head-dim 16 \
    --repeat 2; then
    expect "bench mha table has both rows" \
        bash -c "grep -Eq ' fused +[0-9]' '$tmp/out' && grep -Eq ' unfused +[0-9]' '$tmp/out'"
fi
if check "bench mha --decode --json" 0 "$clattn" bench mha --json --seq 1 --decode 20 --d-model 32 --heads 4 \
    --kv-heads 2 --head-dim 8 --causal --impl fused --repeat 2; then
    expect "JSON: one decode object" "$python" - "$tmp/out" <<'PY'
import json, sys
rows = json.load(open(sys.argv[1]))
assert len(rows) == 1 and rows[0]["impl"] == "decode fused" and rows[0]["decode"] == 20, rows
assert 0 < rows[0]["min_ms"] <= rows[0]["median_ms"] <= rows[0]["max_ms"] and rows[0]["gflops"] > 0, rows
PY
fi
if check "bench additive, every score, CSV" 0 "$clattn" bench additive --csv --score all --batch 2 --kv-seq 33 \
    --query-dim 16 --attn-dim 8 --repeat 2; then
    expect "CSV: a header and four rows" "$python" - "$tmp/out" <<'PY'
import csv, sys
rows = list(csv.reader(open(sys.argv[1])))
assert len(rows) == 5 and [r[1] for r in rows[1:]] == ["additive", "dot", "general", "concat"], rows
assert all(float(r[rows[0].index("median_ms")]) > 0 for r in rows[1:])
PY
fi
check "bench mha: heads not a multiple of kv-heads" 2 "$clattn" bench mha --heads 6 --kv-heads 4
check "bench additive: bad score" 2 "$clattn" bench additive --score cosine

check "bench mha: bad sweep" 2 "$clattn" bench mha --sweep depth=1,2
check "bench additive: unknown score" 2 "$clattn" bench additive --score frobnicate

# --check of the layers: every measured output within the reference's tolerance, reported like bench sdpa's.
check_rows() { # expected row count, then the python condition on each row `r`
    "$python" - "$tmp/out" "$1" "$2" <<'PY'
import json, sys
rows = json.load(open(sys.argv[1]))
assert isinstance(rows, list) and len(rows) == int(sys.argv[2]), f"expected {sys.argv[2]} objects, got {len(rows)}"
for r in rows:
    assert r["max_error"] is not None and r["max_error"] <= r["tolerance"], r
    assert 0 < r["min_ms"] <= r["median_ms"] <= r["max_ms"], r
    assert eval(sys.argv[3], {"r": r}), r
PY
}

if check "bench mha --check, causal, bias, residual, GQA" 0 "$clattn" bench mha --json --check --causal --bias \
    --residual --seq 12 --d-model 32 --heads 4 --kv-heads 2 --head-dim 8 --repeat 2; then
    expect "JSON: fused and unfused within tolerance" check_rows 2 'r["op"] == "mha" and r["seq"] == 12'
fi

if check "bench mha --check --decode (cached prefix)" 0 "$clattn" bench mha --json --check --decode 5 --seq 3 \
    --causal --bias --d-model 32 --heads 4 --head-dim 8 --repeat 2; then
    expect "JSON: decode steps within tolerance" check_rows 2 'r["impl"].startswith("decode ") and r["decode"] == 5'
fi

if check "bench mha --check --decode --paged (pages beside the cache)" 0 "$clattn" bench mha --json --check \
    --decode 21 --seq 2 --batch 3 --causal --bias --d-model 32 --heads 4 --kv-heads 2 --head-dim 8 --paged 8 \
    --impl fused --repeat 2; then
    expect "JSON: cache and paged decode steps within tolerance" check_rows 2 \
        'r["impl"] in ("decode fused", "decode paged") and r["decode"] == 21'
fi
check "bench mha: --paged without --decode" 2 "$clattn" bench mha --paged 16 --seq 4
check "bench mha: --paged not a power of two" 2 "$clattn" bench mha --decode 4 --paged 12

if check "bench mha --check, cross-attention, f16" 0 "$clattn" bench mha --json --check --seq 6 --kv-seq 9 \
    --d-model 24 --heads 3 --head-dim 8 --dtype f16 --impl fused --repeat 2; then
    expect "JSON: cross-attention within tolerance" check_rows 1 'r["kv_seq"] == 9 and r["dtype"] == "f16"'
fi

if check "bench additive --check --score all with weights" 0 "$clattn" bench additive --json --check --score all \
    --weights --batch 2 --seq 3 --kv-seq 11 --query-dim 16 --attn-dim 12 --repeat 2; then
    expect "JSON: every score within tolerance" check_rows 4 'r["op"] == "seq2seq"'
fi

if check "bench additive --check --csv" 0 "$clattn" bench additive --csv --check --score general --batch 2 \
    --kv-seq 7 --query-dim 8 --key-dim 12 --attn-dim 4 --repeat 2; then
    expect "CSV: max_error and tolerance columns filled" "$python" - "$tmp/out" <<'PY'
import csv, sys
rows = list(csv.reader(open(sys.argv[1])))
assert len(rows) == 2 and all(len(r) == len(rows[0]) for r in rows), rows
h = rows[0]
assert h[-2:] == ["max_error", "tolerance"], h
assert float(rows[1][h.index("max_error")]) <= float(rows[1][h.index("tolerance")]), rows[1]
PY
fi

if check "bench additive --project-keys --check" 0 "$clattn" bench additive --json --check --project-keys \
    --score all --batch 2 --kv-seq 17 --query-dim 8 --attn-dim 6 --repeat 2; then
    expect "JSON: keys projected once for additive and concat, within tolerance" check_rows 4 \
        '(r["impl"].endswith(" keys-once")) == (r["impl"].split()[0] in ("additive", "concat"))'
fi

if check "bench sdpa --flex causal" 0 "$clattn" bench sdpa --flex causal --seq 40 --head-dim 8 --block-size 16 \
    --repeat 2; then
    expect "--flex: the built-in, mask_mod and block-mask rows" grep -q "mask_mod + block mask" "$tmp/out"
fi
check "bench sdpa --flex documents:3" 0 "$clattn" bench sdpa --flex documents:3 --seq 40 --head-dim 8 --repeat 2
check "bench sdpa --flex nonsense: usage error" 2 "$clattn" bench sdpa --flex nonsense
check "bench sdpa --block-size without --flex: usage error" 2 "$clattn" bench sdpa --block-size 16

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
