#!/usr/bin/env python3
"""Figures for one "change a live table under pgbench load" scenario (standard library only).

Three modes:

  analyze.py --timeline TIMELINE.json [--meta META] [--json OUT.json] [--name NAME] LOG...
      Reads pgbench per-transaction logs (`pgbench -l`, one file per worker thread) and a phase
      timeline -- a JSON list of [name, start_epoch, end_epoch] -- and prints, per run and per
      phase: committed and failed transactions, TPS (from transaction *end* times), p50/p99/max
      latency, transactions slower than 100 ms, and the longest stretch in which no client
      committed anything. Phases named "before" and "after" are load-alone phases; every other
      phase is part of the change (the "change window"). META is an optional key=value file from
      run.sh (wall time, invariant sums, ...) that is copied into the JSON and checked.

  analyze.py timeline --load-start T --change-start T --change-end T --load-end T
                      [--events EVENTS.tsv] [--marks CHANGE.times] [--during-name NAME]
                      -o TIMELINE.json
      Builds the timeline: before / during / after, or -- when EVENTS.tsv (tab-separated
      `phase, event, epoch` rows from tandem.events, in id order) has rows inside the change
      window -- before / <one phase per run of consecutive events with the same phase> / after.
      CHANGE.times (tandem's output, each line after its epoch) splits the backfill: the copy,
      then "index" from the first index build, then "drain" from the last index built.

  analyze.py report --scale N --out-md OUT.md --out-json OUT.json [--header TEXT] SCENARIO.json...
      Combines the per-scenario JSON files into one JSON file and a markdown table.

pgbench log line (PG15, without --rate): client_id transaction_no time script_no time_epoch time_us
[retries]; `time` is the latency in microseconds, or failed / serialization / deadlock (with
--failures-detailed) / skipped for a transaction that did not commit.
"""
import argparse
import json
import math
import sys

SLOW_MS = 100.0
LOAD_PHASES = ("before", "after")


# ----------------------------------------------------------------------------- reading

def read_logs(paths):
    """Return (ok, failed, bad_lines): ok = [(start, end, latency_s)], failed = [(end, kind)]."""
    ok, failed, bad = [], [], 0
    for path in paths:
        with open(path, errors="replace") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 6:
                    bad += 1
                    continue
                try:
                    end = int(parts[4]) + int(parts[5]) / 1e6
                except ValueError:
                    bad += 1
                    continue
                t = parts[2]
                if t.isdigit():
                    lat = int(t) / 1e6
                    ok.append((end - lat, end, lat))
                else:
                    failed.append((end, t))
    ok.sort(key=lambda r: r[1])
    failed.sort()
    return ok, failed, bad


def read_meta(path):
    """key=value lines; values that parse as numbers become numbers."""
    meta = {}
    if not path:
        return meta
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#") or "=" not in line:
                continue
            k, v = line.split("=", 1)
            meta[k.strip()] = _num(v)
    return meta


def _num(v):
    for conv in (int, float):
        try:
            return conv(v)
        except ValueError:
            pass
    return v


# ----------------------------------------------------------------------------- statistics

def percentile(sorted_vals, p):
    """Nearest-rank percentile of an ascending list (None when empty)."""
    if not sorted_vals:
        return None
    k = max(1, math.ceil(p / 100.0 * len(sorted_vals)))
    return sorted_vals[min(k, len(sorted_vals)) - 1]


def longest_gap(ends, lo, hi):
    """Longest interval inside [lo, hi] with no transaction completion: (gap_s, from, to)."""
    best = (0.0, lo, lo)
    prev = lo
    for e in ends:
        if e < lo:
            continue
        if e > hi:
            break
        if e - prev > best[0]:
            best = (e - prev, prev, e)
        prev = e
    if hi - prev > best[0]:
        best = (hi - prev, prev, hi)
    return best


