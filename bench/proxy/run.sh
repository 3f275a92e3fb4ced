#!/usr/bin/env bash
# tandem proxy vs pgbouncer (session mode) vs direct, on one throwaway PostgreSQL 15 cluster.
#
# Parts (all by default, in this order; PARTS="..." picks a subset):
#   memory      N idle connections (default 500) through each proxy: RSS growth per connection
#               (MEM_POOL=1: both proxies in front of a pgbouncer in transaction mode, so N
#               idle sessions hold ~20 PostgreSQL backends, not N: for N in the thousands)
#   throughput  pgbench -S and TPC-B, each -M simple and -M prepared, -c 16 -j 2 -T SECS, through
#               direct / pgbouncer / tandem, interleaved (round 1: w1 d p t, w2 d p t, ...; round 2 ...)
#   dual        pgbench -S -M prepared through tandem proxy, mirror_sample 0.0 vs 1.0, while a
#               migration of pgbench_accounts (abalance -> bigint) sits in its verify phase
#   cutover     pgbench TPC-B -M prepared -c 8 -j 2 through a proxy while `tandem apply --yes`
#               runs the same migration through cutover (tandem: with the hold; pgbouncer: none);
#               then the same with pgbench -S -M prepared -R CUT_SELECT_RATE (reads outside a
#               transaction block, rate-limited so the machine is not saturated)
#
# Usage: bench/proxy/run.sh
# Env:   ROUNDS=3 SECS=15 SCALE=10 CLIENTS=16 JOBS=2    WORKLOADS="select-simple select-prepared tpcb-simple tpcb-prepared"
#        TARGETS="direct pgbouncer tandem" (throughput)   CUT_TARGETS="tandem pgbouncer" (direct allowed)
#        CUT_WORKLOADS="tpcb select"  CUT_SELECT_RATE=10000 (pgbench -R of the -S cutover load, tps)
#        MEM_CONNS=500  MEM_POOL=0|1  CUT_CLIENTS=8  PRE=5 POST=5 (s of load before / after the apply)  WARMUP=3
#        TANDEM=<binary> (default: cargo build --release -p cli, then target/release/tandem; BUILD=0 skips the build)
#        TANDEM_WORKERS=N (the proxies' worker_threads; default: the proxy's own, one per two cores)
#        MIRROR_RATE=N (the dual part's mirror_rate, comparisons/s, 0 = no limit; default: the proxy's, 200)
#        PG_EXTRA="-c log_lock_waits=on ..." (more server options, for diagnosis)
#        SLOW_LOG_MS=50 (the tandem proxy logs each request this slow with its stages; 0: off)
#        RUNQ=1 (sample the server's backends every 5 ms during each run: how long one waited runnable for a CPU)
#        PROXY_SESSION=own (each proxy in a session of its own, as a service; shared: in this script's, beside pgbench)
#        ACTIVITY=1 (cutover: sample the load's backends in pg_stat_activity every 0.1 s, for diagnosis)
#        BENCH_DIR=/tmp/tandem-bench  REINIT=1 (re-create the pgbench template)  KEEP_DBS=1  KEEP_LOGS=1 (no gzip)
# Output: $BENCH_DIR/proxy.md (tables, also printed), $BENCH_DIR/proxy.json (all figures),
#         raw files under $BENCH_DIR/proxy/ (removed at the start of each run).
# Stop everything afterwards: bench/proxy/teardown.sh (the cluster stays up between runs).
#
# Connections: every client (pgbench, psycopg, tandem) and both proxies reach PostgreSQL over TCP
# to 127.0.0.1 with SCRAM-SHA-256 (pg_hba: scram-sha-256 for host and local; no trust anywhere).
# The password is generated into 0600 files; only their paths are passed (PGPASSFILE, the proxy's
# password_file, pgbouncer's auth_file holds the SCRAM verifier, not the password).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PGBIN=/usr/lib/postgresql/15/bin
PGDIR=/tmp/benchpg-proxy            # data/, secrets/ (root 0700), pgbouncer/ (postgres 0700), run/ (pid files)
# Ports below the ephemeral range (32768-60999 here): with hundreds of client connections
# a port in it can be taken as some connection's local port just when a proxy starts.
PORT=15480                          # PostgreSQL (127.0.0.1 and a socket in $PGDIR)
PGB_PORT=15481                      # pgbouncer
TP_PORT=15482;  TP_METRICS=15492    # tandem proxy for throughput and memory (upstream db proxy_tp)
D1_PORT=15483;  D1_METRICS=15493    # tandem proxy, mirror_sample = 1.0 (upstream db proxy_dual)
D0_PORT=15484;  D0_METRICS=15494    # tandem proxy, mirror_sample = 0.0 (upstream db proxy_dual)
CT_PORT=15485;  CT_METRICS=15495    # tandem proxy for a cutover (upstream db proxy_cut_<workload>_tandem)
POOL_PORT=15486                     # MEM_POOL=1: pgbouncer in transaction mode, the memory part's upstream
MEM_PORT=15487; MEM_METRICS=15497   # MEM_POOL=1: tandem proxy for the memory part (upstream: the pool)

BENCH_DIR=${BENCH_DIR:-/tmp/tandem-bench}
RAW="$BENCH_DIR/proxy"
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-15}
SCALE=${SCALE:-10}
CLIENTS=${CLIENTS:-16}
JOBS=${JOBS:-2}
WORKLOADS=${WORKLOADS:-"select-simple select-prepared tpcb-simple tpcb-prepared"}
TARGETS=${TARGETS:-"direct pgbouncer tandem"}
CUT_TARGETS=${CUT_TARGETS:-"tandem pgbouncer"}
CUT_WORKLOADS=${CUT_WORKLOADS:-"tpcb select"}
CUT_SELECT_RATE=${CUT_SELECT_RATE:-10000}
CUT_CLIENTS=${CUT_CLIENTS:-8}
MEM_CONNS=${MEM_CONNS:-500}
MEM_POOL=${MEM_POOL:-0}
PRE=${PRE:-5}
POST=${POST:-5}
WARMUP=${WARMUP:-3}
SLOW_LOG_MS=${SLOW_LOG_MS:-50}   # the tandem proxy logs requests this slow with their stages (0: off)
# PROXY_SESSION=shared starts both proxies in this script's session, beside pgbench (as before
# 2026-12-06), to show what that does to the tails; own (the default): a session each
case ${PROXY_SESSION:=own} in own) OWN_SESSION=setsid ;; shared) OWN_SESSION= ;; *) echo "PROXY_SESSION is own or shared" >&2; exit 64 ;; esac
APPLY_TIMEOUT=${APPLY_TIMEOUT:-900}
PARTS=${PARTS:-"memory throughput dual cutover"}
ALTER_SQL="ALTER TABLE pgbench_accounts ALTER COLUMN abalance TYPE bigint"
TMPL="proxy_tmpl_s$SCALE"

