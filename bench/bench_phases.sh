#!/usr/bin/env bash
# Where the time of `tandem plan --to` goes: PHASE_RUNS (default 3) runs with TANDEM_LOG=debug, split by phases.py.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/env.sh
D=$BENCH_DIR
for i in $(seq 1 "${PHASE_RUNS:-3}"); do
  TANDEM_LOG=debug $TANDEM plan --to $D/desired.sql --database-url "$URL_BENCH" --format json \
    > /dev/null 2> "$D/results/phases.$i.log" || true
done
python3 bench/phases.py "$D"/results/phases.[0-9]*.log | tee "$D/results/phases.md"
