"""A psycopg 3 session against a running Tally server, as an application would write it.

Usage: psycopg_session.py session DSN   -- the whole session below
       psycopg_session.py connect DSN   -- connect, check TLS if sslmode is set (and not
                                           disable), SELECT 1
       psycopg_session.py uuid_json DSN -- UUID and JSONB columns with psycopg's adapters

Run by tests/e2e/pg_psycopg.rs. Uses psycopg's defaults: no autocommit, so the first statement
opens a transaction implicitly; server-side parameter binding; executemany in pipeline mode;
COPY FROM STDIN through cursor.copy(). Exits non-zero on the first failed check.
"""

import sys
import uuid
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import psycopg
from psycopg import errors

from common import check

DDL = """CREATE TABLE readings (
    id BIGINT NOT NULL,
    value DOUBLE PRECISION,
    label TEXT,
    day DATE,
    at TIMESTAMP,
    at_tz TIMESTAMPTZ,
    payload BYTEA,
    ok BOOLEAN,
    amount NUMERIC(12, 3)
)"""

INSERT = "INSERT INTO readings VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"

UTC = timezone.utc


# Rows in the table at the end: 100 from executemany, the rest from one COPY.
TOTAL = 100_100


def row(i):
    """Row i, with NULLs in every nullable column for multiples of 5."""
    if i % 5 == 0:
        return (i, None, None, None, None, None, None, None, None)
    return (
        i,
        i * 1.5,
        f"label {i} é",
        date(2026, 1, 1) + timedelta(days=i % 28),
        datetime(2026, 1, 2, 3, 4, 5, 678000) + timedelta(minutes=i),
        datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC) + timedelta(hours=i),
        bytes([i % 256, 0, 255]),
        i % 2 == 0,
        Decimal(i) / 8,
    )


