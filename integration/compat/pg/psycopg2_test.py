#!/usr/bin/env python3
"""psycopg2 against proctor: every check asserts. usage: psycopg2_test.py DSN"""
import datetime
import decimal
import io
import os
import sys

import psycopg2
import psycopg2.extras
from compat_common import registry, run_checks

DSN = sys.argv[1]
T = "compat_psycopg2"
checks, check = registry()


@check("parameters")
def _():
    ts = datetime.datetime(2026, 12, 6, 1, 2, 3, tzinfo=datetime.timezone.utc)
    with psycopg2.connect(DSN) as c, c.cursor() as cur:
        cur.execute(f"delete from {T} where id >= 0")
        cur.execute(
            f"insert into {T} (id, name, data, amount, ts, js, arr) values (%s, %s, %s, %s, %s, %s, %s)",
            (1, "it's", psycopg2.Binary(b"\x00\xff"), decimal.Decimal("1.5"), ts,
             psycopg2.extras.Json({"a": [1]}), [1, 2]),
        )
        cur.execute(f"select id, name, data, amount, ts, js, arr from {T} where id = %(id)s", {"id": 1})
        row = cur.fetchone()
        assert row[0] == 1 and row[1] == "it's" and bytes(row[2]) == b"\x00\xff", row
        assert row[3] == decimal.Decimal("1.5") and row[4] == ts and row[5] == {"a": [1]} and row[6] == [1, 2], row
        cur.execute("select %s is null, %s::int + 1", (None, 41))
        assert cur.fetchone() == (True, 42)


@check("executemany and execute_values")
def _():
    with psycopg2.connect(DSN) as c, c.cursor() as cur:
        cur.executemany(f"insert into {T} (id, name) values (%s, %s)", [(i, f"m{i}") for i in range(10, 30)])
        assert cur.rowcount == 20, cur.rowcount
        psycopg2.extras.execute_values(cur, f"insert into {T} (id, name) values %s",
                                       [(i, f"v{i}") for i in range(30, 60)], page_size=10)
        psycopg2.extras.execute_batch(cur, f"update {T} set name = %s where id = %s",
                                      [(f"b{i}", i) for i in range(30, 40)])
        cur.execute(f"select count(*) from {T} where id between 10 and 59")
        assert cur.fetchone() == (50,)
        cur.execute(f"select name from {T} where id = 35")
        assert cur.fetchone() == ("b35",)


@check("copy_expert both ways")
def _():
    with psycopg2.connect(DSN) as c, c.cursor() as cur:
        data = "".join(f"{i}\tcopy {i}\n" for i in range(100, 200))
        cur.copy_expert(f"COPY {T} (id, name) FROM STDIN", io.StringIO(data))
        assert cur.rowcount == 100, cur.rowcount
        out = io.StringIO()
        cur.copy_expert(f"COPY (select id, name from {T} where id between 100 and 199 order by id) TO STDOUT", out)
        assert out.getvalue() == data
        out = io.StringIO()
        cur.copy_expert(f"COPY (select id from {T} where id between 100 and 102 order by id) TO STDOUT WITH CSV HEADER", out)
        assert out.getvalue() == "id\n100\n101\n102\n", out.getvalue()
        c.commit()
        # A COPY that fails on the server: the error comes back, the connection recovers.
        try:
            cur.copy_expert(f"COPY {T} (id, name) FROM STDIN", io.StringIO("notanint\tx\n"))
            raise AssertionError("no error")
        except psycopg2.errors.InvalidTextRepresentation:
            pass
        c.rollback()
        cur.execute("select 1")
        assert cur.fetchone() == (1,)


@check("named cursor")
def _():
    with psycopg2.connect(DSN) as c:
        with c.cursor(name="compat_named") as cur:
            cur.itersize = 13
            cur.execute(f"select id from {T} where id between 100 and 199 order by id")
            ids = [r[0] for r in cur]
        assert ids == list(range(100, 200)), ids[:5]
        with c.cursor(name="compat_named2") as cur:
            cur.execute("select generate_series(1, 10)")
            assert cur.fetchmany(4) == [(1,), (2,), (3,), (4,)]
            assert cur.fetchall() == [(i,) for i in range(5, 11)]


@check("error and rollback")
def _():
    c = psycopg2.connect(DSN)
    try:
        cur = c.cursor()
        try:
            cur.execute("select 1/0")
            raise AssertionError("no error")
        except psycopg2.errors.DivisionByZero as e:
            assert e.pgcode == "22012"
        c.rollback()
        cur.execute("select 2")
        assert cur.fetchone() == (2,)
    finally:
        c.close()


if __name__ == "__main__":
    run_checks("psycopg2", checks)
