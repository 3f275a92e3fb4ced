#!/usr/bin/env bash
# What every session of bench/engine/run.sh's cluster waits on, and the kernel's dirty pages,
# sampled beside a run, for bench/engine/stalls.py to line up with the slow transactions:
#   OUT/waits.txt  every 5 ms, sampler.sql's lines: epoch|pid|application|wait type|wait
#                  event|state|statement
#   OUT/dirty.txt  every 50 ms: epoch, Dirty and Writeback of /proc/meminfo in KiB
#
# Usage: bench/engine/waits.sh OUT SECONDS &   (then the run; it stops by itself)
set -euo pipefail
[ $# -eq 2 ] && [[ $2 =~ ^[0-9]+$ ]] || { echo "usage: $0 OUT SECONDS" >&2; exit 64; }
OUT=$1 SECS=$2
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mkdir -p "$OUT"
PSQL=(/usr/lib/postgresql/15/bin/psql -X -q -A -t -F '|' -h /tmp/benchpg-engine -p 55470 -U postgres -d postgres)
timeout "$SECS" "${PSQL[@]}" -f "$HERE/sampler.sql" >"$OUT/waits.txt" 2>/dev/null &
end=$(($(date +%s) + SECS))
while [ "$(date +%s)" -lt "$end" ]; do
  echo "$(date +%s.%N | cut -c1-14) $(awk '/^Dirty:|^Writeback:/ { printf "%s ", $2 }' /proc/meminfo)"
  sleep 0.05
done >"$OUT/dirty.txt"
wait
