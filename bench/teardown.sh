#!/usr/bin/env bash
# Stop the throwaway server and remove it and the generated inputs.
cd "$(dirname "$0")/.." && . bench/env.sh
su postgres -c "/usr/lib/postgresql/15/bin/pg_ctl -D $PGHOST_DIR/data -m fast stop" || true
rm -rf "$PGHOST_DIR" "$BENCH_DIR"
