#!/bin/bash
# weighted_round_robin's pick and picker creation, two pick_bench builds side by side:
# interleaved rounds, median CPU time per benchmark.
#   bench/wrr_compare.sh BASE_PICK_BENCH BRANCH_PICK_BENCH [ROUNDS]
set -euo pipefail
base=$1 branch=$2 rounds=${3:-5}
filter='BM_Pick/weighted_round_robin/(10|10000)/real_time/threads:1$|BM_CreatePicker/weighted_round_robin'
out=$(mktemp)
for r in $(seq "$rounds"); do
  for side in base branch; do
    bin=$base; [ "$side" = branch ] && bin=$branch
    "$bin" --benchmark_filter="$filter" --benchmark_min_time=0.2 --benchmark_format=csv \
      2>/dev/null | grep '^"' | sed "s/^/$side,$r,/" >> "$out"
  done
done
python3 - "$out" <<'PY'
import collections, csv, statistics, sys
times = collections.defaultdict(list)
for row in csv.reader(open(sys.argv[1])):
    times[(row[2], row[0])].append(float(row[5]))  # cpu_time, ns (us for CreatePicker)
print("| benchmark | base (median CPU) | branch | ratio |")
print("|---|---|---|---|")
for name in sorted({k[0] for k in times}):
    b, c = statistics.median(times[(name, "base")]), statistics.median(times[(name, "branch")])
    print("| %s | %.2f | %.2f | %.3f |" % (name, b, c, c / b))
PY
rm -f "$out"
