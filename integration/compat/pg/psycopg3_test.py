#!/usr/bin/env python3
"""psycopg 3 against proctor: every check asserts; exits non-zero when any fails.

usage: psycopg3_test.py DSN
The DSN is the dev agent's (sslmode=verify-full with the dev CA) or, to compare, the target's.
"""
import datetime
import decimal
import json
import os
import sys
import threading
import time

import psycopg
from psycopg.types.json import Jsonb

from compat_common import registry, run_checks

DSN = sys.argv[1]
T = "compat_psycopg"
checks, check = registry()


def connect(**kw):
    return psycopg.connect(DSN, **kw)


@check("simple query")
def _():
    with connect(autocommit=True) as c:
        # psycopg sends a parameterless execute through the extended protocol; the
        # simple-query protocol is reached with a raw query and multiple statements.
        cur = c.cursor()
        cur.execute("select 1 as a, 'x' as b")
        assert cur.fetchall() == [(1, "x")]
        c.pgconn.send_query(b"select 1; select 2, 3")
        results = []
        while True:
            r = c.pgconn.get_result()
            if r is None:
                break
            results.append((r.ntuples, r.nfields))
        assert results == [(1, 1), (1, 2)], results
        cur.execute(f"delete from {T} where id >= 0")


@check("parameters of many types")
def _():
    ts = datetime.datetime(2026, 12, 6, 10, 30, 15, 123456, tzinfo=datetime.timezone.utc)
    with connect() as c:
        cur = c.cursor()
        cur.execute(
            f"insert into {T} (id, name, data, amount, ts, js, arr) values (%s, %s, %s, %s, %s, %s, %s)",
            (1, "héllo 'quoted'", b"\x00\x01\xffbin", decimal.Decimal("12345.678901"), ts,
             Jsonb({"k": [1, 2, {"n": None}]}), [1, 2, 3]),
        )
        cur.execute(f"insert into {T} (id, name) values (%s, %s)", (2, None))
        cur.execute(f"select id, name, data, amount, ts, js, arr from {T} where id = %s", (1,))
        row = cur.fetchone()
        assert row == (1, "héllo 'quoted'", b"\x00\x01\xffbin", decimal.Decimal("12345.678901"), ts,
                       {"k": [1, 2, {"n": None}]}, [1, 2, 3]), row
        cur.execute(f"select name is null from {T} where id = %s", (2,))
        assert cur.fetchone() == (True,)
        cur.execute("select %s::int + %s::int, %s::text || %s::text", (40, 2, "a", "b"))
        assert cur.fetchone() == (42, "ab")
        cur.execute("select %s::int[] , %s::json", ([4, 5], json.dumps({"a": 1})))
        assert cur.fetchone() == ([4, 5], {"a": 1})
        c.commit()


@check("prepare=True repeated")
def _():
    with connect() as c:
        cur = c.cursor()
        for i in range(8):
            cur.execute("select %s::int * 2, %s::text", (i, f"v{i}"), prepare=True)
            assert cur.fetchone() == (i * 2, f"v{i}")
        # automatic preparation after prepare_threshold (default 5) executions
        for i in range(8):
            cur.execute(f"select count(*) from {T} where id > %s", (i,))
            cur.fetchone()


@check("binary results")
def _():
    with connect() as c:
        cur = c.cursor(binary=True)
        cur.execute(f"select id, data, amount, ts, arr from {T} where id = %s", (1,))
        row = cur.fetchone()
        assert row[0] == 1 and row[1] == b"\x00\x01\xffbin" and row[2] == decimal.Decimal("12345.678901"), row
        assert row[4] == [1, 2, 3]
        cur2 = c.cursor()
        cur2.execute("select %s::bigint, %s::float8", (2**40, 1.5), binary=True)
        assert cur2.fetchone() == (2**40, 1.5)


