"""An asyncpg session against a running Tally server, as an asyncio application would write it.

Usage: asyncpg_session.py DSN      (libpq keyword/value string, converted to asyncpg's kwargs)

Run by tests/e2e/pg_clients.rs (validated against PostgreSQL 15 first: this script is the
specification). asyncpg does not use libpq and leans on the extended protocol harder than any
other Python driver:

- every statement with arguments is Parse + Describe first (named, cached prepared statements),
  and asyncpg encodes each argument by the parameter type the server reports in
  ParameterDescription: a `$1` the server types as text refuses a Python int on the client;
- results are requested in binary for every built-in type (int2/4/8, float4/8, numeric, text,
  bytea, bool, date, timestamp, timestamptz), so the server's binary encoders and decoders are
  what is tested here, including numeric's base-10000 digits and the 2000-01-01 epoch;
- executemany pipelines Bind/Execute for all rows of one prepared statement;
- conn.transaction() sends BEGIN/COMMIT/ROLLBACK, nested ones SAVEPOINT/RELEASE/ROLLBACK TO;
- conn.cursor() inside a transaction reads a portal in pieces (Execute with a row limit,
  PortalSuspended);
- copy_to_table/copy_from_query use COPY FROM STDIN / TO STDOUT in CSV or binary;
  copy_records_to_table always uses the binary COPY format.

Tables are append-only on Tally and DDL there is not transactional, so DDL runs outside
transaction blocks here. Exits non-zero on the first failed check and prints PASS last.
"""

import asyncio
import io
import os
import shlex
import sys
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import asyncpg

from common import COLUMNS, KINDS, UTC, check, readings_ddl

TABLE = "apg_readings"
VIEW = "apg_by_kind"

DDL = readings_ddl(TABLE)

TYPES = ["int8", "text", "float8", "float4", "int2", "int4", "text", "date", "timestamp",
         "timestamptz", "bytea", "bool", "numeric"]
INSERT = (f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES "
          f"({', '.join(f'${i}' for i in range(1, len(COLUMNS) + 1))})")
SELECT_ALL = f"SELECT {', '.join(COLUMNS)} FROM {TABLE}"


def row(i):
    """Row i; every nullable column is NULL in multiples of 7."""
    if i % 7 == 0:
        return (i,) + (None,) * (len(COLUMNS) - 1)
    return (
        i,
        KINDS[i % 3],
        i * 1.5 + 0.1,
        (i % 8) / 4,  # exact in a REAL
        i % 300 - 150,
        -i * 100_000,
        f"naïve café ✓ 日本 {i}",
        date(1999, 12, 30) + timedelta(days=i * 3),  # before and after the 2000 epoch
        datetime(1999, 12, 31, 20, 0, 0, 999999) + timedelta(hours=i, microseconds=i),
        datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC) + timedelta(hours=i),
        bytes([i % 256, 0, 255]),
        i % 2 == 0,
        # numeric's binary form: negative, fractional, more than one base-10000 digit.
        (Decimal(i) * 10007 / 8 - 50000).quantize(Decimal("0.001")),
    )


def connect_kwargs(dsn):
    """A libpq keyword/value string as asyncpg.connect() keyword arguments."""
    params = dict(item.split("=", 1) for item in shlex.split(dsn))
    kwargs = {
        "host": params.get("host", "127.0.0.1"),
        "port": int(params.get("port", 5432)),
        "user": params.get("user"),
        "database": params.get("dbname"),
        "password": params.get("password"),
    }
    sslmode = params.get("sslmode", "prefer")
    kwargs["ssl"] = False if sslmode == "disable" else sslmode
    return kwargs


async def count(conn, where="TRUE", *args):
    return await conn.fetchval(f"SELECT count(*) FROM {TABLE} WHERE {where}", *args)


async def session(dsn):
    conn = await asyncpg.connect(**connect_kwargs(dsn))
    try:
        await run(conn, dsn)
    finally:
        await conn.close()


