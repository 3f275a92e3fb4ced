#!/usr/bin/env bash
# The bulk writes a table rewrite is made of, without tandem, under the benchmark's load: how
# many client transactions go over 100 ms when the server copies pgbench_accounts into a new
# table or builds its key index, each way of doing it alternated ROUNDS times.
#   insert   INSERT INTO s SELECT ... FROM pgbench_accounts (what tandem's and pg_repack's copies do)
#   copy     COPY (SELECT ...) TO STDOUT (FORMAT binary) piped into COPY s FROM STDIN (FORMAT
#            binary): multi-row WAL records and a ring of buffers of its own
#   index    CREATE UNIQUE INDEX on the copy, maintenance_work_mem = MWM (default 64MB)
# The writing session has tandem's settings (synchronous_commit off, backend_flush_after
# 256kB, wal_compression lz4). The load: pgbench -c 8 -j 2 for SECS s, the write starting 5 s in.
#
# Usage: bench/engine/bulk.sh [SCALE] [MODE...]   (default 100, insert copy)
#        MWM=1GB bench/engine/bulk.sh 100 index
# Needs bench/engine/run.sh's cluster and template (SCENARIOS=alone bench/engine/run.sh SCALE).
set -euo pipefail
SCALE=${1:-100}
[[ $SCALE =~ ^[0-9]+$ ]] || { echo "usage: $0 [SCALE] [insert|copy|index ...]" >&2; exit 64; }
shift || true
MODES=("$@")
[ ${#MODES[@]} -gt 0 ] || MODES=(insert copy)
ROUNDS=${ROUNDS:-2}
SECS=${SECS:-45}
MWM=${MWM:-64MB}
PGBIN=/usr/lib/postgresql/15/bin
PGDIR=/tmp/benchpg-engine
PORT=55470
DB=bulk_s$SCALE
OUT=${BENCH_DIR:-/tmp/tandem-bench}/bulk-$SCALE
q() { PGOPTIONS="-c client_min_messages=warning" "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$PGDIR" -p "$PORT" -U postgres "$@"; }
[ "$(q -d postgres -c "SELECT count(*) FROM pg_database WHERE datname = 'engine_tmpl_s$SCALE'" 2>/dev/null)" = 1 ] ||
  { echo "no template engine_tmpl_s$SCALE: run SCENARIOS=alone bench/engine/run.sh $SCALE first" >&2; exit 1; }
q -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB TEMPLATE engine_tmpl_s$SCALE STRATEGY FILE_COPY"
SET="SET synchronous_commit = off; SET backend_flush_after = '256kB'; SET wal_compression = lz4;"
COLS="aid::bigint, bid, abalance::bigint, filler"
q -d "$DB" -c "CREATE TABLE s (aid bigint NOT NULL, bid int, abalance bigint, filler char(84))"

echo "| round | mode | write s | WAL MB | Dirty max MiB | client txns > 100 ms | slowest ms | TPS |"
echo "|---:|---|---:|---:|---:|---:|---:|---:|"
for round in $(seq 1 "$ROUNDS"); do
  for mode in "${MODES[@]}"; do
    dir=$OUT/$round-$mode
    rm -rf "$dir" && mkdir -p "$dir"
    case $mode in
      insert|copy) q -d "$DB" -c "DROP INDEX IF EXISTS s_key" -c "TRUNCATE s" ;;
      index) [ "$(q -d "$DB" -c "SELECT count(*) > 0 FROM (SELECT 1 FROM s LIMIT 1) x")" = t ] ||
               q -d "$DB" -c "$SET INSERT INTO s SELECT $COLS FROM pgbench_accounts"
             q -d "$DB" -c "DROP INDEX IF EXISTS s_key" ;;
      *) echo "unknown mode $mode (insert, copy, index)" >&2; exit 64 ;;
    esac
    q -d "$DB" -c "CHECKPOINT"
    lsn=$(q -d "$DB" -c "SELECT pg_current_wal_lsn()")
    (cd "$dir" && exec "$PGBIN/pgbench" -h "$PGDIR" -p "$PORT" -U postgres -c 8 -j 2 -n -T "$SECS" -l "$DB" >pgbench.out 2>&1) &
    load=$!
    (while kill -0 $load 2>/dev/null; do awk '/^Dirty:/ { print $2 }' /proc/meminfo; sleep 0.1; done >"$dir/dirty.txt") &
    sleep 5
    t0=$(date +%s.%N)
    case $mode in
      insert) q -d "$DB" -c "$SET INSERT INTO s SELECT $COLS FROM pgbench_accounts" ;;
      copy) q -d "$DB" -c "COPY (SELECT $COLS FROM pgbench_accounts) TO STDOUT (FORMAT binary)" |
              q -d "$DB" -c "$SET COPY s FROM STDIN (FORMAT binary)" ;;
      index) q -d "$DB" -c "$SET SET maintenance_work_mem = '$MWM'; CREATE UNIQUE INDEX s_key ON s (aid)" ;;
    esac
    t1=$(date +%s.%N)
    wal=$(q -d "$DB" -c "SELECT (pg_wal_lsn_diff(pg_current_wal_lsn(), '$lsn') / 1e6)::int")
    wait $load
    cat "$dir"/pgbench_log.* | awk -v r="$round" -v m="$mode$([ "$mode" = index ] && echo " ($MWM)")" -v w="$(echo "$t1 - $t0" | bc)" \
      -v wal="$wal" -v d="$(($(sort -n "$dir/dirty.txt" | tail -1) / 1024))" -v tps="$(awk '/^tps/ { printf "%d", $3 }' "$dir/pgbench.out")" \
      '$3 > 100000 { n++ } $3 > max { max = $3 } END { printf "| %s | %s | %.1f | %s | %s | %d | %.0f | %s |\n", r, m, w, wal, d, n, max / 1000, tps }'
  done
done
q -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
