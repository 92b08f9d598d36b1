#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""The score modifiers' cost on a shared or noisy machine: runs `clattn bench sdpa --mods
none,softcap,sinks,alibi,all,softcap-fn,alibi-fn --impl fused --csv` ROUNDS times (the -fn rows: the softcap and ALiBi
written as a score_mod) and prints, per shape, causal mode and modifier, the median over the rounds of the
plain row's time divided by the modified row's (each round times them back to back, so load that changes between
rounds cancels), from the median times and from the minimum times of each round.
Usage: bench_mods.py PATH/TO/clattn ROUNDS [more clattn bench sdpa options, e.g. --repeat 5 --causal none,top-left]"""
import csv
import io
import statistics
import subprocess
import sys


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    clattn, rounds, extra = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    ratios = {}
    for _ in range(rounds):
        out = subprocess.run([clattn, "bench", "sdpa", "--impl", "fused", "--mods",
                              "none,softcap,sinks,alibi,all,softcap-fn,alibi-fn",
                              "--csv", *extra], capture_output=True, text=True, check=True).stdout
        rows = list(csv.DictReader(io.StringIO(out)))
        shape = ("batch", "heads", "kv_heads", "seq", "kv_seq", "head_dim", "causal")
        plain = {tuple(r[k] for k in shape): r for r in rows if r["mods"] == "none"}
        for r in rows:
            p = plain[tuple(r[k] for k in shape)]
            ratios.setdefault(tuple(r[k] for k in shape) + (r["mods"],), []).append(
                (float(p["median_ms"]) / float(r["median_ms"]), float(p["min_ms"]) / float(r["min_ms"]),
                 float(r["median_ms"])))
    for key, v in ratios.items():
        print("B=%s Hq=%s Hkv=%s Lq=%s Lk=%s D=%s causal=%-12s mods=%-10s vs plain: %.2fx (medians), %.2fx (minima);"
              " median %.2f ms over %d rounds" % (*key, statistics.median(a for a, _, _ in v),
                                                  statistics.median(b for _, b, _ in v),
                                                  statistics.median(c for _, _, c in v), len(v)))


if __name__ == "__main__":
    main()
