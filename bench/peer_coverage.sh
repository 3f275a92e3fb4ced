#!/usr/bin/env bash
# Figure 4: hazard coverage of tandem lint vs squawk on fixtures/cases/{lint,plan}_*/change.sql,
# and what migra leaves undone on fixtures/cases/diff_* (before.sql -> after.sql).
#
#   bench/peer_coverage.sh lint   -> $BENCH_DIR/results/coverage_lint.md
#   bench/peer_coverage.sh diff [CASE...]  (default: every diff_* case)  -> $BENCH_DIR/results/coverage_diff.md  (needs the server)
#
# lint part: a tool "flags" a case when it reports a rule other than the generic ones that fire
# on nearly every statement (squawk: require-lock-timeout, require-statement-timeout,
# require-timeout-settings, prefer-robust-stmts; tandem: T029 require-lock-timeout,
# T030 require-statement-timeout, T033 prefer-robust-stmts). Cases whose README says "Trap"
# (must give NO finding) are counted the other way: a flag there is a false positive.
# diff part: for each case, load before.sql into db b and after.sql into db a; run
# `migra --unsafe b a`, apply its output to b, then `tandem diff --to after.sql` against b:
# whatever is still different is what migra did not produce. tandem's own plan is checked by
# `tandem plan --to` (which replays it on a scratch copy and compares; exit 1 = check failed).
set -uo pipefail
cd "$(dirname "$0")/.."
. bench/env.sh
ROOT=$PWD
CASES=$ROOT/fixtures/cases
MODE=${1:-lint}
W=$BENCH_DIR/coverage; mkdir -p "$W"

if [ "$MODE" = lint ]; then
  for c in "$CASES"/lint_* "$CASES"/plan_*; do
    n=$(basename "$c")
    [ -f "$c/change.sql" ] || continue
    (cd "$c" && $TANDEM lint --format json change.sql > "$W/$n.tandem.json" 2>/dev/null)
    (cd "$c" && squawk --reporter json change.sql > "$W/$n.squawk.json" 2>/dev/null)
  done
  python3 - "$CASES" "$W" <<'PY' | tee "$BENCH_DIR/results/coverage_lint.md"
import json, os, re, sys
cases, w = sys.argv[1], sys.argv[2]
SQ_GENERIC = {"require-lock-timeout", "require-statement-timeout", "require-timeout-settings", "prefer-robust-stmts"}
T_GENERIC = {"T033", "T029", "T030"}
rows = []; stats = {"both": [], "tandem only": [], "squawk only": [], "neither": []}
for n in sorted(os.listdir(cases)):
    if not (n.startswith("lint_") or n.startswith("plan_")) or not os.path.exists(f"{cases}/{n}/change.sql"):
        continue
    readme = open(f"{cases}/{n}/README").read().strip().splitlines()[0] if os.path.exists(f"{cases}/{n}/README") else ""
    m = re.match(r"HAZARDS row (\d+):\s*(.*)", readme)
    row = m.group(1) if m else "?"
    hz = (m.group(2) if m else readme)[:70]
    try:
        tj = json.load(open(f"{w}/{n}.tandem.json"))
        t = sorted({f"{f['id']} {f['name']}" + ("" if f["severity"] != "info" else " (info)")
                    for f in tj["findings"] if f["id"] not in T_GENERIC})
    except Exception as e:
        t = [f"(tandem failed: {e})"]
    try:
        sj = json.load(open(f"{w}/{n}.squawk.json"))
        s = sorted({f["rule_name"] for f in sj if f["rule_name"] not in SQ_GENERIC})
    except Exception as e:
        s = ["(squawk failed)"]
    tf, sf = bool([x for x in t if not x.startswith("(")]), bool([x for x in s if not x.startswith("(")])
    if "Trap" in readme or "must give NO" in readme:
        stats.setdefault("traps (a flag here is a false positive)", []).append(
            f"{n} [tandem {'FLAGS' if tf else 'quiet'}, squawk {'FLAGS' if sf else 'quiet'}]")
    else:
        stats["both" if tf and sf else "tandem only" if tf else "squawk only" if sf else "neither"].append(n)
    rows.append(f"| {n} | {row}: {hz} | {', '.join(t) or '—'} | {', '.join(s) or '—'} |")