# Server settings (command line, so a reused data directory gets them too): shared_buffers holds
# the whole scale-10 database; no timed checkpoint during a run (run.sh checkpoints before each);
# max_connections covers MEM_CONNS idle sessions through one proxy at a time plus the rest
# (with MEM_POOL=1 they share the pool's 20 server connections).
if [ "$MEM_POOL" = 1 ]; then PG_MAX_CONN=300; else PG_MAX_CONN=$((MEM_CONNS + 150)); fi
PG_OPTS="-p $PORT -k $PGDIR -c listen_addresses=127.0.0.1 -c max_connections=$PG_MAX_CONN -c shared_buffers=256MB -c max_wal_size=4GB -c checkpoint_timeout=30min${PG_EXTRA:+ $PG_EXTRA}"

log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
now() { date +%s.%N; }
[[ ${TANDEM_WORKERS:-1} =~ ^[1-9][0-9]*$ ]] || die "TANDEM_WORKERS must be a positive integer"
[[ ${MIRROR_RATE:-0} =~ ^[0-9]+$ ]] || die "MIRROR_RATE must be a non-negative integer"
for v in ROUNDS SECS SCALE CLIENTS JOBS CUT_CLIENTS CUT_SELECT_RATE MEM_CONNS PRE POST WARMUP; do
  [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer (it is '${!v}')"
done
[[ $MEM_POOL =~ ^[01]$ ]] || die "MEM_POOL is 0 or 1 (it is '$MEM_POOL')"
# Each idle session holds two descriptors in a proxy (the client's socket and its server
# connection's), and the proxies inherit this shell's limit; ~30 more for listeners, the
# runtime, the control connection and logs.
FD_LIMIT=$(ulimit -n)
if [[ " $PARTS " == *" memory "* ]] && [ "$FD_LIMIT" != unlimited ] && [ $((MEM_CONNS * 2 + 30)) -gt "$FD_LIMIT" ]; then
  die "MEM_CONNS=$MEM_CONNS needs $((MEM_CONNS * 2 + 30)) file descriptors per proxy, and ulimit -n is $FD_LIMIT: raise it (ulimit -n N, up to ulimit -Hn = $(ulimit -Hn)) or set MEM_CONNS to at most $(((FD_LIMIT - 30) / 2))"
fi
[ "$(id -u)" = 0 ] || die "run as root (PostgreSQL and pgbouncer run as the postgres user)"
[ -x "$PGBIN/pgbench" ] || die "PostgreSQL 15 not found in $PGBIN"
command -v pgbouncer >/dev/null || die "pgbouncer not installed (apt-get install -y pgbouncer)"
command -v setpriv >/dev/null || die "setpriv (util-linux) is needed"
python3 -c 'import psycopg' 2>/dev/null || die "python3 with psycopg is needed (memory part)"

export PGSSLMODE=disable            # every client alike: no SSLRequest round trip (no TLS anywhere)
export PGPASSFILE="$PGDIR/secrets/pgpass"
unset PGPASSWORD PGHOST PGPORT PGUSER PGDATABASE DATABASE_URL
q()  { PGOPTIONS="-c client_min_messages=warning" "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres "$@"; }
qa() { q -At "$@"; }
url() { echo "postgresql://postgres@127.0.0.1:$PORT/$1"; }

# ------------------------------------------------------------------ processes we start
# Each long-lived process has a pid file in $PGDIR/run; we stop them by that pid only, after
# checking that the pid still runs the program we started (pid reuse).
RUNDIR="$PGDIR/run"
stop_pidfile() {   # pidfile, expected substring of /proc/PID/cmdline
  local f=$1 want=$2 pid i
  [ -s "$f" ] || return 0
  pid=$(cat "$f")
  if [[ $pid =~ ^[0-9]+$ ]] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$want"; then
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then log "pid $pid did not stop on SIGTERM in 10 s: SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; fi
  fi
  rm -f "$f"
}
stop_all_ours() {
  local f
  for f in "$RUNDIR"/tandem-*.pid; do
    if [ -e "$f" ]; then stop_pidfile "$f" "proxy --listen 127.0.0.1:"; fi
  done
  if [ -e "$RUNDIR/pgbouncer.pid" ]; then stop_pidfile "$RUNDIR/pgbouncer.pid" "$PGDIR/pgbouncer/pgbouncer.ini"; fi
  if [ -e "$RUNDIR/pool.pid" ]; then stop_pidfile "$RUNDIR/pool.pid" "$PGDIR/pool/pool.ini"; fi
  if [ -e "$RUNDIR/vmstat.pid" ]; then stop_pidfile "$RUNDIR/vmstat.pid" "vmstat -n -t 1"; fi
  return 0
}
LOAD_PID=""
LOAD_APP=""
LOAD_DB=""
cleanup() {
  if [ -n "$LOAD_PID" ] && kill -0 "$LOAD_PID" 2>/dev/null; then
    log "stopping the load (pgbench pid $LOAD_PID)"
    stop_load >/dev/null 2>&1 || kill "$LOAD_PID" 2>/dev/null || true
    wait "$LOAD_PID" 2>/dev/null || true
  fi
  stop_all_ours
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_port() {   # port, what, pid: until something answers pg_isready on 127.0.0.1:port
  local i
  for i in $(seq 1 100); do
    "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$1" -t 1 >/dev/null 2>&1 && return 0
    kill -0 "$3" 2>/dev/null || die "$2 exited at start; see its log in $RAW"
    sleep 0.1
  done
  die "$2 does not answer on 127.0.0.1:$1 after 10 s"
}

# ------------------------------------------------------------------ the tandem binary
BUILT_NOTE=""
if [ -z "${TANDEM:-}" ]; then
  TANDEM="$ROOT/target/release/tandem"
  if [ "${BUILD:-1}" != 0 ]; then
    log "cargo build --release -p cli (skip with BUILD=0)"
    (cd "$ROOT" && cargo build --release -p cli) >&2 || die "cargo build --release -p cli failed"
    BUILT_NOTE="built by run.sh"
  fi
fi
[ -x "$TANDEM" ] || die "tandem binary not found at $TANDEM (cargo build --release -p cli, or set TANDEM)"

# ------------------------------------------------------------------ cluster and secrets
start_cluster() {
  mkdir -p "$PGDIR"
  chown postgres: "$PGDIR"
  chmod 0755 "$PGDIR"
  install -d -m 0700 -o root -g root "$PGDIR/secrets"
  install -d -m 0755 -o root -g root "$RUNDIR"
  if [ ! -s "$PGDIR/data/PG_VERSION" ] || [ ! -s "$PGDIR/secrets/password" ]; then
    log "initdb $PGDIR/data (scram-sha-256 for host and local connections, generated password)"
    if runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGDIR/data" status >/dev/null 2>&1; then
      runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGDIR/data" -m fast -w stop >/dev/null
    fi
    rm -rf "$PGDIR/data"
    ( umask 077; python3 -c 'import secrets; print(secrets.token_hex(24))' >"$PGDIR/secrets/password" )
    # initdb (run as postgres) reads the password from a file only it can read; removed after.
    install -m 0600 -o postgres -g postgres "$PGDIR/secrets/password" "$PGDIR/initdb.pw"
    runuser -u postgres -- "$PGBIN/initdb" -D "$PGDIR/data" -U postgres --pwfile="$PGDIR/initdb.pw" \
      --auth-host=scram-sha-256 --auth-local=scram-sha-256 >/dev/null
    rm -f "$PGDIR/initdb.pw"
  fi
  # libpq password file for every client of the benchmark (root, 0600): any port on 127.0.0.1
  ( umask 077; printf '127.0.0.1:*:*:postgres:%s\n' "$(cat "$PGDIR/secrets/password")" >"$PGPASSFILE" )
  # A server left running by an earlier run is restarted: its settings (max_connections follows
  # MEM_CONNS) may differ, and every run starts from the same cold server state.
  if runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGDIR/data" status >/dev/null 2>&1; then
    log "restarting the cluster in $PGDIR (left running by an earlier run)"
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGDIR/data" -m fast -w stop >/dev/null
  fi
  log "starting PostgreSQL 15 in $PGDIR on 127.0.0.1:$PORT"
  runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGDIR/data" -w -t 60 -l "$PGDIR/server.log" \
    -o "$PG_OPTS" start >/dev/null || die "server did not start; see $PGDIR/server.log"
  qa -d postgres -c "SELECT 1" >/dev/null || die "cannot connect to 127.0.0.1:$PORT with the password file"
}

init_template() {
  local ok=no chk
  if [ -z "${REINIT:-}" ] && [ "$(qa -d postgres -c "SELECT count(*) FROM pg_database WHERE datname = '$TMPL'")" = 1 ]; then
    chk=$(qa -d "$TMPL" -c "SELECT (SELECT count(*) FROM pgbench_branches) = $SCALE
                              AND (SELECT count(*) FROM pgbench_accounts) = $SCALE * 100000
                              AND (SELECT count(*) FROM pgbench_history) = 0" 2>/dev/null || true)
    [ "$chk" = t ] && ok=yes
  fi
  if [ "$ok" = yes ]; then
    log "reusing template database $TMPL"
  else
    log "pgbench -i -s $SCALE into $TMPL"
    q -d postgres -c "DROP DATABASE IF EXISTS $TMPL WITH (FORCE)" -c "CREATE DATABASE $TMPL"
    "$PGBIN/pgbench" -h 127.0.0.1 -p "$PORT" -U postgres -i -s "$SCALE" -q "$TMPL" \
      >"$RAW/pgbench-init.log" 2>&1 || die "pgbench -i failed; see $RAW/pgbench-init.log"
    q -d "$TMPL" -c "VACUUM ANALYZE"
  fi
}

clone() {   # db: a fresh copy of the template
  q -d postgres -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" \
                -c "CREATE DATABASE $1 TEMPLATE $TMPL STRATEGY FILE_COPY"
}

# ------------------------------------------------------------------ pgbouncer
# run_pgbouncer NAME PORT MODE POOL_SIZE MAX_CLIENTS 'DATABASE LINE'...: writes
# $PGDIR/NAME/NAME.ini (auth_file: the userlist.txt beside it), starts pgbouncer on it as
# postgres, its pid in $RUNDIR/NAME.pid, and waits until it answers.
run_pgbouncer() {
  local name=$1 port=$2 mode=$3 pool=$4 clients=$5; shift 5
  local d="$PGDIR/$name" line
  {
    echo "[databases]"
    for line in "$@"; do echo "$line"; done
    echo
    echo "[pgbouncer]"
    echo "listen_addr = 127.0.0.1"
    echo "listen_port = $port"
    echo "unix_socket_dir ="
    echo "auth_type = scram-sha-256"
    echo "auth_file = $d/userlist.txt"
    echo "pool_mode = $mode"
    echo "default_pool_size = $pool"
    echo "max_client_conn = $clients"
    echo "server_reset_query = DISCARD ALL"
    echo "client_tls_sslmode = disable"
    echo "server_tls_sslmode = disable"
    echo "log_connections = 0"
    echo "log_disconnections = 0"
    echo "logfile = $d/$name.log"
    echo "pidfile = $d/$name.pid"
  } >"$d/$name.ini"
  chown postgres:postgres "$d/$name.ini"
  chmod 0600 "$d/$name.ini"
  # setpriv execs pgbouncer as postgres (no forking wrapper): $! is pgbouncer's pid. In a
  # session of its own (setsid, which execs too), as each tandem proxy and the server: see
  # own_session below.
  $OWN_SESSION setpriv --reuid=postgres --regid=postgres --init-groups -- pgbouncer "$d/$name.ini" \
    >"$RAW/$name.out" 2>&1 &
  echo $! >"$RUNDIR/$name.pid"
  wait_port "$port" "pgbouncer ($name)" "$(cat "$RUNDIR/$name.pid")"
}

start_pgbouncer() {
  local d="$PGDIR/pgbouncer"
  install -d -m 0700 -o postgres -g postgres "$d"
  # auth_file: the SCRAM verifier from pg_authid (the same salt and iterations as the server's,
  # so pgbouncer can also log in to the server with the client's proof: SCRAM pass-through).
  ( umask 077
    qa -d postgres -c "SELECT format('\"%s\" \"%s\"', rolname, rolpassword) FROM pg_authid WHERE rolname = 'postgres'" \
      >"$d/userlist.txt" )
  grep -q '"SCRAM-SHA-256\$' "$d/userlist.txt" || die "no SCRAM verifier for postgres in pg_authid"
  chown postgres:postgres "$d/userlist.txt"
  local dbs=()
  [ "$MEM_POOL" != 1 ] || dbs+=("proxy_tp_pooled = host=127.0.0.1 port=$POOL_PORT dbname=proxy_tp")
  dbs+=("* = host=127.0.0.1 port=$PORT")
  # session mode: one server connection per client; room for MEM_CONNS idle clients at once
  run_pgbouncer pgbouncer "$PGB_PORT" session $((MEM_CONNS + 50)) $((MEM_CONNS * 2 + 100)) "${dbs[@]}"
  log "pgbouncer $(pgbouncer --version | head -1 | awk '{print $2}') (pid $(cat "$RUNDIR/pgbouncer.pid")) on 127.0.0.1:$PGB_PORT, session mode"
}

# MEM_POOL=1: the pooler both proxies of the memory part reach PostgreSQL through, in
# transaction mode, so MEM_CONNS idle sessions share its 20 server connections (PostgreSQL
# could not hold 10,000 backends on this machine). Its own directory, ini and pid file.
start_pool() {
  local d="$PGDIR/pool"
  install -d -m 0700 -o postgres -g postgres "$d"
  install -m 0600 -o postgres -g postgres "$PGDIR/pgbouncer/userlist.txt" "$d/userlist.txt"
  run_pgbouncer pool "$POOL_PORT" transaction 20 $((MEM_CONNS + 100)) "proxy_tp = host=127.0.0.1 port=$PORT"
  log "pgbouncer (pid $(cat "$RUNDIR/pool.pid")) on 127.0.0.1:$POOL_PORT, transaction mode, 20 server connections: the memory part's upstream"
}

# ------------------------------------------------------------------ tandem proxy
# Each proxy runs in a session of its own (setsid), as PostgreSQL does (pg_ctl) and as a service
# manager would run it. The kernel's autogroup scheduling (kernel.sched_autogroup_enabled = 1
# here) shares the CPU between sessions first: a proxy started in this script's session would
# share one share with pgbench's threads while the server's backends shared another, and
# backends then waited runnable for 80-300 ms at a time (BENCHMARKS §6, 2026-12-06 tails).
start_tandem() {   # name, port, metrics port, upstream db, mirror_sample (empty: default), upstream port (default: PostgreSQL's)
  local name=$1 port=$2 mport=$3 db=$4 sample=${5:-} uport=${6:-$PORT} cfg="$PGDIR/secrets/$1.toml" pid
  ( umask 077
    echo "password_file = \"$PGDIR/secrets/password\"" >"$cfg"
    # through a pooler, tandem's own connections (LISTEN, the registration) go to PostgreSQL
    if [ "$uport" != "$PORT" ]; then echo "control_upstream = \"postgres://postgres@127.0.0.1:$PORT/$db\"" >>"$cfg"; fi
    if [ -n "$sample" ]; then echo "mirror_sample = $sample" >>"$cfg"; fi
    if [ -n "${TANDEM_WORKERS:-}" ]; then echo "worker_threads = $TANDEM_WORKERS" >>"$cfg"; fi
    # Requests this slow are logged with their stages (the proxy's log, beside pgbench's).
    # (not written when 0, so binaries older than the setting run too)
    if [ "$SLOW_LOG_MS" != 0 ]; then echo "log_slow_requests_ms = $SLOW_LOG_MS" >>"$cfg"; fi
    # Room for the memory part's idle connections (the proxy's default is 1,000).
    if [ "$MEM_CONNS" -gt 900 ]; then echo "max_connections = $((MEM_CONNS + 100))" >>"$cfg"; fi
    if [ -n "$sample" ] && [ -n "${MIRROR_RATE:-}" ]; then echo "mirror_rate = $MIRROR_RATE" >>"$cfg"; fi )
  # default log level (info: start, registration, holds; no per-session or per-query lines)
  $OWN_SESSION "$TANDEM" proxy --listen "127.0.0.1:$port" --upstream "postgres://postgres@127.0.0.1:$uport/$db" \
    --config "$cfg" --metrics "127.0.0.1:$mport" >"$RAW/tandem-$name.log" 2>&1 &
  pid=$!
  echo "$pid" >"$RUNDIR/tandem-$name.pid"
  wait_port "$port" "tandem proxy $name" "$pid"
  log "tandem proxy $name (pid $pid) on 127.0.0.1:$port -> $db${sample:+, mirror_sample = $sample}$([ "$uport" = "$PORT" ] || echo ", through 127.0.0.1:$uport")"
}
stop_tandem() { stop_pidfile "$RUNDIR/tandem-$1.pid" "proxy --listen 127.0.0.1:"; }
tandem_pid() { cat "$RUNDIR/tandem-$1.pid"; }
wait_registered() {   # db, pid: the proxy is in tandem.proxies with a fresh heartbeat
  local i
  for i in $(seq 1 100); do
    [ "$(qa -d "$1" -c "SELECT count(*) FROM tandem.proxies WHERE pid = $2 AND heartbeat_at > now() - interval '5 seconds'" 2>/dev/null)" = 1 ] && return 0
    sleep 0.1
  done
  die "tandem proxy pid $2 did not register in $1.tandem.proxies within 10 s"
}
metrics() { curl -fsS --max-time 5 "http://127.0.0.1:$1/metrics" || true; }

port_of() {
  case $1 in
    direct) echo "$PORT" ;; pgbouncer) echo "$PGB_PORT" ;; tandem) echo "$TP_PORT" ;;
    *) die "unknown target $1" ;;
  esac
}
pid_of() {   # the proxy process whose CPU time is recorded (none for direct)
  case $1 in
    pgbouncer) cat "$RUNDIR/pgbouncer.pid" ;; tandem) tandem_pid tp ;; tandem-*) tandem_pid "${1#tandem-}" ;; *) echo "" ;;
  esac
}
cpu_ticks() {   # utime + stime of pid, in clock ticks ("" without a pid)
  [ -n "$1" ] && [ -r "/proc/$1/stat" ] || { echo ""; return 0; }
  awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}

