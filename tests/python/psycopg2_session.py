"""A psycopg2 session against a running Tally server, as an application would write it.

Usage: psycopg2_session.py DSN

Run by tests/e2e/pg_clients.rs (validated against PostgreSQL 15 first: this script is the
specification). psycopg2 is still the most deployed Python driver, and it talks to the server
very differently from psycopg 3 (tests/python/psycopg_session.py):

- parameters are interpolated client-side, so every statement arrives as one simple-protocol
  Query with literals such as '2026-01-02'::date, '2026-01-02T03:04:05+00:00'::timestamptz,
  '\\x00ff'::bytea, 1.250 (a numeric literal), true and NULL;
- autocommit is off by default: the first statement of a unit of work sends BEGIN, commit()
  sends COMMIT and rollback() ROLLBACK; the transaction status comes from ReadyForQuery;
- results come back in text format and are parsed by psycopg2's typecasters, chosen by the
  column type OIDs of the RowDescription (which cursor.description exposes);
- COPY goes through copy_expert() with a file object (CSV here);
- errors are classified by SQLSTATE (e.pgcode) into psycopg2.errors classes.

Tables are append-only on Tally, and DDL there is not transactional: it is committed right away
in this script so that PostgreSQL and Tally agree. Exits non-zero on the first failed check and
prints PASS last.
"""

import io
import math
import sys
from datetime import date, datetime, timedelta
from decimal import Decimal

import psycopg2
import psycopg2.errors
import psycopg2.extensions as ext
import psycopg2.extras

from common import COLUMNS, KINDS, UTC, check, readings_ddl

TABLE = "p2_readings"
VIEW = "p2_by_kind"

DDL = readings_ddl(TABLE)

# The type OIDs PostgreSQL reports for those columns (pg_type.oid).
OIDS = [20, 25, 701, 700, 21, 23, 25, 1082, 1114, 1184, 17, 16, 1700]

INSERT = f"INSERT INTO {TABLE} VALUES ({', '.join(['%s'] * len(COLUMNS))})"
SELECT_ALL = f"SELECT {', '.join(COLUMNS)} FROM {TABLE}"


def row(i):
    """Row i; every nullable column is NULL in multiples of 7."""
    if i % 7 == 0:
        return (i,) + (None,) * (len(COLUMNS) - 1)
    return (
        i,
        KINDS[i % 3],
        i * 1.5,
        (i % 8) / 4,  # exact in a REAL
        i % 300 - 150,
        i * 1000,
        f"naïve café ✓ 日本 {i}, \"quoted\" and \\ backslash",
        date(2026, 1, 1) + timedelta(days=i % 60),
        datetime(2026, 1, 2, 3, 4, 5, 678000) + timedelta(minutes=i),
        datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC) + timedelta(hours=i),
        bytes([i % 256, 0, 255, 92]),  # 92 is a backslash, 0 a NUL
        i % 2 == 0,
        Decimal(i) / 8,  # up to three decimals: exact in NUMERIC(12, 3)
    )


def normalize(values):
    """psycopg2 returns bytea as memoryview: compare it as bytes."""
    return tuple(bytes(v) if isinstance(v, memoryview) else v for v in values)


def count(cur, where="TRUE", params=()):
    cur.execute(f"SELECT count(*) FROM {TABLE} WHERE {where}", params)
    return cur.fetchone()[0]


def status(conn):
    return conn.info.transaction_status