@check("executemany")
def _():
    with connect() as c:
        cur = c.cursor()
        cur.executemany(f"insert into {T} (id, name) values (%s, %s)", [(i, f"m{i}") for i in range(10, 30)])
        cur.execute(f"select count(*) from {T} where id between 10 and 29")
        assert cur.fetchone() == (20,)
        cur.executemany(f"select id from {T} where id = %s", [(10,), (11,)], returning=True)
        got = []
        while True:
            got.append(cur.fetchone())
            if not cur.nextset():
                break
        assert got == [(10,), (11,)], got
        c.commit()


@check("pipeline mode")
def _():
    with connect() as c:
        with c.pipeline():
            cur = c.cursor()
            for i in range(30, 40):
                cur.execute(f"insert into {T} (id, name) values (%s, %s)", (i, f"p{i}"))
            cur2 = c.cursor()
            cur2.execute(f"select count(*) from {T} where id between 30 and 39")
            c1 = c.cursor()
            c1.execute("select %s::int", (7,))
        assert cur2.fetchone() == (10,)
        assert c1.fetchone() == (7,)
        c.commit()
        # an error inside a pipeline: the rest is skipped, the connection recovers
        try:
            with c.pipeline():
                c.execute("select 1/0")
                c.execute("select 2")
            raise AssertionError("no error")
        except psycopg.errors.DivisionByZero:
            pass
        c.rollback()
        assert c.execute("select 3").fetchone() == (3,)


@check("COPY FROM STDIN and TO STDOUT")
def _():
    with connect() as c:
        cur = c.cursor()
        with cur.copy(f"COPY {T} (id, name, data) FROM STDIN") as cp:
            for i in range(100, 150):
                cp.write_row((i, f"c{i}\ttab", bytes([i % 256, 0])))
        cur.execute(f"select count(*) from {T} where id between 100 and 149")
        assert cur.fetchone() == (50,)
        rows = []
        with cur.copy(f"COPY (select id, name from {T} where id between 100 and 149 order by id) TO STDOUT") as cp:
            for row in cp.rows():
                rows.append(row)
        assert len(rows) == 50 and rows[0] == ("100", "c100\ttab"), rows[:2]
        with cur.copy(f"COPY {T} (id, name) FROM STDIN (FORMAT binary)") as cp:
            cp.set_types(["int4", "text"])
            for i in range(150, 160):
                cp.write_row((i, f"b{i}"))
        cur.execute(f"select count(*) from {T} where id between 150 and 159")
        assert cur.fetchone() == (10,)
        c.commit()


@check("transactions, error mid-transaction")
def _():
    with connect() as c:
        cur = c.cursor()
        cur.execute(f"insert into {T} (id, name) values (200, 'rolled back')")
        c.rollback()
        cur.execute(f"select count(*) from {T} where id = 200")
        assert cur.fetchone() == (0,)
        cur.execute(f"insert into {T} (id, name) values (201, 'kept')")
        c.commit()
        cur.execute(f"insert into {T} (id, name) values (202, 'x')")
        try:
            cur.execute(f"insert into {T} (id, name) values (201, 'dup')")
            raise AssertionError("no error")
        except psycopg.errors.UniqueViolation as e:
            assert e.sqlstate == "23505"
        try:
            cur.execute("select 1")
            raise AssertionError("no error")
        except psycopg.errors.InFailedSqlTransaction:
            pass
        c.rollback()
        cur.execute(f"select id from {T} where id in (201, 202) order by id")
        assert cur.fetchall() == [(201,)]
        with c.transaction():
            cur.execute(f"update {T} set name = 'upd' where id = 201")
            with c.transaction():  # savepoint
                cur.execute(f"update {T} set name = 'inner' where id = 201")
                try:
                    with c.transaction():
                        cur.execute("select 1/0")
                except psycopg.errors.DivisionByZero:
                    pass
        cur.execute(f"select name from {T} where id = 201")
        assert cur.fetchone() == ("inner",)
        c.commit()
    with connect(autocommit=True) as c:
        c.execute(f"insert into {T} (id, name) values (203, 'auto')")
        with connect() as c2:
            assert c2.execute(f"select name from {T} where id = 203").fetchone() == ("auto",)