# CPU of every process, to tell afterwards how much went to processes outside the benchmark
# (descendants of this script and of the postmaster are ours)
cpu_snapshot() {
  python3 "$HERE/cpu_probe.py" snapshot "$1" --root $$ --root "$(head -n 1 "$PGDIR/data/postmaster.pid")" ||
    rm -f "$1"
}

# ------------------------------------------------------------------ one pgbench run
# run_pgbench DIR PORT DB WORKLOAD SECS CLIENTS PID [KEY=VALUE ...]: writes DIR/run.json
run_pgbench() {
  local dir=$1 port=$2 db=$3 wl=$4 secs=$5 clients=$6 pid=$7; shift 7
  local mode script=() rc=0 c0 c1 l0 l1 t0 t1
  mkdir -p "$dir"
  case $wl in
    select-simple)   mode=simple;   script=(-S) ;;
    select-prepared) mode=prepared; script=(-S) ;;
    tpcb-simple)     mode=simple ;;
    tpcb-prepared)   mode=prepared ;;
    *) die "unknown workload $wl" ;;
  esac
  # the same starting point for every target: no history, vacuumed tellers/branches, a checkpoint
  if [[ $wl == tpcb-* ]]; then
    q -d "$db" -c "TRUNCATE pgbench_history" -c "VACUUM pgbench_branches, pgbench_tellers"
  fi
  q -d "$db" -c "CHECKPOINT"
  cpu_snapshot "$dir/cpu.before"
  l0=$(cut -d' ' -f1 /proc/loadavg); c0=$(cpu_ticks "$pid"); t0=$(now)
  local runq=""
  if [ -n "${RUNQ:-}" ]; then
    python3 "$HERE/runq.py" sample --db "$db" --secs "$secs" --out "$dir/runq.raw" &
    runq=$!
  fi
  PGAPPNAME="bench_$wl" "$PGBIN/pgbench" -h 127.0.0.1 -p "$port" -U postgres -n -M "$mode" "${script[@]}" \
    -c "$clients" -j "$JOBS" -T "$secs" -P 5 -l --log-prefix="$dir/txlog" --failures-detailed "$db" \
    >"$dir/pgbench.out" 2>"$dir/pgbench.err" || rc=$?
  t1=$(now); c1=$(cpu_ticks "$pid"); l1=$(cut -d' ' -f1 /proc/loadavg)
  cpu_snapshot "$dir/cpu.after"
  python3 "$HERE/analyze.py" run --out "$dir/run.json" --pgbench-out "$dir/pgbench.out" \
    --pgbench-err "$dir/pgbench.err" --cpu "$dir/cpu.before" "$dir/cpu.after" \
    --set workload="$wl" mode="$mode" clients="$clients" secs="$secs" pgbench_rc="$rc" \
          start="$t0" end="$t1" loadavg_before="$l0" loadavg_after="$l1" \
          proxy_cpu_ticks="${c0:+$((c1 - c0))}" clk_tck="$(getconf CLK_TCK)" "$@" \
    --logs "$dir"/txlog.* >/dev/null
  if [ -n "$runq" ]; then
    wait "$runq" || true
    python3 "$HERE/runq.py" summary --raw "$dir/runq.raw" >"$dir/runq.json" && gzip -f "$dir/runq.raw"
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); r["runq"]=json.load(open(sys.argv[2])); json.dump(r, open(sys.argv[1], "w"), indent=1)' "$dir/run.json" "$dir/runq.json"
  fi
  [ -n "${KEEP_LOGS:-}" ] || gzip -f "$dir"/txlog.*
  return 0
}
summary() {   # one line about DIR/run.json
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("%s tps, p99 %s ms, failed %s, aborted clients %s" % (r["tps"], r["lat_p99_ms"], r["failed"], r["clients_aborted"]))' "$1/run.json"
}

