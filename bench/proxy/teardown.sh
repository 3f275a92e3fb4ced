#!/usr/bin/env bash
# Stop what bench/proxy/run.sh started -- by pid only -- and remove /tmp/benchpg-proxy:
#   tandem proxies and pgbouncer: the pids in /tmp/benchpg-proxy/run/*.pid, each checked against
#   /proc/PID/cmdline first (a reused pid is left alone); PostgreSQL: pg_ctl stop, which signals
#   the postmaster pid of /tmp/benchpg-proxy/data/postmaster.pid.
# Results in $BENCH_DIR (default /tmp/tandem-bench) are kept.
set -euo pipefail
PGBIN=/usr/lib/postgresql/15/bin
PGDIR=/tmp/benchpg-proxy
RUNDIR=$PGDIR/run

stop_pidfile() {   # pidfile, expected substring of the command line
  local f=$1 want=$2 pid i
  [ -s "$f" ] || { rm -f "$f"; return 0; }
  pid=$(cat "$f")
  if [[ $pid =~ ^[0-9]+$ ]] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$want"; then
    echo "stopping pid $pid ($(basename "$f" .pid))"
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "pid $pid still running after 10 s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$f"
}

if [ -d "$RUNDIR" ]; then
  for f in "$RUNDIR"/tandem-*.pid; do
    if [ -e "$f" ]; then stop_pidfile "$f" "proxy --listen 127.0.0.1:"; fi
  done
  if [ -e "$RUNDIR/pgbouncer.pid" ]; then stop_pidfile "$RUNDIR/pgbouncer.pid" "$PGDIR/pgbouncer/pgbouncer.ini"; fi
  if [ -e "$RUNDIR/pool.pid" ]; then stop_pidfile "$RUNDIR/pool.pid" "$PGDIR/pool/pool.ini"; fi
  if [ -e "$RUNDIR/vmstat.pid" ]; then stop_pidfile "$RUNDIR/vmstat.pid" "vmstat -n -t 1"; fi
fi
if [ -s "$PGDIR/data/postmaster.pid" ]; then
  echo "stopping the cluster in $PGDIR/data (postmaster pid $(head -n 1 "$PGDIR/data/postmaster.pid"))"
  runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGDIR/data" -m fast -w stop ||
    echo "pg_ctl stop failed (server already gone?)" >&2
fi
rm -rf "$PGDIR"
echo "removed $PGDIR"
