#!/usr/bin/env python3
"""Figures for bench/proxy/run.sh (standard library only).

  analyze.py run --out RUN.json --pgbench-out OUT --pgbench-err ERR [--set K=V ...] --logs LOG...
      One pgbench run: TPS as pgbench reports it (without the initial connection time), and from
      the per-transaction logs (`pgbench -l`, one file per thread, plain or .gz) the latency
      p50 / p90 / p99 / p99.9 / max, failed transactions, clients that aborted and why, and the
      proxy's CPU time per transaction when run.sh measured it (proxy_cpu_ticks, clk_tck).

  analyze.py dual-counters --run RUN.json --db-before A|B|C|D --db-after A|B|C|D
                           [--metrics-before FILE --metrics-after FILE]
      Adds to RUN.json what the proxy compared during that run: the change of its row sums in
      tandem.dual_reads (comparisons|mismatches|skipped|dropped) and of its Prometheus counters.

  analyze.py cutover --out RESULT.json --events EVENTS.json --pgbench-out OUT --pgbench-err ERR
                     [--metrics FILE] [--apply-log FILE] [--set K=V ...] --logs LOG...
      A load through a proxy while `tandem apply` ran to cutover: the longest transaction over
      the run, during the apply and around the cutover (the cutover events of tandem.events,
      1 s either side), failures and aborts, TPS before / during / after, and the hold.

  analyze.py stages --run RUN.json --metrics-before FILE --metrics-after FILE
      Adds to RUN.json where the tandem proxy's requests spent their time during that run (the
      change of its tandem_proxy_request_stage_seconds histograms: in, server, out, total) and how
      late its worker threads woke (tandem_proxy_worker_lag_seconds): counts, p50 / p99 / p99.9
      as the upper bound of their bucket, and how many took over 10 and 100 ms.

  analyze.py report --raw DIR --out-md OUT.md --out-json OUT.json
      Medians over the rounds and the ratios, as markdown tables (also printed) and JSON.

pgbench log line (PG15, no --rate): client_id transaction_no time script_no time_epoch time_us
[retries]; `time` is the latency in µs, or failed / serialization / deadlock (--failures-detailed).
"""
import argparse
import glob
import gzip
import json
import math
import os
import re
import statistics
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cpu_probe  # noqa: E402

SLOW_MS = 100.0
AROUND_S = 1.0


# ----------------------------------------------------------------------------- helpers

def num(v):
    if v is None:
        return None
    for conv in (int, float):
        try:
            return conv(v)
        except (TypeError, ValueError):
            pass
    return v


def parse_sets(items):
    out = {}
    for item in items or []:
        if "=" not in item:
            raise SystemExit(f"--set takes KEY=VALUE, not {item!r}")
        k, v = item.split("=", 1)
        out[k] = num(v) if v != "" else None
    return out


def percentile(sorted_vals, p):
    """Nearest-rank percentile of an ascending list (None when empty)."""
    if not sorted_vals:
        return None
    k = max(1, math.ceil(p / 100.0 * len(sorted_vals)))
    return sorted_vals[min(k, len(sorted_vals)) - 1]


def r2(x, nd=2):
    return None if x is None else round(x, nd)


def open_log(path):
    return gzip.open(path, "rt", errors="replace") if path.endswith(".gz") else open(path, errors="replace")


def read_logs(paths):
    """(ok, failed, bad): ok = [(start, end, latency_s)] sorted by end; failed = [(end, kind)]."""
    ok, failed, bad = [], [], 0
    for path in paths:
        with open_log(path) as f:
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


def latency_stats(lat_ms):
    lat_ms = sorted(lat_ms)
    return {
        "lat_avg_ms": r2(sum(lat_ms) / len(lat_ms)) if lat_ms else None,
        "lat_p50_ms": r2(percentile(lat_ms, 50)),
        "lat_p90_ms": r2(percentile(lat_ms, 90)),
        "lat_p99_ms": r2(percentile(lat_ms, 99)),
        "lat_p999_ms": r2(percentile(lat_ms, 99.9)),
        "lat_max_ms": r2(lat_ms[-1] if lat_ms else None),
        "slow_txns": sum(1 for x in lat_ms if x > SLOW_MS),
    }


def pgbench_summary(out_path, err_path, err_stop_offset=None):
    """What pgbench printed: tps, processed, failed; aborted clients and their errors. With
    err_stop_offset (the size of stderr when run.sh began to stop the load), aborts after it
    are the stop's own and are reported apart."""
    text = open(out_path, errors="replace").read() if out_path and os.path.exists(out_path) else ""
    err = ""
    if err_path and os.path.exists(err_path):
        with open(err_path, "rb") as f:
            raw = f.read()
        cut = len(raw) if err_stop_offset is None else min(int(err_stop_offset), len(raw))
        err = raw[:cut].decode(errors="replace")
        at_stop = raw[cut:].decode(errors="replace")
    else:
        at_stop = ""
    s = {}
    m = re.search(r"^tps = ([0-9.]+) \(without initial connection time\)", text, re.M)
    s["tps_pgbench"] = float(m.group(1)) if m else None
    m = re.search(r"^number of transactions actually processed: (\d+)", text, re.M)
    s["processed_pgbench"] = int(m.group(1)) if m else None
    m = re.search(r"^number of failed transactions: (\d+)", text, re.M)
    s["failed_pgbench"] = int(m.group(1)) if m else 0
    s["run_aborted"] = "Run was aborted" in text or "Run was aborted" in err
    # PG15: "pgbench: error: client 2 script 0 aborted in command 6 query 0: ERROR:  cached plan ..."
    # not anchored at the line start: two pgbench threads can interleave their writes
    # ("pgbench:pgbench: error: client 4 ...")
    aborts = re.findall(r"client (\d+) (?:script \d+ )?aborted in command \d+[^:;\n]*[:;] (.*)$", err, re.M)
    s["clients_aborted"] = len({a[0] for a in aborts})
    kinds = {}
    for a in aborts:
        msg = re.sub(r"\s+", " ", a[1]).strip()
        kinds[msg] = kinds.get(msg, 0) + 1
    s["abort_messages"] = kinds
    other = [l for l in err.splitlines() if "error" in l.lower() and "aborted in command" not in l]
    s["other_errors"] = other[:5]
    s["clients_aborted_at_stop"] = len(set(re.findall(r"client (\d+) (?:script \d+ )?aborted", at_stop)))
    return s


