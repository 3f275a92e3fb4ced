#!/usr/bin/env bash
# What tandem's dual-write trigger costs an application's bulk UPDATE, during the copy:
# one UPDATE of UPDATE_ROWS rows in one transaction, run RUNS times, in three scenarios side by
# side on one throwaway cluster:
#   alone   : no migration
#   tandem  : `ALTER TABLE t ALTER n TYPE bigint` (a widening: the trigger has nothing to
#             catch, so it opens no subtransaction), apply running its backfill meanwhile
#   catch   : the same change written `USING n + 0` (an expression tandem cannot test first,
#             so the trigger catches errors: one subtransaction per row, as every tandem
#             trigger did before)
# For each UPDATE: its time, the transaction ids it consumed (one per subtransaction that
# wrote, plus its own) and pg_stat_slru's Subtrans counters (blks_zeroed + blks_hit +
# blks_read: pg_subtrans pages touched, one lookup per subtransaction id assigned).
#
# Usage: bench/engine/subxact.sh            (as root; needs target/release/tandem: ./run demo
#                                            or cargo build --release -p cli)
# Env:   ROWS=1000000 UPDATE_ROWS=10000 RUNS=5 TANDEM=<repo>/target/release/tandem
# Output: a Markdown table on stdout; the cluster in /tmp/benchpg-subxact is removed at the end.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PGBIN=/usr/lib/postgresql/15/bin
PGDIR=/tmp/benchpg-subxact
PORT=55471
ROWS=${ROWS:-1000000}
UPDATE_ROWS=${UPDATE_ROWS:-10000}
RUNS=${RUNS:-5}
TANDEM=${TANDEM:-$ROOT/target/release/tandem}
[ -x "$TANDEM" ] || { echo "build tandem first: cargo build --release -p cli" >&2; exit 1; }

as_pg() { runuser -u postgres -- "$@"; }
stop() { as_pg "$PGBIN/pg_ctl" -D "$PGDIR/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$PGDIR"; }
trap stop EXIT
stop
mkdir -p "$PGDIR" && chown postgres "$PGDIR"
as_pg "$PGBIN/initdb" -D "$PGDIR/data" -A trust -U postgres >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/log" -w \
  -o "-p $PORT -k $PGDIR -c listen_addresses='' -c shared_buffers=256MB -c max_wal_size=4GB" start >/dev/null

URL="postgresql://postgres@localhost:$PORT/postgres?host=$PGDIR"
psql_q() { "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 "$URL" "$@"; }

setup() {
  psql_q -c "SET client_min_messages = warning" -c "DROP TABLE IF EXISTS t CASCADE" \
         -c "DROP SCHEMA IF EXISTS tandem CASCADE" \
         -c "CREATE TABLE t (id integer PRIMARY KEY, n integer NOT NULL, pad text)" \
         -c "INSERT INTO t SELECT g, g, repeat('x', 80) FROM generate_series(1, $ROWS) g" \
         -c "VACUUM ANALYZE t" -c "CHECKPOINT"
}

slru() { psql_q -c "SELECT blks_zeroed + blks_hit + blks_read FROM pg_stat_slru WHERE name = 'Subtrans'"; }
xid() { psql_q -c "SELECT pg_current_xact_id()::text"; }

# One UPDATE in its own session (its statistics are flushed when it disconnects):
# prints "ms xids subtrans_pages".
one_update() {
  local lo=$1 s0 x0 t0 t1 x1 s1
  s0=$(slru); x0=$(xid)
  t0=$(date +%s%N)
  psql_q -c "UPDATE t SET n = n + 1 WHERE id > $lo AND id <= $((lo + UPDATE_ROWS))"
  t1=$(date +%s%N)
  x1=$(xid); sleep 0.2; s1=$(slru)
  echo "$(( (t1 - t0) / 1000000 )) $(( x1 - x0 - 1 )) $(( s1 - s0 ))"
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

run_scenario() {
  local name=$1 change=${2:-} apply_pid= out
  setup
  if [ -n "$change" ]; then
    "$TANDEM" --database-url "$URL" plan --sql "$change" -o "$PGDIR/plan.json" >/dev/null 2>&1
    local id
    id=$("$TANDEM" --database-url "$URL" submit "$PGDIR/plan.json" 2>/dev/null)
    "$TANDEM" --database-url "$URL" apply "$id" --yes --until backfill >"$PGDIR/apply.log" 2>&1 &
    apply_pid=$!
    # Wait for the copy to start.
    for _ in $(seq 1 200); do
      [ "$(psql_q -c "SELECT count(*) FROM tandem.shadow_tables WHERE rows_copied > 0" 2>/dev/null || echo 0)" -gt 0 ] && break
      sleep 0.05
    done
  fi
  out=$(for r in $(seq 1 "$RUNS"); do one_update $(( (r - 1) * UPDATE_ROWS )); done)
  local copying="-"
  if [ -n "$apply_pid" ]; then
    if kill -0 "$apply_pid" 2>/dev/null; then copying="yes, all $RUNS"; else copying="ended before the last"; fi
    wait "$apply_pid" || true
  fi
  local ms xids pages
  ms=$(awk '{print $1}' <<<"$out" | median)
  xids=$(awk '{print $2}' <<<"$out" | median)
  pages=$(awk '{print $3}' <<<"$out" | median)
  echo "| $name | $ms | $xids | $pages | $copying |"
}

echo "UPDATE of $UPDATE_ROWS rows in one transaction, on a $ROWS-row table; medians of $RUNS runs"
echo
echo "| scenario | UPDATE ms | transaction ids consumed (server-wide: the copy's own batches count too) | Subtrans SLRU pages touched | copy running during the UPDATEs |"
echo "|---|---:|---:|---:|---|"
run_scenario alone
run_scenario tandem "ALTER TABLE t ALTER n TYPE bigint"
run_scenario catch "ALTER TABLE t ALTER n TYPE bigint USING n + 0"
