#!/usr/bin/env bash
# Verify's two checksums (the table's, mapped to the new types, and the shadow's) run one
# after the other, as tandem runs them, and at once on two sessions, under pgbench's load:
# how long each takes and what the clients keep meanwhile. The migration is left after its
# backfill (the forward trigger on), as verify finds it. The statements are tandem's for
# this change (from the server's statement log of an `apply --until verify`).
#
# Usage: bench/engine/verify_sides.sh [ROUNDS]      (run.sh's cluster and its scale-100
#        template first: SCENARIOS=alone bench/engine/run.sh 100)
# Env:   TANDEM=<repo>/target/release/tandem
set -euo pipefail

ROUNDS=${1:-3}
[[ $ROUNDS =~ ^[0-9]+$ ]] || { echo "usage: $0 [ROUNDS]" >&2; exit 64; }
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TANDEM=${TANDEM:-$ROOT/target/release/tandem}
[ -x "$TANDEM" ] || { echo "no tandem binary at $TANDEM: cargo build --release -p cli, or set TANDEM" >&2; exit 69; }
PGBIN=/usr/lib/postgresql/15/bin
HOST=/tmp/benchpg-engine
PORT=55470
DB=engine_verify_sides
psql_() { su postgres -c "$PGBIN/psql -h $HOST -p $PORT -U postgres -X -q -At -v ON_ERROR_STOP=1 $*"; }
out=$(mktemp -d /tmp/tandem-verify-sides.XXXXXX)
chown postgres "$out"   # pgbench, run as postgres, writes its logs there

psql_ "-d postgres -c 'DROP DATABASE IF EXISTS $DB WITH (FORCE)'" 2>/dev/null
psql_ "-d postgres -c 'CREATE DATABASE $DB TEMPLATE engine_tmpl_s100'"
url="postgresql:///$DB?host=$HOST&port=$PORT&user=postgres"
"$TANDEM" --database-url "$url" plan -o "$out/plan.json" \
  --sql "ALTER TABLE pgbench_accounts ALTER aid TYPE bigint, ALTER abalance TYPE bigint" >"$out/plan.log" 2>&1
id=$("$TANDEM" --database-url "$url" submit "$out/plan.json" 2>"$out/submit.log")
"$TANDEM" --database-url "$url" apply "$id" --yes --until backfill >"$out/apply.log" 2>&1
shadow=$(psql_ "-d $DB -c 'SELECT shadow_name FROM tandem.shadow_tables'")

hashes() {   # alias, column casts -> the checksum select list
  local a=$1
  echo "count(*), coalesce(sum(coalesce(pg_catalog.hashint8extended(($a.\"aid\")$2, 1::int8), 0)
    # coalesce(pg_catalog.hashint4extended(($a.\"bid\")$3, 2::int8), 0)
    # coalesce(pg_catalog.hashint8extended(($a.\"abalance\")$2, 3::int8), 0)
    # coalesce(pg_catalog.hashbpcharextended(($a.\"filler\")$4, 4::int8), 0)), 0)::text"
}
echo "SELECT $(hashes o ::bigint ::integer '::character(84)') FROM \"public\".\"pgbench_accounts\" AS o;" >"$out/table.sql"
echo "SELECT $(hashes t '' '' '') FROM \"public\".\"$shadow\" AS t;" >"$out/shadow.sql"
chmod 644 "$out"/*.sql

one() { su postgres -c "PGOPTIONS='-c max_parallel_workers_per_gather=0' $PGBIN/psql -h $HOST -p $PORT -U postgres -X -q -At -d $DB $*" >/dev/null; }
psql_ "-d $DB -c CHECKPOINT"
secs=$((10 + ROUNDS * 30))
su postgres -c "$PGBIN/pgbench -h $HOST -p $PORT -U postgres -c 8 -j 2 -n -T $secs -l --log-prefix=$out/tx $DB" >"$out/pgbench.out" 2>&1 &
load=$!
sleep 10
for round in $(seq 1 "$ROUNDS"); do
  a=$(date +%s.%N); one "-f $out/table.sql -f $out/shadow.sql"; b=$(date +%s.%N)
  echo "one after the other|$round|$a|$b" >>"$out/marks"
  sleep 8
  a=$(date +%s.%N); one "-f $out/table.sql" & p=$!; one "-f $out/shadow.sql"; wait $p; b=$(date +%s.%N)
  echo "at once|$round|$a|$b" >>"$out/marks"
  sleep 8
done
wait "$load" || true

python3 - "$out" <<'PY'
import glob, sys
out = sys.argv[1]
tx = []
for f in glob.glob(out + "/tx*"):
    for line in open(f):
        p = line.split()
        if len(p) >= 6:
            tx.append((int(p[4]) + int(p[5]) / 1e6, int(p[2]) / 1000))
tx.sort()
def window(a, b):
    xs = sorted(lat for t, lat in tx if a <= t < b)
    if not xs:
        return 0, 0, 0, 0
    return len(xs) / (b - a), sum(1 for x in xs if x > 100), xs[-1], xs[int(len(xs) * 0.99)]
first = tx[0][0]
tps, _, mx, p99 = window(first + 1, first + 9)
print(f"load alone (its first 1-9 s): {tps:.0f} TPS, p99 {p99:.1f} ms, slowest {mx:.0f} ms")
for line in open(out + "/marks"):
    kind, r, a, b = line.strip().split("|")
    a, b = float(a), float(b)
    t, slow, mx2, p = window(a, b)
    print(f"{kind}, round {r}: {b - a:.2f} s; clients {t:.0f} TPS ({100 * t / tps:.0f} %), "
          f"p99 {p:.1f} ms, slowest {mx2:.0f} ms, {slow} over 100 ms")
PY
"$TANDEM" --database-url "$url" rollback "$id" --yes >/dev/null 2>&1 || true
psql_ "-d postgres -c 'DROP DATABASE $DB WITH (FORCE)'"
rm -rf "$out"
