# Shared settings for the bench scripts (sourced). Override by exporting before running.
: "${BENCH_DIR:=/tmp/tandem-bench}"           # generated inputs and results (never committed)
: "${PGHOST_DIR:=/tmp/benchpg}"               # socket directory of the throwaway server
: "${PGPORT_BENCH:=55460}"
: "${TANDEM:=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/target/release/tandem}"
URL_BENCH="host=$PGHOST_DIR port=$PGPORT_BENCH user=postgres dbname=bench"
MIGRA_BENCH="postgresql:///bench?host=$PGHOST_DIR&port=$PGPORT_BENCH&user=postgres"
MIGRA_DESIRED="postgresql:///desired_db?host=$PGHOST_DIR&port=$PGPORT_BENCH&user=postgres"
PSQL="psql -X -q -v ON_ERROR_STOP=1 -h $PGHOST_DIR -p $PGPORT_BENCH -U postgres"
mkdir -p "$BENCH_DIR/results"