def stats(rows, nfailed, fail_kinds, lo, hi):
    """Figures for the transactions in `rows` (already selected by end time in [lo, hi))."""
    lats = sorted(r[2] * 1000.0 for r in rows)
    dur = max(hi - lo, 1e-9)
    gap = longest_gap([r[1] for r in rows], lo, hi)
    return {
        "start": lo,
        "end": hi,
        "duration_s": round(hi - lo, 3),
        "committed": len(lats),
        "failed": nfailed,
        "failed_by_kind": fail_kinds,
        "tps": round(len(lats) / dur, 1),
        "lat_avg_ms": round(sum(lats) / len(lats), 2) if lats else None,
        "lat_p50_ms": _r(percentile(lats, 50)),
        "lat_p99_ms": _r(percentile(lats, 99)),
        "lat_p999_ms": _r(percentile(lats, 99.9)),
        "lat_max_ms": _r(lats[-1] if lats else None),
        "slow_txns": sum(1 for x in lats if x > SLOW_MS),
        "longest_no_commit_s": round(gap[0], 3),
    }


def _r(x, nd=2):
    return None if x is None else round(x, nd)


def _select(rows, lo, hi, key):
    return [r for r in rows if lo <= key(r) < hi]


def _kinds(failed):
    out = {}
    for _, k in failed:
        out[k] = out.get(k, 0) + 1
    return out


def analyze(log_paths, timeline, meta=None, name=None):
    """All figures for one scenario, as a dict (see the module docstring)."""
    meta = dict(meta or {})
    ok, failed, bad = read_logs(log_paths)
    if not ok and not failed:
        raise SystemExit(f"no transactions in {log_paths}")
    phases = [(str(n), float(a), float(b)) for n, a, b in timeline]
    if not phases:
        raise SystemExit("empty timeline")
    # The load really started with the first transaction: clip the first phase to that, so
    # connection set-up does not count as idle time. The end is not clipped: run.sh takes it
    # just before it stops the load, and if the clients died earlier that time must count.
    first_start = min(r[0] for r in ok) if ok else failed[0][0]
    n0, a0, b0 = phases[0]
    phases[0] = (n0, min(max(a0, first_start), b0), b0)
    # ... but it is stretched over the few transactions that committed while the stop ran
    last_end = max(ok[-1][1] if ok else 0.0, failed[-1][0] if failed else 0.0)
    nl, al, bl = phases[-1]
    phases[-1] = (nl, al, max(bl, last_end + 1e-6))
    lo, hi = phases[0][1], phases[-1][2]

    result = {"name": name or meta.get("scenario"), "meta": meta, "log_files": list(log_paths),
              "unparsed_log_lines": bad}
    in_run = _select(ok, lo, hi, lambda r: r[1])
    f_run = _select(failed, lo, hi, lambda r: r[0])
    result["run"] = stats(in_run, len(f_run), _kinds(f_run), lo, hi)
    # every logged transaction, even those outside the timeline (should be none)
    result["run"]["committed_logged_total"] = len(ok)
    result["run"]["failed_logged_total"] = len(failed)

    result["phases"] = []
    for n, a, b in phases:
        rows = _select(ok, a, b, lambda r: r[1])
        fl = _select(failed, a, b, lambda r: r[0])
        s = stats(rows, len(fl), _kinds(fl), a, b)
        s["name"] = n
        result["phases"].append(s)

    change = [p for p in phases if p[0] not in LOAD_PHASES]
    if change:
        c_lo, c_hi = min(p[1] for p in change), max(p[2] for p in change)
        # by end time (for TPS), and every transaction that overlapped the window (for latency)
        rows = _select(ok, c_lo, c_hi, lambda r: r[1])
        fl = _select(failed, c_lo, c_hi, lambda r: r[0])
        s = stats(rows, len(fl), _kinds(fl), c_lo, c_hi)
        overlap = [r for r in ok if r[0] < c_hi and r[1] > c_lo]
        s["lat_max_overlapping_ms"] = _r(max((r[2] for r in overlap), default=0) * 1000.0)
        result["change_window"] = s
    else:
        result["change_window"] = None

    # the single slowest transaction, placed relative to the change window
    if ok:
        worst = max(ok, key=lambda r: r[2])
        ref = result["change_window"]["start"] if result["change_window"] else lo
        result["slowest_txn"] = {"latency_ms": _r(worst[2] * 1000.0),
                                 "start_rel_change_s": round(worst[0] - ref, 3),
                                 "end_rel_change_s": round(worst[1] - ref, 3)}
    # committed transactions per whole second since the start of the run (for plots)
    nsec = int(math.ceil(hi - lo))
    per_sec = [0] * max(nsec, 1)
    for r in in_run:
        i = min(int(r[1] - lo), len(per_sec) - 1)
        per_sec[i] += 1
    result["committed_per_second"] = per_sec

    result["checks"] = checks(meta, len(ok))
    return result


