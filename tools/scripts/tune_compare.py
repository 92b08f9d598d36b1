#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Local search against exhaustive search, judged by a referee: runs `clattn tune` exhaustively EX times and with
the local strategy for SEEDS seeds on one problem class (each in a fresh tuning directory), then times every run's
choice plus the fastest configurations overall round-robin in one tuner worker for ROUNDS rounds, and prints a
markdown table of how far each choice is from the referee's best. Single timings on a shared machine are noisy; the
interleaved referee is what makes "within 5% of the best" measurable at all.

Usage: tune_compare.py PATH/TO/clattn CLASS EX SEEDS ROUNDS   (CLASS: prefill:d64:L512, decode:d64:L16384, ...)"""
import json, glob, os, re, subprocess, statistics, sys, shutil, tempfile
CLI = sys.argv.pop(1)
WORK = tempfile.mkdtemp(prefix="clattn-tune-compare-")
classes = {
  'prefill:d64:L512': ['--space', 'variant=cpu,rows=8:16:24:32:48:64,block_n=16:24:32:48:64:96:128'],
  'decode:d64:L16384': ['--space', 'variant=cpu,rows=1'],
  'decode:d64:L2048': ['--space', 'variant=cpu,rows=1'],
  'additive:a128:L256': ['--space', 'wg=1:4:16,block_n=16:32:64:128,rows=1:2:4:8:16'],
}
cls = sys.argv[1]; EX = int(sys.argv[2]); SEEDS = int(sys.argv[3]); ROUNDS = int(sys.argv[4])
def run(extra, d):
    shutil.rmtree(d, ignore_errors=True)
    env = dict(os.environ, CLATTN_TUNING_DIR=d)
    out = subprocess.run([CLI, 'tune', '--shapes', cls, '--repeat', '9', '--quiet'] + classes[cls] + extra,
                         env=env, capture_output=True, text=True).stdout
    fresh = int(re.search(r'(\d+) new evaluations', out).group(1))
    lines = [json.loads(l) for l in open(glob.glob(d + '/*.jsonl')[0])]
    db = json.load(open(glob.glob(d + '/*.json')[0]))
    e = [x for x in db['entries'] if 'seq' in x['class']][0]
    pick = ','.join('%s=%s' % kv for kv in e['params'].items())
    return fresh, lines, pick, e['ms']
def short(p): return p.replace('variant=cpu,', '').replace(',wg=1,local=0', '')
tag = cls.replace(':', '_')
ex, loc = [], []
for i in range(max(EX, SEEDS)):
    if i < EX: ex.append(run(['--strategy', 'exhaustive'], os.path.join(WORK, 'ex_%s_%d' % (tag, i))))
    if i < SEEDS: loc.append(run(['--strategy', 'local', '--seed', str(i + 1)], os.path.join(WORK, 'loc_%s_%d' % (tag, i))))
per = {}
for _, lines, _, _ in ex:
    for l in lines:
        if l['status'] == 'ok': per.setdefault(l['params'], []).append(l['ms'])
agg = sorted(per, key=lambda p: statistics.median(per[p]))
cands = []
for p in agg[:6] + [e[2] for e in ex] + [l[2] for l in loc]:
    if p not in cands: cands.append(p)
# Referee: one worker, the candidates round-robin, ROUNDS times each; the median of its medians per candidate.
w = subprocess.Popen([CLI, 'tune', '--worker', '--device', os.environ.get('DEV', '0:0'), '--class', ex[0][1][0]['class'],
                      '--repeat', '9', '--warmup', '2'], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
assert w.stdout.readline().strip() == 'ready'
ref = {p: [] for p in cands}
for r in range(ROUNDS):
    for p in cands:
        w.stdin.write(p + '\n'); w.stdin.flush()
        ans = w.stdout.readline().split()
        ref[p].append(float(ans[1]) if ans[0] == 'ok' else float('inf'))
w.stdin.close(); w.wait()
true = {p: statistics.median(v) for p, v in ref.items()}
best = min(true, key=true.get)
print('\n## %s: %d points; referee: %d candidates x %d interleaved rounds in one worker' % (cls, ex[0][0], len(cands), ROUNDS))
print('best (referee): %s %.3f ms' % (short(best), true[best]))
print('| run | evaluations | choice | its own ms | referee ms | vs best | within 5% |')
print('|---|---|---|---|---|---|---|')
for i, (fresh, lines, pick, ms) in enumerate(ex):
    d = 100 * (true[pick] / true[best] - 1)
    print('| exhaustive %d | %d | %s | %.3f | %.3f | %+.1f%% | %s |' % (i + 1, fresh, short(pick), ms, true[pick], d, 'yes' if d <= 5 else 'no'))
for i, (fresh, lines, pick, ms) in enumerate(loc):
    d = 100 * (true[pick] / true[best] - 1)
    first = {}
    for l in lines:
        if l['status'] == 'ok' and l['params'] not in first: first[l['params']] = l['ms']
    old = min(first, key=first.get)
    od = ('%+.1f%%' % (100 * (true[old] / true[best] - 1))) if old in true else 'n/a'
    print('| local seed %d | %d | %s | %.3f | %.3f | %+.1f%% | %s | (without re-timing: %s, %s) |' % (i + 1, fresh, short(pick), ms, true[pick], d, 'yes' if d <= 5 else 'no', short(old), od))
print('referee spread (max/min of rounds) of the best: %.2f' % (max(ref[best]) / min(ref[best])))
shutil.rmtree(WORK, ignore_errors=True)
