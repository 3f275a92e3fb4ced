#!/usr/bin/env python3
"""The slow transactions of a bench/engine run, grouped, with what the server's sessions waited
on meanwhile (from bench/engine/waits.sh's samples) and the kernel's dirty pages.

Usage: bench/engine/stalls.py RUN_DIR WAITS_DIR [--ms 100]
  RUN_DIR   a scenario's raw files (pgbench's txlog.* in it), e.g. /tmp/tandem-bench/engine-100/tandem
  WAITS_DIR waits.sh's OUT
A group is the slow transactions that started within 50 ms of each other; each line under it
counts the 5 ms samples of one (application, wait event, statement) inside the group's span.
"""
import argparse
import collections
import glob
import os

from analyze import read_logs


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir")
    ap.add_argument("waits_dir")
    ap.add_argument("--ms", type=float, default=100.0, help="a transaction slower than this is slow")
    a = ap.parse_args()
    ok, _, _ = read_logs(glob.glob(os.path.join(a.run_dir, "txlog.*")))
    slow = sorted((start, end, lat * 1000.0) for start, end, lat in ok if lat * 1000.0 > a.ms)
    waits = []
    for line in open(os.path.join(a.waits_dir, "waits.txt")):
        p = line.rstrip("\n").split("|")
        if len(p) >= 7:
            try:
                waits.append((float(p[0]), p[2] or "(no name)", f"{p[3]}:{p[4]}", p[6][:32]))
            except ValueError:
                pass
    dirty = []
    for line in open(os.path.join(a.waits_dir, "dirty.txt")):
        p = line.split()
        if len(p) >= 3:
            dirty.append((float(p[0]), int(p[1]), int(p[2])))
    groups = []
    for s in slow:
        if groups and s[0] - groups[-1][-1][0] < 0.05:
            groups[-1].append(s)
        else:
            groups.append([s])
    print(f"{len(slow)} transactions over {a.ms:.0f} ms in {len(groups)} groups")
    for g in groups:
        start, end = min(x[0] for x in g), max(x[1] for x in g)
        seen = collections.Counter(w[1:] for w in waits if start <= w[0] <= end)
        d = [x for x in dirty if start - 0.1 <= x[0] <= end]
        print(f"{start:.3f}-{end:.3f}: {len(g)} slow, slowest {max(x[2] for x in g):.0f} ms; "
              f"Dirty up to {max((x[1] for x in d), default=0) // 1024} MiB, "
              f"Writeback up to {max((x[2] for x in d), default=0) // 1024} MiB")
        for (app, event, stmt), n in seen.most_common(6):
            print(f"    {n:4d} × {app[:14]:14s} {event:30s} {stmt}")


if __name__ == "__main__":
    main()