def checks(meta, logged_commits):
    """The invariant at rest, from the sums run.sh measured after the load stopped."""
    need = ("sum_abalance", "sum_delta", "sum_tbalance", "sum_bbalance", "rows_before", "rows_after")
    if not all(k in meta and meta[k] != "" for k in need):
        return {"invariant": None}
    sums_equal = (meta["sum_abalance"] == meta["sum_delta"] == meta["sum_tbalance"]
                  == meta["sum_bbalance"])
    rows_same = meta["rows_before"] == meta["rows_after"]
    out = {"sums_equal": sums_equal, "rows_unchanged": rows_same,
           "invariant": bool(sums_equal and rows_same)}
    fk = ["final_" + k for k in need[:4]] + ["final_rows_after"]
    if all(k in meta and meta[k] != "" for k in fk):
        # tandem: the same check once more after `finalize` dropped the old table
        out["invariant_after_finalize"] = bool(
            meta["final_sum_abalance"] == meta["final_sum_delta"] == meta["final_sum_tbalance"]
            == meta["final_sum_bbalance"] and meta["final_rows_after"] == meta["rows_before"])
    if "history_rows" in meta:
        # each commit inserts one history row; a commit whose reply was lost when the load was
        # stopped (its backend terminated) is in the table but not in the log: expect 0..clients
        out["history_rows_minus_logged_commits"] = meta["history_rows"] - logged_commits
    return out


# ----------------------------------------------------------------------------- printing

def fmt(x, nd=1):
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{nd}f}"
    return str(x)


def written_gb(meta):
    """What the server's buffers wrote during the change (checkpointer, background writer and
    backends, the clients' writes included; index builds write around the buffers), in GB."""
    keys = ("io_buffers_checkpoint", "io_buffers_clean", "io_buffers_backend")
    if not all(isinstance(meta.get(k), (int, float)) for k in keys):
        return "-"
    return f"{sum(meta[k] for k in keys) * 8192 / 1e9:.2f}"


def wal_gb(meta):
    """The WAL the server wrote during the change, in GB."""
    v = meta.get("io_wal_bytes")
    return f"{v / 1e9:.2f}" if isinstance(v, (int, float)) else "-"


def print_result(res, out=sys.stdout):
    m = res["meta"]
    run = res["run"]
    p = lambda *a: print(*a, file=out)
    p(f"== {res['name']}")
    if "change_wall_s" in m:
        p(f"change wall time: {m['change_wall_s']} s (exit code {m.get('change_rc', '?')})")
    p(f"run: {run['duration_s']} s, {run['committed']} committed, {run['failed']} failed "
      f"{run['failed_by_kind'] or ''}, {run['tps']} tps")
    p(f"latency: p50 {fmt(run['lat_p50_ms'], 2)} ms, p99 {fmt(run['lat_p99_ms'], 2)} ms, "
      f"max {fmt(run['lat_max_ms'], 1)} ms; {run['slow_txns']} txns > {SLOW_MS:g} ms; "
      f"longest time without a commit {run['longest_no_commit_s']} s")
    if res.get("slowest_txn"):
        s = res["slowest_txn"]
        p(f"slowest txn: {s['latency_ms']} ms, from {s['start_rel_change_s']:+} s to "
          f"{s['end_rel_change_s']:+} s relative to the change start")
    p(f"{'phase':<22}{'dur s':>8}{'commits':>9}{'failed':>8}{'tps':>9}{'p99 ms':>9}"
      f"{'max ms':>10}{'>100ms':>8}")
    for ph in res["phases"]:
        p(f"{ph['name']:<22}{ph['duration_s']:>8.2f}{ph['committed']:>9}{ph['failed']:>8}"
          f"{ph['tps']:>9.1f}{fmt(ph['lat_p99_ms'], 1):>9}{fmt(ph['lat_max_ms'], 1):>10}"
          f"{ph['slow_txns']:>8}")
    c = res["checks"]
    if c.get("invariant") is not None:
        p(f"invariant at rest: {'held' if c['invariant'] else 'BROKEN'} "
          f"(sums equal: {c['sums_equal']}, row count unchanged: {c['rows_unchanged']}, "
          f"history rows - logged commits: {c.get('history_rows_minus_logged_commits')})")
    if res["unparsed_log_lines"]:
        p(f"warning: {res['unparsed_log_lines']} unparsable log lines")