# ------------------------------------------------------------------ memory
part_memory() {
  local t pid port db
  mkdir -p "$RAW/memory"
  for t in tandem pgbouncer; do
    pid=$(pid_of "$t"); port=$(port_of "$t"); db=proxy_tp
    if [ "$MEM_POOL" = 1 ]; then
      case $t in tandem) pid=$(tandem_pid mem); port=$MEM_PORT ;; pgbouncer) db=proxy_tp_pooled ;; esac
    fi
    log "memory: $MEM_CONNS idle connections through $t (pid $pid)$([ "$MEM_POOL" = 1 ] && echo ", in front of the pool")"
    python3 "$HERE/idle_conns.py" --port "$port" --dbname "$db" --pid "$pid" \
      -n "$MEM_CONNS" --name "$t" --out "$RAW/memory/$t.json" >&2 ||
      log "memory: $t failed (see above)"
    # pgbouncer keeps the server connections of the closed clients in its pool (for
    # server_idle_timeout, 10 min): end them, so the parts after this one do not run beside
    # MEM_CONNS idle backends (pgbouncer drops a server connection the server closed)
    # (pgbouncer's DISCARD ALL has reset their application_name to '')
    sleep 1
    qa -d postgres -c "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                        WHERE datname = 'proxy_tp' AND backend_type = 'client backend'
                          AND application_name IN ('bench_idle', '')" >/dev/null ||
      log "memory: could not end the idle server connections"
  done
  sleep 1
  log "memory: $(qa -d postgres -c "SELECT count(*) FROM pg_stat_activity WHERE datname = 'proxy_tp' AND backend_type = 'client backend' AND application_name IN ('bench_idle', '')") idle benchmark connections left on the server"
}

