"""SQLAlchemy 2 and pandas against a running Tally server, as a data application would use them.

Usage: sqlalchemy_pandas.py DSN      (libpq keyword/value string, turned into SQLAlchemy URLs)

Run by tests/e2e/pg_clients.rs (validated against PostgreSQL 15 first: this script is the
specification). Everything below runs twice, once through `postgresql+psycopg2://` and once
through `postgresql+psycopg://` (psycopg 3), on tables named after the driver.

What makes these clients hard for a non-PostgreSQL server is not the data statements but what
they send around them:

- on the first connection the dialect runs `select pg_catalog.version()`,
  `select current_schema()`, `show transaction isolation level`,
  `show standard_conforming_strings`, and looks up the hstore type in `pg_type`;
- the inspector (`inspect(engine)`), `Table(..., autoload_with=engine)`, `has_table`, and
  pandas (which asks `has_table` before every `to_sql`, and reflects for `read_sql_table`) query
  `pg_catalog`: pg_class, pg_namespace, pg_attribute with format_type(), pg_attrdef,
  pg_collation, pg_type, pg_constraint, pg_index, pg_description, pg_table_is_visible(), ...
  The column types SQLAlchemy reports are parsed from `format_type()` text
  ("numeric(12,3)", "timestamp with time zone", ...);
- `metadata.create_all` and pandas' `to_sql` create tables with `TIMESTAMP WITHOUT TIME ZONE`,
  `TIMESTAMP WITH TIME ZONE`, `DOUBLE PRECISION`, `FLOAT(53)`-like spellings and quoted names;
- pandas' default `to_sql(index=True)` writes the DataFrame index as a column named "index" and
  then runs `CREATE INDEX ix_<table>_index ON <table> (index)`. Tally has no indexes and
  accepts that statement as a no-op with a NOTICE; this script requires it to succeed, as on
  PostgreSQL;
- SQLAlchemy inserts many rows with one multi-row `INSERT ... VALUES (...), (...)`
  ("insertmanyvalues") and pandas' `method='multi'` does the same with its own parameter names.

Tables are append-only on Tally and DDL there is not transactional, so DDL is never rolled back
here. Exits non-zero on the first failed check and prints PASS last.
"""

import math
import shlex
import sys
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.engine import URL

from common import KINDS, UTC, check


def url(dsn, driver):
    """A libpq keyword/value string as a SQLAlchemy URL for `postgresql+<driver>`."""
    params = dict(item.split("=", 1) for item in shlex.split(dsn))
    query = {k: v for k, v in params.items()
             if k not in ("host", "port", "user", "password", "dbname")}
    return URL.create(
        f"postgresql+{driver}",
        username=params.get("user"),
        password=params.get("password"),
        host=params.get("host"),
        port=int(params["port"]) if "port" in params else None,
        database=params.get("dbname"),
        query=query,
    )


def frame(start, n):
    """A DataFrame of n rows with the dtypes pandas writes: int64, str, float64 (with NaN),
    bool, date objects, naive datetime64 and tz-aware datetime64 (not all in UTC)."""
    ids = list(range(start, start + n))
    paris = [pd.Timestamp(datetime(2026, 3, 28, 23, 30, tzinfo=UTC) + timedelta(hours=i))
             .tz_convert("Europe/Paris") for i in ids]  # across the DST change of 2026-03-29
    return pd.DataFrame({
        "id": ids,
        "kind": [KINDS[i % 3] for i in ids],
        "value": [math.nan if i % 5 == 0 else i * 0.5 for i in ids],
        "ok": [i % 2 == 0 for i in ids],
        "day": [date(2026, 1, 1) + timedelta(days=i) for i in ids],
        "at": [datetime(2026, 1, 2, 3, 4, 5, 678000) + timedelta(minutes=i) for i in ids],
        "at_tz": pd.Series(paris) if start % 2 else pd.Series(paris).dt.tz_convert("UTC"),
        "note": [f"note ü {i}" for i in ids],
    })


def same_values(got, expected, what):
    """Column by column, values compared as Python objects (dtypes may differ in resolution)."""
    check(list(got.columns), list(expected.columns), f"{what}: columns")
    for column in expected.columns:
        g = got[column].tolist()
        e = expected[column].tolist()
        if column == "value":
            g = [None if pd.isna(v) else v for v in g]
            e = [None if pd.isna(v) else v for v in e]
        if column == "day":
            g = [v.date() if isinstance(v, datetime) else v for v in g]
        if g != e:
            raise AssertionError(f"{what}: column {column}: expected {e!r}, got {g!r}")
    print(f"ok: {what}: {len(expected)} rows, values of every column")