def foreign_fields(paths):
    """CPU used outside the benchmark during the run (see cpu_probe.py)."""
    if not paths or not all(os.path.exists(p) for p in paths):
        return {"foreign_cpu_s": None, "foreign_top": [], "kernel_threads_cpu_s": None, "steal_s": None, "busy_s": None}
    return cpu_probe.diff(paths[0], paths[1])


def cpu_fields(meta, committed):
    ticks, hz = meta.get("proxy_cpu_ticks"), meta.get("clk_tck")
    if isinstance(ticks, (int, float)) and isinstance(hz, (int, float)) and hz:
        cpu = ticks / hz
        return {"proxy_cpu_s": r2(cpu), "proxy_cpu_us_per_txn": r2(cpu / committed * 1e6, 1) if committed else None}
    return {"proxy_cpu_s": None, "proxy_cpu_us_per_txn": None}


# ----------------------------------------------------------------------------- run

def cmd_run(a):
    meta = parse_sets(a.set)
    ok, failed, bad = read_logs(a.logs)
    r = dict(meta)
    r.update(pgbench_summary(a.pgbench_out, a.pgbench_err))
    r["committed"] = len(ok)
    r["failed"] = len(failed)
    r["failed_by_kind"] = {}
    for _, k in failed:
        r["failed_by_kind"][k] = r["failed_by_kind"].get(k, 0) + 1
    r["unparsed_log_lines"] = bad
    if ok:
        span = ok[-1][1] - min(x[0] for x in ok)
        r["tps_log"] = r2(len(ok) / span, 1) if span > 0 else None
    else:
        r["tps_log"] = None
    # the figure reported: pgbench's own (excludes connection set-up), else from the log
    r["tps"] = r["tps_pgbench"] if r["tps_pgbench"] is not None else r["tps_log"]
    r.update(latency_stats([x[2] * 1000.0 for x in ok]))
    # a stall: the longest time in which no client committed (from the first commit to the last)
    ends = [x[1] for x in ok]
    r["longest_no_commit_s"] = r2(max((b - a for a, b in zip(ends, ends[1:])), default=0.0), 3)
    r.update(cpu_fields(meta, len(ok)))
    r.update(foreign_fields(a.cpu))
    r["log_files"] = [os.path.basename(p) for p in a.logs]
    with open(a.out, "w") as f:
        json.dump(r, f, indent=1)
    print(json.dumps({k: r[k] for k in ("tps", "lat_p99_ms", "failed", "clients_aborted")}))


# ----------------------------------------------------------------------------- dual counters

DUAL_KEYS = ("comparisons", "mismatches", "skipped", "dropped")


def parse_counts(text):
    parts = (text or "").strip().split("|")
    if len(parts) != 4 or not all(p.strip().isdigit() for p in parts):
        return None
    return dict(zip(DUAL_KEYS, (int(p) for p in parts)))


def parse_metrics(path):
    out = {}
    if not path or not os.path.exists(path):
        return out
    for line in open(path):
        if line.startswith("#") or not line.strip():
            continue
        name, _, value = line.strip().rpartition(" ")
        if name.startswith("tandem_proxy_"):
            out[name[len("tandem_proxy_"):]] = num(value)
    return out


def parse_histograms(path):
    """{(name, labels): {le: cumulative count}} of the file's histogram buckets."""
    out = {}
    if not path or not os.path.exists(path):
        return out
    pat = re.compile(r'^(tandem_proxy_\w+)_bucket\{(.*?),?le="([^"]+)"\} (\d+)$')
    for line in open(path):
        m = pat.match(line.strip())
        if m:
            le = math.inf if m.group(3) == "+Inf" else float(m.group(3))
            out.setdefault((m.group(1), m.group(2)), {})[le] = int(m.group(4))
    return out


def histogram_summary(before, after):
    """Counts and quantiles (a bucket's upper bound, ms) of what `after` gained over `before`."""
    les = sorted(after)
    cum = [after[le] - before.get(le, 0) for le in les]
    n = cum[-1] if cum else 0
    r = {"count": n}
    for q, key in ((0.5, "p50_le_ms"), (0.99, "p99_le_ms"), (0.999, "p999_le_ms")):
        le = next((le for le, c in zip(les, cum) if n and c >= q * n), None)
        r[key] = None if le is None else (le * 1000.0 if le != math.inf else "inf")
    def over(limit):
        below = max((c for le, c in zip(les, cum) if le <= limit), default=0)
        return n - below
    r["over_10ms"] = over(0.01)
    r["over_100ms"] = over(0.1)
    return r