# ------------------------------------------------------------------ throughput
part_throughput() {
  local r w t
  q -d proxy_tp -c "CREATE EXTENSION IF NOT EXISTS pg_prewarm" \
    -c "SELECT pg_prewarm(c) FROM unnest(ARRAY['pgbench_accounts', 'pgbench_accounts_pkey', 'pgbench_branches', 'pgbench_tellers']::regclass[]) c" >/dev/null
  if [ "$WARMUP" -gt 0 ]; then
    for t in $TARGETS; do
      log "warm-up: $WARMUP s of select-prepared through $t (not recorded)"
      run_pgbench "$RAW/warmup/$t" "$(port_of "$t")" proxy_tp select-prepared "$WARMUP" "$CLIENTS" "$(pid_of "$t")" target="$t"
    done
  fi
  for r in $(seq 1 "$ROUNDS"); do
    for w in $WORKLOADS; do
      for t in $TARGETS; do
        local d="$RAW/throughput/r$r-$w-$t"
        mkdir -p "$d"
        [ "$t" = tandem ] && metrics "$TP_METRICS" >"$d/metrics.before"
        run_pgbench "$d" "$(port_of "$t")" proxy_tp "$w" "$SECS" "$CLIENTS" "$(pid_of "$t")" target="$t" round="$r"
        if [ "$t" = tandem ]; then
          metrics "$TP_METRICS" >"$d/metrics.after"
          python3 "$HERE/analyze.py" stages --run "$d/run.json" --metrics-before "$d/metrics.before" --metrics-after "$d/metrics.after"
        fi
        log "round $r/$ROUNDS $w $t: $(summary "$d")"
      done
    done
  done
}

