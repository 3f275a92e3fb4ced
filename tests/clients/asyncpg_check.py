#!/usr/bin/env python3
"""Real work through asyncpg (its own protocol implementation, binary formats, no libpq).

Usage: asyncpg_check.py --host H --port P --dbname D --user U
The password comes from the file named by PGPASSFILE (given to asyncpg as passfile=).
Prints one line per step; on any failure prints `asyncpg_check: FAILED at <step>: <error>`
and exits 1.
"""

import argparse
import asyncio
import contextlib
import decimal
import io
import os
import sys
import tempfile
import time
import traceback

import asyncpg

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


async def sleeping_backends(conn, marker):
    """Backends other than `conn`'s that are running a query containing `marker`."""
    return await conn.fetchval(
        "select count(*) from pg_stat_activity where state = 'active' and pid <> pg_backend_pid()"
        " and query like '%' || $1 || '%'", marker)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", required=True, type=int)
    ap.add_argument("--dbname", required=True)
    ap.add_argument("--user", required=True)
    args = ap.parse_args()
    passfile = os.environ.get("PGPASSFILE")
    check(passfile, "PGPASSFILE is not set")
    params = dict(host=args.host, port=args.port, database=args.dbname, user=args.user,
                  passfile=passfile, timeout=10, server_settings={"application_name": "asyncpg_check"})

    with step("connect with SCRAM (password from passfile)"):
        conn = await asyncpg.connect(**params)
        v = conn.get_server_version()
        check(v.major >= 15, f"server version {v}")
        check(conn.get_settings().server_encoding == "UTF8", "server_encoding")
        # The password really was needed: without it the server refuses.
        with tempfile.NamedTemporaryFile() as empty:
            try:
                c = await asyncpg.connect(**{**params, "passfile": empty.name})
                await c.close()
                raise AssertionError("connected without a password")
            except asyncpg.InvalidPasswordError as e:
                print(f"     (no password: refused as expected: {e})")

    with step("fetch with parameters"):
        await conn.execute("create table items (id int primary key, name text not null,"
                           " qty int not null, at timestamptz default now(), tags text[], data jsonb)")
        rows = await conn.fetch("select g, g * $1::int, $2::text || g from generate_series(1, $3::int) g",
                                3, "n", 100)
        check(len(rows) == 100, f"rows {len(rows)}")
        check(all(r[1] == r[0] * 3 and r[2] == f"n{r[0]}" for r in rows), "row values")
        r = await conn.fetchrow("select $1::text[] as a, $2::numeric as n, $3::bytea as b, $4::jsonb as j",
                                ["x", None, "ü"], decimal.Decimal("12345678901234567890.5"),
                                bytes(range(256)), '{"k": [1, 2]}')
        check(r["a"] == ["x", None, "ü"], f"array {r['a']}")
        check(str(r["n"]) == "12345678901234567890.5", f"numeric {r['n']}")
        check(r["b"] == bytes(range(256)), "bytea")
        check(r["j"] == '{"k": [1, 2]}', f"jsonb {r['j']}")

    with step("prepared statement reused 500 times"):
        stmt = await conn.prepare("select $1::int * 3 as x, $2::text as t")
        check([a.name for a in stmt.get_attributes()] == ["x", "t"], "attributes")
        for i in range(500):
            r = await stmt.fetchrow(i, str(i))
            check(r["x"] == i * 3 and r["t"] == str(i), f"prepared result {r}")
        n = await conn.fetchval("select count(*) from pg_prepared_statements where statement = $1",
                                "select $1::int * 3 as x, $2::text as t")
        check(n == 1, f"server-side prepared statements for it: {n}")

    with step("executemany 2000 rows"):
        await conn.executemany("insert into items (id, name, qty) values ($1, $2, $3)",
                               [(i, f"item {i}", i % 5) for i in range(1, 2001)])
        n, s = await conn.fetchrow("select count(*), sum(qty) from items")
        check((n, s) == (2000, sum(i % 5 for i in range(1, 2001))), f"count/sum {(n, s)}")

    with step("copy_records_to_table 30000 records, copy_from_query"):
        await conn.execute("create table copied (id int primary key, body text, n float8)")
        records = [(i, f"b{i} ,\"'\t", i / 4) for i in range(30000)]
        res = await conn.copy_records_to_table("copied", records=records, columns=["id", "body", "n"])
        check(res == "COPY 30000", f"copy status {res}")
        n, s = await conn.fetchrow("select count(*), sum(n) from copied")
        check((n, s) == (30000, sum(i / 4 for i in range(30000))), f"count/sum {(n, s)}")
        buf = io.BytesIO()
        res = await conn.copy_from_query("select id, body from copied where id % $1 = 0 order by id",
                                         1000, output=buf, format="csv")
        check(res == "COPY 30", f"copy out status {res}")
        lines = buf.getvalue().decode().splitlines()
        check(len(lines) == 30, f"lines {len(lines)}")
        check(lines[1] == '1000,"b1000 ,""\'\t"', f"csv line {lines[1]!r}")
        # A whole table out, in binary, through an async sink.
        chunks = []

        async def sink(data):
            chunks.append(bytes(data))
        res = await conn.copy_from_table("copied", output=sink, format="binary")
        check(res == "COPY 30000", f"copy table status {res}")
        check(b"".join(chunks).startswith(b"PGCOPY\n\xff\r\n\x00"), "binary copy header")

    with step("transactions: rolled back and committed"):
        try:
            async with conn.transaction():
                await conn.execute("delete from items")
                check(await conn.fetchval("select count(*) from items") == 0, "delete inside")
                raise RuntimeError("roll back")
        except RuntimeError:
            pass
        check(await conn.fetchval("select count(*) from items") == 2000, "rollback undid the delete")
        async with conn.transaction(isolation="serializable"):
            await conn.execute("update items set qty = qty + 1 where id <= 10")
            async with conn.transaction():  # savepoint
                await conn.execute("update items set qty = 1000")
                try:
                    async with conn.transaction():
                        await conn.execute("select 1/0")
                except asyncpg.DivisionByZeroError:
                    pass
        s = await conn.fetchval("select sum(qty) from items")
        check(s == 2000 * 1000, f"committed sum {s}")
        check(not conn.is_in_transaction(), "still in a transaction")

    with step("pool of 8 connections, concurrent work"):
        pool = await asyncpg.create_pool(**params, min_size=8, max_size=8)
        pids = set()
        barrier = asyncio.Barrier(8)
        sleeps = []

        async def work(k):
            async with pool.acquire() as c:
                pids.add(await c.fetchval("select pg_backend_pid()"))
                # All eight hold a connection; then all sleep at once.
                await barrier.wait()
                t0 = time.monotonic()
                await c.execute("select pg_sleep(0.5)")
                sleeps.append((t0, time.monotonic()))
                async with c.transaction():
                    for j in range(50):
                        await c.execute("insert into copied (id, body, n) values ($1, $2, $3)",
                                        100000 + k * 1000 + j, f"w{k}", float(k))
                return await c.fetchval("select count(*) from copied where body = $1", f"w{k}")
        counts = await asyncio.wait_for(asyncio.gather(*(work(k) for k in range(8))), 30)
        check(counts == [50] * 8, f"per-worker counts {counts}")
        check(len(pids) == 8, f"distinct backends {len(pids)}")
        span = max(e for _, e in sleeps) - min(s for s, _ in sleeps)
        check(span < 3.0, f"8 pg_sleep(0.5) started together took {span:.1f}s: they ran one after another")
        check(await conn.fetchval("select count(*) from copied where id >= 100000") == 400, "pool inserts")
        await pool.close()

    with step("unique violation, then the same connection works"):
        try:
            await conn.execute("insert into items (id, name, qty) values (1, 'dup', 0)")
            raise AssertionError("duplicate insert succeeded")
        except asyncpg.UniqueViolationError as e:
            check(e.sqlstate == "23505" and e.constraint_name == "items_pkey", f"error {e.sqlstate} {e}")
        check(await conn.fetchval("select count(*) from items") == 2000, "query after error")
        try:
            await conn.fetch("select * from no_such_table where x = $1", 1)
            raise AssertionError("query of a missing table succeeded")
        except asyncpg.UndefinedTableError:
            pass
        check(await conn.fetchval("select $1::int + 1", 41) == 42, "query after prepare error")

    with step("cancel: a timeout on pg_sleep cancels it on the server"):
        t0 = time.monotonic()
        try:
            await conn.execute("select pg_sleep(30) /* asyncpg_cancel_me */", timeout=1.0)
            raise AssertionError("pg_sleep(30) returned")
        except asyncio.TimeoutError:
            pass
        check(await conn.fetchval("select 7") == 7, "connection unusable after cancel")
        elapsed = time.monotonic() - t0
        check(elapsed < 5, f"cancel + next query took {elapsed:.1f}s")
        other = await asyncpg.connect(**params)
        left = -1
        for _ in range(50):
            left = await sleeping_backends(other, "asyncpg_cancel_me")
            if left == 0:
                break
            await asyncio.sleep(0.1)
        check(left == 0, f"{left} backend(s) still run the cancelled pg_sleep")
        # The same through asyncio.wait_for, on the other connection.
        try:
            await asyncio.wait_for(other.fetchval("select pg_sleep(30) /* asyncpg_cancel_2 */"), 1.0)
            raise AssertionError("pg_sleep(30) returned")
        except asyncio.TimeoutError:
            pass
        check(await other.fetchval("select 8") == 8, "connection unusable after wait_for cancel")
        check(await sleeping_backends(conn, "asyncpg_cancel_2") == 0, "second pg_sleep still running")
        await other.close()

    with step("close"):
        await conn.close()
        check(conn.is_closed(), "not closed")

    print("asyncpg_check: all steps passed", flush=True)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except BaseException as e:  # noqa: BLE001 - report any failure with the step it happened in
        traceback.print_exc()
        print(f"asyncpg_check: FAILED at {STEP[0]!r}: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