def cmd_stages(a):
    r = json.load(open(a.run))
    hb, ha = parse_histograms(a.metrics_before), parse_histograms(a.metrics_after)
    st = {}
    for (name, labels), buckets in ha.items():
        before = hb.get((name, labels), {})
        if name == "tandem_proxy_request_stage_seconds":
            st[labels.split('"')[1]] = histogram_summary(before, buckets)
        elif name == "tandem_proxy_worker_lag_seconds":
            st["worker_lag"] = histogram_summary(before, buckets)
    m = parse_metrics(a.metrics_after)
    st["max_since_start_ms"] = {k[len("request_stage_max_seconds{stage=\""):-2]: r2(v * 1000.0)
                                for k, v in m.items() if k.startswith("request_stage_max_seconds")}
    st["worker_lag_max_since_start_ms"] = r2((m.get("worker_lag_max_seconds") or 0) * 1000.0)
    r["stages"] = st
    with open(a.run, "w") as f:
        json.dump(r, f, indent=1)


def cmd_dual(a):
    r = json.load(open(a.run))
    b, e = parse_counts(a.db_before), parse_counts(a.db_after)
    dual = {"db": {k: (e[k] - b[k]) if (b and e) else None for k in DUAL_KEYS}}
    mb, me = parse_metrics(a.metrics_before), parse_metrics(a.metrics_after)
    dual["metrics"] = {k: me[k] - mb.get(k, 0) for k in me
                       if (k.startswith("dual_read") or k in ("queries_total",)) and isinstance(me[k], (int, float))}
    reads = r.get("committed") or 0
    dual["reads"] = reads
    c = dual["db"]["comparisons"]
    dual["compared_share"] = r2(c / reads, 4) if (reads and c is not None) else None
    r["dual"] = dual
    with open(a.run, "w") as f:
        json.dump(r, f, indent=1)


# ----------------------------------------------------------------------------- cutover

def window_stats(ok, failed, lo, hi):
    """Transactions that *ended* in [lo, hi) for TPS; those that *overlapped* it for latency."""
    ended = [x for x in ok if lo <= x[1] < hi]
    overlap = [x for x in ok if x[0] < hi and x[1] > lo]
    fl = [x for x in failed if lo <= x[0] < hi]
    longest = max(overlap, key=lambda x: x[2]) if overlap else None
    ends = [x[1] for x in ended]
    gap, prev = 0.0, lo
    for t in ends:
        gap = max(gap, t - prev)
        prev = t
    gap = max(gap, hi - prev)
    return {
        "start": lo, "end": hi, "duration_s": r2(hi - lo, 3),
        "committed": len(ended),
        "tps": r2(len(ended) / (hi - lo), 1) if hi > lo else None,
        "failed": len(fl),
        "lat_p99_ms": r2(percentile(sorted(x[2] * 1000 for x in ended), 99)),
        "longest_ms": r2(longest[2] * 1000) if longest else None,
        "longest_at": r2(longest[0], 3) if longest else None,
        "slow_txns": sum(1 for x in overlap if x[2] * 1000 > SLOW_MS),
        "longest_no_commit_s": r2(gap, 3),
    }


def cmd_cutover(a):
    meta = parse_sets(a.set)
    ok, failed, bad = read_logs(a.logs)
    events = json.load(open(a.events)) if a.events and os.path.exists(a.events) else []
    r = dict(meta)
    r.update(pgbench_summary(a.pgbench_out, a.pgbench_err, a.err_stop_offset))
    r["err_stop_offset"] = a.err_stop_offset
    r["committed"] = len(ok)
    r["failed"] = len(failed)
    r["unparsed_log_lines"] = bad
    r.update(latency_stats([x[2] * 1000.0 for x in ok]))
    clients, alive = meta.get("clients"), meta.get("clients_alive_at_stop")
    r["clients_aborted_before_stop"] = (clients - alive) if isinstance(clients, int) and isinstance(alive, int) else None

    lo = min([x[0] for x in ok] + [x[0] for x in failed]) if (ok or failed) else meta.get("load_start")
    a0, a1, end = meta.get("apply_start"), meta.get("apply_end"), meta.get("load_end")
    last = max([x[1] for x in ok] + [x[0] for x in failed] + [end or 0])
    r["windows"] = {}
    if a0 and a1:
        r["windows"]["before"] = window_stats(ok, failed, lo, a0)
        r["windows"]["apply"] = window_stats(ok, failed, a0, a1)
        r["windows"]["after"] = window_stats(ok, failed, a1, max(end or a1, a1 + 1e-6))
    r["windows"]["run"] = window_stats(ok, failed, lo, last + 1e-6)

    # the cutover: from its first event to the first event of a later phase (or its last + 0.1 s)
    cut = [e for e in events if e.get("phase") == "cutover"]
    r["events"] = [{"phase": e["phase"], "event": e["event"], "at": e["at"],
                    "detail": e.get("detail")} for e in events]
    if cut:
        c_lo = min(e["at"] for e in cut)
        later = [e["at"] for e in events if e["at"] > max(x["at"] for x in cut) and e.get("phase") != "cutover"]
        c_hi = min(later) if later else max(e["at"] for e in cut) + 0.1
        r["cutover_window"] = [c_lo, c_hi]
        r["windows"]["cutover"] = window_stats(ok, failed, c_lo, c_hi)
        r["windows"]["around_cutover"] = window_stats(ok, failed, c_lo - AROUND_S, c_hi + AROUND_S)
    holds = [e for e in events if e.get("event") in ("held", "hold fell back")]
    r["holds"] = [{"event": e["event"], "at": e["at"],
                   "detail": (e.get("detail") or {}).get("detail"),
                   "waited_ms": (e.get("detail") or {}).get("waited_ms"),
                   "proxies": (e.get("detail") or {}).get("proxies")} for e in holds]
    r["cutover_attempts_failed"] = sum(1 for e in events if e.get("phase") == "cutover" and e.get("event") == "attempt failed")
    r["cutover_done"] = any(e.get("phase") in ("rollback_window", "finalized") for e in events) or \
        str(meta.get("migration_state", "")).startswith("rollback_window")
    if a.apply_log and os.path.exists(a.apply_log):
        r["apply_cutover_lines"] = [l.strip() for l in open(a.apply_log, errors="replace")
                                    if "cutover" in l.lower() or "hold" in l.lower() or "error" in l.lower()][:20]
    m = parse_metrics(a.metrics)
    r["proxy_metrics"] = {k: v for k, v in m.items()
                          if k in ("prepared_recovered_total", "holds_total", "holds_acknowledged_total",
                                   "clients_held_total", "hold_wait_seconds_sum", "hold_wait_seconds_count",
                                   "server_errors_total", "upstream_errors_total", "queries_total")}
    r.update(cpu_fields(meta, len(ok)))
    r.update(foreign_fields(a.cpu))
    with open(a.out, "w") as f:
        json.dump(r, f, indent=1)
    w = r["windows"]
    print(f"cutover {meta.get('target')}: committed {len(ok)}, failed {len(failed)}, "
          f"clients aborted before the stop {r['clients_aborted_before_stop']}, "
          f"longest txn {r['lat_max_ms']} ms (apply {w.get('apply', {}).get('longest_ms')} ms, "
          f"around cutover {w.get('around_cutover', {}).get('longest_ms')} ms), "
          f"holds {[h['event'] for h in r['holds']]}, aborts {r['abort_messages'] or '-'}")