# ----------------------------------------------------------------------------- timeline

def build_timeline(load_start, change_start, change_end, load_end, events=None,
                   during_name="during"):
    """before / (during | tandem phases) / after. events: [(phase, event, epoch)] in id order."""
    tl = [["before", load_start, change_start]]
    inner = []
    tol = 1.0  # `at` is now(), the start of the recording transaction: allow a little slack
    evs = [(ph, ev, t) for ph, ev, t in (events or []) if change_start - tol <= t <= change_end + tol]
    if evs:
        runs = []  # (phase, first_at) for each run of consecutive events with the same phase
        for ph, _, t in evs:
            if not runs or runs[-1][0] != ph:
                runs.append([ph, min(max(t, change_start), change_end)])
        seen = {}
        if runs[0][1] > change_start + 0.001:
            inner.append(["startup", change_start, runs[0][1]])
        for i, (ph, t) in enumerate(runs):
            end = runs[i + 1][1] if i + 1 < len(runs) else change_end
            seen[ph] = seen.get(ph, 0) + 1
            name = ph if seen[ph] == 1 else f"{ph}#{seen[ph]}"
            inner.append([name, t, max(t, end)])
    else:
        inner.append([during_name, change_start, change_end])
    tl.extend(inner)
    tl.append(["after", change_end, load_end])
    return tl


def split_at_marks(tl, marks):
    """Split the phase holding each (name, epoch) mark there: [ph, a, b] -> [ph, a, t], [name, t, b]."""
    for name, t in marks:
        for i, (ph, a, b) in enumerate(tl):
            if a < t < b and ph not in LOAD_PHASES:
                tl[i:i + 1] = [[ph, a, t], [name, t, b]]
                break
    return tl


def read_marks(path):
    """The backfill's steps from tandem's stamped output: the first index build, the last built."""
    first_build = last_built = None
    with open(path) as f:
        for line in f:
            at, _, text = line.rstrip("\n").partition(" ")
            try:
                t = float(at)
            except ValueError:
                continue
            if text.startswith("building index") and first_build is None:
                first_build = t
            elif text.startswith("index ") and " built in " in text:
                last_built = t
    marks = []
    if first_build is not None:
        marks.append(("index", first_build))
    if last_built is not None and (first_build is None or last_built > first_build):
        marks.append(("drain", last_built))
    return marks


def read_events(path):
    out = []
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) >= 3 and parts[2]:
                try:
                    out.append((parts[0], parts[1], float(parts[2])))
                except ValueError:
                    pass
    return out


# ----------------------------------------------------------------------------- report

SCEN_TITLE = {"alone": "(0) load alone", "alter": "(a) ALTER TABLE",
              "tandem": "(b) tandem", "repack": "(c) pg_repack (reference, no type change)"}