print("| case | HAZARDS row | tandem | squawk |\n|---|---|---|---|")
print("\n".join(rows))
print()
for k, v in stats.items():
    print(f"- **{k}** ({len(v)}): {', '.join(v) or '—'}")
PY
  exit 0
fi

# diff mode
: > "$W/diff.rows"
shift
if [ $# -gt 0 ]; then LIST=$(for x in "$@"; do echo "$CASES/$x"; done); else LIST=$(ls -d "$CASES"/diff_*); fi
for c in $LIST; do
  n=$(basename "$c")
  b=cb_${n#diff_}; a=ca_${n#diff_}; b=${b:0:60}; a=${a:0:60}
  $PSQL -d postgres -c "DROP DATABASE IF EXISTS \"$b\"" -c "DROP DATABASE IF EXISTS \"$a\"" \
        -c "CREATE DATABASE \"$b\"" -c "CREATE DATABASE \"$a\"" >/dev/null 2>&1
  lb=ok; la=ok
  (cd "$c" && $PSQL -d "$b" -f before.sql >/dev/null 2>"$W/$n.loadb.err") || lb=fail
  (cd "$c" && $PSQL -d "$a" -f after.sql  >/dev/null 2>"$W/$n.loada.err") || la=fail
  U="host=$PGHOST_DIR port=$PGPORT_BENCH user=postgres dbname=$b"
  (cd "$c" && $TANDEM plan --to after.sql --database-url "$U" --format json > "$W/$n.plan.json" 2>"$W/$n.plan.err"); prc=$?
  migra --unsafe "postgresql:///$b?host=$PGHOST_DIR&port=$PGPORT_BENCH&user=postgres" \
        "postgresql:///$a?host=$PGHOST_DIR&port=$PGPORT_BENCH&user=postgres" > "$W/$n.migra.sql" 2>"$W/$n.migra.err"; mrc=$?
  arc=0; $PSQL -d "$b" -1 -f "$W/$n.migra.sql" >/dev/null 2>"$W/$n.apply.err" || arc=$?
  (cd "$c" && $TANDEM diff --to after.sql --database-url "$U" --format json > "$W/$n.residual.json" 2>"$W/$n.residual.err")
  echo "$n $lb $la $prc $mrc $arc" >> "$W/diff.rows"
  $PSQL -d postgres -c "DROP DATABASE IF EXISTS \"$b\"" -c "DROP DATABASE IF EXISTS \"$a\"" >/dev/null 2>&1
done
python3 - "$W" <<'PY' | tee "$BENCH_DIR/results/coverage_diff.md"
import json, re, sys, collections
w = sys.argv[1]
print("| case | tandem plan (steps, exit) | migra statements (exit) | migra output applies | left different after migra's script |")
print("|---|---|---|---|---|")
missed = collections.Counter()
for line in open(f"{w}/diff.rows"):
    n, lb, la, prc, mrc, arc = line.split()
    try:
        p = json.load(open(f"{w}/{n}.plan.json")); steps = len(p["steps"])
    except Exception:
        steps = "—"
    sql = open(f"{w}/{n}.migra.sql").read()
    nst = len([s for s in re.split(r";\s*\n", sql) if s.strip()])
    try:
        res = json.load(open(f"{w}/{n}.residual.json"))
        left = sorted({f"{d['object']} ({d['kind'].lower() if isinstance(d['kind'], str) else d['kind']})" for d in res})
        for d in res:
            missed[d["object"].split()[0]] += 1
    except Exception as e:
        left = ["(diff failed)"]
    note = "" if (lb, la) == ("ok", "ok") else f" [load before={lb} after={la}]"
    print(f"| {n}{note} | {steps} ({prc}) | {nst} ({mrc}) | {'yes' if arc == '0' else 'no (psql exit %s)' % arc} | {'; '.join(left) or 'nothing'} |")
print()
print("object kinds left different after applying migra's script (count of cases):",
      ", ".join(f"{k} {v}" for k, v in missed.most_common()) or "none")
PY