# ----------------------------------------------------------------------------- report

TARGET_NAMES = {"direct": "direct", "pgbouncer": "pgbouncer", "tandem": "tandem proxy"}
WORKLOAD_NAMES = {
    "select-simple": "`-S -M simple`",
    "select-prepared": "`-S -M prepared`",
    "tpcb-simple": "TPC-B `-M simple`",
    "tpcb-prepared": "TPC-B `-M prepared`",
}
WORKLOAD_ORDER = {w: i for i, w in enumerate(WORKLOAD_NAMES)}


def med(xs):
    xs = [x for x in xs if isinstance(x, (int, float))]
    return statistics.median(xs) if xs else None


def fmt(x, nd=0, suffix=""):
    if x is None:
        return "–"
    if isinstance(x, str):
        return x
    if nd == 0:
        return f"{x:,.0f}{suffix}"
    return f"{x:,.{nd}f}{suffix}"


def ratio(a, b, nd=2):
    return None if (a is None or b in (None, 0)) else round(a / b, nd)


def load_runs(pattern):
    runs = []
    for p in sorted(glob.glob(pattern)):
        try:
            runs.append(json.load(open(p)))
        except (OSError, ValueError) as e:
            print(f"skipping {p}: {e}", file=sys.stderr)
    return runs


def cmd_report(a):
    raw = a.raw
    env = json.load(open(os.path.join(raw, "env.json"))) if os.path.exists(os.path.join(raw, "env.json")) else {}
    out = {"env": env}
    md = []
    loads = []

    def note_load(r):
        for k in ("loadavg_before", "loadavg_after"):
            if isinstance(r.get(k), (int, float)):
                loads.append(r[k])

    # --- throughput
    runs = load_runs(os.path.join(raw, "throughput", "*", "run.json"))
    for r in runs:
        note_load(r)
    groups = {}
    for r in runs:
        groups.setdefault((r["workload"], r["target"]), []).append(r)
    tp = []
    workloads = [w for w in WORKLOAD_NAMES if any(k[0] == w for k in groups)]
    for w in workloads:
        row = {"workload": w}
        for t in ("direct", "pgbouncer", "tandem"):
            rs = groups.get((w, t), [])
            tps = [x["tps"] for x in rs]
            row[t] = {
                "rounds": len(rs),
                "tps_median": r2(med(tps), 1),
                "tps_min": min(tps) if tps else None,
                "tps_max": max(tps) if tps else None,
                "tps_all": tps,
                "p50_ms_median": r2(med([x["lat_p50_ms"] for x in rs])),
                "p99_ms_median": r2(med([x["lat_p99_ms"] for x in rs])),
                "p99_ms_all": [x["lat_p99_ms"] for x in rs],
                "max_ms_max": max([x["lat_max_ms"] for x in rs if x["lat_max_ms"] is not None], default=None),
                "failed": sum(x["failed"] for x in rs),
                "clients_aborted": sum(x["clients_aborted"] for x in rs),
                "proxy_cpu_us_per_txn_median": r2(med([x.get("proxy_cpu_us_per_txn") for x in rs]), 1),
            }
        row["tandem_over_pgbouncer"] = ratio(row["tandem"]["tps_median"], row["pgbouncer"]["tps_median"])
        row["tandem_over_direct"] = ratio(row["tandem"]["tps_median"], row["direct"]["tps_median"])
        row["pgbouncer_over_direct"] = ratio(row["pgbouncer"]["tps_median"], row["direct"]["tps_median"])
        row["p99_tandem_over_pgbouncer"] = ratio(row["tandem"]["p99_ms_median"], row["pgbouncer"]["p99_ms_median"])
        tp.append(row)
    out["throughput"] = tp

    if env:
        md.append(f"Run {env.get('started', '?')} on {env.get('nproc', '?')} cores ({env.get('kernel', '?')}, sched_autogroup_enabled {env.get('autogroup', '?')}; proxies in {'a session each' if env.get('proxy_session', 'own') == 'own' else 'the benchmark script' + chr(39) + 's session, beside pgbench'}); "
                  f"PostgreSQL {env.get('server_version', '?')}, {env.get('pgbouncer_version', '?')}, "
                  f"tandem {env.get('git', '?')} (binary {env.get('tandem_binary_mtime', '?')}).")
        md.append(f"Command: `{env.get('command', 'bench/proxy/run.sh')}`. Scale {env.get('scale')}, "
                  f"`-c {env.get('clients')} -j {env.get('jobs')} -T {env.get('secs')}`, "
                  f"{env.get('rounds')} rounds, interleaved; medians over the rounds.")
        md.append("")

    if tp:
        md.append("### Throughput and latency (median of the rounds)")
        md.append("")
        md.append("| workload | direct TPS | pgbouncer TPS | tandem TPS | tandem / pgbouncer | tandem / direct | pgbouncer / direct "
                  "| p99 ms direct | p99 ms pgbouncer | p99 ms tandem | proxy CPU µs/txn pgbouncer | proxy CPU µs/txn tandem | failed |")
        md.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for row in tp:
            d, p, t = row["direct"], row["pgbouncer"], row["tandem"]
            md.append(f"| {WORKLOAD_NAMES[row['workload']]} | {fmt(d['tps_median'])} | {fmt(p['tps_median'])} | {fmt(t['tps_median'])} "
                      f"| **{fmt(row['tandem_over_pgbouncer'], 2)}** | {fmt(row['tandem_over_direct'], 2)} | {fmt(row['pgbouncer_over_direct'], 2)} "
                      f"| {fmt(d['p99_ms_median'], 2)} | {fmt(p['p99_ms_median'], 2)} | {fmt(t['p99_ms_median'], 2)} "
                      f"| {fmt(p['proxy_cpu_us_per_txn_median'], 1)} | {fmt(t['proxy_cpu_us_per_txn_median'], 1)} "
                      f"| {d['failed'] + p['failed'] + t['failed']} |")
        md.append("")
        md.append("Every round (TPS; p99 ms), and the worst single transaction of all rounds:")
        md.append("")
        md.append("| workload | direct | pgbouncer | tandem | max ms direct / pgbouncer / tandem |")
        md.append("|---|---|---|---|---|")
        for row in tp:
            cells = []
            for t in ("direct", "pgbouncer", "tandem"):
                x = row[t]
                cells.append(", ".join(f"{fmt(a)} ({fmt(b, 2)})" for a, b in zip(x["tps_all"], x["p99_ms_all"])) or "–")
            mx = " / ".join(fmt(row[t]["max_ms_max"]) for t in ("direct", "pgbouncer", "tandem"))
            md.append(f"| {WORKLOAD_NAMES[row['workload']]} | " + " | ".join(cells) + f" | {mx} |")
        md.append("")

    # --- how long the server's backends waited for a CPU (RUNQ=1)
    rq = [r for r in runs if r.get("runq")]
    if rq:
        md.append("### The server's backends waiting for a CPU (`RUNQ=1`)")
        md.append("")
        md.append("Per run, the longest time one client backend stayed runnable while the scheduler gave it no CPU "
                  "(sampled every 5 ms from /proc), and how many such stretches lasted over 50 ms; beside it the "
                  "slowest transaction pgbench saw.")
        md.append("")
        md.append("| workload | target | round | longest wait for a CPU, ms | waits over 50 ms | pgbench max ms |")
        md.append("|---|---|---:|---:|---:|---:|")
        for r in sorted(rq, key=lambda x: (WORKLOAD_ORDER.get(x["workload"], 9), x.get("target", ""), str(x.get("round")))):
            q = r["runq"]
            md.append(f"| {WORKLOAD_NAMES[r['workload']]} | {r.get('target')} | {r.get('round')} "
                      f"| {fmt(q.get('longest_runnable_unserved_ms'))} | {fmt(q.get('stretches_over_50ms'))} | {fmt(r.get('lat_max_ms'))} |")
        md.append("")
        out["runq"] = [{"workload": r["workload"], "target": r.get("target"), "round": r.get("round"), "runq": r["runq"],
                        "pgbench_max_ms": r.get("lat_max_ms")} for r in rq]

    # --- where tandem's requests spend their time (the proxy's own histograms)
    staged = [r for r in runs if r.get("target") == "tandem" and r.get("stages")]
    if staged:
        md.append("### Where the tandem proxy's requests spend their time")
        md.append("")
        md.append("Per round (the proxy's histograms over that pgbench run; a quantile is its bucket's upper bound, ms): "
                  "*in* from the read that brought a request to its last byte written to PostgreSQL, *server* from "
                  "there to the answer's first bytes read back, *out* from those to the ReadyForQuery written to "
                  "the client, *lag* how late a worker thread picked up a probe handed to it every 10 ms. Beside them, what pgbench "
                  "saw of the same run.")
        md.append("")
        md.append("| workload | round | requests timed | total p99 / p99.9 | in p99 / p99.9 | server p99 / p99.9 | out p99 / p99.9 "
                  "| over 10 ms: total / in / server / out | worker lag p99 / over 10 ms / over 100 ms | pgbench p99 / max ms |")
        md.append("|---|---:|---:|---|---|---|---|---|---|---|")
        out["stages"] = []
        for r in sorted(staged, key=lambda x: (WORKLOAD_ORDER.get(x["workload"], 9), str(x.get("round")))):
            st = r["stages"]
            g = lambda k: st.get(k) or {}
            q = lambda k: f"{fmt(g(k).get('p99_le_ms'), 2)} / {fmt(g(k).get('p999_le_ms'), 2)}"
            lag = g("worker_lag")
            md.append(f"| {WORKLOAD_NAMES[r['workload']]} | {r.get('round')} | {fmt(g('total').get('count'))} | {q('total')} | {q('in')} "
                      f"| {q('server')} | {q('out')} | {' / '.join(fmt(g(k).get('over_10ms')) for k in ('total', 'in', 'server', 'out'))} "
                      f"| {fmt(lag.get('p99_le_ms'), 2)} / {fmt(lag.get('over_10ms'))} / {fmt(lag.get('over_100ms'))} "
                      f"| {fmt(r.get('lat_p99_ms'), 2)} / {fmt(r.get('lat_max_ms'))} |")
            out["stages"].append({"workload": r["workload"], "round": r.get("round"), "stages": st,
                                  "pgbench_p99_ms": r.get("lat_p99_ms"), "pgbench_max_ms": r.get("lat_max_ms")})
        md.append("")

    # --- dual reads
    druns = load_runs(os.path.join(raw, "dual", "*", "run.json"))
    for r in druns:
        note_load(r)
    dual = {}
    for s in ("tandem-d0", "tandem-d100"):
        rs = [r for r in druns if r.get("target") == s]
        if not rs:
            continue
        db = lambda k: [((r.get("dual") or {}).get("db") or {}).get(k) for r in rs]
        mt = lambda k: [((r.get("dual") or {}).get("metrics") or {}).get(k) for r in rs]
        dual[s] = {
            "rounds": len(rs),
            "tps_median": r2(med([r["tps"] for r in rs]), 1),
            "tps_all": [r["tps"] for r in rs],
            "p99_ms_median": r2(med([r["lat_p99_ms"] for r in rs])),
            "reads_total": sum(r.get("committed", 0) for r in rs),
            "comparisons_total": sum(x or 0 for x in db("comparisons")),
            "dropped_total": sum(x or 0 for x in db("dropped")),
            "skipped_total": sum(x or 0 for x in db("skipped")),
            "mismatches_total": sum(x or 0 for x in db("mismatches")),
            "comparisons_per_s": r2(sum(x or 0 for x in db("comparisons")) / max(1e-9, sum(r.get("secs") or 0 for r in rs)), 0),
            "sampled_total_metrics": sum(x or 0 for x in mt("dual_read_sampled_total")),
            "errors_total_metrics": sum(x or 0 for x in mt("dual_read_errors_total")),
            "proxy_cpu_us_per_txn_median": r2(med([r.get("proxy_cpu_us_per_txn") for r in rs]), 1),
            "failed": sum(r["failed"] for r in rs),
        }
    if dual:
        d0, d1 = dual.get("tandem-d0"), dual.get("tandem-d100")
        loss = None
        if d0 and d1 and d0["tps_median"]:
            loss = round(100.0 * (1 - d1["tps_median"] / d0["tps_median"]), 1)
        dual["loss_pct"] = loss
        out["dual"] = dual
        md.append("### Dual reads: `-S -M prepared` through tandem proxy, migration in its verify phase")
        md.append("")
        md.append("| mirror_sample | TPS (median) | every round | p99 ms | reads | sampled | compared | compared / s | dropped (queue full) | skipped | mismatches | proxy CPU µs/txn |")
        md.append("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for s, label in (("tandem-d0", "0 %"), ("tandem-d100", "100 %")):
            x = dual.get(s)
            if not x:
                continue
            md.append(f"| {label} | {fmt(x['tps_median'])} | {', '.join(fmt(v) for v in x['tps_all'])} | {fmt(x['p99_ms_median'], 2)} "
                      f"| {fmt(x['reads_total'])} | {fmt(x['sampled_total_metrics'])} | {fmt(x['comparisons_total'])} "
                      f"| {fmt(x['comparisons_per_s'])} "
                      f"| {fmt(x['dropped_total'])} | {fmt(x['skipped_total'])} | {fmt(x['mismatches_total'])} "
                      f"| {fmt(x['proxy_cpu_us_per_txn_median'], 1)} |")
        md.append("")
        if loss is not None:
            mr = env.get("mirror_rate")
            mr = "the proxy's default (200 a second since cad41ef)" if mr in (None, "default") else ("no limit" if mr == "0" else f"{mr} a second")
            md.append(f"TPS loss with every read sampled: **{loss} %** (goal < 10 %). `mirror_rate`: {mr}. Counts are summed over the rounds; "
                      "*compared* and *dropped* are the proxy's rows in tandem.dual_reads, *sampled* (queued) its "
                      "`tandem_proxy_dual_read_sampled_total`; *compared / s* is over the pgbench runs (the queue drains a little after each).")
            md.append("")

    # --- cutover
    cuts = load_runs(os.path.join(raw, "cutover", "*", "result.json"))
    order = {"tandem": 0, "pgbouncer": 1, "direct": 2}
    wl_order = {"tpcb": 0, "select": 1}
    cuts.sort(key=lambda c: (wl_order.get(c.get("workload"), 9), order.get(c.get("target"), 9)))
    if cuts:
        out["cutover"] = cuts
        md.append("### Cutover under load: `tandem apply --yes` (prepare … cutover) while pgbench `-M prepared -c "
                  f"{cuts[0].get('clients')}` runs through the proxy")
        md.append("")
        md.append("| load | through | apply s | hold | longest txn ms: run | during apply | cutover (hold + swap) | ±1 s of it "
                  "| txns > 100 ms | failed | clients aborted | errors | TPS before / during / after | re-prepared |")
        md.append("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---|---:|")
        for c in cuts:
            w = c.get("windows", {})
            held = "; ".join(f"{h['event']}" + (f" ({h['detail']})" if h.get("detail") else "") for h in c.get("holds", [])) or "none"
            if c.get("cutover_attempts_failed"):
                held += f"; {c['cutover_attempts_failed']} failed attempt(s)"
            if not c.get("cutover_done"):
                held += "; **cutover not done**"
            apply_s = (c["apply_end"] - c["apply_start"]) if c.get("apply_end") and c.get("apply_start") else None
            errs = "; ".join(f"{n}× `{m}`" for m, n in (c.get("abort_messages") or {}).items()) or "none"
            if c.get("apply_rc"):
                errs += f"; apply exit {c['apply_rc']}"
            tps = " / ".join(fmt(w.get(k, {}).get("tps")) for k in ("before", "apply", "after"))
            load = "TPC-B" if c.get("workload") == "tpcb" else str(c.get("workload"))
            if c.get("workload") == "select":
                load = f"`-S -R {c['rate']}`" if c.get("rate") else "`-S`"
            md.append(f"| {load} | {TARGET_NAMES.get(c.get('target'), c.get('target'))} | {fmt(apply_s, 1)} | {held} "
                      f"| {fmt(c.get('lat_max_ms'), 1)} | {fmt(w.get('apply', {}).get('longest_ms'), 1)} "
                      f"| {fmt(w.get('cutover', {}).get('longest_ms'), 1)} "
                      f"| {fmt(w.get('around_cutover', {}).get('longest_ms'), 1)} | {c.get('slow_txns')} "
                      f"| {c.get('failed')} | {c.get('clients_aborted_before_stop')} of {c.get('clients')} | {errs} | {tps} "
                      f"| {fmt((c.get('proxy_metrics') or {}).get('prepared_recovered_total'))} |")
        md.append("")
        md.append("*cutover (hold + swap)*: transactions overlapping the cutover in tandem.events (from "
                  "`cutover started` to 0.1 s after the swap transaction began; the swap commits in 10–40 ms); *±1 s*: the same window widened by a second each way. "
                  "*clients aborted*: pgbench clients that left on an error before run.sh stopped the load (a pgbench "
                  "client stops at its first error, so *failed* stays 0 and the abort is the failure). "
                  "*re-prepared*: the proxy's `tandem_proxy_prepared_recovered_total`.")
        md.append("")
        # A rate the machine cannot sustain measures pgbench's growing schedule lag, not the
        # proxy: say so beside the figures.
        for c in cuts:
            rate = c.get("rate")
            w = c.get("windows", {})
            seen = [w.get(k, {}).get("tps") for k in ("before", "after")]
            seen = [t for t in seen if t]
            if c.get("workload") == "select" and rate and seen and min(seen) < 0.97 * float(rate):
                md.append(f"**`-S -R {rate}` through {TARGET_NAMES.get(c.get('target'), c.get('target'))} was not sustained** "
                          f"({fmt(min(seen))} TPS outside the apply): its latencies include pgbench's growing "
                          "schedule lag, not only the proxy's; run again with a lower `CUT_SELECT_RATE`.")
                md.append("")

    # --- memory
    mems = load_runs(os.path.join(raw, "memory", "*.json"))
    if mems:
        out["memory"] = mems
        md.append("### Memory per idle connection")
        md.append("")
        md.append("| proxy | connections | VmRSS before MiB | with them MiB | KiB per connection | after closing MiB | connect ms (median) |")
        md.append("|---|---:|---:|---:|---:|---:|---:|")
        for m in sorted(mems, key=lambda m: m.get("name", "")):
            err = f" (**failed {m['error']}**)" if m.get("error") else ""
            md.append(f"| {TARGET_NAMES.get(m['name'], m['name'])}{err} | {m['connections']} | {fmt(m['rss_before_kib'] / 1024, 1)} "
                      f"| {fmt(m['rss_with_conns_kib'] / 1024, 1)} | **{fmt(m['kib_per_conn'], 1)}** "
                      f"| {fmt(m['rss_after_close_kib'] / 1024, 1)} | {fmt(m['connect_ms_median'], 2)} |")
        md.append("")
        if env.get("mem_pool") == "1":
            md.append("Both proxies in front of pgbouncer in transaction mode (20 server connections), "
                      "so the idle sessions share 20 PostgreSQL backends; each proxy holds two file "
                      f"descriptors per session (limit here: {env.get('fd_limit', '?')}).")
            md.append("")

    # --- goals
    goals = []
    if tp:
        rs = [(row["workload"], row["tandem_over_pgbouncer"]) for row in tp]
        ok = all(x is not None and x >= 1.0 for _, x in rs)
        goals.append(("TPS ≥ pgbouncer's", ok, ", ".join(f"{w}: {fmt(x, 2)}" for w, x in rs)))
        ps = [(row["workload"], row["tandem"]["p99_ms_median"], row["pgbouncer"]["p99_ms_median"]) for row in tp]
        ok = all(t is not None and p is not None and t <= p for _, t, p in ps)
        goals.append(("p99 ≤ pgbouncer's", ok, ", ".join(f"{w}: {fmt(t, 2)} vs {fmt(p, 2)} ms" for w, t, p in ps)))
        ws = [(row["workload"], row["tandem"]["max_ms_max"], row["pgbouncer"]["max_ms_max"]) for row in tp]
        ok = all(t is not None and p is not None and t <= 2 * p for _, t, p in ws)
        goals.append(("worst transaction ≤ 2 × pgbouncer's", ok,
                      ", ".join(f"{w}: {fmt(t, 1)} vs {fmt(p, 1)} ms" for w, t, p in ws)))
    for m in [m for m in mems if m.get("name") == "tandem"]:
        pg = next((x for x in mems if x.get("name") == "pgbouncer"), {})
        goals.append(("≤ 4 KiB per idle client connection", not m.get("error") and m["kib_per_conn"] <= 4.0,
                      f"{fmt(m['kib_per_conn'], 1)} KiB at {m['connections']} connections ({m.get('alive')} alive)"
                      + (f"; pgbouncer {fmt(pg['kib_per_conn'], 1)} KiB" if pg else "")))
    if dual.get("loss_pct") is not None:
        goals.append(("dual-read sampling at 100 % costs < 10 % TPS", dual["loss_pct"] < 10,
                      f"{dual['loss_pct']} % ({fmt(dual['tandem-d100']['comparisons_total'])} compared, "
                      f"{fmt(dual['tandem-d100']['dropped_total'])} dropped)"))
    for c in [c for c in cuts if c.get("target") == "tandem"]:
        wl = "TPC-B" if c.get("workload") == "tpcb" else "-S"
        lm = c.get("windows", {}).get("cutover", {}).get("longest_ms")
        la = c.get("windows", {}).get("around_cutover", {}).get("longest_ms")
        goals.append((f"no transaction > 100 ms at cutover (tandem proxy, {wl})",
                      lm is not None and lm <= SLOW_MS and bool(c.get("cutover_done")),
                      f"longest overlapping the cutover {fmt(lm, 1)} ms (±1 s: {fmt(la, 1)} ms; whole run {fmt(c.get('lat_max_ms'), 1)} ms)"
                      + ("" if c.get("cutover_done") else "; the cutover did not complete")))
        bad = (c.get("failed") or 0) + (c.get("clients_aborted_before_stop") or 0)
        goals.append((f"0 failed transactions across the type change (tandem proxy, {wl} -M prepared)", bad == 0,
                      f"{c.get('failed')} failed, {c.get('clients_aborted_before_stop')} of {c.get('clients')} clients aborted"
                      + (f" ({'; '.join(c.get('abort_messages') or {})})" if c.get("abort_messages") else "")))
    if goals:
        out["goals"] = [{"goal": g, "met": m, "figures": f} for g, m, f in goals]
        md.append("### Goals")
        md.append("")
        md.append("| goal | met? | figures |")
        md.append("|---|---|---|")
        for g, m, f in goals:
            md.append(f"| {g} | {'**met**' if m else '**not met**'} | {f} |")
        md.append("")

    allruns = runs + druns + cuts
    fr = [(r.get("foreign_cpu_s"), r) for r in allruns if isinstance(r.get("foreign_cpu_s"), (int, float))]
    if fr or env.get("loadavg_start"):
        line = "Noise: "
        if env.get("loadavg_start"):
            line += f"load average before the script started {env['loadavg_start'].split()[0]}"
        if fr:
            worst = max(fr, key=lambda x: x[0])
            tag = "/".join(str(worst[1].get(k)) for k in ("round", "workload", "target") if worst[1].get(k) is not None)
            top = ", ".join(f"{n} {t} s" for n, t in worst[1].get("foreign_top", [])[:3])
            line += (f"; CPU used by processes outside the benchmark during a run: median {med([x[0] for x in fr]):.2f} s, "
                     f"max {worst[0]:.2f} s ({tag}{': ' + top if top else ''}), out of {2 * (num(env.get('secs')) or 15)} "
                     f"CPU-seconds per throughput run; steal {sum(r.get('steal_s') or 0 for _, r in fr):.2f} s in all")
            out["foreign_cpu_s"] = {"median": med([x[0] for x in fr]), "max": worst[0]}
        md.append(line + ". (The load average itself is mostly the benchmark's own 16 clients.)")
        md.append("")

    text = "\n".join(md)
    with open(a.out_md, "w") as f:
        f.write(text + "\n")
    with open(a.out_json, "w") as f:
        json.dump(out, f, indent=1)
    print(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("run")
    p.add_argument("--out", required=True)
    p.add_argument("--pgbench-out")
    p.add_argument("--pgbench-err")
    p.add_argument("--set", nargs="*", default=[])
    p.add_argument("--cpu", nargs=2, metavar=("BEFORE", "AFTER"), help="cpu_probe.py snapshots")
    p.add_argument("--logs", nargs="+", required=True)
    p.set_defaults(fn=cmd_run)
    p = sub.add_parser("dual-counters")
    p.add_argument("--run", required=True)
    p.add_argument("--db-before")
    p.add_argument("--db-after")
    p.add_argument("--metrics-before")
    p.add_argument("--metrics-after")
    p.set_defaults(fn=cmd_dual)
    p = sub.add_parser("cutover")
    p.add_argument("--out", required=True)
    p.add_argument("--events")
    p.add_argument("--pgbench-out")
    p.add_argument("--pgbench-err")
    p.add_argument("--metrics")
    p.add_argument("--apply-log")
    p.add_argument("--err-stop-offset", type=int)
    p.add_argument("--cpu", nargs=2, metavar=("BEFORE", "AFTER"), help="cpu_probe.py snapshots")
    p.add_argument("--set", nargs="*", default=[])
    p.add_argument("--logs", nargs="+", required=True)
    p.set_defaults(fn=cmd_cutover)
    p = sub.add_parser("stages")
    p.add_argument("--run", required=True)
    p.add_argument("--metrics-before", required=True)
    p.add_argument("--metrics-after", required=True)
    p.set_defaults(fn=cmd_stages)
    p = sub.add_parser("report")
    p.add_argument("--raw", required=True)
    p.add_argument("--out-md", required=True)
    p.add_argument("--out-json", required=True)
    p.set_defaults(fn=cmd_report)
    a = ap.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