def report(scale, files, out_md, out_json, header=""):
    results = []
    for f in files:
        with open(f) as fh:
            results.append(json.load(fh))
    with open(out_json, "w") as fh:
        json.dump({"scale": scale, "scenarios": results}, fh, indent=1)

    L = []
    L.append(f"# Changing pgbench_accounts.aid/abalance to bigint under load, scale {scale}")
    L.append("")
    if header:
        L.append(header.strip())
        L.append("")
    L.append("| scenario | change wall s | longest txn ms | p99 ms | txns >100 ms | failed txns "
             "| aborted clients | longest no-commit s | TPS before | TPS during | TPS after "
             "| written GB | WAL GB | invariant | aid, abalance after |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
    for r in results:
        m = r.get("meta", {})
        name = SCEN_TITLE.get(r.get("name"), r.get("name"))
        if r.get("error"):
            L.append(f"| {name} | error: {r['error']} |" + " |" * 13)
            continue
        run = r["run"]
        ph = {p["name"]: p for p in r["phases"]}
        cw = r.get("change_window") or {}
        wall = m.get("change_wall_s")
        rc = m.get("change_rc", 0)
        wall_s = "-" if r.get("name") == "alone" else fmt(wall, 2)
        if rc not in (0, "0", None):
            wall_s += f" (exit {rc})"
        inv = r["checks"].get("invariant")
        inv_s = "-" if inv is None else ("held" if inv else "**BROKEN**")
        L.append("| " + " | ".join([
            name, wall_s, fmt(run["lat_max_ms"], 0), fmt(run["lat_p99_ms"], 1),
            str(run["slow_txns"]), str(run["failed"]), str(m.get("clients_aborted", "-")),
            fmt(run["longest_no_commit_s"], 2),
            fmt(ph.get("before", {}).get("tps"), 0), fmt(cw.get("tps"), 0),
            fmt(ph.get("after", {}).get("tps"), 0), written_gb(m), wal_gb(m),
            inv_s, str(m.get("types_after", "-")),
        ]) + " |")
    L.append("")
    L.append("Per phase (transactions are placed by their end time; `max ms` = slowest transaction "
             "that ended in the phase):")
    L.append("")
    L.append("| scenario | phase | duration s | commits | failed | TPS | p99 ms | max ms | >100 ms "
             "| longest no-commit s |")
    L.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        if r.get("error"):
            continue
        for p in r["phases"]:
            L.append("| " + " | ".join([
                r["name"], p["name"], fmt(p["duration_s"], 2), str(p["committed"]),
                str(p["failed"]), fmt(p["tps"], 0), fmt(p["lat_p99_ms"], 1),
                fmt(p["lat_max_ms"], 0), str(p["slow_txns"]), fmt(p["longest_no_commit_s"], 2),
            ]) + " |")
    L.append("")
    L.append("Checks at rest (after the load stopped):")
    L.append("")
    L.append("| scenario | rows before | rows after | sum(abalance) | sum(delta) | sum(tbalance) "
             "| sum(bbalance) | history rows − logged commits | pgbench exit | notes |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in results:
        if r.get("error"):
            continue
        m = r["meta"]
        notes = [str(m["notes"])] if m.get("notes") else []
        if "finalize_wall_s" in m:
            notes.append(f"finalize {m['finalize_wall_s']} s (exit {m.get('finalize_rc')})")
        if "invariant_after_finalize" in r["checks"]:
            notes.append("invariant after finalize: " + (
                "held" if r["checks"]["invariant_after_finalize"] else "**BROKEN**"))
        L.append("| " + " | ".join(str(x) for x in [
            r["name"], m.get("rows_before", "-"), m.get("rows_after", "-"),
            m.get("sum_abalance", "-"), m.get("sum_delta", "-"), m.get("sum_tbalance", "-"),
            m.get("sum_bbalance", "-"),
            r["checks"].get("history_rows_minus_logged_commits", "-"),
            m.get("pgbench_rc", "-"), "; ".join(notes),
        ]) + " |")
    L.append("")
    with open(out_md, "w") as fh:
        fh.write("\n".join(L))
    return "\n".join(L)


# ----------------------------------------------------------------------------- main

def main(argv):
    if argv and argv[0] == "timeline":
        ap = argparse.ArgumentParser(prog="analyze.py timeline")
        for k in ("load-start", "change-start", "change-end", "load-end"):
            ap.add_argument("--" + k, type=float, required=True)
        ap.add_argument("--events")
        ap.add_argument("--marks")
        ap.add_argument("--during-name", default="during")
        ap.add_argument("-o", "--out", required=True)
        a = ap.parse_args(argv[1:])
        ev = read_events(a.events) if a.events else None
        tl = build_timeline(a.load_start, a.change_start, a.change_end, a.load_end, ev,
                            a.during_name)
        if a.marks:
            tl = split_at_marks(tl, read_marks(a.marks))
        with open(a.out, "w") as fh:
            json.dump(tl, fh)
        print(json.dumps(tl))
        return 0
    if argv and argv[0] == "report":
        ap = argparse.ArgumentParser(prog="analyze.py report")
        ap.add_argument("--scale", type=int, required=True)
        ap.add_argument("--out-md", required=True)
        ap.add_argument("--out-json", required=True)
        ap.add_argument("--header", default="")
        ap.add_argument("files", nargs="+")
        a = ap.parse_args(argv[1:])
        print(report(a.scale, a.files, a.out_md, a.out_json, a.header))
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--timeline", required=True, help="JSON list of [name, start_epoch, end_epoch]")
    ap.add_argument("--meta", help="key=value file written by run.sh")
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--name")
    ap.add_argument("logs", nargs="+")
    a = ap.parse_args(argv)
    with open(a.timeline) as fh:
        tl = json.load(fh)
    res = analyze(a.logs, tl, read_meta(a.meta), a.name)
    print_result(res)
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(res, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
