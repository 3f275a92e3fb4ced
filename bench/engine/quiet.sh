#!/usr/bin/env bash
# tandem's change with no load beside it: the wall time, and what the disk was given to
# write (the change plus the CHECKPOINT after it, which writes what the change left dirty).
#
# Usage: bench/engine/quiet.sh [SCALE] [LABEL]      (run.sh's cluster and template first:
#        SCENARIOS=alone bench/engine/run.sh SCALE)
# Env:   TANDEM=<repo>/target/release/tandem
# Prints one line: LABEL, exit status, wall s, MB written to the cluster's disk, and the
# times tandem reported for the key index, the vacuum beside the drain, the backfill and
# verify. The device is the one holding the cluster (from /proc/diskstats): anything else
# writing to it meanwhile counts too, so run it on an otherwise quiet machine.
set -euo pipefail

SCALE=${1:-100}
LABEL=${2:-tandem}
[[ $SCALE =~ ^[0-9]+$ ]] || { echo "usage: $0 [SCALE] [LABEL]" >&2; exit 64; }
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TANDEM=${TANDEM:-$ROOT/target/release/tandem}
[ -x "$TANDEM" ] || { echo "no tandem binary at $TANDEM: cargo build --release -p cli, or set TANDEM" >&2; exit 69; }
HOST=/tmp/benchpg-engine
PORT=55470
TMPL=engine_tmpl_s$SCALE
DB=engine_quiet
psql_() { su postgres -c "psql -h $HOST -p $PORT -U postgres -X -q -At -v ON_ERROR_STOP=1 $*"; }
psql_ "-d postgres -c \"SELECT 1 FROM pg_database WHERE datname = '$TMPL'\"" | grep -q 1 || {
  echo "no template $TMPL: run SCENARIOS=alone bench/engine/run.sh $SCALE first" >&2; exit 69; }

dev=$(basename "$(findmnt -no SOURCE -T "$HOST")")
written() { awk -v d="$dev" '$3 == d { print $10 }' /proc/diskstats; }   # sectors of 512 bytes
[ -n "$(written)" ] || { echo "cannot find $dev (the disk of $HOST) in /proc/diskstats" >&2; exit 69; }

url="postgresql:///$DB?host=$HOST&port=$PORT&user=postgres"
out=$(mktemp -d /tmp/tandem-quiet.XXXXXX)
psql_ "-d postgres -c 'DROP DATABASE IF EXISTS $DB'" 2>/dev/null
psql_ "-d postgres -c 'CREATE DATABASE $DB TEMPLATE $TMPL'"
"$TANDEM" --database-url "$url" plan -o "$out/plan.json" \
  --sql "ALTER TABLE pgbench_accounts ALTER aid TYPE bigint, ALTER abalance TYPE bigint" >"$out/plan.log" 2>&1
id=$("$TANDEM" --database-url "$url" submit "$out/plan.json" 2>"$out/submit.log")
psql_ "-d $DB -c CHECKPOINT"
sync
sleep 2
w0=$(written)
t0=$(date +%s.%N)
rc=0
"$TANDEM" --database-url "$url" apply "$id" --yes >"$out/apply.log" 2>&1 || rc=$?
t1=$(date +%s.%N)
psql_ "-d $DB -c CHECKPOINT"
sync
w1=$(written)
said() { grep -o "$1" "$out/apply.log" | head -1 || true; }
printf '%s: exit %s, wall %.2f s, %d MB written; key index %s; vacuum beside the drain %s; %s; %s; %s\n' \
  "$LABEL" "$rc" "$(echo "$t1 - $t0" | bc)" $(((w1 - w0) * 512 / 1048576)) \
  "$(said 'built in [0-9.]* s')" "$(said 'analyzed in [0-9.]* s')" \
  "$(said 'settled by [0-9]* vacuum(s) between the chunks, [0-9.]* s in all')" \
  "$(said 'backfill: done in [0-9.]*s')" "$(said 'verify: done in [0-9.]*s')"
"$TANDEM" --database-url "$url" finalize "$id" --yes >"$out/finalize.log" 2>&1 || true
psql_ "-d postgres -c 'DROP DATABASE $DB'"
rm -rf "$out"
