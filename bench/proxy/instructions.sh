#!/usr/bin/env bash
# The user-space instructions each proxy executes per transaction, counted by valgrind's
# callgrind: the same figure on a quiet machine and a loaded one (it counts instructions, not
# time), so a change to the proxy's hot path can be judged without the 2-core machines' noise.
# The kernel's share (the sockets, ~80 % of either proxy's CPU, BENCHMARKS §6) is not counted:
# it is the same for both proxies.
#
# tandem's figure is its worker threads' (where the sessions run); pgbouncer's, its one thread.
# Per proxy and workload, two runs under callgrind, of N and 2N transactions over the same
# connections; the difference divided by N is what one transaction costs, without startup,
# logins and shutdown. Time-driven work (timers, heartbeats) lands in the difference too, in
# proportion to how much longer the second run took: the report gives both runs' seconds.
#
# Needs the cluster of bench/proxy/run.sh (it stays up between runs; any run sets it up, e.g.
# `PARTS=throughput ROUNDS=1 SECS=3 WORKLOADS=select-prepared TARGETS=tandem bench/proxy/run.sh`).
#
# Usage: bench/proxy/instructions.sh
# Env:   TANDEM=target/release/tandem  TARGETS="pgbouncer tandem"
#        WORKLOADS="select-prepared select-simple tpcb-prepared"  N=20000  CLIENTS=4
#        ANNOTATE=1 (also write each proxy's top functions, callgrind_annotate, of its 2N run)
#        SCALE=10 (the template of run.sh to copy)  OUT=/tmp/tandem-instructions (callgrind files, logs, and instructions.md)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PGBIN=/usr/lib/postgresql/15/bin
PGDIR=/tmp/benchpg-proxy
PORT=15480
PGB_PORT=15488
TP_PORT=15489; TP_METRICS=15499
TANDEM=${TANDEM:-$ROOT/target/release/tandem}
TARGETS=${TARGETS:-"pgbouncer tandem"}
WORKLOADS=${WORKLOADS:-"select-prepared select-simple tpcb-prepared"}
N=${N:-20000}
CLIENTS=${CLIENTS:-4}
ANNOTATE=${ANNOTATE:-0}
OUT=${OUT:-/tmp/tandem-instructions}
DB=proxy_instructions
TMPL=proxy_tmpl_s${SCALE:-10}
export PGPASSFILE="$PGDIR/secrets/pgpass" PGSSLMODE=disable

die() { echo "instructions.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (pgbouncer runs as the postgres user)"
command -v valgrind >/dev/null || die "valgrind not installed (apt-get install -y valgrind)"
[ -x "$TANDEM" ] || die "no tandem binary at $TANDEM (cargo build --release -p cli, or TANDEM=...)"
[ -s "$PGDIR/pgbouncer/pgbouncer.ini" ] && [ -s "$PGPASSFILE" ] ||
  die "no bench/proxy cluster in $PGDIR: run bench/proxy/run.sh once first (see the header)"
"$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" || die "PostgreSQL of $PGDIR is not running: run bench/proxy/run.sh once first"
q() { PGOPTIONS="-c client_min_messages=warning" "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres "$@"; }
[ "$(q -d postgres -c "SELECT count(*) FROM pg_database WHERE datname = '$TMPL'")" = 1 ] ||
  die "no pgbench template $TMPL in $PGDIR's cluster: run bench/proxy/run.sh with the throughput part first"
# A fresh copy of run.sh's template, as each of its runs has.
q -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB TEMPLATE $TMPL STRATEGY FILE_COPY"

rm -rf "$OUT"; mkdir -p "$OUT"; chmod 0777 "$OUT"
PIDS=()
cleanup() { local p; for p in "${PIDS[@]}"; do kill -INT "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

wait_port() {   # port, pid
  local i
  for i in $(seq 1 600); do
    "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$1" -U postgres -d "$DB" && return 0
    kill -0 "$2" 2>/dev/null || die "the proxy (pid $2) exited; see $OUT"
    sleep 0.1
  done
  die "nothing answered on 127.0.0.1:$1"
}

# A copy of run.sh's pgbouncer (session mode, SCRAM pass-through) on its own port and files.
pgb_ini() {
  local d="$OUT/pgbouncer"
  install -d -m 0700 -o postgres -g postgres "$d"
  install -m 0600 -o postgres -g postgres "$PGDIR/pgbouncer/userlist.txt" "$d/userlist.txt"
  sed -e "s|^listen_port = .*|listen_port = $PGB_PORT|" -e "s|$PGDIR/pgbouncer/|$d/|g" \
    "$PGDIR/pgbouncer/pgbouncer.ini" >"$d/pgbouncer.ini"
  chown postgres:postgres "$d/pgbouncer.ini"; chmod 0600 "$d/pgbouncer.ini"
  echo "$d/pgbouncer.ini"
}

start() {   # target, callgrind output file; prints the pid
  case $1 in
    pgbouncer)
      setpriv --reuid=postgres --regid=postgres --init-groups -- \
        valgrind --tool=callgrind --callgrind-out-file="$2" pgbouncer "$(pgb_ini)" \
        >"$2.log" 2>&1 &
      echo $! ;;
    tandem)
      local cfg="$OUT/tandem.toml"
      ( umask 077; echo "password_file = \"$PGDIR/secrets/password\"" >"$cfg" )
      valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$2" "$TANDEM" proxy --listen "127.0.0.1:$TP_PORT" \
        --upstream "postgres://postgres@127.0.0.1:$PORT/$DB" --config "$cfg" \
        --metrics "127.0.0.1:$TP_METRICS" >"$2.log" 2>&1 &
      echo $! ;;
    *) die "unknown target $1 (pgbouncer or tandem)" ;;
  esac
}
port_of() { case $1 in pgbouncer) echo "$PGB_PORT" ;; tandem) echo "$TP_PORT" ;; esac; }