# ------------------------------------------------------------------ plan, submit
plan_submit() {   # db, dir: prints the migration id
  local db=$1 dir=$2 id rc=0
  mkdir -p "$dir"
  "$TANDEM" --database-url "$(url "$db")" plan --sql "$ALTER_SQL" -o "$dir/plan.json" >"$dir/plan.log" 2>&1 ||
    die "tandem plan failed on $db; see $dir/plan.log"
  id=$("$TANDEM" --database-url "$(url "$db")" submit "$dir/plan.json" 2>"$dir/submit.log") || rc=$?
  [ "$rc" = 0 ] || die "tandem submit failed (exit $rc) on $db; see $dir/submit.log"
  id=$(printf '%s' "$id" | tr -d '[:space:]')
  [[ $id =~ ^[0-9]+$ ]] || die "tandem submit printed '$id', not a migration id"
  echo "$id"
}

# ------------------------------------------------------------------ dual reads
dual_counters() {   # db, proxy pid: comparisons|mismatches|skipped|dropped (tandem.dual_reads)
  qa -d "$1" -F '|' -c "SELECT coalesce(sum(d.comparisons), 0), coalesce(sum(d.mismatches), 0),
                               coalesce(sum(d.skipped), 0), coalesce(sum(d.dropped), 0)
                          FROM tandem.dual_reads d JOIN tandem.proxies p ON p.id = d.proxy_id
                         WHERE p.pid = $2"
}
part_dual() {
  local dir="$RAW/dual" id r s pid port mport rd before after rc=0
  mkdir -p "$dir"
  log "dual: plan, submit and apply --until verify on proxy_dual ($ALTER_SQL)"
  id=$(plan_submit proxy_dual "$dir")
  "$TANDEM" --database-url "$(url proxy_dual)" apply "$id" --until verify --yes >"$dir/apply.log" 2>&1 || rc=$?
  [ "$rc" = 0 ] || die "tandem apply --until verify failed (exit $rc); see $dir/apply.log"
  [ "$(qa -d proxy_dual -c "SELECT count(*) FROM tandem.mirror_targets WHERE migration_id = $id")" -ge 1 ] ||
    die "no mirror target for migration $id after verify: dual reads would compare nothing (see $dir/apply.log)"
  qa -d proxy_dual -c "SELECT phase FROM tandem.migrations WHERE id = $id" >"$dir/phase.txt"
  q -d proxy_dual -c "CREATE EXTENSION IF NOT EXISTS pg_prewarm" \
    -c "SELECT pg_prewarm(c) FROM unnest(ARRAY['pgbench_accounts', 'pgbench_accounts_pkey']::regclass[]) c" >/dev/null
  start_tandem d100 "$D1_PORT" "$D1_METRICS" proxy_dual 1.0
  start_tandem d0 "$D0_PORT" "$D0_METRICS" proxy_dual 0.0
  cp "$PGDIR/secrets/d100.toml" "$dir/d100.toml"   # no secret in it: the password file's path
  wait_registered proxy_dual "$(tandem_pid d100)"
  wait_registered proxy_dual "$(tandem_pid d0)"
  sleep 1   # the keepers load tandem.mirror_targets at start
  for r in $(seq 1 "$ROUNDS"); do
    for s in d0 d100; do
      pid=$(tandem_pid "$s")
      port=$([ "$s" = d0 ] && echo "$D0_PORT" || echo "$D1_PORT")
      mport=$([ "$s" = d0 ] && echo "$D0_METRICS" || echo "$D1_METRICS")
      rd="$dir/r$r-$s"
      mkdir -p "$rd"
      before=$(dual_counters proxy_dual "$pid"); metrics "$mport" >"$rd/metrics.before"
      run_pgbench "$rd" "$port" proxy_dual select-prepared "$SECS" "$CLIENTS" "$pid" \
        target="tandem-$s" round="$r" mirror_sample="$([ "$s" = d0 ] && echo 0.0 || echo 1.0)"
      metrics "$mport" >"$rd/metrics.after"
      sleep 2.5   # the keeper adds its counters to tandem.dual_reads every second
      after=$(dual_counters proxy_dual "$pid")
      python3 "$HERE/analyze.py" dual-counters --run "$rd/run.json" --db-before "$before" --db-after "$after" \
        --metrics-before "$rd/metrics.before" --metrics-after "$rd/metrics.after"
      log "dual round $r/$ROUNDS sample $([ "$s" = d0 ] && echo 0 || echo 100) %: $(summary "$rd"); $(python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))["dual"]; print("compared %s, dropped %s, skipped %s, mismatches %s (proxy metrics: sampled %s)" % (d["db"]["comparisons"], d["db"]["dropped"], d["db"]["skipped"], d["db"]["mismatches"], d["metrics"].get("dual_read_sampled_total")))' "$rd/run.json")"
    done
  done
  "$TANDEM" --database-url "$(url proxy_dual)" status "$id" --json >"$dir/status.json" 2>"$dir/status.err" || true
  qa -d proxy_dual -c "SELECT coalesce(json_agg(d), '[]') FROM (SELECT d.*, p.pid FROM tandem.dual_reads d LEFT JOIN tandem.proxies p ON p.id = d.proxy_id) d" >"$dir/dual_reads.json"
  qa -d proxy_dual -c "SELECT count(*) FROM tandem.drift WHERE migration_id = $id" >"$dir/drift_rows.txt"
  stop_tandem d100
  stop_tandem d0
}