def session(dsn):
    with psycopg.connect(dsn) as conn:
        check(conn.autocommit, False, "psycopg's default is a transaction per unit of work")
        with conn.cursor() as cur:
            cur.execute(DDL)
            check(conn.info.transaction_status, psycopg.pq.TransactionStatus.INTRANS,
                  "the first statement opened a transaction")
            cur.executemany(INSERT, [row(i) for i in range(1, 101)])
            cur.execute("SELECT count(*) FROM readings")
            check(cur.fetchone(), (100,), "executemany inserted 100 rows")

            # One row found through a parameter of every type.
            expected = row(7)
            cur.execute(
                "SELECT id, value, label, day, at, at_tz, payload, ok, amount FROM readings "
                "WHERE id = %s AND value = %s AND label = %s AND day = %s AND at = %s "
                "AND at_tz = %s AND payload = %s AND ok = %s AND amount = %s",
                expected,
            )
            rows = cur.fetchall()
            check(len(rows), 1, "a WHERE with int, float, text, date, timestamp, "
                  "timestamptz, bytea, bool and numeric parameters")
            got = rows[0]
            check(got[:5], expected[:5], "int, float, text, date, timestamp values")
            check(got[5], expected[5], "timestamptz value (aware, UTC)")
            check(bytes(got[6]), expected[6], "bytea value")
            check(got[7:], expected[7:], "bool and numeric values")

            # Parameters echoed back with their Python types.
            params = (42, 2.5, "text ü", date(2026, 3, 4), datetime(2026, 3, 4, 5, 6, 7),
                      datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC), b"\x00\x01\xff", True,
                      Decimal("12.345"), None)
            cur.execute(
                "SELECT %s::bigint, %s::double precision, %s::text, %s::date, %s::timestamp, "
                "%s::timestamptz, %s::bytea, %s::boolean, %s::numeric, %s::text",
                params,
            )
            echoed = [bytes(v) if isinstance(v, memoryview) else v for v in cur.fetchone()]
            check(tuple(echoed), params, "parameters of ten types (NULL too) come back as sent")
            cur.execute("SELECT count(*) FROM readings WHERE label IS NULL AND id > %s", (50,))
            check(cur.fetchone(), (10,), "NULLs stored by executemany")

            # COPY FROM STDIN of 100,000 rows, row by row through psycopg's dumpers.
            with cur.copy("COPY readings FROM STDIN") as copy:
                for i in range(101, TOTAL + 1):
                    copy.write_row(row(i))
            check(cur.rowcount, TOTAL - 100, "COPY reports its row count")
        conn.commit()

        with conn.cursor() as cur:
            # An error inside a transaction: rollback leaves the connection usable.
            try:
                cur.execute("SELECT * FROM no_such_table")
                raise AssertionError("a missing table raised nothing")
            except errors.UndefinedTable as e:
                check(e.sqlstate, "42P01", "a missing table is 42P01")
            conn.rollback()
            cur.execute("SELECT count(*), sum(id), count(label) FROM readings")
            check(cur.fetchone(), (TOTAL, TOTAL * (TOTAL + 1) // 2, TOTAL - TOTAL // 5),
                  "rows after COPY and commit")

    # A fresh connection sees everything that was committed.
    with psycopg.connect(dsn, autocommit=True) as conn:
        got = conn.execute(
            "SELECT label, day, at_tz, payload, amount FROM readings WHERE id = %s", (1042,)
        ).fetchone()
        expected = row(1042)
        check((got[0], got[1], got[2], bytes(got[3]), got[4]),
              (expected[2], expected[3], expected[5], expected[6], expected[8]),
              "a COPYed row read back from a new connection")
        check(conn.execute("SELECT count(*) FROM readings").fetchone(), (TOTAL,),
              "a new connection sees the committed rows")

        # Binary COPY out with psycopg's binary loaders, and back in with its binary dumpers.
        types = ["int8", "float8", "text", "date", "timestamp", "timestamptz", "bytea", "bool",
                 "numeric"]
        with conn.cursor() as cur:
            with cur.copy("COPY (SELECT * FROM readings WHERE id BETWEEN 1001 AND 3000 ORDER BY id)"
                          " TO STDOUT (FORMAT BINARY)") as copy:
                copy.set_types(types)
                out = [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r)
                       for r in copy.rows()]
            check(out, [row(i) for i in range(1001, 3001)],
                  "binary COPY TO STDOUT of 2000 rows, every type")
            with cur.copy("COPY (SELECT * FROM readings WHERE id < 0) TO STDOUT (FORMAT BINARY)"
                          ) as copy:
                copy.set_types(types)
                check(list(copy.rows()), [], "an empty binary COPY TO STDOUT")
            cur.execute(DDL.replace("readings", "readings_binary"))
            with cur.copy("COPY readings_binary FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(types)
                for r in out:
                    copy.write_row(r)
            check(cur.rowcount, 2000, "binary COPY FROM STDIN reports its row count")
            cur.execute("SELECT count(*), sum(id), count(label), sum(amount) FROM readings_binary")
            check(cur.fetchone(),
                  conn.execute("SELECT count(*), sum(id), count(label), sum(amount) FROM readings"
                               " WHERE id BETWEEN 1001 AND 3000").fetchone(),
                  "the binary COPY stored what it was sent")


def uuid_json(dsn):
    """uuid.UUID and Jsonb parameters, COPY rows of them, and the values psycopg loads back."""
    from psycopg.types.json import Json, Jsonb

    ids = [uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"), uuid.uuid5(uuid.NAMESPACE_DNS, "x")]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE docs (id UUID NOT NULL, body JSONB, raw JSON, n BIGINT)")
        conn.execute("INSERT INTO docs VALUES (%s, %s, %s, 1)",
                     (ids[0], Jsonb({"plan": "pro", "amount": 12.5}), Json([1, "two"])))
        with conn.cursor() as cur:
            with cur.copy("COPY docs (id, body, n) FROM STDIN") as copy:
                copy.write_row((ids[1], Jsonb({"plan": "free"}), 2))
            check(cur.rowcount, 1, "COPY of a uuid.UUID and a Jsonb row")
            with cur.copy("COPY docs (id, body, n) FROM STDIN (FORMAT binary)") as copy:
                copy.set_types(["uuid", "jsonb", "int8"])
                copy.write_row((ids[1], Jsonb({"plan": "max", "tags": ["a"]}), 3))
            check(cur.rowcount, 1, "binary COPY of a uuid.UUID and a Jsonb row")
        rows = conn.execute("SELECT id, body, raw FROM docs ORDER BY n").fetchall()
        check(rows[0], (ids[0], {"plan": "pro", "amount": 12.5}, [1, "two"]),
              "uuid, jsonb and json load as uuid.UUID, dict and list")
        check(rows[2][1], {"plan": "max", "tags": ["a"]}, "the binary COPY stored the jsonb")
        binary = conn.cursor(binary=True)
        check(binary.execute("SELECT id, body FROM docs WHERE n = 3").fetchone(),
              (ids[1], {"plan": "max", "tags": ["a"]}), "binary results of uuid and jsonb")
        check(conn.execute("SELECT n FROM docs WHERE id = %s ORDER BY n", (ids[1],)).fetchall(),
              [(2,), (3,)], "a uuid.UUID parameter in WHERE")
        check(conn.execute("SELECT body->>'plan', count(*) FROM docs GROUP BY 1 ORDER BY 1")
              .fetchall(), [("free", 1), ("max", 1), ("pro", 1)], "GROUP BY body->>'plan'")
        try:
            conn.execute("SELECT %s::uuid", ("not-a-uuid",))
            raise AssertionError("a bad uuid was accepted")
        except errors.InvalidTextRepresentation as e:
            check(str(e).startswith("invalid input syntax for type uuid"), True,
                  f"a bad uuid is 22P02 ({e})")
        check(conn.execute("SELECT count(*) FROM docs").fetchone(), (3,),
              "the session goes on after the error")


def connect(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        if "sslmode=" in dsn and "sslmode=disable" not in dsn:
            check(conn.pgconn.ssl_in_use, True, "TLS is in use")
        check(conn.execute("SELECT 1").fetchone(), (1,), "SELECT 1")


if __name__ == "__main__":
    mode, dsn = sys.argv[1], sys.argv[2]
    {"session": session, "connect": connect, "uuid_json": uuid_json}[mode](dsn)
    print("PASS")