pgbench_args() {
  case $1 in
    select-simple) echo "-S -M simple" ;; select-prepared) echo "-S -M prepared" ;;
    tpcb-simple) echo "-M simple" ;; tpcb-prepared) echo "-M prepared" ;;
    *) die "unknown workload $1" ;;
  esac
}

# One run: N transactions in all through a proxy under callgrind; prints "instructions seconds".
run_one() {   # target workload transactions file
  local pid start_s end_s per=$(( $3 / CLIENTS ))
  pid=$(start "$1" "$4")
  PIDS+=("$pid")
  wait_port "$(port_of "$1")" "$pid"
  start_s=$(date +%s.%N)
  # shellcheck disable=SC2046
  "$PGBIN/pgbench" -n -h 127.0.0.1 -p "$(port_of "$1")" -U postgres $(pgbench_args "$2") \
    -c "$CLIENTS" -j 1 -t "$per" "$DB" >"$4.pgbench" 2>&1 || die "pgbench failed; see $4.pgbench"
  end_s=$(date +%s.%N)
  kill -INT "$pid"
  # Not this shell's child (started in a command substitution): wait for it to be gone, and
  # so for callgrind to have written its file.
  while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
  local ir=0 f n
  # tandem: one file per thread (FILE-NN); only the threads that ran sessions count (the
  # main thread's accept loop, control connection and metrics server do not: its control
  # connection logs in again every 10 s where tandem is not installed, a SCRAM login of
  # millions of instructions that would land in the difference by the clock).
  for f in "$4" "$4"-*; do
    [ -s "$f" ] || continue
    [ "$f" = "$4" ] || grep -q 'proxy::session::' "$f" || continue
    n=$(awk '/^(summary|totals):/ { print $2; exit }' "$f")
    [ -n "$n" ] || die "no instruction total in $f"
    ir=$(( ir + n ))
  done
  [ "$ir" -gt 0 ] || die "no callgrind output for $4"
  echo "$ir $(echo "$end_s - $start_s" | bc)"
}

{
  echo "# User-space instructions per transaction (callgrind)"
  echo
  echo "tandem: \`$("$TANDEM" --version 2>/dev/null | head -1)\` ($TANDEM), $(pgbouncer --version | head -1), $CLIENTS clients, N = $N"
  echo
  echo "| workload | proxy | instructions per transaction | N run: instructions, s | 2N run: instructions, s |"
  echo "|---|---|---:|---|---|"
} >"$OUT/instructions.md"

for w in $WORKLOADS; do
  for t in $TARGETS; do
    read -r i1 s1 < <(run_one "$t" "$w" "$N" "$OUT/$w-$t-1.out")
    read -r i2 s2 < <(run_one "$t" "$w" $(( 2 * N )) "$OUT/$w-$t-2.out")
    per=$(( (i2 - i1) / N ))
    printf '| %s | %s | %s | %s, %.1f | %s, %.1f |\n' "$w" "$t" "$per" "$i1" "$s1" "$i2" "$s2" >>"$OUT/instructions.md"
    echo "$w $t: $per instructions per transaction"
    if [ "$ANNOTATE" = 1 ]; then
      for f in "$OUT/$w-$t-2.out" "$OUT/$w-$t-2.out"-*; do
        [ -s "$f" ] && { [ "$f" = "$OUT/$w-$t-2.out" ] || grep -q 'proxy::session::' "$f"; } || continue
        callgrind_annotate --inclusive=no "$f" 2>/dev/null | head -60 >>"$OUT/$w-$t.top" || true
      done
    fi
  done
done
trap - EXIT
q -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
cat "$OUT/instructions.md"