# ------------------------------------------------------------------ cutover under load
stop_load() {   # prints the number of load clients connected just before the stop
  local alive
  alive=$(qa -d "$LOAD_DB" -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = '$LOAD_APP'")
  if [ -n "$LOAD_PID" ] && kill -0 "$LOAD_PID" 2>/dev/null; then
    qa -d "$LOAD_DB" -c "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = '$LOAD_APP'" >/dev/null
  fi
  echo "$alive"
}
part_cutover_one() {   # workload (tpcb | select), target (tandem | pgbouncer | direct)
  local w=$1 t=$2 db="proxy_cut_$1_$2" dir="$RAW/cutover/$1-$2" id port pid="" rc=0 pg_rc=0 alive i script=()
  # -S is rate-limited: at saturation on 2 cores the OS scheduler starves whole sessions for
  # seconds now and then (through either proxy, never direct), which would hide the hold
  [ "$w" = select ] && script=(-S -R "$CUT_SELECT_RATE")
  [ "$w" = tpcb ] || [ "$w" = select ] || die "unknown cutover workload $w (tpcb, select)"
  mkdir -p "$dir"
  id=$(plan_submit "$db" "$dir")
  case $t in
    tandem)
      start_tandem cut "$CT_PORT" "$CT_METRICS" "$db"
      pid=$(tandem_pid cut)
      wait_registered "$db" "$pid"
      port=$CT_PORT ;;
    pgbouncer) port=$PGB_PORT; pid=$(pid_of pgbouncer) ;;
    direct) port=$PORT ;;
    *) die "unknown cutover target $t (tandem, pgbouncer, direct)" ;;
  esac
  q -d "$db" -c "CHECKPOINT"
  LOAD_APP="bench_cut_${w}_$t"; LOAD_DB=$db
  local max_t=$((PRE + POST + APPLY_TIMEOUT + 60)) l0 c0 t_load t_a0 t_a1 t_end
  cpu_snapshot "$dir/cpu.before"
  l0=$(cut -d' ' -f1 /proc/loadavg); c0=$(cpu_ticks "$pid")
  PGAPPNAME=$LOAD_APP "$PGBIN/pgbench" -h 127.0.0.1 -p "$port" -U postgres -n -M prepared "${script[@]}" \
    -c "$CUT_CLIENTS" -j "$JOBS" -T "$max_t" -P 1 -l --log-prefix="$dir/txlog" --failures-detailed "$db" \
    >"$dir/pgbench.out" 2>"$dir/pgbench.err" &
  LOAD_PID=$!
  i=0
  while [ "$(qa -d "$db" -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = '$LOAD_APP'")" -lt "$CUT_CLIENTS" ]; do
    i=$((i + 1))
    kill -0 "$LOAD_PID" 2>/dev/null || die "pgbench exited at start; see $dir/pgbench.err"
    [ "$i" -lt 100 ] || die "pgbench clients did not connect within 10 s (application_name $LOAD_APP)"
    sleep 0.1
  done
  t_load=$(now)
  local act_pid=""
  if [ -n "${ACTIVITY:-}" ]; then   # diagnosis: where the load's backends wait, every 0.1 s
    python3 "$HERE/activity.py" --port "$PORT" --dbname "$db" --app "$LOAD_APP" --out "$dir/activity.tsv" &
    act_pid=$!
  fi
  log "cutover $w $t: load running (pgbench pid $LOAD_PID, $CUT_CLIENTS clients, -M prepared), apply in $PRE s"
  sleep "$PRE"
  t_a0=$(now)
  timeout "$APPLY_TIMEOUT" "$TANDEM" --database-url "$(url "$db")" apply "$id" --yes >"$dir/apply.log" 2>&1 || rc=$?
  t_a1=$(now)
  log "cutover $w $t: apply took $(awk -v a="$t_a0" -v b="$t_a1" 'BEGIN { printf "%.1f", b - a }') s (exit $rc); load goes on for $POST s"
  sleep "$POST"
  t_end=$(now)
  if [ -n "$act_pid" ]; then kill -TERM "$act_pid" 2>/dev/null || true; wait "$act_pid" 2>/dev/null || true; fi
  local err_at_stop; err_at_stop=$(stat -c %s "$dir/pgbench.err")   # what pgbench said before the stop
  if kill -0 "$LOAD_PID" 2>/dev/null; then
    alive=$(stop_load)
  else
    alive=0
    log "cutover $w $t: pgbench had already exited (every client aborted)"
  fi
  wait "$LOAD_PID" || pg_rc=$?
  LOAD_PID=""
  local c1; c1=$(cpu_ticks "$pid")
  cpu_snapshot "$dir/cpu.after"
  [ "$t" = tandem ] && metrics "$CT_METRICS" >"$dir/metrics.txt"
  qa -d "$db" -c "SELECT coalesce(json_agg(json_build_object('id', id, 'phase', phase, 'event', event,
                      'detail', detail, 'at', extract(epoch FROM at)) ORDER BY id), '[]')
                    FROM tandem.events WHERE migration_id = $id" >"$dir/events.json"
  qa -d "$db" -F '|' -c "SELECT phase, cutover_attempts FROM tandem.migrations WHERE id = $id" >"$dir/migration.txt"
  python3 "$HERE/analyze.py" cutover --out "$dir/result.json" --events "$dir/events.json" \
    --pgbench-out "$dir/pgbench.out" --pgbench-err "$dir/pgbench.err" --err-stop-offset "$err_at_stop" \
    --metrics "$dir/metrics.txt" --apply-log "$dir/apply.log" --cpu "$dir/cpu.before" "$dir/cpu.after" \
    --set workload="$w" rate="$([ "$w" = select ] && echo "$CUT_SELECT_RATE")" target="$t" migration_id="$id" clients="$CUT_CLIENTS" load_start="$t_load" apply_start="$t_a0" \
          apply_end="$t_a1" load_end="$t_end" apply_rc="$rc" pgbench_rc="$pg_rc" \
          clients_alive_at_stop="$alive" loadavg_before="$l0" loadavg_after="$(cut -d' ' -f1 /proc/loadavg)" \
          proxy_cpu_ticks="${c0:+$((c1 - c0))}" clk_tck="$(getconf CLK_TCK)" \
          migration_state="$(cat "$dir/migration.txt")" \
    --logs "$dir"/txlog.* >&2
  [ -n "${KEEP_LOGS:-}" ] || gzip -f "$dir"/txlog.*
  [ "$t" = tandem ] && stop_tandem cut
  return 0
}
part_cutover() {
  local w t
  for w in $CUT_WORKLOADS; do
    for t in $CUT_TARGETS; do part_cutover_one "$w" "$t"; done
  done
}