async def run(conn, dsn):
    check(await conn.fetchval("SELECT 1"), 1, "connect and SELECT 1")
    check(conn.get_server_version().major >= 10, True,
          "server_version parses as a PostgreSQL version")
    # Leftovers of an earlier run (PostgreSQL keeps them; a fresh Tally has none). Without
    # arguments, execute() uses the simple query protocol: several statements in one string.
    await conn.execute(f"DROP MATERIALIZED VIEW IF EXISTS {VIEW}; DROP TABLE IF EXISTS {TABLE}")
    check(await conn.execute(DDL), "CREATE TABLE", "CREATE TABLE and its command tag")

    # executemany: one prepared INSERT, every row bound in binary.
    await conn.executemany(INSERT, [row(i) for i in range(1, 101)])
    check(await count(conn), 100, "executemany inserted 100 rows")
    check(await conn.execute(INSERT, *row(101)), "INSERT 0 1", "execute with arguments: tag")

    # fetch / fetchrow / fetchval with $n parameters whose types the server infers.
    rows = await conn.fetch(f"SELECT id FROM {TABLE} WHERE kind = $1 AND id < $2 ORDER BY id",
                            "beta", 12)
    check([r["id"] for r in rows], [1, 4, 10], "fetch with a text and a bigint parameter")
    record = await conn.fetchrow(f"{SELECT_ALL} WHERE id = $1", 11)
    check(tuple(record), row(11), "fetchrow: every type round-trips in binary")
    check(list(record.keys()), COLUMNS, "Record keys are the column names")
    check(tuple(type(v) for v in record.values()),
          (int, str, float, float, int, int, str, date, datetime, datetime, bytes, bool,
           Decimal),
          "Python types of every column")
    check(record["at_tz"].tzinfo is not None, True, "timestamptz decodes as an aware datetime")
    check(tuple(await conn.fetchrow(f"{SELECT_ALL} WHERE id = $1", 14)), row(14),
          "NULL in every nullable column comes back as None")
    check(await conn.fetchval(f"SELECT label FROM {TABLE} WHERE id = $1", 5), row(5)[6],
          "fetchval: non-ASCII text")
    check(await conn.fetchval(f"SELECT max(id) FROM {TABLE} WHERE id < $1", 0), None,
          "fetchval of an aggregate over no rows is None")

    # A WHERE over every column, each parameter typed by the column it is compared with.
    expected = row(13)
    where = " AND ".join(f"{c} = ${i}" for i, c in enumerate(COLUMNS, start=1))
    rows = await conn.fetch(f"{SELECT_ALL} WHERE {where}", *expected)
    check([tuple(r) for r in rows], [expected],
          "a WHERE with a binary parameter of every type finds its row")
    check(await count(conn, "at_tz > $1 AND at_tz <= $2", row(20)[9], row(30)[9]), 8,
          "a range of aware datetimes (ids 21..30 but 21 and 28)")
    check(await count(conn, "at < $1", datetime(2000, 1, 1)), 3,
          "a naive timestamp before the 2000 epoch")
    check(await count(conn, "amount < $1", Decimal("-40000.5")), 6, "a numeric parameter")
    check(await count(conn, "payload = $1", bytes([3, 0, 255])), 1, "a bytea parameter")
    check(await count(conn, "ok = $1 AND id <= $2", True, 10), 5, "a bool parameter")

    # Parameters echoed back with explicit casts: asyncpg's binary encoders against the
    # server's binary decoders, then the reverse.
    params = (
        -(2 ** 62), 2 ** 31 - 1, -(2 ** 15), 2.5e-300, 0.25, "text ü ✓", date(1970, 1, 1),
        datetime(2026, 3, 4, 5, 6, 7, 890), datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC),
        b"\x00\x01\xff", True, Decimal("-12345678.000001"), Decimal("0.00042"), None,
    )
    echoed = await conn.fetchrow(
        "SELECT $1::bigint, $2::integer, $3::smallint, $4::double precision, $5::real, "
        "$6::text, $7::date, $8::timestamp, $9::timestamptz, $10::bytea, $11::boolean, "
        "$12::numeric, $13::numeric, $14::text",
        *params,
    )
    check(tuple(echoed), params, "fourteen parameters (NULL too) come back as sent")
    aware = datetime(2026, 7, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    check(await conn.fetchval("SELECT $1::timestamptz", aware), aware,
          "an aware datetime with a +02:00 offset is the same instant")

    # Transactions. On PostgreSQL a SELECT inside the transaction would also see its own
    # uncommitted rows; Tally holds INSERTs until COMMIT, so visibility is only checked after
    # the transaction ends.
    async with conn.transaction():
        check(conn.is_in_transaction(), True, "conn.transaction() opened a block")
        await conn.executemany(INSERT, [row(i) for i in range(102, 105)])
    check(conn.is_in_transaction(), False, "the block ended")
    check(await count(conn, "id > $1", 101), 3, "a committed transaction applied its INSERTs")

    class Abandon(Exception):
        pass

    try:
        async with conn.transaction():
            await conn.execute(INSERT, *row(105))
            await conn.executemany(INSERT, [row(i) for i in range(106, 110)])
            raise Abandon()
    except Abandon:
        pass
    check(conn.is_in_transaction(), False, "the block was rolled back")
    check(await count(conn, "id > $1", 104), 0,
          "an exception in conn.transaction() rolls back its INSERTs")

    # Nested transactions are savepoints.
    async with conn.transaction():
        await conn.execute(INSERT, *row(105))
        try:
            async with conn.transaction():  # SAVEPOINT
                await conn.execute(INSERT, *row(106))
                raise Abandon()
        except Abandon:
            pass  # ROLLBACK TO SAVEPOINT
        async with conn.transaction():  # SAVEPOINT ... RELEASE SAVEPOINT
            await conn.execute(INSERT, *row(107))
    ids = [r["id"] for r in await conn.fetch(
        f"SELECT id FROM {TABLE} WHERE id > $1 ORDER BY id", 104)]
    check(ids, [105, 107], "a rolled-back savepoint discards only its INSERTs")

    # An explicit transaction object: start, rollback; start, commit.
    tr = conn.transaction()
    await tr.start()
    await conn.execute(INSERT, *row(108))
    await tr.rollback()
    tr = conn.transaction()
    await tr.start()
    await conn.execute(INSERT, *row(109))
    await tr.commit()
    check([tuple(r) for r in await conn.fetch(f"SELECT id FROM {TABLE} WHERE id IN (108, 109)")],
          [(109,)],
          "Transaction.start/rollback and start/commit")

    # An error inside a transaction: its sqlstate, the block rolled back by the manager.
    try:
        async with conn.transaction():
            await conn.execute(INSERT, *row(110))
            await conn.execute(f"SELECT * FROM {TABLE} WHERE no_such_column = $1", 1)
        raise AssertionError("a missing column raised nothing")
    except asyncpg.UndefinedColumnError as e:
        check(e.sqlstate, "42703", "a missing column is UndefinedColumnError, 42703")
    check(await count(conn, "id = $1", 110), 0, "the error rolled the transaction back")

    # Prepared statements: parameter and result types from Describe, run several times.
    stmt = await conn.prepare(
        f"SELECT id, label, amount FROM {TABLE} WHERE kind = $1 AND id BETWEEN $2 AND $3 "
        "ORDER BY id")
    check([t.name for t in stmt.get_parameters()], ["text", "int8", "int8"],
          "prepared statement parameter types")
    check([(a.name, a.type.name) for a in stmt.get_attributes()],
          [("id", "int8"), ("label", "text"), ("amount", "numeric")],
          "prepared statement result columns and types")
    check([r["id"] for r in await stmt.fetch("gamma", 1, 20)], [2, 5, 8, 11, 17, 20],
          "prepared statement fetch")
    check(stmt.get_statusmsg(), "SELECT 6", "prepared statement status message")
    check(await stmt.fetchval("alpha", 1, 20), 3, "prepared statement fetchval (first column)")
    check(tuple(await stmt.fetchrow("beta", 2, 4)), (4, row(4)[6], row(4)[12]),
          "prepared statement fetchrow with other arguments")
    insert = await conn.prepare(INSERT)
    check([t.name for t in insert.get_parameters()], TYPES, "INSERT parameter types")
    await insert.executemany([row(i) for i in range(111, 121)])
    check(await count(conn, "id BETWEEN $1 AND $2", 111, 120), 10,
          "prepared INSERT executemany")

    # A cursor in a transaction: the portal is read in pieces of `prefetch` rows.
    async with conn.transaction():
        seen = [r["id"] async for r in conn.cursor(
            f"SELECT id FROM {TABLE} WHERE id > $1 ORDER BY id", 100, prefetch=4)]
        cur = await conn.cursor(f"SELECT id FROM {TABLE} ORDER BY id")
        first = await cur.fetch(5)
        second = await cur.fetch(3)
        after = await cur.fetchrow()
    expected_ids = [101, 102, 103, 104, 105, 107, 109] + list(range(111, 121))
    check(seen, expected_ids, "cursor iteration with prefetch=4")
    check(([r["id"] for r in first], [r["id"] for r in second], after["id"]),
          ([1, 2, 3, 4, 5], [6, 7, 8], 9), "cursor fetch(5), fetch(3), fetchrow()")

    # COPY in CSV: copy_to_table from a file object, copy_from_table to one.
    csv = "".join(f"{i},alpha,{i / 2},,,,\"copied, {i}\",2026-02-{i % 28 + 1:02d},,,,t,{i}.5\n"
                  for i in range(1001, 1101))
    tag = await conn.copy_to_table(TABLE, source=io.BytesIO(csv.encode()),
                                   columns=COLUMNS, format="csv")
    check(tag, "COPY 100", "copy_to_table (COPY FROM STDIN, CSV)")
    out = io.BytesIO()
    tag = await conn.copy_from_query(
        f"SELECT id, label, amount FROM {TABLE} WHERE id >= 1001 ORDER BY id",
        output=out, format="csv")
    check(tag, "COPY 100", "copy_from_query (COPY (SELECT ...) TO STDOUT, CSV)")
    check(out.getvalue().decode().splitlines()[:2],
          ['1001,"copied, 1001",1001.500', '1002,"copied, 1002",1002.500'],
          "COPY TO output")

    # A materialized view over the loaded rows. On Tally it is kept up to date on every
    # insert; PostgreSQL would need REFRESH, so it is only checked over the rows it was
    # created from.
    await conn.execute(
        f"CREATE MATERIALIZED VIEW {VIEW} AS SELECT kind, count(*) AS n, sum(medium) AS s, "
        f"min(amount) AS lo, max(day) AS last_day FROM {TABLE} GROUP BY kind")
    rows = await conn.fetch(f"SELECT kind, n, s, lo, last_day FROM {VIEW} WHERE kind = $1",
                            "gamma")
    gamma = [row(i) for i in list(range(1, 121)) if row(i)[1] == "gamma"
             and i not in (106, 108, 110)]
    check([(r["kind"], r["n"], int(r["s"]), r["lo"], r["last_day"]) for r in rows],
          [("gamma", len(gamma), sum(g[5] for g in gamma), min(g[12] for g in gamma),
            max(g[7] for g in gamma))],
          "materialized view aggregates, read with a parameter")

    # Errors: the SQLSTATE in e.sqlstate, the connection usable afterwards.
    try:
        await conn.fetch("SELECT * FROM apg_no_such_table WHERE id = $1", 1)
        raise AssertionError("a missing table raised nothing")
    except asyncpg.UndefinedTableError as e:
        check(e.sqlstate, "42P01", "a missing table is UndefinedTableError, 42P01")
    try:
        await conn.prepare("SELEC 1")
        raise AssertionError("a syntax error raised nothing")
    except asyncpg.PostgresSyntaxError as e:
        check(e.sqlstate, "42601", "a syntax error at prepare() is 42601")
    try:
        await conn.execute(f"INSERT INTO {TABLE} (id) VALUES ($1)", None)
        raise AssertionError("a NULL in a NOT NULL column raised nothing")
    except asyncpg.NotNullViolationError as e:
        check(e.sqlstate, "23502", "NULL in a NOT NULL column is 23502")
    try:
        await conn.execute(f"CREATE TABLE {TABLE} (x BIGINT)")
        raise AssertionError("a duplicate table raised nothing")
    except asyncpg.DuplicateTableError as e:
        check(e.sqlstate, "42P07", "an existing table is DuplicateTableError, 42P07")
    check(conn.is_in_transaction(), False, "no block left open by the errors")
    check(await count(conn), 217, "the connection is usable after errors")

    # A second connection sees everything that was committed.
    other = await asyncpg.connect(**connect_kwargs(dsn))
    try:
        check(await other.fetchval(f"SELECT sum(id) FROM {TABLE} WHERE id > $1", 100),
              sum(expected_ids) + sum(range(1001, 1101)), "another connection sees the rows")
    finally:
        await other.close()

    # copy_records_to_table sends COPY ... FROM STDIN (FORMAT binary), every value in asyncpg's
    # binary encoders for the column types it looked up.
    records = [row(i) for i in range(2001, 2101)]
    tag = await conn.copy_records_to_table(TABLE, records=records, columns=COLUMNS)
    check(tag, "COPY 100", "copy_records_to_table (binary COPY)")
    got = await conn.fetch(f"{SELECT_ALL} WHERE id >= $1 ORDER BY id", 2001)
    check([tuple(r) for r in got], records, "binary COPY rows read back")
    # A column subset, and a rollback of a binary COPY in a transaction block.
    tag = await conn.copy_records_to_table(TABLE, records=[(3001, "alpha"), (3002, None)],
                                           columns=["id", "kind"])
    check(tag, "COPY 2", "copy_records_to_table with a column subset")
    check(tuple(await conn.fetchrow(f"{SELECT_ALL} WHERE id = $1", 3002)),
          (3002,) + (None,) * (len(COLUMNS) - 1), "columns left out of a binary COPY are NULL")
    try:
        async with conn.transaction():
            await conn.copy_records_to_table(TABLE, records=[row(3003)], columns=COLUMNS)
            check(await count(conn, "id = $1", 3003), 1, "a binary COPY in a block reads back")
            raise RuntimeError("roll back")
    except RuntimeError:
        pass
    check(await count(conn, "id = $1", 3003), 0, "rollback discards a binary COPY")
    # Binary COPY out, then back in: TO STDOUT (FORMAT binary) into FROM STDIN (FORMAT binary).
    out = io.BytesIO()
    await conn.copy_from_query(f"{SELECT_ALL} WHERE id BETWEEN $1 AND $2 ORDER BY id", 2001, 2050,
                               output=out, format="binary")
    check(out.getvalue()[:11], b"PGCOPY\n\xff\r\n\0", "binary COPY out starts with the signature")
    await conn.execute(readings_ddl(f"{TABLE}_copy"))
    out.seek(0)
    tag = await conn.copy_to_table(f"{TABLE}_copy", source=out, format="binary")
    check(tag, "COPY 50", "the binary COPY output loads back")
    got = await conn.fetch(f"SELECT {', '.join(COLUMNS)} FROM {TABLE}_copy ORDER BY id")
    check([tuple(r) for r in got], records[:50], "binary COPY out and in round-trips every type")
    await conn.execute(f"DROP TABLE {TABLE}_copy")
    # A bad stream is refused with PostgreSQL's SQLSTATE and leaves nothing.
    try:
        await conn.copy_to_table(TABLE, source=io.BytesIO(b"PGCOPY\n\xff\r\n\0garbage"),
                                 format="binary")
        raise AssertionError("a truncated binary COPY was accepted")
    except asyncpg.PostgresError as e:
        check(e.sqlstate, "22P04", "a malformed binary COPY is 22P04")
    check(await conn.fetchval("SELECT 1"), 1, "the connection is usable after a failed COPY")

    await conn.execute(f"DROP MATERIALIZED VIEW {VIEW}")
    check(await conn.execute(f"DROP TABLE {TABLE}"), "DROP TABLE", "DROP TABLE")


if __name__ == "__main__":
    asyncio.run(session(sys.argv[1]))
    print("PASS")
