#!/usr/bin/env bash
# Side-by-side benchmark: change pgbench_accounts.aid and .abalance to bigint on a live table
# under `pgbench -c 8 -j 2` load, with
#   alone  : (0) the load alone, no change (a ALONE_SECS "change" that only sleeps)
#   alter  : (a) ALTER TABLE pgbench_accounts ALTER aid TYPE bigint, ALTER abalance TYPE bigint
#   tandem : (b) tandem plan / submit / apply (timed) / finalize (after the load, not timed)
#   repack : (c) pg_repack -t pgbench_accounts (reference online rewrite; it changes no type)
#
# Usage: bench/engine/run.sh [SCALE]            (SCALE default 20: 2,000,000 accounts)
# Env:   SCENARIOS="alone alter repack tandem"  subset / order (tandem only if $TANDEM exists)
#        TANDEM=<repo>/target/release/tandem    BENCH_DIR=/tmp/tandem-bench
#        PRE=5 POST=5 (s of load alone before / after the change)   ALONE_SECS=10
#        CLIENTS=8 JOBS=2   CHANGE_TIMEOUT=1800   REINIT=1 (re-create the template database)
#        KEEP_DBS=1 (keep each scenario's database)
#        TANDEM_APPLY_ARGS="--batch-pause 20"  (extra arguments for `tandem apply`)
#        TANDEM_URL_PARAMS="options=-c%20backend_flush_after%3D256kB"  (added to tandem's URL)
#        PARTITIONS=N  (pgbench_accounts range-partitioned into N; the change is abalance alone)
# Output: $BENCH_DIR/engine-SCALE.md (tables), $BENCH_DIR/engine-SCALE.json (all figures),
#         raw files (pgbench logs, progress, change output, timeline) in $BENCH_DIR/engine-SCALE/
#         (engine-SCALE-pN with PARTITIONS=N)
# Stop the cluster afterwards: bench/engine/teardown.sh
#
# Each scenario runs on its own clone (CREATE DATABASE ... TEMPLATE) of one pgbench database.
# The load: pgbench -c 8 -j 2 -n -P 1 -l --max-tries=1 --failures-detailed, started PRE s before
# the change and stopped POST s after it ends. It is stopped by terminating its backends (found
# by application_name): pgbench then exits on its own and flushes its per-transaction logs.
# (SIGINT is no good: a background job of a script ignores it, and with the default action
# pgbench dies with up to 4 KiB of each log buffered and lost.) pgbench's exit code is therefore
# 2 ("run was aborted"); clients that aborted *before* the stop are counted separately.
set -euo pipefail

SCALE=${1:-20}
[[ $SCALE =~ ^[0-9]+$ ]] || { echo "usage: $0 [SCALE]  (SCALE: a positive integer)" >&2; exit 64; }

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PGBIN=/usr/lib/postgresql/15/bin
PGDIR=/tmp/benchpg-engine          # cluster: data in $PGDIR/data, socket in $PGDIR
PORT=55470
BENCH_DIR=${BENCH_DIR:-/tmp/tandem-bench}
TANDEM=${TANDEM:-$ROOT/target/release/tandem}
PRE=${PRE:-5}
POST=${POST:-5}
ALONE_SECS=${ALONE_SECS:-10}
CLIENTS=${CLIENTS:-8}
JOBS=${JOBS:-2}
CHANGE_TIMEOUT=${CHANGE_TIMEOUT:-1800}
if [ -z "${SCENARIOS:-}" ]; then
  SCENARIOS="alone alter repack"
  if [ -x "$TANDEM" ]; then SCENARIOS="$SCENARIOS tandem"; fi
fi
# PARTITIONS=N: pgbench_accounts range-partitioned on aid into N partitions (pgbench -i
# --partitions). aid is then the partition key, whose type PostgreSQL cannot change: the change
# is abalance alone, and pg_repack repacks the tree (-I).
PARTITIONS=${PARTITIONS:-0}
if [ "$PARTITIONS" -gt 0 ]; then
  TMPL="engine_tmpl_s${SCALE}_p$PARTITIONS"
  RAW="$BENCH_DIR/engine-$SCALE-p$PARTITIONS"
  ALTER_SQL="ALTER TABLE pgbench_accounts ALTER abalance TYPE bigint"
  REPACK_TARGET=(-I pgbench_accounts)
  INIT_ARGS=(--partitions "$PARTITIONS")
  CMD_ENV="PARTITIONS=$PARTITIONS "
