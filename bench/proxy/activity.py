#!/usr/bin/env python3
"""Diagnosis: sample pg_stat_activity for the load's backends every INTERVAL seconds.

  activity.py --port PORT --dbname DB --app APPLICATION_NAME --out FILE [--interval 0.1]

One tab-separated line per backend per sample: epoch, pid, state, wait_event_type,
wait_event, seconds since query_start, query (60 characters). A backend waiting for
`ClientRead` while its client waits for an answer means the request is held up in front of
the server (in the proxy); `Lock` means the server is holding it. Runs until killed (SIGTERM).
"""
import argparse
import signal
import sys
import time

import psycopg

stop = False


def on_term(*_):
    global stop
    stop = True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--dbname", required=True)
    ap.add_argument("--app", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--interval", type=float, default=0.1)
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, on_term)
    with psycopg.connect(host=a.host, port=a.port, dbname=a.dbname, user="postgres", autocommit=True,
                         application_name="bench_activity") as c, open(a.out, "w") as f:
        while not stop:
            t = time.time()
            rows = c.execute(
                "SELECT pid, state, coalesce(wait_event_type, ''), coalesce(wait_event, ''),"
                " round(extract(epoch FROM clock_timestamp() - query_start)::numeric, 3), left(query, 60)"
                " FROM pg_stat_activity WHERE application_name = %s ORDER BY pid", (a.app,)).fetchall()
            for r in rows:
                f.write("\t".join([f"{t:.3f}"] + [str(x).replace("\t", " ").replace("\n", " ") for x in r]) + "\n")
            f.flush()
            time.sleep(max(0.0, a.interval - (time.time() - t)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
