# SPDX-License-Identifier: Apache-2.0
"""`clattn tune --replay`: the tuner's strategies replayed on a small committed table (tests/data/tune_table_small.json,
a 4x4 slice of a real recording) give the same report every time and the report expected for it; needs no device.
When a change to tune_search.c changes the expected report on purpose, regenerate it with
`clattn tune --replay tests/data/tune_table_small.json --seeds 20 > tests/data/tune_replay_expected.txt`, and say
in the commit how the replay results moved."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
TABLE = os.path.join(HERE, "data", "tune_table_small.json")
EXPECTED = os.path.join(HERE, "data", "tune_replay_expected.txt")

clattn = sys.argv[1]
failed = 0


def check(ok, what):
    global failed
    print(("ok   " if ok else "FAIL ") + what)
    failed += not ok


def replay(path, *extra):
    return subprocess.run([clattn, "tune", "--replay", path, *extra], capture_output=True, text=True,
                          env={**os.environ, "CLATTN_DEVICE": "no-such-device"})


# The device is never opened: a device selection that matches nothing does not matter.
first = replay(TABLE, "--seeds", "20")
second = replay(TABLE, "--seeds", "20")
check(first.returncode == 0, f"replay exits 0 (got {first.returncode}: {first.stderr.strip()})")
check(first.stdout == second.stdout, "two replays print the same report")
with open(EXPECTED) as f:
    expected = f.read()
got = first.stdout.replace(TABLE, "TABLE")
check(got == expected.replace("tests/data/tune_table_small.json", "TABLE"), "the report is the expected one")
if got != expected.replace("tests/data/tune_table_small.json", "TABLE"):
    print("got:\n" + first.stdout)

# What holds whatever the strategies do: exhaustive on the noiseless model always finds the best after measuring
# each of the 16 points once, and no row counts more hits than seeds. A row ends in: hits/seeds, percent, median
# and max measurements, median and worst ratio to the best.
rows = {}
for line in first.stdout.splitlines():
    parts = line.split()
    if parts and parts[0] in ("median", "sampled"):
        hits, seeds = parts[-6].split("/")
        rows[(parts[0], parts[1])] = (int(hits), int(seeds), float(parts[-4]), float(parts[-3]))
exhaustive = rows.get(("median", "exhaustive"))
check(exhaustive == (20, 20, 16.0, 16.0), f"exhaustive, median model: 20/20 in 16 measurements ({exhaustive})")
check(len(rows) == 6 and all(h <= s == 20 and med <= mx for h, s, med, mx in rows.values()), "six rows, hits <= seeds")

# A budget for the random strategy is taken as given.
budget = replay(TABLE, "--seeds", "5", "--budget", "3")
check(budget.returncode == 0 and "random (budget 3)" in budget.stdout, "--budget sets the random strategy's budget")

# Tables that are not tables are refused with the reason, exit status 2.
work = tempfile.mkdtemp(prefix="clattn-replay-")
missing = replay(os.path.join(work, "none.json"))
check(missing.returncode == 2 and "cannot open" in missing.stderr, f"a missing table: {missing.stderr.strip()}")
with open(TABLE) as f:
    table = json.load(f)
table["start"] = "variant=cpu,rows=64,block_n=8,wg=1,local=0,splits=0"
bad_start = os.path.join(work, "bad_start.json")
with open(bad_start, "w") as f:
    json.dump(table, f)
r = replay(bad_start)
check(r.returncode == 2 and "start" in r.stderr, f"a start that is not a point: {r.stderr.strip()}")
table["format"] = "something-else"
with open(bad_start, "w") as f:
    json.dump(table, f)
r = replay(bad_start)
check(r.returncode == 2 and "format" in r.stderr, f"another format: {r.stderr.strip()}")

shutil.rmtree(work)
# With --record (the device tier): a real recording of a tiny space, its table, and its replay.
if "--record" in sys.argv[2:]:
    work = tempfile.mkdtemp(prefix="clattn-record-")
    path = os.path.join(work, "t.json")
    rec = subprocess.run([clattn, "tune", "--shapes", "prefill:d64:L128", "--record", path, "--rounds", "3",
                          "--repeat", "2", "--warmup", "0", "--quiet", "--space",
                          "variant=cpu,rows=8:16,block_n=32:64,splits=0"],
                         capture_output=True, text=True, env={**os.environ, "CLATTN_TUNING_DIR": work})
    check(rec.returncode == 0 and os.path.exists(path), f"--record writes a table ({rec.stderr.strip()})")
    if rec.returncode == 0:
        with open(path) as f:
            t = json.load(f)
        pts = t["points"]
        # The 4 points of the space, and the built-in default (rows 24, block_n 48 here) after them.
        check(t["format"] == "clattn-tune-table-1" and t["rounds"] == 3 and len(pts) == 4 + (not t["start_in_space"]),
              f"the table has its space's points and the default ({len(pts)} points)")
        check(all(p["status"] == "ok" and len(p["rounds"]) == 3 and p["ms"] == sorted(p["rounds"])[1] for p in pts),
              "every point ran 3 rounds and its ms is their median")
        again = replay(path, "--seeds", "3")
        row = [l for l in again.stdout.splitlines() if l.split()[:2] == ["median", "exhaustive"]]
        check(again.returncode == 0 and len(row) == 1 and row[0].split()[2] == "3/3",
              f"its replay: exhaustive on the median model finds the best ({row})")
    shutil.rmtree(work)

print(f"{'FAILED' if failed else 'passed'}: {failed} failure(s)")
sys.exit(1 if failed else 0)