# ------------------------------------------------------------------ main
# The command that reproduces this run: the settings that differ from the defaults, then the script.
CMD=""
for v in ROUNDS:3 SECS:15 SCALE:10 CLIENTS:16 JOBS:2 CUT_CLIENTS:8 CUT_SELECT_RATE:10000 MEM_CONNS:500 PRE:5 POST:5 WARMUP:3 \
         "PARTS:memory throughput dual cutover" "WORKLOADS:select-simple select-prepared tpcb-simple tpcb-prepared" \
         "TARGETS:direct pgbouncer tandem" "CUT_TARGETS:tandem pgbouncer" "CUT_WORKLOADS:tpcb select"; do
  n=${v%%:*}; d=${v#*:}
  if [ "${!n}" != "$d" ]; then
    if [[ ${!n} == *" "* ]]; then CMD+="$n='${!n}' "; else CMD+="$n=${!n} "; fi
  fi
done
[ -z "${TANDEM_WORKERS:-}" ] || CMD+="TANDEM_WORKERS=$TANDEM_WORKERS "
[ -z "${MIRROR_RATE:-}" ] || CMD+="MIRROR_RATE=$MIRROR_RATE "
[ "$MEM_POOL" = 0 ] || CMD+="MEM_POOL=$MEM_POOL "
CMD+="bench/proxy/run.sh"
stop_all_ours          # leftovers of an interrupted run (our pid files only)
rm -rf "$RAW"
mkdir -p "$RAW"
start_cluster
init_template
CUT_DBS=""
if [[ " $PARTS " == *" cutover "* ]]; then
  for w in $CUT_WORKLOADS; do for t in $CUT_TARGETS; do CUT_DBS+=" proxy_cut_${w}_$t"; done; done
fi
DUAL_DB=""
[[ " $PARTS " != *" dual "* ]] || DUAL_DB=proxy_dual
log "cloning $TMPL: proxy_tp $DUAL_DB$CUT_DBS"
for d in proxy_tp $DUAL_DB $CUT_DBS; do clone "$d"; done
TANDEM_SRC=$TANDEM
cp "$TANDEM" "$RAW/tandem-bin"    # a rebuild during the run does not change what is measured
TANDEM="$RAW/tandem-bin"
start_pgbouncer
start_tandem tp "$TP_PORT" "$TP_METRICS" proxy_tp
if [ "$MEM_POOL" = 1 ] && [[ " $PARTS " == *" memory "* ]]; then
  start_pool
  start_tandem mem "$MEM_PORT" "$MEM_METRICS" proxy_tp "" "$POOL_PORT"
fi
# the machine's CPU (us sy id wa st) and run queue, every second, for judging noise afterwards
vmstat -n -t 1 >"$RAW/vmstat.log" 2>&1 &
echo $! >"$RUNDIR/vmstat.pid"

python3 - "$RAW/env.json" \
  started="$(date -u +%Y-%m-%dT%H:%M:%SZ)" nproc="$(nproc)" kernel="$(uname -r)" autogroup="$(cat /proc/sys/kernel/sched_autogroup_enabled 2>/dev/null || echo n/a)" proxy_session="$PROXY_SESSION" \
  server_version="$(qa -d postgres -c 'SHOW server_version')" \
  pgbouncer_version="$(pgbouncer --version | head -1)" pgbench_version="$("$PGBIN/pgbench" --version)" \
  git="$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)" \
  tandem="$TANDEM_SRC" tandem_binary_mtime="$(date -u -r "$TANDEM_SRC" +%Y-%m-%dT%H:%M:%SZ)" built="$BUILT_NOTE" \
  rounds="$ROUNDS" secs="$SECS" scale="$SCALE" clients="$CLIENTS" jobs="$JOBS" cut_clients="$CUT_CLIENTS" \
  mem_conns="$MEM_CONNS" mem_pool="$MEM_POOL" fd_limit="$FD_LIMIT" pre="$PRE" post="$POST" parts="$PARTS" workloads="$WORKLOADS" targets="$TARGETS" \
  cut_targets="$CUT_TARGETS" cut_workloads="$CUT_WORKLOADS" cut_select_rate="$CUT_SELECT_RATE" tandem_workers="${TANDEM_WORKERS:-default}" mirror_rate="${MIRROR_RATE:-default}" alter="$ALTER_SQL" pg_opts="$PG_OPTS" loadavg_start="$(cat /proc/loadavg)" \
  command="$CMD" <<'EOF'
import json, sys
json.dump(dict(a.split("=", 1) for a in sys.argv[2:]), open(sys.argv[1], "w"), indent=1)
EOF

for p in $PARTS; do
  case $p in
    memory) part_memory ;;
    throughput) part_throughput ;;
    dual) part_dual ;;
    cutover) part_cutover ;;
    *) die "unknown part $p (memory throughput dual cutover)" ;;
  esac
done
python3 - "$RAW/env.json" <<'EOF'
import json, sys
p = sys.argv[1]; e = json.load(open(p)); e["loadavg_end"] = open("/proc/loadavg").read().strip()
json.dump(e, open(p, "w"), indent=1)
EOF

stop_all_ours
if [ -z "${KEEP_DBS:-}" ]; then
  for d in proxy_tp $DUAL_DB $CUT_DBS; do
    q -d postgres -c "DROP DATABASE IF EXISTS $d WITH (FORCE)"
  done
fi
python3 "$HERE/analyze.py" report --raw "$RAW" --out-md "$BENCH_DIR/proxy.md" --out-json "$BENCH_DIR/proxy.json"
log "wrote $BENCH_DIR/proxy.md and $BENCH_DIR/proxy.json (raw files in $RAW); bench/proxy/teardown.sh stops the cluster"
