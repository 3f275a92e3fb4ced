#!/usr/bin/env bash
# Figure 5: `tandem check` on a 200-migration folder (bench/gen_migrations.py: the 1,000-table
# schema split into 200 sqlx files) against its schema.sql, no target; with the local dev
# database (warm: its cluster is made on the first run) and with a Docker one (warm image).
# Beside it, the same folder applied with psql into a fresh database of the fsync=off dev
# cluster, and the Docker dev database's start alone. Needs bench/setup.sh first.
# Results: $BENCH_DIR/results/check.{md,json}
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/env.sh
D=$BENCH_DIR
python3 bench/gen_migrations.py "$D" >/dev/null
"$TANDEM" dev-image build --pg 15 >/dev/null 2>&1
hyperfine --warmup 1 --runs 5 -i \
  --export-markdown "$D/results/check.md" --export-json "$D/results/check.json" \
  -n "tandem check (--dev local)" "$TANDEM check --migrations $D/migrations --schema $D/schema.sql --dev local --format json > /dev/null" \
  -n "tandem check (--dev docker:15)" "$TANDEM check --migrations $D/migrations --schema $D/schema.sql --dev docker:15 --format json > /dev/null" \
  -n "tandem lint of the same 200 files" "$TANDEM lint --fail-on never $D/migrations/*.sql > /dev/null 2>&1"
