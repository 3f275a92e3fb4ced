#!/usr/bin/env bash
# The rollback window's cost to clients: pgbench TPC-B (-c CLIENTS -j 2, SECS s) on a plain
# clone of the pgbench database (win_a) and on a clone that tandem has migrated and left in its
# rollback window (win_w: every client write also goes to the old table through the reverse
# trigger), alternating ROUNDS times, each after a CHECKPOINT. Prints TPS and the WAL per
# transaction (pg_stat_wal) of every run.
#
# Usage: bench/engine/window.sh [SCALE]     (SCALE default 100)
# Env:   TANDEM=<repo>/target/release/tandem  SECS=20  ROUNDS=3  CLIENTS=8
# Needs bench/engine/run.sh's cluster and its template database for SCALE: run
# `SCENARIOS=alone bench/engine/run.sh SCALE` first. Stop the cluster with teardown.sh.
set -euo pipefail
SCALE=${1:-100}
[[ $SCALE =~ ^[0-9]+$ ]] || { echo "usage: $0 [SCALE]  (SCALE: a positive integer)" >&2; exit 64; }
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TANDEM=${TANDEM:-$HERE/../../target/release/tandem}
SECS=${SECS:-20}
ROUNDS=${ROUNDS:-3}
CLIENTS=${CLIENTS:-8}
PGBIN=/usr/lib/postgresql/15/bin
PGDIR=/tmp/benchpg-engine
PORT=55470
TMPL=engine_tmpl_s$SCALE
q() { PGOPTIONS="-c client_min_messages=warning" "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$PGDIR" -p "$PORT" -U postgres "$@"; }

[ -x "$TANDEM" ] || { echo "tandem not found at $TANDEM (cargo build --release -p cli, or set TANDEM)" >&2; exit 1; }
[ "$(q -d postgres -c "SELECT count(*) FROM pg_database WHERE datname = '$TMPL'" 2>/dev/null)" = 1 ] ||
  { echo "no template $TMPL on $PGDIR:$PORT: run SCENARIOS=alone bench/engine/run.sh $SCALE first" >&2; exit 1; }

for db in win_a win_w; do
  q -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db TEMPLATE $TMPL STRATEGY FILE_COPY"
done
work=$(mktemp -d)
url="postgresql:///win_w?host=$PGDIR&port=$PORT&user=postgres"
"$TANDEM" --database-url "$url" plan -o "$work/plan.json" \
  --sql "ALTER TABLE pgbench_accounts ALTER aid TYPE bigint, ALTER abalance TYPE bigint" >"$work/plan.log" 2>&1
id=$("$TANDEM" --database-url "$url" submit "$work/plan.json" 2>"$work/submit.log" | tr -d '[:space:]')
"$TANDEM" --database-url "$url" apply "$id" --yes >"$work/apply.log" 2>&1 ||
  { echo "tandem apply failed; see $work/apply.log" >&2; exit 1; }
# The copy's 10,000,000 inserted rows would bring the new table's first autovacuum into the
# runs: done here, and the plain clone vacuumed alike.
q -d win_w -c "VACUUM (ANALYZE) pgbench_accounts"
q -d win_a -c "VACUUM (ANALYZE) pgbench_accounts"

echo "round db tps wal_kB_per_tx fpi_per_tx wal_records_per_tx"
for r in $(seq "$ROUNDS"); do
  for db in win_a win_w; do
    q -d "$db" -c CHECKPOINT
    w0=$(q -d "$db" -c "SELECT wal_records || ' ' || wal_fpi || ' ' || wal_bytes FROM pg_stat_wal")
    tps=$("$PGBIN/pgbench" -h "$PGDIR" -p "$PORT" -U postgres -c "$CLIENTS" -j 2 -n -T "$SECS" "$db" 2>/dev/null |
      awk '/^tps/ { print $3; exit }')
    w1=$(q -d "$db" -c "SELECT wal_records || ' ' || wal_fpi || ' ' || wal_bytes FROM pg_stat_wal")
    awk -v r="$r" -v db="$db" -v tps="$tps" -v s="$SECS" -v a="$w0" -v b="$w1" 'BEGIN {
      split(a, x, " "); split(b, y, " "); tx = tps * s;
      printf "%s %s %.0f %.2f %.2f %.2f\n", r, db, tps, (y[3] - x[3]) / 1024 / tx, (y[2] - x[2]) / tx, (y[1] - x[1]) / tx }'
  done
done
rm -rf "$work"
