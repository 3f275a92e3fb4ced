#!/usr/bin/env bash
# The rewrite throughput behind `--in-place-below` (planner/src/plan/build.rs,
# REWRITE_BYTES_PER_SEC): ALTER TABLE .. TYPE bigint, which rewrites the table and its two
# indexes, on tables of 20k, 100k and 400k rows, 5 times each, on the bench server
# (bench/setup.sh first). Prints rows, bytes, median ms, MB/s.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/env.sh
$PSQL -d postgres -c "DROP DATABASE IF EXISTS rewrite_probe" -c "CREATE DATABASE rewrite_probe"
Q="$PSQL -d rewrite_probe"
for rows in 20000 100000 400000; do
  $Q -c "DROP TABLE IF EXISTS t" \
     -c "CREATE TABLE t (id bigint PRIMARY KEY, a int NOT NULL, b text, c timestamptz DEFAULT now())" \
     -c "CREATE INDEX ON t (a)" \
     -c "INSERT INTO t SELECT g, g, md5(g::text), now() FROM generate_series(1, $rows) g" \
     -c "VACUUM ANALYZE t"
  bytes=$($Q -Atc "SELECT pg_total_relation_size('t')")
  times=()
  for k in 1 2 3 4 5; do
    to=bigint; [ $((k % 2)) -eq 0 ] && to=integer
    ms=$($Q -At -c '\timing on' -c "ALTER TABLE t ALTER COLUMN a TYPE $to" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p')
    times+=("$ms")
  done
  median=$(printf '%s\n' "${times[@]}" | sort -n | sed -n 3p)
  echo "$rows rows, $bytes bytes: median ${median} ms ($(printf '%s ' "${times[@]}")) = $(python3 -c "print(round($bytes / 1048576 / ($median / 1000), 1))") MB/s"
done
$PSQL -d postgres -c "DROP DATABASE rewrite_probe"
