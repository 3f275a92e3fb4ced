#!/usr/bin/env python3
"""How much CPU did processes outside the benchmark use? (standard library only)

  cpu_probe.py snapshot OUT.json --root PID [--root PID ...]
      Writes, for every process in /proc: parent, own CPU ticks (utime + stime) and reaped
      children's ticks (cutime + cstime), and its name; the roots (run.sh itself and the
      postmaster); and the machine's /proc/stat cpu line.

  cpu_probe.py diff BEFORE.json AFTER.json
      Prints JSON: foreign_cpu_s (CPU used by user processes that are not descendants of a
      root, including the children they reaped in between, e.g. compilers under cargo), the top
      foreign processes, kernel_threads_cpu_s (kworker and the like, apart), steal_s (time the hypervisor gave to other guests), and busy_s of the
      whole machine. Processes that start and exit between the snapshots under a parent that
      also exits are missed; everything else outside the benchmark is counted.
"""
import json
import os
import sys


def read_proc():
    procs = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
        except OSError:
            continue
        lp, rp = s.find("("), s.rfind(")")
        comm = s[lp + 1:rp]
        f = s[rp + 2:].split()
        # after "pid (comm) ": state ppid ... utime(12) stime(13) cutime(14) cstime(15) ... starttime(20)
        procs[d] = [int(f[1]), int(f[11]) + int(f[12]), int(f[13]) + int(f[14]), comm, int(f[19])]
    return procs


def snapshot(out, roots):
    with open("/proc/stat") as f:
        cpu = [int(x) for x in f.readline().split()[1:]]
    data = {"roots": roots, "procs": read_proc(), "cpu": cpu, "hz": os.sysconf("SC_CLK_TCK")}
    with open(out, "w") as f:
        json.dump(data, f)


def ours(procs, roots):
    """pids (as str) that descend from a root (or are one)."""
    children = {}
    for pid, p in procs.items():
        children.setdefault(str(p[0]), []).append(pid)
    seen, stack = set(), [str(r) for r in roots]
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        stack.extend(children.get(pid, []))
    return seen


def diff(before_path, after_path):
    b, a = json.load(open(before_path)), json.load(open(after_path))
    hz = a["hz"]
    roots = set(b["roots"]) | set(a["roots"])
    mine = ours(b["procs"], roots) | ours(a["procs"], roots)
    foreign, kernel = {}, 0
    for pid, p in a["procs"].items():
        if pid in mine:
            continue
        if pid == "2" or p[0] == 2:
            # kernel threads: mostly the benchmark's own disk and network work (kworker,
            # kblockd); counted apart
            q = b["procs"].get(pid)
            kernel += (p[1] + p[2]) - ((q[1] + q[2]) if q and q[4] == p[4] else 0)
            continue
        q = b["procs"].get(pid)
        if q and q[4] == p[4]:  # same process (same start time)
            t = (p[1] + p[2]) - (q[1] + q[2])
        else:  # started in between
            t = p[1] + p[2]
        if t > 0:
            foreign[f"{p[3]}[{pid}]"] = t
    cb, ca = b["cpu"], a["cpu"]
    d = [x - y for x, y in zip(ca, cb)]
    # user nice system idle iowait irq softirq steal
    busy = sum(d[i] for i in (0, 1, 2, 5, 6) if i < len(d))
    steal = d[7] if len(d) > 7 else 0
    top = sorted(foreign.items(), key=lambda kv: -kv[1])[:5]
    return {
        "foreign_cpu_s": round(sum(foreign.values()) / hz, 2),
        "foreign_top": [[k, round(v / hz, 2)] for k, v in top],
        "kernel_threads_cpu_s": round(kernel / hz, 2),
        "steal_s": round(steal / hz, 2),
        "busy_s": round(busy / hz, 2),
    }


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "snapshot":
        roots, args = [], sys.argv[3:]
        while args:
            if args[0] == "--root" and len(args) > 1 and args[1].isdigit():
                roots.append(int(args[1]))
                args = args[2:]
            else:
                raise SystemExit(f"unexpected argument {args[0]!r}")
        snapshot(sys.argv[2], roots)
    elif len(sys.argv) == 4 and sys.argv[1] == "diff":
        print(json.dumps(diff(sys.argv[2], sys.argv[3])))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
