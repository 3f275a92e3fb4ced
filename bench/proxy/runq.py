#!/usr/bin/env python3
"""How long PostgreSQL's client backends wait for a CPU (standard library only; Linux).

  runq.py sample --db DB --secs S --out FILE
      Every ~5 ms, for each client backend of database DB: its state (R runnable, S sleeping),
      wchan, and the CPU time the scheduler has given it (/proc/PID/schedstat).
  runq.py summary --raw FILE [--over MS]
      Stretches in which a backend stayed runnable (state R) while the scheduler gave it no CPU,
      longest first: how long clients of that backend waited for a CPU, not for the server's work
      or a lock (a backend waiting on a lock or the network sleeps, state S).

bench/proxy/run.sh runs it beside each throughput run with RUNQ=1.
"""
import argparse
import collections
import json
import os
import time

def backends(db):
    out = []
    needle = f"postgres: postgres {db} ".encode()
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            if open(f"/proc/{p}/cmdline", "rb").read().startswith(needle):
                out.append(p)
        except OSError:
            pass
    return out

def cmd_sample(a):
    end = time.time() + a.secs
    pids, seen = backends(a.db), time.time()
    with open(a.out, "w") as out:
        while time.time() < end:
            if time.time() - seen > 1:
                pids, seen = backends(a.db), time.time()
            now = time.time()
            for p in pids:
                try:
                    state = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[0]
                    run_ns = open(f"/proc/{p}/schedstat").read().split()[0]
                except OSError:
                    continue
                out.write(f"{now:.4f} {p} {state} {run_ns}\n")
            time.sleep(0.005)

def stretches(path):
    rows = collections.defaultdict(list)
    for line in open(path):
        t, p, state, run = line.split()
        rows[p].append((float(t), state, int(run)))
    found = []
    for p, r in rows.items():
        i = 0
        while i < len(r):
            j = i
            # runnable all along, and given no CPU time
            while j + 1 < len(r) and r[j + 1][1] == "R" and r[i][1] == "R" and r[j + 1][2] == r[i][2]:
                j += 1
            if j > i:
                found.append((r[j][0] - r[i][0], p, r[i][0]))
            i = j + 1
    return sorted(found, reverse=True)

def cmd_summary(a):
    found = stretches(a.raw)
    over = [f for f in found if f[0] * 1000 >= a.over]
    r = {
        "longest_runnable_unserved_ms": round(found[0][0] * 1000, 1) if found else 0.0,
        f"stretches_over_{int(a.over)}ms": len(over),
        "top": [{"ms": round(d * 1000, 1), "pid": int(p), "at": round(t, 3)} for d, p, t in found[:5]],
    }
    print(json.dumps(r))

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("sample")
    p.add_argument("--db", required=True)
    p.add_argument("--secs", type=float, required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(fn=cmd_sample)
    p = sub.add_parser("summary")
    p.add_argument("--raw", required=True)
    p.add_argument("--over", type=float, default=50.0)
    p.set_defaults(fn=cmd_summary)
    a = ap.parse_args()
    a.fn(a)

if __name__ == "__main__":
    main()