else
  TMPL="engine_tmpl_s$SCALE"
  RAW="$BENCH_DIR/engine-$SCALE"
  ALTER_SQL="ALTER TABLE pgbench_accounts ALTER aid TYPE bigint, ALTER abalance TYPE bigint"
  REPACK_TARGET=(-t pgbench_accounts)
  INIT_ARGS=()
  CMD_ENV=
fi

# Server settings, on the command line so a reused data directory gets them too:
#   shared_buffers=256MB  -- most of a scale-20 database (~300 MB) fits
#   max_wal_size=4GB, checkpoint_timeout=30min -- no checkpoint starts during a scenario (each
#                            table rewrite writes ~0.5 GB of WAL); run.sh checkpoints between them
#   log_lock_waits=on     -- the server log shows who waited on whom (deadlock_timeout = 1 s)
#   listen_addresses=''   -- unix socket in $PGDIR only
# Everything else is the PG15 default (fsync on, synchronous_commit on, autovacuum on,
# maintenance_work_mem 64MB, max_connections 100).
PG_OPTS="-p $PORT -k $PGDIR -c listen_addresses='' -c shared_buffers=256MB -c max_wal_size=4GB -c checkpoint_timeout=30min -c log_lock_waits=on"

log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
now() { date +%s.%N; }
sub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
# each line of stdin after the epoch it arrived at
stamp() { python3 -uc 'import sys, time
for l in sys.stdin: sys.stdout.write(f"{time.time():.3f} {l}")'; }
q()   { PGOPTIONS="-c client_min_messages=warning" "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PGDIR" -p "$PORT" -U postgres "$@"; }
qa()  { q -At "$@"; }

[ "$(id -u)" = 0 ] || die "run as root (the server is run as the postgres user via runuser)"
[ -x "$PGBIN/pgbench" ] || die "PostgreSQL 15 not found in $PGBIN"
command -v python3 >/dev/null || die "python3 is needed"
mkdir -p "$RAW"

# ------------------------------------------------------------------ cluster
start_cluster() {
  if [ ! -s "$PGDIR/data/PG_VERSION" ]; then
    log "initdb $PGDIR/data"
    mkdir -p "$PGDIR"
    chown postgres: "$PGDIR"
    runuser -u postgres -- "$PGBIN/initdb" -D "$PGDIR/data" -A trust -U postgres >/dev/null
  fi
  if runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGDIR/data" status >/dev/null 2>&1; then
    log "cluster already running in $PGDIR (port $PORT)"
  else
    log "starting PostgreSQL 15 in $PGDIR on port $PORT"
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGDIR/data" -w -t 60 -l "$PGDIR/server.log" \
      -o "$PG_OPTS" start >/dev/null || die "server did not start; see $PGDIR/server.log"
  fi
  qa -d postgres -c "SELECT 1" >/dev/null || die "cannot connect to $PGDIR:$PORT"
}

# ------------------------------------------------------------------ template database
init_template() {
  local ok=no
  if [ -z "${REINIT:-}" ] && [ "$(qa -d postgres -c "SELECT count(*) FROM pg_database WHERE datname = '$TMPL'")" = 1 ]; then
    local chk
    chk=$(qa -d "$TMPL" -c "SELECT (SELECT count(*) FROM pgbench_branches) = $SCALE
                              AND (SELECT count(*) FROM pgbench_accounts) = $SCALE * 100000
                              AND (SELECT count(*) FROM pgbench_history) = 0
                              AND (SELECT sum(abalance) FROM pgbench_accounts) = 0" 2>/dev/null || true)
    [ "$chk" = t ] && ok=yes
  fi
  if [ "$ok" = yes ]; then
    log "reusing template database $TMPL"
  else
    log "pgbench -i -s $SCALE into $TMPL"
    q -d postgres -c "DROP DATABASE IF EXISTS $TMPL WITH (FORCE)" -c "CREATE DATABASE $TMPL"
    "$PGBIN/pgbench" -h "$PGDIR" -p "$PORT" -U postgres -i -s "$SCALE" "${INIT_ARGS[@]}" -q "$TMPL" \
      >"$RAW/pgbench-init.log" 2>&1 || die "pgbench -i failed; see $RAW/pgbench-init.log"
  fi
}

# ------------------------------------------------------------------ load
LOAD_PID=""
LOAD_APP=""
stop_load() {   # prints the number of load clients still connected just before the stop
  local alive
  alive=$(qa -d postgres -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = '$LOAD_APP'")
  if [ -n "$LOAD_PID" ] && kill -0 "$LOAD_PID" 2>/dev/null; then
    qa -d postgres -c "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = '$LOAD_APP'" >/dev/null
  fi
  echo "$alive"
}
cleanup() {
  if [ -n "$LOAD_PID" ] && kill -0 "$LOAD_PID" 2>/dev/null; then
    log "stopping the load (pgbench pid $LOAD_PID)"
    stop_load >/dev/null 2>&1 || kill "$LOAD_PID" 2>/dev/null || true
    wait "$LOAD_PID" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------ checks at rest
# key=value lines with the invariant figures (prefix $2 on every key)
rest_figures() {
  local db=$1 p=${2:-}
  qa -d "$db" -F '|' -c "SELECT (SELECT sum(abalance) FROM pgbench_accounts),
                                (SELECT coalesce(sum(delta), 0) FROM pgbench_history),
                                (SELECT sum(tbalance) FROM pgbench_tellers),
                                (SELECT sum(bbalance) FROM pgbench_branches),
                                (SELECT count(*) FROM pgbench_accounts),
                                (SELECT count(*) FROM pgbench_history),
                                (SELECT string_agg(format_type(atttypid, atttypmod), ', ' ORDER BY attnum)
                                   FROM pg_attribute
                                  WHERE attrelid = 'pgbench_accounts'::regclass
                                    AND attname IN ('aid', 'abalance'))" |
    awk -F'|' -v p="$p" '{ printf "%ssum_abalance=%s\n%ssum_delta=%s\n%ssum_tbalance=%s\n%ssum_bbalance=%s\n%srows_after=%s\n%shistory_rows=%s\n%stypes_after=%s\n", p,$1,p,$2,p,$3,p,$4,p,$5,p,$6,p,$7 }'
}

# What the server did with its buffers and the disk, as counters (pg_stat_bgwriter and the
# database's blocks read), to say where slow client transactions come from: a backend that
# must write a dirty buffer out itself (buffers_backend) or read a page from outside
# shared_buffers (blks_read) waits for it; a checkpoint writes everything dirty.
io_figures() {
  qa -d "$1" -F ' ' -c "SELECT checkpoints_timed + checkpoints_req, buffers_checkpoint, buffers_clean,
                               buffers_backend, buffers_backend_fsync, buffers_alloc,
                               (SELECT blks_read FROM pg_stat_database WHERE datname = current_database()),
                               (SELECT pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint
                          FROM pg_stat_bgwriter"
}
io_delta() {   # before after -> key=value lines
  awk -v a="$1" -v b="$2" 'BEGIN {
    split(a, x, " "); split(b, y, " ");
    n = split("checkpoints buffers_checkpoint buffers_clean buffers_backend buffers_backend_fsync buffers_alloc blks_read wal_bytes", k, " ");
    for (i = 1; i <= n; i++) printf "%s=%.0f\n", k[i], y[i] - x[i] }'
}

scenario_error() {   # name, message: a result file that says why the scenario did not run
  local name=$1 msg=$2
  log "$name: $msg"
  python3 -c 'import json, sys; json.dump({"name": sys.argv[1], "error": sys.argv[2]}, open(sys.argv[3], "w"))' \
    "$name" "$msg" "$RAW/$name/result.json"
}

# ------------------------------------------------------------------ one scenario
run_scenario() {
  local name=$1 dir="$RAW/$1" db="engine_$1" url id="" change_rc=0 pg_rc=0 alive
  url="postgresql:///$db?host=$PGDIR&port=$PORT&user=postgres${TANDEM_URL_PARAMS:+&$TANDEM_URL_PARAMS}"
  rm -rf "$dir"
  mkdir -p "$dir"
  case $name in
    alone|alter|repack|tandem) ;;
    *) scenario_error "$name" "unknown scenario (alone, alter, repack, tandem)"; return 0 ;;
  esac
  if [ "$name" = tandem ] && [ ! -x "$TANDEM" ]; then
    scenario_error tandem "tandem binary not found at $TANDEM (cargo build --release, or set TANDEM)"; return 0
  fi
  if [ "$name" = repack ] && [ ! -x "$PGBIN/pg_repack" ]; then
    scenario_error repack "pg_repack not installed (apt-get update && apt-get install -y postgresql-15-repack)"; return 0
  fi

  log "== $name: cloning $TMPL into $db"
  q -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" \
                -c "CREATE DATABASE $db TEMPLATE $TMPL STRATEGY FILE_COPY"
  local rows_before
  rows_before=$(qa -d "$db" -c "SELECT count(*) FROM pgbench_accounts")

  # untimed preparation
  if [ "$name" = repack ]; then
    q -d "$db" -c "CREATE EXTENSION pg_repack"
  fi
  if [ "$name" = tandem ]; then
    local t0 t1
    t0=$(now)
    local rc=0
    "$TANDEM" --database-url "$url" plan --sql "$ALTER_SQL" -o "$dir/plan.json" >"$dir/plan.log" 2>&1 || rc=$?
    if [ "$rc" != 0 ]; then
      scenario_error tandem "tandem plan failed (exit $rc); see $dir/plan.log: $(tail -n 3 "$dir/plan.log" | tr '\n|' '  ')"; return 0
    fi
    id=$("$TANDEM" --database-url "$url" submit "$dir/plan.json" 2>"$dir/submit.log") || rc=$?
    if [ "$rc" != 0 ]; then
      scenario_error tandem "tandem submit failed (exit $rc); see $dir/submit.log: $(tail -n 3 "$dir/submit.log" | tr '\n|' '  ')"; return 0
    fi
    id=$(printf '%s' "$id" | tr -d '[:space:]')
    [[ $id =~ ^[0-9]+$ ]] || { scenario_error tandem "tandem submit printed '$id', not a migration id"; return 0; }
    t1=$(now)
    log "tandem: planned and submitted migration $id in $(sub "$t0" "$t1") s"
  fi
  q -d "$db" -c "CHECKPOINT"

  # the load
  LOAD_APP="engine_load_$name"
  local max_t=$((PRE + POST + ALONE_SECS + CHANGE_TIMEOUT + 120))
  PGAPPNAME=$LOAD_APP "$PGBIN/pgbench" -h "$PGDIR" -p "$PORT" -U postgres \
    -c "$CLIENTS" -j "$JOBS" -n -P 1 -T "$max_t" -l --log-prefix="$dir/txlog" \
    --max-tries=1 --failures-detailed "$db" >"$dir/pgbench.out" 2>"$dir/pgbench.err" &
  LOAD_PID=$!
  local load_start i=0
  while [ "$(qa -d postgres -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = '$LOAD_APP'")" -lt "$CLIENTS" ]; do
    i=$((i + 1))
    kill -0 "$LOAD_PID" 2>/dev/null || die "pgbench exited at start; see $dir/pgbench.err"
    [ "$i" -lt 100 ] || die "pgbench clients did not connect within 10 s"
    sleep 0.1
  done
  load_start=$(now)
  log "$name: load running (pgbench pid $LOAD_PID), $PRE s before the change"
  sleep "$PRE"

  # the change (timed)
  local c_start c_end io_before
  io_before=$(io_figures "$db")
  c_start=$(now)
  case $name in
    alone)  sleep "$ALONE_SECS" ;;
    alter)  timeout "$CHANGE_TIMEOUT" "$PGBIN/psql" -X -v ON_ERROR_STOP=1 -h "$PGDIR" -p "$PORT" -U postgres \
              -d "$db" -c "$ALTER_SQL" >"$dir/change.log" 2>&1 || change_rc=$? ;;
    repack) timeout "$CHANGE_TIMEOUT" "$PGBIN/pg_repack" -h "$PGDIR" -p "$PORT" -U postgres \
              -d "$db" "${REPACK_TARGET[@]}" >"$dir/change.log" 2>&1 || change_rc=$? ;;
    tandem) # its output also goes, each line after the time it came, to change.times (the
            # timeline splits the backfill there: the copy, the index builds, the drain)
            # shellcheck disable=SC2086
            timeout "$CHANGE_TIMEOUT" "$TANDEM" --database-url "$url" apply "$id" --yes ${TANDEM_APPLY_ARGS:-} 2>&1 \
              | tee "$dir/change.log" | stamp >"$dir/change.times" || change_rc=$? ;;
  esac
  c_end=$(now)
  io_delta "$io_before" "$(io_figures "$db")" >"$dir/io.txt"
  log "$name: change took $(sub "$c_start" "$c_end") s (exit $change_rc); load goes on for $POST s"
  log "$name: during the change: $(tr '\n' ' ' <"$dir/io.txt")"
  [ "$change_rc" = 0 ] || log "$name: change failed; see $dir/change.log"
  sleep "$POST"

  local load_end
  load_end=$(now)
  if kill -0 "$LOAD_PID" 2>/dev/null; then
    alive=$(stop_load)
  else
    alive=0
    log "$name: warning: pgbench had already exited (all clients aborted?)"
  fi
  wait "$LOAD_PID" || pg_rc=$?
  LOAD_PID=""
  log "$name: load stopped ($alive of $CLIENTS clients were still running; pgbench exit $pg_rc)"

  # at rest
  {
    echo "scenario=$name"
    echo "scale=$SCALE"
    echo "database=$db"
    echo "clients=$CLIENTS"
    echo "load_start=$load_start"
    echo "change_start=$c_start"
    echo "change_end=$c_end"
    echo "load_end=$load_end"
    echo "change_wall_s=$(sub "$c_start" "$c_end")"
    echo "change_rc=$change_rc"
    echo "pgbench_rc=$pg_rc"
    echo "clients_aborted=$((CLIENTS - alive))"
    echo "rows_before=$rows_before"
    sed 's/^/io_/' "$dir/io.txt"
    rest_figures "$db"
  } >"$dir/meta.env"

  local events_arg=()
  if [ "$name" = tandem ]; then
    echo "migration_id=$id" >>"$dir/meta.env"
    if qa -d "$db" -F $'\t' -c "SELECT phase, event, extract(epoch FROM at) FROM tandem.events
                                 WHERE migration_id = $id ORDER BY id" >"$dir/events.tsv" 2>"$dir/events.err"; then
      events_arg=(--events "$dir/events.tsv")
    else
      log "tandem: no phase timings from tandem.events (see $dir/events.err); using before/during/after"
    fi
    if [ "$change_rc" = 0 ]; then
      local f0 f1 f_rc=0
      f0=$(now)
      "$TANDEM" --database-url "$url" finalize "$id" --yes >"$dir/finalize.log" 2>&1 || f_rc=$?
      f1=$(now)
      log "tandem: finalize took $(sub "$f0" "$f1") s (exit $f_rc)"
      { echo "finalize_wall_s=$(sub "$f0" "$f1")"; echo "finalize_rc=$f_rc"; rest_figures "$db" final_; } >>"$dir/meta.env"
    fi
  fi
  [ "$change_rc" = 0 ] || echo "notes=change exited $change_rc: $(tail -n 2 "$dir/change.log" | tr '\n|' '  ')" >>"$dir/meta.env"

  [ -s "$dir/change.times" ] && events_arg+=(--marks "$dir/change.times")
  python3 "$HERE/analyze.py" timeline --load-start "$load_start" --change-start "$c_start" \
    --change-end "$c_end" --load-end "$load_end" "${events_arg[@]}" \
    --during-name "$([ "$name" = alone ] && echo 'during (no change)' || echo during)" \
    -o "$dir/timeline.json" >/dev/null
  python3 "$HERE/analyze.py" --name "$name" --timeline "$dir/timeline.json" --meta "$dir/meta.env" \
    --json "$dir/result.json" "$dir"/txlog.* | tee "$dir/summary.txt" >&2

  [ -n "${KEEP_DBS:-}" ] || q -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"
}

