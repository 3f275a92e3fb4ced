#!/usr/bin/env bash
# Figure 2 (+ the squawk half of figure 3): lint of the 10,000-statement file.
# Both tools exit non-zero on findings (tandem 3, squawk 1): hence -i.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/env.sh
D=$BENCH_DIR
[ -f "$D/big.sql" ] || python3 bench/gen_migration.py "$D/big.sql"
hyperfine --warmup 1 --runs 10 -i -N \
  --export-markdown "$D/results/lint.md" --export-json "$D/results/lint.json" \
  -n "tandem lint --format json" "$TANDEM lint --format json $D/big.sql" \
  -n "tandem lint (text)" "$TANDEM lint $D/big.sql" \
  -n "squawk --reporter json" "squawk --reporter json $D/big.sql" \
  -n "squawk (tty)" "squawk $D/big.sql"
