#!/usr/bin/env python3
"""asyncpg against proctor: every check asserts. usage: asyncpg_test.py DSN

asyncpg uses the extended protocol throughout: Parse/Describe for every statement, binary
formats, type introspection queries on pg_catalog for types it does not know."""
import asyncio
import datetime
import decimal
import json
import os
import subprocess
import sys
import uuid

import asyncpg

from compat_common import CHECK_TIMEOUT, describe_held, proctor, registry

DSN = sys.argv[1]
T = "compat_asyncpg"
checks, check = registry()


async def connect(**kw):
    return await asyncpg.connect(DSN, **kw)


@check("parameters of many types")
async def _():
    c = await connect()
    try:
        await c.execute(f"delete from {T} where id >= 0")
        ts = datetime.datetime(2026, 12, 6, 10, 0, 0, 5, tzinfo=datetime.timezone.utc)
        await c.execute(
            f"insert into {T} (id, name, data, amount, ts, js, arr) values ($1, $2, $3, $4, $5, $6, $7::text::int[])",
            1, "naïve 'q'", b"\x00\x01\xfe", decimal.Decimal("-98765.432100"), ts, json.dumps({"x": [1, None]}), "{3,2,1}",
        )
        # Arrays are sent as text here; native arrays are the introspection check's.
        row = await c.fetchrow(f"select id, name, data, amount, ts, js, arr::text from {T} where id = $1", 1)
        assert tuple(row) == (1, "naïve 'q'", b"\x00\x01\xfe", decimal.Decimal("-98765.432100"), ts,
                              json.dumps({"x": [1, None]}), "{3,2,1}"), tuple(row)
        assert await c.fetchval("select $1::int8 + 1", 2**40) == 2**40 + 1
        assert await c.fetchval("select $1::text is null", None) is True
        assert await c.fetchval("select $1::float8 * 2", 1.25) == 2.5
        assert await c.fetchval("select $1::bool", True) is True
        u = uuid.uuid4()
        assert await c.fetchval("select $1::uuid", u) == u
        assert await c.fetchval("select $1::date", datetime.date(2020, 2, 29)) == datetime.date(2020, 2, 29)
        assert await c.fetchval("select $1::interval", datetime.timedelta(days=1, seconds=5)) == datetime.timedelta(days=1, seconds=5)
        assert await c.fetchval("select $1::inet", "10.1.2.3") is not None
        rec = await c.fetchval("select row(1, 'a')::record")
        assert tuple(rec) == (1, "a"), rec
        rows = await c.fetch("select g, g::text from generate_series(1, 500) g")
        assert len(rows) == 500 and rows[499][0] == 500
    finally:
        await c.close()


@check("prepared statements")
async def _():
    c = await connect()
    try:
        st = await c.prepare(f"select id, name from {T} where id = $1")
        assert [a.name for a in st.get_attributes()] == ["id", "name"]
        for _ in range(10):
            r = await st.fetchrow(1)
            assert r["id"] == 1
        st2 = await c.prepare("select $1::int * $2::int")
        for i in range(10):
            assert await st2.fetchval(i, 3) == i * 3
        # statement cache: the same text again reuses the server-side statement
        for i in range(10):
            assert await c.fetchval("select $1::int + 100", i) == i + 100
    finally:
        await c.close()


@check("executemany")
async def _():
    c = await connect()
    try:
        await c.executemany(f"insert into {T} (id, name) values ($1, $2)", [(i, f"m{i}") for i in range(10, 60)])
        assert await c.fetchval(f"select count(*) from {T} where id between 10 and 59") == 50
    finally:
        await c.close()


@check("copy_records_to_table and copy_from_query")
async def _():
    c = await connect()
    try:
        res = await c.copy_records_to_table(T, records=[(i, f"r{i}", bytes([i % 256])) for i in range(100, 300)],
                                            columns=["id", "name", "data"])
        assert res == "COPY 200", res
        assert await c.fetchval(f"select count(*) from {T} where id between 100 and 299") == 200
        import io
        buf = io.BytesIO()
        res = await c.copy_from_query(f"select id, name from {T} where id between 100 and 299 order by id", output=buf)
        assert res == "COPY 200", res
        lines = buf.getvalue().decode().splitlines()
        assert len(lines) == 200 and lines[0] == "100\tr100", lines[:2]
        buf = io.BytesIO()
        await c.copy_from_table(T, columns=["id"], output=buf, format="csv")
        assert len(buf.getvalue().splitlines()) == 251
    finally:
        await c.close()


@check("transactions")
async def _():
    c = await connect()
    try:
        try:
            async with c.transaction():
                await c.execute(f"insert into {T} (id, name) values (400, 'x')")
                await c.execute(f"insert into {T} (id, name) values (400, 'dup')")
            raise AssertionError("no error")
        except asyncpg.UniqueViolationError as e:
            assert e.sqlstate == "23505"
        assert await c.fetchval(f"select count(*) from {T} where id = 400") == 0
        async with c.transaction():
            await c.execute(f"insert into {T} (id, name) values (401, 'kept')")
            try:
                async with c.transaction():  # savepoint
                    await c.execute("select 1/0")
            except asyncpg.DivisionByZeroError:
                pass
        assert await c.fetchval(f"select name from {T} where id = 401") == "kept"
        tr = c.transaction(isolation="serializable", readonly=True)
        await tr.start()
        assert await c.fetchval("select current_setting('transaction_isolation')") == "serializable"
        await tr.rollback()
    finally:
        await c.close()


