#!/usr/bin/env bash
# Figure 1 (+ the migra half of figure 3): plan/diff on the 1,000-table schema.
# Needs bench/setup.sh first. Results: $BENCH_DIR/results/plan.{md,json}
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/env.sh
D=$BENCH_DIR
hyperfine --warmup 1 --runs 5 -i \
  --export-markdown "$D/results/plan.md" --export-json "$D/results/plan.json" \
  -n "tandem plan --to (verify)"  "$TANDEM plan --to $D/desired.sql --database-url '$URL_BENCH' --format json > /dev/null" \
  -n "tandem plan --to --no-verify" "$TANDEM plan --to $D/desired.sql --database-url '$URL_BENCH' --format json --no-verify > /dev/null" \
  -n "tandem diff --to"  "$TANDEM diff --to $D/desired.sql --database-url '$URL_BENCH' --format json > /dev/null" \
  -n "migra (two live dbs)" "migra --unsafe '$MIGRA_BENCH' '$MIGRA_DESIRED' > /dev/null" \
  -n "psql -f desired.sql (fresh db)" \
     --prepare "$PSQL -d postgres -c 'DROP DATABASE IF EXISTS load_probe' -c 'CREATE DATABASE load_probe'" \
     "$PSQL -d load_probe -f $D/desired.sql"
$PSQL -d postgres -c 'DROP DATABASE IF EXISTS load_probe'
