#!/usr/bin/env python3
"""Real work through psycopg 3 (libpq): run against PostgreSQL or the tandem proxy.

Usage: psycopg_check.py --host H --port P --dbname D --user U
The password comes from the file named by PGPASSFILE (never argv or the environment).
Prints one line per step; on any failure prints `psycopg_check: FAILED at <step>: <error>`
and exits 1.
"""

import argparse
import contextlib
import hashlib
import sys
import time
import traceback

import psycopg
from psycopg import errors, sql

STEP = ["start"]


@contextlib.contextmanager
def step(name):
    STEP[0] = name
    t0 = time.monotonic()
    yield
    print(f"ok   {name} ({time.monotonic() - t0:.2f}s)", flush=True)


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", required=True, type=int)
    ap.add_argument("--dbname", required=True)
    ap.add_argument("--user", required=True)
    args = ap.parse_args()
    params = dict(host=args.host, port=args.port, dbname=args.dbname, user=args.user,
                  connect_timeout=10, application_name="psycopg_check")

    with step("connect with SCRAM (password from PGPASSFILE)"):
        conn = psycopg.connect(**params)
        check(conn.pgconn.used_password, "libpq says no password was used: not SCRAM end to end")
        v = conn.execute("select current_setting('server_version_num')::int").fetchone()[0]
        check(v >= 150000, f"server_version_num {v}")
        enc = conn.info.parameter_status("server_encoding")
        check(enc == "UTF8", f"server_encoding ParameterStatus: {enc!r}")
        conn.commit()

    with step("create table"):
        conn.execute("create table items (id int primary key, name text not null, qty int not null)")
        conn.commit()

    with step("insert with parameters, read back"):
        with conn.cursor() as cur:
            cur.execute("insert into items (id, name, qty) values (%s, %s, %s)", (1, "first 'quoted' ünïcode", 10))
            cur.execute("insert into items values (%(id)s, %(name)s, %(qty)s) returning id, name",
                        {"id": 2, "name": "second", "qty": 20})
            check(cur.fetchone() == (2, "second"), "returning row")
            cur.execute("select name, qty from items where id = %s", (1,))
            check(cur.fetchone() == ("first 'quoted' ünïcode", 10), "row 1 round trip")
        conn.commit()

    with step("executemany 1000 rows"):
        with conn.cursor() as cur:
            cur.executemany("insert into items (id, name, qty) values (%s, %s, %s)",
                            [(i, f"item {i}", i % 7) for i in range(3, 1003)])
        conn.commit()
        n, s = conn.execute("select count(*), sum(qty) from items").fetchone()
        expected = 10 + 20 + sum(i % 7 for i in range(3, 1003))
        check((n, s) == (1002, expected), f"count/sum after executemany: {(n, s)} != {(1002, expected)}")
        conn.commit()

    with step("transaction rolled back"):
        with conn.transaction():
            conn.execute("insert into items values (5000, 'rolled back', 1)")
            conn.execute("update items set qty = qty + 100")
            check(conn.execute("select count(*) from items").fetchone()[0] == 1003, "row visible inside")
            raise psycopg.Rollback()
        n, s = conn.execute("select count(*), sum(qty) from items").fetchone()
        check((n, s) == (1002, expected), f"rollback left changes: {(n, s)}")
        conn.execute("delete from items where id = 1")
        conn.rollback()
        check(conn.execute("select count(*) from items where id = 1").fetchone()[0] == 1,
              "conn.rollback() did not undo the delete")
        conn.commit()

    with step("large parameter and result (4 MiB text)"):
        big = "x" * (4 << 20) + "end"
        got = conn.execute("select %s::text || '!'", (big,)).fetchone()[0]
        check(got == big + "!", f"big round trip: length {len(got)}")
        conn.commit()

    with step("server-side cursor streams 200000 rows"):
        with conn.transaction():
            with conn.cursor(name="big_cursor") as cur:
                cur.itersize = 5000
                cur.execute("select g, md5(g::text) from generate_series(1, 200000) g")
                total = 0
                count = 0
                for g, h in cur:
                    total += g
                    count += 1
                    if g == 123456:
                        check(h == hashlib.md5(b"123456").hexdigest(), "md5 of row 123456")
        check(count == 200000, f"rows streamed: {count}")
        check(total == 200000 * 200001 // 2, f"sum streamed: {total}")

    with step("COPY FROM STDIN (50000 rows) and COPY TO STDOUT"):
        conn.execute("create table copied (id int primary key, body text, note text)")
        rows = [(i, f"body {i}\twith tab, comma \"quote\" \\ backslash", None if i % 10 == 0 else "n")
                for i in range(50000)]
        with conn.cursor() as cur:
            with cur.copy("copy copied (id, body, note) from stdin") as copy:
                for r in rows:
                    copy.write_row(r)
        conn.commit()
        check(conn.execute("select count(*) from copied").fetchone()[0] == 50000, "rows copied in")
        out = []
        with conn.cursor() as cur:
            with cur.copy("copy (select id, body, note from copied order by id) to stdout") as copy:
                copy.set_types(["int4", "text", "text"])
                for r in copy.rows():
                    out.append(r)
        check(len(out) == 50000, f"rows copied out: {len(out)}")
        check(out == rows, "COPY TO content differs from what COPY FROM wrote")
        raw = bytearray()
        with conn.cursor() as cur:
            with cur.copy("copy (select id from copied where id < 3 order by id) to stdout (format csv)") as copy:
                for block in copy:
                    raw += block
        check(bytes(raw) == b"0\n1\n2\n", f"raw csv copy: {bytes(raw)!r}")
        conn.commit()

    with step("LISTEN/NOTIFY between two connections"):
        listener = psycopg.connect(**params, autocommit=True)
        listener.execute("listen tandem_ch")
        sender_pid = conn.execute("select pg_backend_pid()").fetchone()[0]
        conn.execute("select pg_notify('tandem_ch', %s)", ("hello 1",))
        conn.execute("notify tandem_ch, 'hello 2'")
        conn.commit()
        got = []
        for n in listener.notifies(timeout=5.0, stop_after=2):
            got.append(n)
        check([n.payload for n in got] == ["hello 1", "hello 2"], f"payloads: {[n.payload for n in got]}")
        check(all(n.channel == "tandem_ch" and n.pid == sender_pid for n in got),
              f"channel/pid: {[(n.channel, n.pid) for n in got]} (sender pid {sender_pid})")
        # A notification that arrives while the listener is idle, read after a plain query.
        conn.execute("notify tandem_ch, 'while idle'")
        conn.commit()
        time.sleep(0.2)
        listener.execute("select 1")
        late = list(listener.notifies(timeout=2.0, stop_after=1))
        check([n.payload for n in late] == ["while idle"], f"late notify: {[n.payload for n in late]}")
        listener.close()

    with step("prepared statement (prepare=True) reused 500 times"):
        with conn.cursor() as cur:
            for i in range(500):
                cur.execute("select %s::int * 2, %s::text", (i, f"v{i}"), prepare=True)
                r = cur.fetchone()
                check(r == (i * 2, f"v{i}"), f"prepared result {r} for {i}")
            cur.execute("select count(*) from pg_prepared_statements where statement like %s",
                        ("%* 2, $2::text%",))
            check(cur.fetchone()[0] == 1, "the statement is not prepared on the server")
        conn.commit()

    with step("unique violation, then the same connection works"):
        try:
            conn.execute("insert into items values (2, 'dup', 0)")
            raise AssertionError("duplicate insert succeeded")
        except errors.UniqueViolation as e:
            check(e.sqlstate == "23505", f"sqlstate {e.sqlstate}")
            check("items_pkey" in str(e), f"error text: {e}")
        check(conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR, "not INERROR")
        try:
            conn.execute("select 1")
            raise AssertionError("query in an aborted transaction succeeded")
        except errors.InFailedSqlTransaction:
            pass
        conn.rollback()
        check(conn.execute("select count(*) from items").fetchone()[0] == 1002, "query after error")
        conn.commit()
        conn.autocommit = True
        try:
            conn.execute("select 1/0")
            raise AssertionError("division by zero succeeded")
        except errors.DivisionByZero:
            pass
        check(conn.execute("select 41 + 1").fetchone()[0] == 42, "autocommit query after error")
        # A syntax error in an extended-protocol query.
        try:
            conn.execute("selec 1")
            raise AssertionError("syntax error accepted")
        except errors.SyntaxError:
            pass
        check(conn.execute(sql.SQL("select {}").format(sql.Literal("ok"))).fetchone()[0] == "ok",
              "query after syntax error")

    with step("pipeline mode"):
        with conn.pipeline():
            curs = [conn.execute("select %s::int", (i,)) for i in range(100)]
        check([c.fetchone()[0] for c in curs] == list(range(100)), "pipeline results")

    with step("close"):
        conn.close()
        check(conn.closed, "connection not closed")

    print("psycopg_check: all steps passed", flush=True)


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001 - report any failure with the step it happened in
        traceback.print_exc()
        print(f"psycopg_check: FAILED at {STEP[0]!r}: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
