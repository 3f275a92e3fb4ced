#!/usr/bin/env python3
"""Open N idle client connections through a proxy and report its resident memory (VmRSS).

  idle_conns.py --port PORT --dbname DB --pid PROXY_PID -n 500 --name NAME --out OUT.json

Each connection logs in (SCRAM, the password from PGPASSFILE), runs `SELECT 1` once so that
both proxies have paired it with a server connection (pgbouncer in session mode does that at
the first query), and then stays idle. VmRSS of PROXY_PID is read from /proc before the first
connection, with all N open and idle (after 2 s), and 2 s after closing them all.
"""
import argparse
import json
import os
import statistics
import sys
import time

import psycopg


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise SystemExit(f"no VmRSS for pid {pid}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--dbname", required=True)
    ap.add_argument("--user", default="postgres")
    ap.add_argument("--pid", type=int, required=True, help="the proxy process to measure")
    ap.add_argument("-n", type=int, default=500)
    ap.add_argument("--name", default="")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    if "PGPASSWORD" in os.environ:
        raise SystemExit("PGPASSWORD is set: use a password file (PGPASSFILE)")

    before = rss_kib(a.pid)
    conns, connect_ms, error = [], [], None
    t0 = time.monotonic()
    try:
        for _ in range(a.n):
            c0 = time.monotonic()
            c = psycopg.connect(host=a.host, port=a.port, dbname=a.dbname, user=a.user,
                                autocommit=True, application_name="bench_idle", connect_timeout=30)
            connect_ms.append((time.monotonic() - c0) * 1000.0)
            conns.append(c)
            c.execute("SELECT 1").fetchone()
    except psycopg.Error as e:
        error = f"after {len(conns)} connections: {type(e).__name__}: {str(e).strip()}"
        print(f"{a.name}: {error}", file=sys.stderr)
    opened_s = time.monotonic() - t0
    try:
        time.sleep(2)
        with_n = rss_kib(a.pid)
        # every connection still usable (none was dropped while idle)
        alive = 0
        for c in conns:
            try:
                alive += c.execute("SELECT 1").fetchone() == (1,)
            except psycopg.Error:
                pass
    finally:
        for c in conns:
            c.close()
    time.sleep(2)
    after_close = rss_kib(a.pid)
    r = {
        "name": a.name,
        "pid": a.pid,
        "connections": len(conns) if error else a.n,
        "asked": a.n,
        "alive": alive,
        "error": error,
        "rss_before_kib": before,
        "rss_with_conns_kib": with_n,
        "rss_after_close_kib": after_close,
        "kib_per_conn": round((with_n - before) / max(1, len(conns)), 1),
        "open_s": round(opened_s, 2),
        "connect_ms_median": round(statistics.median(connect_ms), 2) if connect_ms else None,
        "connect_ms_p99": round(sorted(connect_ms)[max(0, int(len(connect_ms) * 0.99) - 1)], 2) if connect_ms else None,
    }
    with open(a.out, "w") as f:
        json.dump(r, f, indent=1)
    print(f"{a.name}: {r['connections']} idle connections ({alive} alive): VmRSS {before} -> {with_n} KiB "
          f"({r['kib_per_conn']} KiB per connection), {after_close} KiB after closing; "
          f"connect median {r['connect_ms_median']} ms", file=sys.stderr)
    return 1 if error else 0


if __name__ == "__main__":
    sys.exit(main())