def exercise(dsn, driver):
    prefix = f"sa_{'p2' if driver == 'psycopg2' else 'p3'}"
    table, multi, indexed, view = (f"{prefix}_readings", f"{prefix}_multi", f"{prefix}_indexed",
                                   f"{prefix}_by_kind")
    engine = sa.create_engine(url(dsn, driver))
    print(f"--- {engine.url.drivername}")

    # Leftovers of an earlier run (PostgreSQL keeps them; a fresh Tally has none).
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP MATERIALIZED VIEW IF EXISTS {view}")
        for name in (table, multi, indexed):
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
    with engine.connect() as conn:
        check(conn.dialect.server_version_info >= (10,), True,
              "the dialect parsed version() as PostgreSQL's")
        check(conn.dialect.default_schema_name, "public", "current_schema() is public")
        check(conn.scalar(sa.text("SELECT 1")), 1, "SELECT 1 through the engine")

    # A table declared with SQLAlchemy Core and created with metadata.create_all.
    metadata = sa.MetaData()
    readings = sa.Table(
        table, metadata,
        sa.Column("id", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.Text),
        sa.Column("value", sa.Double),
        sa.Column("ratio", sa.REAL),
        sa.Column("small", sa.SmallInteger),
        sa.Column("medium", sa.Integer),
        sa.Column("day", sa.Date),
        sa.Column("at", sa.DateTime(timezone=False)),
        sa.Column("at_tz", sa.DateTime(timezone=True)),
        sa.Column("payload", sa.LargeBinary),
        sa.Column("ok", sa.Boolean),
        sa.Column("amount", sa.Numeric(12, 3)),
    )
    metadata.create_all(engine)

    def core_row(i):
        return {
            "id": i, "kind": KINDS[i % 3], "value": i * 1.25, "ratio": (i % 4) / 2,
            "small": i - 50, "medium": i * 1000, "day": date(2026, 2, 1) + timedelta(days=i),
            "at": datetime(2026, 2, 1, 12, 0, 0, 250000) + timedelta(seconds=i),
            "at_tz": datetime(2026, 2, 1, 12, tzinfo=timezone(timedelta(hours=-5)))
            + timedelta(seconds=i),
            "payload": bytes([i, 0, 255]), "ok": i % 2 == 1, "amount": Decimal(i) / 4,
        }

    rows = [core_row(i) for i in range(1, 61)]
    with engine.begin() as conn:
        conn.execute(readings.insert(), rows)  # executemany as multi-row INSERTs
        conn.execute(readings.insert().values(id=61, kind=None))
    rows.append({c.name: None for c in readings.columns} | {"id": 61})

    # Transactions: a rolled-back unit of work leaves nothing. On PostgreSQL a SELECT inside
    # the transaction would also see its own uncommitted rows; Tally holds INSERTs until
    # COMMIT, so visibility is only checked after the transaction ends.
    with engine.connect() as conn:
        conn.execute(readings.insert(), [core_row(i) for i in range(62, 65)])
        conn.rollback()
        conn.execute(readings.insert(), [core_row(100)])
        nested = conn.begin_nested()  # SAVEPOINT
        conn.execute(readings.insert(), [core_row(101)])
        nested.rollback()  # ROLLBACK TO SAVEPOINT
        conn.commit()
    try:
        with engine.begin() as conn:
            conn.execute(readings.insert(), [core_row(102)])
            raise RuntimeError("abandon")
    except RuntimeError:
        pass
    rows.append(core_row(100))
    with engine.connect() as conn:
        ids = conn.scalars(sa.select(readings.c.id).where(readings.c.id > 61)
                           .order_by(readings.c.id)).all()
    check(ids, [100], "rollback, savepoint rollback and engine.begin() on an exception")

    # A materialized view over the rows (on PostgreSQL only the rows present at creation
    # count; Tally keeps it up to date on every insert, so nothing is inserted after it).
    with engine.begin() as conn:
        conn.exec_driver_sql(
            f"CREATE MATERIALIZED VIEW {view} AS SELECT kind, count(*) AS n, sum(medium) AS s, "
            f"max(at_tz) AS last_at FROM {table} GROUP BY kind")

    # The inspector.
    insp = sa.inspect(engine)
    names = insp.get_table_names()
    check(table in names and view not in names, True,
          "get_table_names lists the table, not the materialized view")
    check(view in insp.get_view_names(), False,
          "get_view_names does not list materialized views (as on PostgreSQL)")
    check(view in insp.get_materialized_view_names(), True, "get_materialized_view_names")
    check((insp.has_table(table), insp.has_table(f"{prefix}_missing")), (True, False),
          "has_table of a table and of a missing name")
    check(insp.has_table(view), True, "has_table of a materialized view")
    columns = insp.get_columns(table)
    check([c["name"] for c in columns], [c.name for c in readings.columns],
          "get_columns: names in order")
    check([c["nullable"] for c in columns], [False] + [True] * 11,
          "get_columns: nullable (NOT NULL on id only)")
    types = [c["type"] for c in columns]
    check([type(t) for t in types],
          [pg.BIGINT, pg.TEXT, pg.DOUBLE_PRECISION, pg.REAL, pg.SMALLINT, pg.INTEGER, pg.DATE,
           pg.TIMESTAMP, pg.TIMESTAMP, pg.BYTEA, pg.BOOLEAN, pg.NUMERIC],
          "get_columns: types")
    check((types[7].timezone, types[8].timezone), (False, True),
          "get_columns: timestamp without and with time zone")
    check((types[11].precision, types[11].scale), (12, 3), "get_columns: numeric(12, 3)")
    check([c["default"] for c in columns], [None] * 12, "get_columns: no defaults")
    check([c["name"] for c in insp.get_columns(view)], ["kind", "n", "s", "last_at"],
          "get_columns of the materialized view")
    check(insp.get_pk_constraint(table)["constrained_columns"], [], "no primary key")
    check((insp.get_foreign_keys(table), insp.get_indexes(table)), ([], []),
          "no foreign keys, no indexes")

    # Core select() over a table reflected with autoload_with.
    reflected = sa.Table(table, sa.MetaData(), autoload_with=engine)
    check([c.name for c in reflected.columns], [c.name for c in readings.columns],
          "Table(autoload_with=engine) reflects the columns")
    query = (sa.select(reflected.c.id, reflected.c.at, reflected.c.at_tz, reflected.c.amount,
                       reflected.c.payload)
             .where(reflected.c.kind == "beta", reflected.c.value > 40,
                    reflected.c.at_tz < datetime(2026, 2, 1, 17, 0, 55, tzinfo=UTC))
             .order_by(reflected.c.id.desc()))
    with engine.connect() as conn:
        got = [tuple(r) for r in conn.execute(query)]
        expected = [(r["id"], r["at"], r["at_tz"], r["amount"], r["payload"]) for r in rows
                    if r["kind"] == "beta" and r["value"] > 40 and r["id"] < 55][::-1]
        check(got, expected, "select().where() over the reflected table, every type back")
        check(got[0][2].utcoffset() is not None, True, "timestamptz comes back aware")
        counts = conn.execute(
            sa.select(reflected.c.kind, sa.func.count().label("n"), sa.func.sum(reflected.c.id))
            .where(reflected.c.day.between(date(2026, 2, 10), date(2026, 3, 1)))
            .group_by(reflected.c.kind).order_by(reflected.c.kind)).all()
        in_range = [r for r in rows if r["day"] and date(2026, 2, 10) <= r["day"]
                    <= date(2026, 3, 1)]
        check([(k, n, int(s)) for k, n, s in counts],
              [(k, sum(1 for r in in_range if r["kind"] == k),
                sum(r["id"] for r in in_range if r["kind"] == k)) for k in KINDS],
              "select() with func.count, func.sum, between, group_by")
        view_rows = conn.execute(sa.text(
            f"SELECT kind, n, s, last_at FROM {view} WHERE kind = :kind"), {"kind": "gamma"}
        ).all()
        gamma = [r for r in rows if r["kind"] == "gamma"]
        check([(k, n, int(s), last) for k, n, s, last in view_rows],
              [("gamma", len(gamma), sum(r["medium"] for r in gamma),
                max(r["at_tz"] for r in gamma))],
              "materialized view aggregates through text() with a bound parameter")

    # pandas: to_sql with method='multi' (one INSERT with many VALUES), no index.
    df = frame(1, 40)
    written = df.to_sql(multi, engine, index=False, method="multi", chunksize=25)
    if driver == "psycopg2":
        check(written, 40, "to_sql(method='multi') reports the rows inserted")
    again = frame(41, 10)
    again.to_sql(multi, engine, index=False, method="multi", if_exists="append")
    both = pd.concat([df, again], ignore_index=True)
    back = pd.read_sql(f"SELECT * FROM {multi} ORDER BY id", engine)
    same_values(back, both, "to_sql(method='multi') twice (append), read_sql")
    check(str(back["at"].dtype).startswith("datetime64["), True,
          "a naive timestamp column reads as datetime64")
    check(str(back["at_tz"].dt.tz), "UTC", "a timestamptz column reads as datetime64 in UTC")
    check(back["value"].isna().sum(), 10, "NaN written as NULL, read back as NaN")
    columns = {c["name"]: c["type"] for c in sa.inspect(engine).get_columns(multi)}
    check({name: type(t) for name, t in columns.items()},
          {"id": pg.BIGINT, "kind": pg.TEXT, "value": pg.DOUBLE_PRECISION, "ok": pg.BOOLEAN,
           "day": pg.DATE, "at": pg.TIMESTAMP, "at_tz": pg.TIMESTAMP, "note": pg.TEXT},
          "the column types to_sql created")
    check((columns["at"].timezone, columns["at_tz"].timezone), (False, True),
          "to_sql created TIMESTAMP and TIMESTAMPTZ for naive and aware columns")

    # pandas' default to_sql: index=True writes the index as column "index" and then sends
    # CREATE INDEX ix_<table>_index ON <table> (index); the default method is executemany.
    indexed_df = frame(100, 30).set_index(pd.RangeIndex(500, 530))
    indexed_df.to_sql(indexed, engine)
    indexed_df.to_sql(indexed, engine, if_exists="append")
    try:
        indexed_df.to_sql(indexed, engine)
        raise AssertionError("to_sql into an existing table with if_exists='fail' passed")
    except ValueError as e:
        check("already exists" in str(e), True, "to_sql refuses an existing table by default")
    back = pd.read_sql(f'SELECT * FROM {indexed} ORDER BY "index", id', engine,
                       index_col="index")
    expected = pd.concat([indexed_df, indexed_df]).sort_index(kind="stable")
    check(back.index.tolist(), expected.index.tolist(), "the index column round-trips")
    same_values(back, expected, "default to_sql(index=True) twice, read_sql(index_col=...)")

    # read_sql_table: reflection, then SELECT of every column.
    table_df = pd.read_sql_table(multi, engine, parse_dates=["day"])
    same_values(table_df.sort_values("id", ignore_index=True), both, "read_sql_table")
    check(str(table_df["day"].dtype).startswith("datetime64["), True,
          "read_sql_table(parse_dates=['day']) gives datetime64")

    # read_sql with parameters: the driver's own style, and SQLAlchemy text() binds.
    by_driver = pd.read_sql(
        f"SELECT id, at_tz FROM {multi} WHERE kind = %(kind)s AND at_tz >= %(since)s "
        "ORDER BY id", engine,
        params={"kind": "beta", "since": datetime(2026, 3, 29, 10, tzinfo=UTC)})
    expected = both[(both["kind"] == "beta")
                    & (both["at_tz"] >= pd.Timestamp("2026-03-29 10:00", tz="UTC"))]
    check(by_driver["id"].tolist(), expected["id"].tolist(),
          "read_sql with %(name)s parameters, a tz-aware one among them")
    check(by_driver["at_tz"].tolist(), expected["at_tz"].tolist(),
          "tz-aware timestamps read back as the same instants")
    by_text = pd.read_sql(
        sa.text(f"SELECT kind, count(*) AS n FROM {multi} WHERE at < :before AND ok = :ok "
                "GROUP BY kind ORDER BY kind"), engine,
        params={"before": datetime(2026, 1, 2, 3, 34), "ok": True})
    expected = (both[(both["at"] < datetime(2026, 1, 2, 3, 34)) & both["ok"]]
                .groupby("kind").size())
    check(list(zip(by_text["kind"], by_text["n"])), list(zip(expected.index, expected)),
          "read_sql(text(...), params=...) with a naive datetime and a bool")
    chunks = list(pd.read_sql(f"SELECT id FROM {multi} ORDER BY id", engine, chunksize=20))
    check([len(c) for c in chunks], [20, 20, 10], "read_sql(chunksize=20)")
    view_df = pd.read_sql(f"SELECT * FROM {view} ORDER BY kind", engine)
    check(view_df["n"].tolist(), [sum(1 for r in rows if r["kind"] == k) for k in KINDS]
          + [sum(1 for r in rows if r["kind"] is None)], "read_sql of the materialized view")

    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP MATERIALIZED VIEW {view}")
        for name in (table, multi, indexed):
            conn.exec_driver_sql(f"DROP TABLE {name}")
    check(sa.inspect(engine).has_table(table), False, "has_table after DROP TABLE")
    engine.dispose()


if __name__ == "__main__":
    for driver in ("psycopg2", "psycopg"):
        exercise(sys.argv[1], driver)
    print("PASS")