@check("cursor in a transaction (portal suspension)")
async def _():
    c = await connect()
    try:
        async with c.transaction():
            got = [r[0] async for r in c.cursor(f"select id from {T} where id between 100 and 299 order by id", prefetch=17)]
            assert got == list(range(100, 300)), got[:3]
            cur = await c.cursor("select generate_series(1, 100)")
            assert [r[0] for r in await cur.fetch(5)] == [1, 2, 3, 4, 5]
            await cur.forward(10)
            assert (await cur.fetchrow())[0] == 16
            assert [r[0] for r in await cur.fetch(3)] == [17, 18, 19]
    finally:
        await c.close()


@check("LISTEN via add_listener")
async def _():
    lc = await connect()
    nc = await connect()
    try:
        got = asyncio.Queue()
        await lc.add_listener("compat_ach", lambda conn, pid, ch, payload: got.put_nowait((ch, payload)))
        await nc.execute("NOTIFY compat_ach, 'one'")
        await nc.execute("select pg_notify('compat_ach', 'two')")
        a = await asyncio.wait_for(got.get(), 5)
        b = await asyncio.wait_for(got.get(), 5)
        assert [a, b] == [("compat_ach", "one"), ("compat_ach", "two")], [a, b]
        await lc.remove_listener("compat_ach", lambda *a: None)
    finally:
        await lc.close()
        await nc.close()


@check("timeout cancels pg_sleep")
async def _():
    c = await connect()
    try:
        loop = asyncio.get_running_loop()
        start = loop.time()
        try:
            await c.fetch("select pg_sleep(5)", timeout=0.5)
            raise AssertionError("no timeout")
        except asyncio.TimeoutError:
            pass
        assert loop.time() - start < 3
        # the connection is usable right after, and the backend was really cancelled
        assert await c.fetchval("select 42", timeout=3) == 42
        assert loop.time() - start < 4, loop.time() - start
    finally:
        await c.close()


@check("pool of 10 with concurrent queries")
async def _():
    pool = await asyncpg.create_pool(DSN, min_size=10, max_size=10)
    try:
        async def one(i):
            async with pool.acquire() as c:
                v = await c.fetchval("select $1::int * 2 from pg_sleep(0.05)", i)
                assert v == i * 2
                return await c.fetchval(f"select count(*) from {T} where id > $1", i)
        res = await asyncio.gather(*(one(i) for i in range(60)))
        assert len(res) == 60
    finally:
        await pool.close()


@check("type introspection (arrays, ranges) with the JIT toggle it runs first")
async def _():
    # asyncpg introspects types it has no built-in codec for (arrays, ranges, enums,
    # composites) and wraps that query in `set_config('jit', 'off'|$1, false)`. The shipped
    # rule pg-allow-driver-jit-toggle lets exactly those two statements through the
    # set_config hold, so this works in an elevated session without an approver.
    c = await connect()
    try:
        arr, rng = tuple(await c.fetchrow("select $1::text[], int4range(1, 5)", ["a", None, "c"], timeout=10))
        assert arr == ["a", None, "c"] and rng == asyncpg.Range(1, 5), (arr, rng)
        assert await c.fetchval("select $1::int[]", [3, 2, 1], timeout=5) == [3, 2, 1]
        assert await c.fetchval("select 7", timeout=5) == 7
    finally:
        await c.close()


@check("wrong password")
async def _():
    try:
        await asyncpg.connect(DSN, password="wrong")
        raise AssertionError("connected")
    except asyncpg.InvalidPasswordError as e:
        assert e.sqlstate == "28P01", e.sqlstate


async def main():
    only = os.environ.get("COMPAT_ONLY")
    failed = ran = 0
    for name, fn in checks:
        if only and only not in name:
            continue
        ran += 1
        task = asyncio.ensure_future(fn())
        done, _ = await asyncio.wait([task], timeout=CHECK_TIMEOUT)
        if not done:
            # Name what proctor holds before the cancel withdraws it.
            failed += 1
            print(f"  FAIL asyncpg: {name}: no answer within {CHECK_TIMEOUT:g} s{describe_held()}", flush=True)
            task.cancel()
            continue
        try:
            task.result()
            print(f"  ok   asyncpg: {name}", flush=True)
        except Exception as e:  # noqa: BLE001
            failed += 1
            print(f"  FAIL asyncpg: {name}: {type(e).__name__}: {e}", flush=True)
    print(f"asyncpg: {ran - failed} passed, {failed} failed")
    sys.exit(1 if failed or not ran else 0)


if __name__ == "__main__":
    asyncio.run(main())
