#!/usr/bin/env bash
# The cost of the gates: the approval check before each phase of a real migration (read from
# the audit log, where each check records how long it took), and `tandem audit verify` /
# `export` on an audit log of $ENTRIES entries (default 100,000). Release binary; a throwaway
# PostgreSQL 15 in $PGHOST_DIR (bench/teardown.sh stops it).
#   cargo build --release -p cli && bench/gates/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
. bench/env.sh
: "${ENTRIES:=100000}"
: "${ROUNDS:=5}"
PGBIN=/usr/lib/postgresql/15/bin
if [ ! -d "$PGHOST_DIR/data" ]; then
  mkdir -p "$PGHOST_DIR" && chown postgres "$PGHOST_DIR"
  su postgres -c "$PGBIN/initdb -D $PGHOST_DIR/data -A trust >/dev/null && $PGBIN/pg_ctl -D $PGHOST_DIR/data -o '-p $PGPORT_BENCH -k $PGHOST_DIR' -l $PGHOST_DIR/log start"
fi
DB=gates_bench
URL="host=$PGHOST_DIR port=$PGPORT_BENCH user=postgres dbname=$DB"
OUT="$BENCH_DIR/gates"
rm -rf "$OUT" && mkdir -p "$OUT" && chmod 700 "$OUT"
$PSQL -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
$PSQL -d $DB -c "CREATE TABLE items (id integer PRIMARY KEY, n integer); INSERT INTO items SELECT g, g FROM generate_series(1, 100000) g; ANALYZE items"

# Three people; every phase needs two of them other than the author.
for who in alice bob carol; do
  printf 'bench passphrase %s\n' "$who" > "$OUT/$who.pass" && chmod 600 "$OUT/$who.pass"
  "$TANDEM" keygen --out "$OUT/$who.key" --passphrase-file "$OUT/$who.pass" --comment "$who" 2>/dev/null
done
{
  for who in alice bob carol; do
    printf '[[approver]]\nname = "%s"\nkeys = ["%s"]\n\n' "$who" "$(cat "$OUT/$who.key.pub")"
  done
  printf '[require]\napply = 2\nfinalize = 1\npolicy = 2\n'
} > "$OUT/policy.toml"
"$TANDEM" --database-url "$URL" policy set "$OUT/policy.toml" >/dev/null 2>&1
"$TANDEM" --database-url "$URL" plan --sql "ALTER TABLE items ALTER id TYPE bigint" -o "$OUT/plan.json" >/dev/null 2>&1 || true
t0=$(date +%s.%N)
id=$("$TANDEM" --database-url "$URL" submit "$OUT/plan.json" --key "$OUT/alice.key" --passphrase-file "$OUT/alice.pass" 2>/dev/null)
t1=$(date +%s.%N)
for who in bob carol; do
  "$TANDEM" --database-url "$URL" approve "$id" --key "$OUT/$who.key" --passphrase-file "$OUT/$who.pass" 2>/dev/null
done
t2=$(date +%s.%N)
"$TANDEM" --database-url "$URL" apply "$id" --yes 2>/dev/null
echo "submit (one key unsealed with scrypt, signed): $(echo "$t1 - $t0" | bc) s; two approvals: $(echo "$t2 - $t1" | bc) s"
echo "approval check before each phase (from the audit log's gate entries, microseconds):"
$PSQL -d $DB -At -c "SELECT body::jsonb -> 'detail' ->> 'action', body::jsonb -> 'detail' ->> 'took_us' FROM tandem.audit WHERE kind = 'gate' AND migration_id = $id ORDER BY seq" | sed 's/|/  /;s/^/  /'
$PSQL -d $DB -At -c "SELECT 'median ' || percentile_cont(0.5) WITHIN GROUP (ORDER BY (body::jsonb -> 'detail' ->> 'took_us')::float8) || ' us' FROM tandem.audit WHERE kind = 'gate' AND migration_id = $id" | sed 's/^/  /'

# The audit log grown to ENTRIES entries through the appender (the only way in).
have=$($PSQL -d $DB -At -c "SELECT count(*) FROM tandem.audit")
t0=$(date +%s.%N)
$PSQL -d $DB -c "SELECT count(tandem.audit_append(NULL, 'bench', NULL, 'entry ' || g, jsonb_build_object('g', g), NULL)) FROM generate_series(1, $ENTRIES - $have) g" >/dev/null
t1=$(date +%s.%N)
echo "appending $((ENTRIES - have)) entries in one statement: $(echo "$t1 - $t0" | bc) s"
"$TANDEM" --database-url "$URL" audit checkpoint --key "$OUT/carol.key" --passphrase-file "$OUT/carol.pass" -o "$OUT/checkpoint.json" 2>/dev/null
"$TANDEM" --database-url "$URL" audit export > "$OUT/audit.jsonl"
echo "export: $(wc -l < "$OUT/audit.jsonl") entries, $(du -h "$OUT/audit.jsonl" | cut -f1)"
for what in database file; do
  times=()
  for _ in $(seq "$ROUNDS"); do
    t0=$(date +%s.%N)
    if [ $what = database ]; then
      "$TANDEM" --database-url "$URL" audit verify --checkpoint "$OUT/checkpoint.json" 2>/dev/null
    else
      "$TANDEM" audit verify --file "$OUT/audit.jsonl" --checkpoint "$OUT/checkpoint.json" --trust "$OUT/carol.key.pub" 2>/dev/null
    fi
    t1=$(date +%s.%N)
    times+=("$(echo "$t1 - $t0" | bc)")
  done
  echo "audit verify ($what, $ENTRIES entries + 1 checkpoint), $ROUNDS rounds: ${times[*]} s; median $(printf '%s\n' "${times[@]}" | sort -n | sed -n "$(( (ROUNDS + 1) / 2 ))p") s"
done