# ------------------------------------------------------------------ main
start_cluster
init_template
log "scenarios: $SCENARIOS (scale $SCALE, $CLIENTS clients, $JOBS threads, PRE=$PRE POST=$POST)"
results=()
for s in $SCENARIOS; do
  run_scenario "$s"
  results+=("$RAW/$s/result.json")
done

header="Run $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores, $(uname -r); PostgreSQL $(qa -d postgres -c 'SHOW server_version');
\`pgbench -c $CLIENTS -j $JOBS -n -P 1 -l --max-tries=1 --failures-detailed\` (TPC-B-like, scale $SCALE:
$((SCALE * 100000)) accounts), load alone for $PRE s before and $POST s after the change; server settings
shared_buffers=256MB max_wal_size=4GB checkpoint_timeout=30min, otherwise defaults.
Command: \`${CMD_ENV}SCENARIOS=\"$SCENARIOS\" bench/engine/run.sh $SCALE\`.
*longest txn* / *p99* / *>100 ms* / *failed* are over the whole run (before + change + after);
*aborted clients* left the load before it was stopped; *longest no-commit* is the longest time in
which no client committed; *TPS during* is over the whole change (for tandem, per phase below).
*written GB*: what the server's buffers wrote during the change (checkpointer, background writer
and backends, the clients' writes included; index builds write around the buffers and are not
in it); *WAL GB*: the WAL written during the change.
*invariant*: at rest, sum(abalance) = sum(delta) = sum(tbalance) = sum(bbalance) and the
pgbench_accounts row count unchanged."
python3 "$HERE/analyze.py" report --scale "$SCALE" --header "$header" \
  --out-md "$RAW.md" --out-json "$RAW.json" "${results[@]}"
log "wrote $RAW.md and $RAW.json (raw files in $RAW)"
