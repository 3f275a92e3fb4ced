#!/usr/bin/env bash
# Stop the throwaway cluster of bench/engine/run.sh and remove /tmp/benchpg-engine.
# Results in $BENCH_DIR (default /tmp/tandem-bench) are kept.
set -euo pipefail
PGBIN=/usr/lib/postgresql/15/bin
PGDIR=/tmp/benchpg-engine
if [ -s "$PGDIR/data/postmaster.pid" ]; then
  echo "stopping the cluster in $PGDIR/data"
  runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGDIR/data" -m fast -w stop ||
    echo "pg_ctl stop failed (server already gone?)" >&2
fi
rm -rf "$PGDIR"
echo "removed $PGDIR"