@check("server-side cursor")
def _():
    with connect() as c:
        with c.cursor(name="compat_ssc") as cur:
            cur.itersize = 7
            cur.execute(f"select id from {T} where id between 100 and 149 order by id")
            ids = [r[0] for r in cur]
        assert ids == list(range(100, 150)), ids
        with c.cursor(name="compat_ssc2", scrollable=True, withhold=True) as cur:
            cur.execute("select generate_series(1, 20)")
            assert cur.fetchmany(3) == [(1,), (2,), (3,)]
            cur.scroll(10, mode="absolute")
            assert cur.fetchone() == (11,)
        c.commit()


@check("LISTEN/NOTIFY")
def _():
    with connect(autocommit=True) as lc, connect(autocommit=True) as nc:
        lc.execute("LISTEN compat_chan")
        nc.execute("NOTIFY compat_chan, 'hello'")
        nc.execute("select pg_notify('compat_chan', 'world')")
        got = []
        for n in lc.notifies(timeout=5, stop_after=2):
            got.append((n.channel, n.payload))
        assert got == [("compat_chan", "hello"), ("compat_chan", "world")], got
        lc.execute("UNLISTEN compat_chan")


def cancel_after(delay, fn):
    """Runs fn after delay in a thread; returns the list that receives its exception."""
    errors = []

    def run():
        time.sleep(delay)
        try:
            fn()
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    t = threading.Thread(target=run)
    t.start()
    return t, errors


@check("cancel of pg_sleep(10)")
def _():
    with connect() as c:
        # cancel_safe: libpq 17's PQcancelStart, which negotiates TLS for the cancel request
        # (the connection is sslmode=verify-full) and expects a clean TLS close afterwards.
        for how in (c.cancel_safe, c.cancel):
            t, errors = cancel_after(0.5, how)
            start = time.monotonic()
            try:
                c.execute("select pg_sleep(10)")
                raise AssertionError("not cancelled")
            except psycopg.errors.QueryCanceled as e:
                assert e.sqlstate == "57014"
            t.join()
            assert not errors, f"{how.__name__}: {errors[0]!r}"
            took = time.monotonic() - start
            assert took < 5, took
            c.rollback()
            assert c.execute("select 1").fetchone() == (1,)


@check("statement_timeout")
def _():
    with connect() as c:
        c.execute("set statement_timeout = '200ms'")
        try:
            c.execute("select pg_sleep(3)")
            raise AssertionError("no timeout")
        except psycopg.errors.QueryCanceled:
            pass
        c.rollback()


@check("wrong password")
def _():
    bad = psycopg.conninfo.make_conninfo(DSN, password="wrong-password")
    try:
        psycopg.connect(bad)
        raise AssertionError("connected with a wrong password")
    except psycopg.OperationalError as e:
        msg = str(e)
        assert "password authentication failed" in msg, msg
        assert e.sqlstate in ("28P01", None), e.sqlstate


@check("max_protocol_version=3.2 (libpq 18) negotiates down to 3.0")
def _():
    if psycopg.pq.version() < 180000:
        return  # the option does not exist before libpq 18
    with connect(max_protocol_version="3.2") as c:
        assert c.pgconn.protocol_version == 3
        assert c.execute("select 1").fetchone() == (1,)


@check("sslnegotiation=direct (libpq 17+): TLS without SSLRequest")
def _():
    # PostgreSQL 15 targets do not speak it, so this is checked through proctor only.
    if os.environ.get("COMPAT_DIRECT") or psycopg.pq.version() < 170000:
        return
    with connect(sslnegotiation="direct") as c:
        assert c.pgconn.ssl_in_use
        assert c.execute("select 1").fetchone() == (1,)


@check("row count on server")
def _():
    with connect() as c:
        cur = c.cursor()
        cur.execute(f"update {T} set name = name where id between 10 and 29")
        assert cur.rowcount == 20, cur.rowcount
        cur.execute(f"delete from {T} where id between 150 and 159")
        assert cur.rowcount == 10, cur.rowcount
        c.commit()


if __name__ == "__main__":
    run_checks("psycopg3", checks)
