#!/bin/sh
# The dev image's entrypoint (installed as /usr/local/bin/tandem-entrypoint).
#
# Every container starts from an empty data directory, so a dev database never carries state
# from an earlier run. The superuser password arrives as a file that tandem copies into the
# container before starting it (never an environment variable or an argument, which
# `docker inspect` and `ps` would show); it is read once and deleted.
#
# The server runs with durability off (fsync, synchronous_commit, full_page_writes): the data
# is thrown away with the container, and speed is all that matters. JIT is off because the
# image does not carry LLVM (see prune.sh).
set -eu

secret=/run/secrets/tandem-superuser-password
PGDATA=${PGDATA:-/var/lib/postgresql/data}

if [ ! -s "$secret" ]; then
    echo "tandem-entrypoint: no superuser password at $secret: start this image with tandem" \
        "(devdb::docker::start), which copies one in, or copy a file there yourself" >&2
    exit 64
fi

as_postgres() {
    setpriv --reuid=postgres --regid=postgres --init-groups "$@"
}

mkdir -p "$PGDATA"
chown postgres:postgres "$PGDATA"
chmod 700 "$PGDATA"

pwfile=$(mktemp /tmp/tandem-pwfile.XXXXXX)
cat "$secret" >"$pwfile"
rm -f "$secret"
chown postgres:postgres "$pwfile"
chmod 600 "$pwfile"

as_postgres initdb --pgdata="$PGDATA" --username=postgres --auth=scram-sha-256 \
    --pwfile="$pwfile" --encoding=UTF8 --locale=C.UTF-8 --no-sync --no-instructions
rm -f "$pwfile"

# initdb's pg_hba.conf admits only the loopback addresses; tandem connects through Docker's
# port mapping, from the bridge's gateway. Password authentication stays on for everyone.
echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"

exec setpriv --reuid=postgres --regid=postgres --init-groups \
    postgres -D "$PGDATA" \
    -c listen_addresses='*' \
    -c unix_socket_directories=/tmp \
    -c fsync=off \
    -c synchronous_commit=off \
    -c full_page_writes=off \
    -c jit=off
