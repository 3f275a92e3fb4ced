#!/usr/bin/env bash
# Start the throwaway PostgreSQL 15 server (as root; runs it as `postgres`), generate the inputs
# into $BENCH_DIR and load base.sql into `bench` and desired.sql into `desired_db` (for migra).
# Teardown: bench/teardown.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/env.sh
PGBIN=/usr/lib/postgresql/15/bin
if [ ! -d "$PGHOST_DIR/data" ]; then
  mkdir -p "$PGHOST_DIR" && chown postgres "$PGHOST_DIR"
  su postgres -c "$PGBIN/initdb -D $PGHOST_DIR/data -A trust >/dev/null && $PGBIN/pg_ctl -D $PGHOST_DIR/data -o '-p $PGPORT_BENCH -k $PGHOST_DIR' -l $PGHOST_DIR/log start"
fi
python3 bench/gen_schema.py "$BENCH_DIR"
python3 bench/gen_migration.py "$BENCH_DIR/big.sql"
$PSQL -d postgres -c "DROP DATABASE IF EXISTS bench" -c "DROP DATABASE IF EXISTS desired_db" \
      -c "CREATE DATABASE bench" -c "CREATE DATABASE desired_db"
$PSQL -d bench -f "$BENCH_DIR/base.sql"
$PSQL -d desired_db -f "$BENCH_DIR/desired.sql"
echo "ready: $URL_BENCH"