def session(dsn):
    conn = psycopg2.connect(dsn)
    check(conn.autocommit, False, "psycopg2's default is a transaction per unit of work")
    check(status(conn), ext.TRANSACTION_STATUS_IDLE, "idle before the first statement")
    cur = conn.cursor()

    # Leftovers of an earlier run (PostgreSQL keeps them; a fresh Tally has none).
    cur.execute(f"DROP MATERIALIZED VIEW IF EXISTS {VIEW}")
    cur.execute(f"DROP TABLE IF EXISTS {TABLE}")
    cur.execute(DDL)
    check(status(conn), ext.TRANSACTION_STATUS_INTRANS,
          "the first statement opened a transaction (BEGIN sent by psycopg2)")
    # DDL is committed at once: on Tally it is not transactional, on PostgreSQL it is.
    conn.commit()
    check(status(conn), ext.TRANSACTION_STATUS_IDLE, "idle after commit")

    # executemany: one INSERT per row, parameters interpolated as literals.
    cur.executemany(INSERT, [row(i) for i in range(1, 51)])
    check(cur.rowcount, 50, "executemany reports the rows inserted")
    conn.commit()
    check(count(cur), 50, "executemany inserted 50 committed rows")
    # execute_values: one multi-row INSERT ... VALUES (...), (...).
    psycopg2.extras.execute_values(
        cur, f"INSERT INTO {TABLE} VALUES %s", [row(i) for i in range(51, 101)], page_size=20
    )
    conn.commit()
    check(count(cur), 100, "execute_values inserted 50 more rows")

    # One row found through a parameter of every type (literals in the WHERE clause).
    expected = row(11)
    where = " AND ".join(f"{c} = %s" for c in COLUMNS)
    cur.execute(f"{SELECT_ALL} WHERE {where}", expected)
    rows = cur.fetchall()
    check(len(rows), 1, "a WHERE with a literal of every type finds its row")
    got = normalize(rows[0])
    check(got[:7], expected[:7], "bigint, text, double, real, smallint, integer, non-ASCII text")
    check(got[7:9], expected[7:9], "date and naive timestamp (with microseconds)")
    check(got[9], expected[9], "timestamptz as an aware datetime, the same instant")
    check(got[9].utcoffset() is not None, True, "timestamptz comes back with a UTC offset")
    check(got[10:], expected[10:], "bytea, boolean and numeric values")
    check(tuple(type(v) for v in got),
          (int, str, float, float, int, int, str, date, datetime, datetime, bytes, bool,
           Decimal),
          "Python types of every column")
    cur.execute(f"{SELECT_ALL} WHERE id = %s", (14,))
    check(cur.fetchone(), row(14), "NULL in every nullable column comes back as None")
    cur.execute(f"SELECT count(*) FROM {TABLE} WHERE label IS NULL AND id > %s", (50,))
    check(cur.fetchone(), (7,), "IS NULL with a parameter")
    cur.execute(f"SELECT id FROM {TABLE} WHERE kind = %(kind)s AND id < %(below)s ORDER BY id",
                {"kind": "beta", "below": 12})
    check(cur.fetchall(), [(1,), (4,), (10,)], "named parameters (%(name)s)")
    cur.execute(f"SELECT id FROM {TABLE} WHERE id IN %s ORDER BY id DESC", ((3, 5, 8),))
    check(cur.fetchall(), [(8,), (5,), (3,)], "a tuple parameter expands to an IN list")
    cur.execute(f"SELECT count(*) FROM {TABLE} WHERE label LIKE %s", ("naïve café ✓ 日本 1%",))
    check(cur.fetchone(), (11,), "a LIKE pattern with non-ASCII characters")  # 1, 10-19 - 14

    # Parameters echoed back, each with a cast, in their Python types.
    params = (42, 2.5, 0.25, "text ü ✓", date(2026, 3, 4), datetime(2026, 3, 4, 5, 6, 7, 890),
              datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC), b"\x00\x01\xff'\\", True,
              Decimal("12.345"), None)
    cur.execute(
        "SELECT %s::bigint, %s::double precision, %s::real, %s::text, %s::date, "
        "%s::timestamp, %s::timestamptz, %s::bytea, %s::boolean, %s::numeric, %s::text",
        params,
    )
    check(normalize(cur.fetchone()), params, "eleven parameter types (NULL too) come back as sent")
    cur.execute("SELECT %s AS quoted", ("it's; DROP TABLE x; --",))
    check(cur.fetchone(), ("it's; DROP TABLE x; --",), "a quote in a string is escaped")
    conn.commit()

    # cursor.description: column names and type OIDs from the RowDescription.
    cur.execute(f"{SELECT_ALL} WHERE id = %s", (1,))
    check([d.name for d in cur.description], COLUMNS, "cursor.description names")
    check([d.type_code for d in cur.description], OIDS, "cursor.description type OIDs")
    check(cur.description[0].type_code == psycopg2.NUMBER, True, "bigint is a NUMBER")
    check(cur.description[6].type_code == psycopg2.STRING, True, "text is a STRING")
    check(cur.description[8].type_code == psycopg2.DATETIME, True, "timestamp is a DATETIME")
    check(cur.description[10].type_code == psycopg2.BINARY, True, "bytea is BINARY")
    cur.execute(f"SELECT count(*) AS n, max(day) AS last_day FROM {TABLE}")
    check([(d.name, d.type_code) for d in cur.description], [("n", 20), ("last_day", 1082)],
          "description of aggregates: count(*) is int8, max(date) is date")
    conn.commit()

    # Transactions. Note: on PostgreSQL a SELECT inside the transaction would also see its own
    # uncommitted rows; Tally holds INSERTs until COMMIT, so visibility is only checked after
    # the transaction ends.
    cur.execute(INSERT, row(101))
    cur.execute(INSERT, row(102))
    check(status(conn), ext.TRANSACTION_STATUS_INTRANS, "INSERTs inside a transaction block")
    conn.commit()
    check(count(cur), 102, "commit applies the transaction's INSERTs")
    with psycopg2.connect(dsn) as other, other.cursor() as other_cur:
        check(count(other_cur), 102, "another connection sees the committed rows")
    other.close()

    cur.executemany(INSERT, [row(i) for i in range(103, 106)])
    conn.rollback()
    check(status(conn), ext.TRANSACTION_STATUS_IDLE, "idle after rollback")
    check(count(cur, "id > %s", (102,)), 0, "rollback discards the transaction's INSERTs")
    conn.commit()

    # Savepoints: rolled back to, released, and a transaction's other rows kept.
    cur.execute(INSERT, row(103))
    cur.execute("SAVEPOINT before_bad")
    cur.execute(INSERT, row(104))
    cur.execute(INSERT, row(105))
    cur.execute("ROLLBACK TO SAVEPOINT before_bad")
    cur.execute(INSERT, row(106))
    cur.execute("SAVEPOINT kept")
    cur.execute(INSERT, row(107))
    cur.execute("RELEASE SAVEPOINT kept")
    conn.commit()
    cur.execute(f"SELECT id FROM {TABLE} WHERE id > %s ORDER BY id", (102,))
    check(cur.fetchall(), [(103,), (106,), (107,)],
          "ROLLBACK TO SAVEPOINT discards only the INSERTs after it; RELEASE keeps them")
    conn.commit()

    # The context manager of a connection commits, or rolls back on an exception.
    try:
        with conn:
            cur.execute(INSERT, row(108))
            raise RuntimeError("abandon the unit of work")
    except RuntimeError:
        pass
    check(count(cur, "id = %s", (108,)), 0, "`with conn:` rolls back on an exception")
    with conn:
        cur.execute(INSERT, row(108))
    check(count(cur, "id = %s", (108,)), 1, "`with conn:` commits at the end of the block")
    conn.commit()

    # COPY ... FROM STDIN WITH (FORMAT csv): an empty unquoted field is NULL, "" is ''.
    csv = io.StringIO()
    copied = list(range(1001, 1201))
    for i in copied:
        r = row(i)
        if r[1] is None:
            csv.write(f"{i},,,,,,,,,,,,\n")
            continue
        label = '"' + r[6].replace('"', '""') + '"'
        csv.write(
            f"{i},{r[1]},{r[2]},{r[3]},{r[4]},{r[5]},{label},{r[7].isoformat()},"
            f"{r[8].isoformat(' ')},{r[9].isoformat(' ')},\\x{r[10].hex()},{'t' if r[11] else 'f'},"
            f"{r[12]}\n"
        )
    csv.write('1201,alpha,,,,,"",,,,,,\n')  # "" is an empty string, not NULL
    csv.seek(0)
    cur.copy_expert(f"COPY {TABLE} FROM STDIN WITH (FORMAT csv)", csv)
    check(cur.rowcount, len(copied) + 1, "copy_expert reports the rows copied")
    conn.commit()
    cur.execute(f"{SELECT_ALL} WHERE id IN %s ORDER BY id", ((1003, 1008, 1050),))
    check([normalize(r) for r in cur.fetchall()], [row(1003), row(1008), row(1050)],
          "COPYed rows read back with every type, and NULLs")
    cur.execute(f"SELECT label IS NULL, label FROM {TABLE} WHERE id = %s", (1201,))
    check(cur.fetchone(), (False, ""), "a quoted empty CSV field is an empty string")
    conn.commit()

    # A materialized view, created over the loaded rows. On Tally it is kept up to date on
    # every insert; PostgreSQL would need REFRESH MATERIALIZED VIEW for later rows, so the
    # aggregates are only checked over the rows present when the view is created.
    cur.execute(
        f"CREATE MATERIALIZED VIEW {VIEW} AS SELECT kind, count(*) AS n, sum(id) AS s, "
        f"min(value) AS lo, max(value) AS hi, avg(value) AS mean FROM {TABLE} GROUP BY kind"
    )
    conn.commit()
    ids = list(range(1, 103)) + [103, 106, 107, 108] + copied + [1201]
    rows = [row(i) for i in ids[:-1]] + [(1201, "alpha") + (None,) * 11]
    expected = {}
    for r in rows:
        group = expected.setdefault(r[1], [])
        group.append(r)
    cur.execute(f"SELECT kind, n, s, lo, hi, mean FROM {VIEW} ORDER BY kind NULLS LAST")
    got = cur.fetchall()
    check([g[0] for g in got], ["alpha", "beta", "gamma", None], "one view row per kind")
    for kind, n, s, lo, hi, mean in got:
        group = expected[kind]
        values = [r[2] for r in group if r[2] is not None]
        # sum(bigint) is numeric on PostgreSQL, bigint on Tally: compare the values.
        check((n, int(s)), (len(group), sum(r[0] for r in group)),
              f"view count(*) and sum(id) of kind {kind}")
        if values:
            check((lo, hi), (min(values), max(values)), f"view min and max of kind {kind}")
            check(math.isclose(mean, sum(values) / len(values)), True,
                  f"view avg of kind {kind}")
        else:
            check((lo, hi, mean), (None, None, None), f"view aggregates of NULLs ({kind})")
    cur.execute(f"SELECT sum(n) FROM {VIEW} WHERE kind IN %s", (("alpha", "gamma"),))
    check(int(cur.fetchone()[0]), len(expected["alpha"]) + len(expected["gamma"]),
          "a query over the view with a parameter")
    conn.commit()

    # Errors: the SQLSTATE in e.pgcode, the transaction aborted until rollback.
    try:
        cur.execute("SELECT * FROM p2_no_such_table")
        raise AssertionError("a missing table raised nothing")
    except psycopg2.errors.UndefinedTable as e:
        check(e.pgcode, "42P01", "a missing table is UndefinedTable, 42P01")
        check("p2_no_such_table" in e.pgerror, True, "the message names the table")
    check(status(conn), ext.TRANSACTION_STATUS_INERROR, "the error aborted the transaction")
    try:
        cur.execute("SELECT 1")
        raise AssertionError("a statement in an aborted transaction ran")
    except psycopg2.errors.InFailedSqlTransaction as e:
        check(e.pgcode, "25P02", "statements in an aborted transaction fail with 25P02")
    conn.rollback()
    cur.execute("SELECT 1")
    check(cur.fetchone(), (1,), "the connection is usable after rollback")
    try:
        cur.execute(f"SELECT no_such_column FROM {TABLE}")
        raise AssertionError("a missing column raised nothing")
    except psycopg2.errors.UndefinedColumn as e:
        check(e.pgcode, "42703", "a missing column is UndefinedColumn, 42703")
    conn.rollback()
    try:
        cur.execute("SELEC 1")
        raise AssertionError("a syntax error raised nothing")
    except psycopg2.errors.SyntaxError as e:
        check(e.pgcode, "42601", "a syntax error is 42601")
    conn.rollback()
    # An error in the middle of a transaction discards its earlier INSERTs too.
    cur.execute(INSERT, row(109))
    try:
        cur.execute(INSERT, (110, "alpha", "not a number") + (None,) * 10)
        raise AssertionError("a bad double raised nothing")
    except psycopg2.errors.InvalidTextRepresentation as e:
        check(e.pgcode, "22P02", "a malformed double is 22P02")
    conn.rollback()
    check(count(cur, "id IN (109, 110)"), 0, "rollback after an error discards the block")
    total = len(ids)
    check(count(cur), total, "the connection is usable after rollback, all rows counted")
    conn.commit()
    conn.close()

    # A fresh autocommit connection: no BEGIN, each statement on its own.
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute(INSERT, row(2000))
    check(status(conn), ext.TRANSACTION_STATUS_IDLE, "autocommit sends no BEGIN")
    cur.execute(f"SELECT count(*), sum(id), count(label) FROM {TABLE}")
    n, s, labels = cur.fetchone()
    check((n, int(s), labels),
          (total + 1, sum(ids) + 2000, sum(1 for i in ids + [2000] if i % 7)),
          "a new connection sees every committed row")
    cur.execute(f"DROP MATERIALIZED VIEW {VIEW}")
    cur.execute(f"DROP TABLE {TABLE}")
    try:
        cur.execute(f"SELECT 1 FROM {TABLE}")
        raise AssertionError("a dropped table is still there")
    except psycopg2.errors.UndefinedTable:
        print("ok: DROP MATERIALIZED VIEW and DROP TABLE")
    conn.close()


if __name__ == "__main__":
    session(sys.argv[1])
    print("PASS")
