#!/usr/bin/env python3
"""Peers half of Tally's workload benchmark: DuckDB, chDB (in-process ClickHouse) and
PostgreSQL 15 + hll, measured on the same data and machine as Tally.

    python3 benches/peers/run.py --data DIR [--peers duckdb,chdb,postgres] [--runs 1000]
                                 [--json out.json]

DIR holds events.csv (the contract of Tally's data generator). The script installs what each
peer needs (idempotently: a virtualenv at ~/.cache/tally-peers-venv with duckdb, chdb,
psycopg and pyarrow; Debian's postgresql-15 and postgresql-15-hll), runs each peer in its own
child process (so that peak RSS and crashes stay per peer), prints a markdown table on stdout
and writes the figures as JSON (--json). Everything it creates lives in one temp dir, removed at
the end (--keep-tmp keeps it). Progress goes to stderr. See README.md beside this file for what
every figure means per peer and the JSON schema.
"""
import argparse
import json
import math
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

SCHEMA = "tally-peers/1"
PEERS = ("duckdb", "chdb", "postgres")
VENV = os.environ.get("TALLY_PEERS_VENV") or os.path.expanduser("~/.cache/tally-peers-venv")
PG_BIN = "/usr/lib/postgresql/15/bin"
PG_LIB = "/usr/lib/postgresql/15/lib"
COLUMNS = ["ts", "user_id", "session_id", "page", "country", "device", "status", "latency_ms",
           "bytes"]
POPULAR_PAGES = ["/p/%d" % k for k in range(1, 21)]
DAYS = ["2026-01-%02d" % d for d in range(1, 8)]
VIEWS = ("page_hourly", "country_daily", "errors_minute")

# Python modules (and their PyPI packages) each peer needs in the venv.
PIP_NEEDS = {
    "duckdb": {"duckdb": "duckdb", "pyarrow": "pyarrow"},
    "chdb": {"chdb": "chdb", "pyarrow": "pyarrow"},
    "postgres": {"psycopg": "psycopg[binary]>=3.1"},
}


def log(msg):
    print("[peers %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def now():
    return time.perf_counter()


# ---------------------------------------------------------------------------------------------
# Statistics shared by all peers


def pct(values, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    s = sorted(values)
    k = max(1, math.ceil(p / 100.0 * len(s)))
    return s[min(k, len(s)) - 1]


def latency_summary(lat_s):
    return {"p50_ms": round(pct(lat_s, 50) * 1e3, 4), "p99_ms": round(pct(lat_s, 99) * 1e3, 4)}


def dashboard_runs(fn, args_cycle, runs, budget_s, warmup=3, min_runs=5):
    """Runs fn(arg) up to `runs` times (cycling through args_cycle) after `warmup` unmeasured
    runs; stops early once budget_s is spent (but not before min_runs)."""
    for i in range(warmup):
        fn(args_cycle[i % len(args_cycle)])
    lat = []
    start = now()
    rows = set()
    for i in range(runs):
        t0 = now()
        r = fn(args_cycle[i % len(args_cycle)])
        lat.append(now() - t0)
        rows.add(result_rows(r))
        if now() - start > budget_s and len(lat) >= min_runs:
            break
    out = latency_summary(lat)
    rows.discard(None)
    if rows:  # sanity: the range of result sizes seen
        out["result_rows_min"], out["result_rows_max"] = min(rows), max(rows)
    out.update({"runs": len(lat), "runs_requested": runs, "reduced": len(lat) < runs,
                "mean_ms": round(statistics.fmean(lat) * 1e3, 4)})
    return out


def result_rows(r):
    if r is None:
        return None
    if hasattr(r, "num_rows"):
        return r.num_rows
    try:
        return len(r)
    except TypeError:
        return None


def adhoc_runs(fn, runs, budget_s):
    """Median of up to `runs` timed runs (fewer when budget_s is spent; at least one)."""
    times = []
    start = now()
    for _ in range(runs):
        t0 = now()
        fn()
        times.append(now() - t0)
        if now() - start > budget_s:
            break
    return {"median_ms": round(statistics.median(times) * 1e3, 3), "runs": len(times),
            "runs_ms": [round(t * 1e3, 3) for t in times]}


def hll_errors(exact, approx):
    """exact, approx: {(day, country): count}. Relative errors over the groups of exact."""
    errs = []
    missing = 0
    for key, ex in exact.items():
        if not ex:
            continue
        est = approx.get(key)
        if est is None:
            missing += 1
            continue
        errs.append(abs(float(est) - ex) / ex)
    if not errs:
        return {"groups": 0, "missing_groups": missing}
    return {"groups": len(errs), "missing_groups": missing,
            "median_rel_err": round(statistics.median(errs), 6),
            "p95_rel_err": round(pct(errs, 95), 6), "max_rel_err": round(max(errs), 6),
            "mean_rel_err": round(statistics.fmean(errs), 6)}


def day_key(v):
    """Normalises a day value (datetime, date, epoch seconds or text) to 'YYYY-MM-DD'."""
    import datetime as dt
    if isinstance(v, (int, float)):
        return dt.datetime.fromtimestamp(v, dt.timezone.utc).strftime("%Y-%m-%d")
    if hasattr(v, "strftime"):
        return v.strftime("%Y-%m-%d")
    return str(v)[:10]


def concurrent_chunks(chunks, workers, make_worker):
    """Loads chunk files from `workers` threads. make_worker() runs in each thread and returns
    load(path) -> None (one chunk, committed when it returns) and an optional close().
    Returns (wall seconds, per-chunk latencies in seconds)."""
    lock = threading.Lock()
    it = iter(range(len(chunks)))
    lat = [None] * len(chunks)
    errors = []
    ready = threading.Barrier(workers + 1)

    def run():
        try:
            load, close = make_worker()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
            ready.wait()
            return
        ready.wait()
        try:
            while not errors:
                with lock:
                    i = next(it, None)
                if i is None:
                    break
                t0 = now()
                load(chunks[i])
                lat[i] = now() - t0
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
        finally:
            if close:
                close()

    threads = [threading.Thread(target=run, daemon=True) for _ in range(workers)]
    for t in threads:
        t.start()
    ready.wait()
    t0 = now()
    for t in threads:
        t.join()
    wall = now() - t0
    if errors:
        raise errors[0]
    return wall, lat


def chunk_result(n_rows, wall, lat, cfg, concurrent):
    out = {"rows_per_s": round(n_rows / wall, 1), "seconds": round(wall, 3),
           "chunks": len(lat), "chunk_rows": cfg["chunk_rows"], "workers": cfg["workers"],
           "concurrent": concurrent}
    out.update(latency_summary(lat))
    return out


def check_rows(section, loaded, expected, views_rows=None):
    """Sanity check of the row counts after a load (--rows)."""
    ok = loaded == expected and (views_rows is None or views_rows == expected)
    if not ok:
        log("ROW COUNT MISMATCH in %s: table %s, page_hourly views %s, expected %s"
            % (section, loaded, views_rows, expected))
    out = {"rows_loaded": loaded, "rows_expected": expected, "rows_ok": ok}
    if views_rows is not None:
        out["views_rows"] = views_rows
    return out


def with_refresh(base, refresh_s, n_rows):
    """A 'with views' figure for a system without incremental views: the same load followed by
    one full refresh of the three aggregates."""
    out = dict(base)
    out["load_s"] = base["seconds"]
    out["refresh_s"] = round(refresh_s, 3)
    out["seconds"] = round(base["seconds"] + refresh_s, 3)
    out["rows_per_s"] = round(n_rows / out["seconds"], 1)
    out["incremental"] = False
    return out


# The figures to run (`--sections`); None = all of them.
ONLY_SECTIONS = None


def section(res, key, fn):
    """Runs one figure; an error is recorded under res['errors'][key] and the peer goes on."""
    if ONLY_SECTIONS is not None and key not in ONLY_SECTIONS:
        return
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - a failed figure must not stop the others
        msg = "%s: %s" % (type(e).__name__, str(e).strip()[:800])
        res.setdefault("errors", {})[key] = msg
        log("%s: %s failed: %s" % (res["peer"], key, msg))


def dir_bytes(*paths):
    total = 0
    for p in paths:
        if os.path.isfile(p):
            total += os.path.getsize(p)
        elif os.path.isdir(p):
            for root, _, files in os.walk(p):
                for f in files:
                    try:
                        total += os.path.getsize(os.path.join(root, f))
                    except OSError:
                        pass
    return total


def disk_result(bytes_nv, bytes_v, n_rows, what):
    out = {"what": what}
    bytes_nv = None if bytes_nv is None else int(bytes_nv)
    bytes_v = None if bytes_v is None else int(bytes_v)
    if bytes_nv is not None:
        out["bytes_no_views"] = bytes_nv
        out["bytes_per_event_no_views"] = round(bytes_nv / n_rows, 3)
    if bytes_v is not None:
        out["bytes_views"] = bytes_v
        out["bytes_per_event_views"] = round(bytes_v / n_rows, 3)
    return out


def self_rss_result(what):
    return {"peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "what": what}


# ---------------------------------------------------------------------------------------------
# The workload's SQL, per dialect

def std_view_sql(approx):
    """The three view definitions in (DuckDB/PostgreSQL) SQL; approx(col) renders the
    approximate distinct count."""
    return {
        "page_hourly": "SELECT date_trunc('hour', ts) AS hour, page, count(*) AS views, "
                       "sum(bytes) AS bytes, avg(latency_ms) AS avg_latency, "
                       "max(latency_ms) AS max_latency, %s AS users FROM events GROUP BY 1, 2"
                       % approx("user_id"),
        "country_daily": "SELECT date_trunc('day', ts) AS day, country, device, "
                         "count(*) AS views, %s AS users, %s AS sessions FROM events "
                         "GROUP BY 1, 2, 3" % (approx("user_id"), approx("session_id")),
        "errors_minute": "SELECT date_trunc('minute', ts) AS minute, status, count(*) AS n "
                         "FROM events WHERE status >= 400 GROUP BY 1, 2",
    }


# ---------------------------------------------------------------------------------------------
# DuckDB


def peer_duckdb(cfg, res):
    import duckdb
    res["version"] = duckdb.__version__
    n = cfg["rows"]
    tmp = cfg["tmp"]
    res["notes"] += [
        "No materialized views: 'with views' = the same load, then the three aggregates "
        "created as tables (CREATE TABLE ... AS); refresh_s is that step. Not incremental: the "
        "per-chunk commit latencies of the chunked load are those of the plain load.",
        "approx_count_distinct is DuckDB's HyperLogLog; its sketches cannot be stored or "
        "unioned, so the HLL rollup (figure 6) is approx_count_distinct over the raw rows per "
        "(day, country), not a union of country_daily's sketches.",
        "Concurrent chunks: 4 threads, one cursor (connection) each on one database; DuckDB "
        "runs appends to the same table concurrently (optimistic concurrency) with one WAL.",
        "Dashboard queries: PREPARE/EXECUTE, result fetched as an Arrow table.",
        "Loads: COPY events FROM 'file' (FORMAT csv, HEADER, AUTO_DETECT false, ...), the "
        "dialect given instead of sniffed; durable at commit (WAL fsync), CHECKPOINT untimed.",
    ]
    ddl = ("CREATE TABLE events (ts TIMESTAMP NOT NULL, user_id BIGINT, session_id BIGINT, "
           "page VARCHAR, country VARCHAR, device VARCHAR, status INTEGER, "
           "latency_ms DOUBLE, bytes BIGINT)")
    views = std_view_sql(lambda c: "approx_count_distinct(%s)" % c)
    # The dialect is fixed by the data contract; without AUTO_DETECT false DuckDB sniffs every
    # file, which costs ~50 ms per 10,000-row chunk.
    copy_opts = "FORMAT csv, HEADER, AUTO_DETECT false, DELIMITER ',', QUOTE '\"'"

    def refresh(con):
        t0 = now()
        for name in VIEWS:
            con.execute("CREATE OR REPLACE TABLE %s AS %s" % (name, views[name]))
        return now() - t0

    def counts(con, with_views):
        rows = con.execute("SELECT count(*) FROM events").fetchone()[0]
        vrows = (con.execute("SELECT sum(views) FROM page_hourly").fetchone()[0]
                 if with_views else None)
        return rows, vrows

    def arrow(sql):
        # A relation's Arrow result (no extra copy, unlike Arrow from a DB-API cursor). DuckDB
        # >= 1.4 names it to_arrow_table, older versions arrow.
        rel = con.sql(sql)
        f = getattr(rel, "to_arrow_table", None) or rel.arrow
        return f()

    res["view_sql"] = {name: "CREATE TABLE %s AS %s" % (name, views[name]) for name in VIEWS}
    path = os.path.join(tmp, "bulk.duckdb")
    con = duckdb.connect(path)
    st = {}

    def bulk():
        con.execute(ddl)
        log("duckdb: bulk load of %d rows" % n)
        t0 = now()
        con.execute("COPY events FROM '%s' (%s)" % (cfg["csv"], copy_opts))
        load_s = now() - t0
        nv = {"rows_per_s": round(n / load_s, 1), "seconds": round(load_s, 3)}
        nv.update(check_rows("duckdb bulk", counts(con, False)[0], n))
        con.execute("CHECKPOINT")
        st["bytes_nv"] = dir_bytes(path, path + ".wal")
        log("duckdb: creating the three aggregates as tables")
        refresh_s = refresh(con)
        v = with_refresh(nv, refresh_s, n)
        rows, vrows = counts(con, True)
        v.update(check_rows("duckdb bulk+views", rows, n, vrows))
        con.execute("CHECKPOINT")
        st["bytes_v"] = dir_bytes(path, path + ".wal")
        res["load_bulk"] = {"no_views": nv, "views": v}

    section(res, "load_bulk", bulk)
    res["disk"] = disk_result(st.get("bytes_nv"), st.get("bytes_v"), n,
                              "database file + WAL after CHECKPOINT")

    def parquet():
        ppath = os.path.join(tmp, "parquet.duckdb")
        pcon = duckdb.connect(ppath)
        pcon.execute(ddl)
        log("duckdb: load of %s" % cfg["parquet"])
        t0 = now()
        pcon.execute("INSERT INTO events SELECT * FROM read_parquet('%s')" % cfg["parquet"])
        load_s = now() - t0
        r = {"rows_per_s": round(n / load_s, 1), "seconds": round(load_s, 3)}
        r.update(check_rows("duckdb parquet", counts(pcon, False)[0], n))
        res["load_parquet"] = {"no_views": r}
        pcon.close()
        for p in (ppath, ppath + ".wal"):
            if os.path.exists(p):
                os.remove(p)

    if cfg.get("parquet"):
        section(res, "load_parquet", parquet)

    def chunks():
        cpath = os.path.join(tmp, "chunks.duckdb")
        ccon = duckdb.connect(cpath)
        ccon.execute(ddl)
        log("duckdb: %d chunks from %d threads" % (len(cfg["chunks"]), cfg["workers"]))

        def make_worker():
            cur = ccon.cursor()
            return (lambda p: cur.execute("COPY events FROM '%s' (%s)" % (p, copy_opts)),
                    cur.close)

        wall, lat = concurrent_chunks(cfg["chunks"], cfg["workers"], make_worker)
        nv = chunk_result(n, wall, lat, cfg, True)
        nv.update(check_rows("duckdb chunks", counts(ccon, False)[0], n))
        refresh_s = refresh(ccon)
        v = with_refresh(nv, refresh_s, n)
        rows, vrows = counts(ccon, True)
        v.update(check_rows("duckdb chunks+views", rows, n, vrows))
        res["load_chunks"] = {"no_views": nv, "views": v}
        ccon.close()
        for p in (cpath, cpath + ".wal"):
            if os.path.exists(p):
                os.remove(p)

    section(res, "load_chunks", chunks)

    def queries():
        q = {}
        sql = {"page_hourly_by_page": "SELECT hour, views, users FROM page_hourly "
                                      "WHERE page = $1 ORDER BY hour",
               "country_daily_by_day": "SELECT day, country, device, views, users, sessions "
                                       "FROM country_daily WHERE day = $1",
               "page_hourly_full": "SELECT hour, page, views, bytes, avg_latency, "
                                   "max_latency, users FROM page_hourly"}
        con.execute("PREPARE q_page AS " + sql["page_hourly_by_page"])
        con.execute("PREPARE q_day AS " + sql["country_daily_by_day"])
        con.execute("PREPARE q_full AS " + sql["page_hourly_full"])
        log("duckdb: dashboard queries")
        q["page_hourly_by_page"] = dashboard_runs(
            lambda p: arrow("EXECUTE q_page('%s')" % p),
            POPULAR_PAGES, cfg["runs"], cfg["query_budget_s"])
        q["country_daily_by_day"] = dashboard_runs(
            lambda d: arrow("EXECUTE q_day(TIMESTAMP '%s')" % d),
            DAYS, cfg["runs"], cfg["query_budget_s"])
        q["page_hourly_full"] = dashboard_runs(
            lambda _: arrow("EXECUTE q_full"),
            [None], cfg["runs"], cfg["query_budget_s"])
        for k, v in q.items():
            v["prepared"] = True
            v["sql"] = sql[k]
        res["queries"] = q

    section(res, "queries", queries)

    def adhoc():
        log("duckdb: ad hoc view queries")
        res["adhoc"] = {name: dict(adhoc_runs(lambda s=views[name]: arrow(s),
                                              cfg["adhoc_runs"], cfg["adhoc_budget_s"]),
                                   sql=views[name]) for name in VIEWS}

    section(res, "adhoc", adhoc)

    def hll():
        exact = {(day_key(d), c): x for d, c, x in con.execute(
            "SELECT date_trunc('day', ts), country, count(DISTINCT user_id) FROM events "
            "GROUP BY 1, 2").fetchall()}
        approx = {(day_key(d), c): x for d, c, x in con.execute(
            "SELECT date_trunc('day', ts), country, approx_count_distinct(user_id) FROM events "
            "GROUP BY 1, 2").fetchall()}
        h = hll_errors(exact, approx)
        h["method"] = "raw_approx"
        h["sketch"] = "DuckDB approx_count_distinct (HyperLogLog) over raw rows per (day, country)"
        res["hll"] = h

    section(res, "hll", hll)
    con.close()
    res["memory"] = self_rss_result("peak RSS of the benchmark process (Python + DuckDB)")


# ---------------------------------------------------------------------------------------------
# chDB


CH_COLS = ("ts DateTime64(6, 'UTC'), user_id Nullable(Int64), session_id Nullable(Int64), "
           "page Nullable(String), country Nullable(String), device Nullable(String), "
           "status Nullable(Int32), latency_ms Nullable(Float64), bytes Nullable(Int64)")
CH_MT = "fsync_after_insert = 1, fsync_part_directory = 1"
CH_STATE_SQL = {
    "page_hourly": ("SELECT toStartOfHour(ts) AS hour, page, countState() AS views_s, "
                    "sumState(bytes) AS bytes_s, avgState(latency_ms) AS avg_latency_s, "
                    "maxState(latency_ms) AS max_latency_s, uniqCombinedState(user_id) AS users_s "
                    "FROM {db}.events GROUP BY hour, page", "(page, hour)"),
    "country_daily": ("SELECT toStartOfDay(ts) AS day, country, device, countState() AS views_s, "
                      "uniqCombinedState(user_id) AS users_s, "
                      "uniqCombinedState(session_id) AS sessions_s "
                      "FROM {db}.events GROUP BY day, country, device", "(day, country, device)"),
    "errors_minute": ("SELECT toStartOfMinute(ts) AS minute, status, countState() AS n_s "
                      "FROM {db}.events WHERE status >= 400 GROUP BY minute, status",
                      "(minute, status)"),
}
CH_READ_SQL = {
    "page_hourly": "SELECT hour, page, countMerge(views_s) AS views, sumMerge(bytes_s) AS bytes, "
                   "avgMerge(avg_latency_s) AS avg_latency, maxMerge(max_latency_s) AS max_latency, "
                   "uniqCombinedMerge(users_s) AS users FROM {db}.page_hourly_agg GROUP BY hour, page",
    "country_daily": "SELECT day, country, device, countMerge(views_s) AS views, "
                     "uniqCombinedMerge(users_s) AS users, uniqCombinedMerge(sessions_s) AS sessions "
                     "FROM {db}.country_daily_agg GROUP BY day, country, device",
    "errors_minute": "SELECT minute, status, countMerge(n_s) AS n FROM {db}.errors_minute_agg "
                     "GROUP BY minute, status",
}
CH_ADHOC_SQL = {
    "page_hourly": "SELECT toStartOfHour(ts) AS hour, page, count() AS views, sum(bytes) AS bytes, "
                   "avg(latency_ms) AS avg_latency, max(latency_ms) AS max_latency, "
                   "uniqCombined(user_id) AS users FROM {db}.events GROUP BY hour, page",
    "country_daily": "SELECT toStartOfDay(ts) AS day, country, device, count() AS views, "
                     "uniqCombined(user_id) AS users, uniqCombined(session_id) AS sessions "
                     "FROM {db}.events GROUP BY day, country, device",
    "errors_minute": "SELECT toStartOfMinute(ts) AS minute, status, count() AS n "
                     "FROM {db}.events WHERE status >= 400 GROUP BY minute, status",
}


def peer_chdb(cfg, res):
    import chdb
    res["version"] = "chdb %s (ClickHouse %s)" % (chdb.__version__,
                                                  getattr(chdb, "engine_version", "?"))
    n = cfg["rows"]
    path = os.path.join(cfg["tmp"], "chdb")
    con = chdb.connect(path)
    res["notes"] += [
        "Views: AggregatingMergeTree target tables fed by materialized views with -State "
        "combinators (countState, sumState, avgState, maxState, uniqCombinedState), read through "
        "plain views with -Merge. Maintained on insert, per inserted block (incremental).",
        "Approximate distinct: uniqCombined (default precision 17: exact small sets, then HLL "
        "with 2^17 cells, 32-bit hash). Rollup (figure 6) = uniqCombinedMerge of country_daily's "
        "states grouped by (day, country): a sketch union.",
        "Every MergeTree table has fsync_after_insert = 1, fsync_part_directory = 1 (ClickHouse "
        "does not fsync inserted parts by default), so an acknowledged insert is durable.",
        "All columns but ts are Nullable (the contract's NULLs); keys use allow_nullable_key.",
        "Concurrent chunks: 4 threads, each with its own chdb.connect() to the same path "
        "(queries on one connection are serialized; separate connections run concurrently); "
        "each chunk = INSERT ... SELECT FROM file(chunk.csv, CSVWithNames).",
        "Dashboard queries: query parameters ({p:String}), substituted server-side; ClickHouse "
        "has no prepared statements. Results fetched as Arrow tables.",
    ]

    def q(sql, fmt="CSV", params=None):
        return con.query(sql, fmt, params=params) if params else con.query(sql, fmt)

    def scalar(sql):
        return int(str(q(sql)).strip() or 0)

    def create(db, with_views):
        q("DROP DATABASE IF EXISTS %s SYNC" % db)
        q("CREATE DATABASE %s" % db)
        q("CREATE TABLE %s.events (%s) ENGINE = MergeTree ORDER BY ts SETTINGS %s"
          % (db, CH_COLS, CH_MT))
        if not with_views:
            return
        for name in VIEWS:
            sel, key = CH_STATE_SQL[name]
            sel = sel.format(db=db)
            q("CREATE TABLE %s.%s_agg ENGINE = AggregatingMergeTree ORDER BY %s "
              "SETTINGS allow_nullable_key = 1, %s EMPTY AS %s" % (db, name, key, CH_MT, sel))
            q("CREATE MATERIALIZED VIEW %s.%s_mv TO %s.%s_agg AS %s" % (db, name, db, name, sel))
            q("CREATE VIEW %s.%s AS %s" % (db, name, CH_READ_SQL[name].format(db=db)))

    def insert(conn, db, csv):
        conn.query("INSERT INTO %s.events SELECT * FROM file('%s', 'CSVWithNames', '%s')"
                   % (db, csv, CH_COLS.replace("'", "''")))

    def counts(db, with_views):
        rows = scalar("SELECT count() FROM %s.events" % db)
        vrows = (scalar("SELECT countMerge(views_s) FROM %s.page_hourly_agg" % db)
                 if with_views else None)
        return rows, vrows

    def part_bytes(db):
        return scalar("SELECT sum(bytes_on_disk) FROM system.parts WHERE active AND "
                      "database = '%s'" % db)

    res["view_sql"] = {name: "CREATE MATERIALIZED VIEW %s_mv TO %s_agg AS %s; CREATE VIEW %s AS %s"
                       % (name, name, CH_STATE_SQL[name][0].format(db="db"), name,
                          CH_READ_SQL[name].format(db="db")) for name in VIEWS}
    st = {}

    def bulk():
        out = {}
        for db, with_views in (("bulk_nv", False), ("bulk_v", True)):
            create(db, with_views)
            log("chdb: bulk load of %d rows, %s" % (n, "with views" if with_views else "no views"))
            t0 = now()
            insert(con, db, cfg["csv"])
            load_s = now() - t0
            r = {"rows_per_s": round(n / load_s, 1), "seconds": round(load_s, 3)}
            if with_views:
                r.update({"load_s": r["seconds"], "refresh_s": 0.0, "incremental": True})
            rows, vrows = counts(db, with_views)
            r.update(check_rows("chdb " + db, rows, n, vrows))
            st["bytes_v" if with_views else "bytes_nv"] = part_bytes(db)
            out["views" if with_views else "no_views"] = r
            if not with_views:
                q("DROP DATABASE %s SYNC" % db)
        res["load_bulk"] = out

    def parquet():
        create("parquet_nv", False)
        log("chdb: load of %s" % cfg["parquet"])
        t0 = now()
        q("INSERT INTO parquet_nv.events SELECT * FROM file('%s', 'Parquet')" % cfg["parquet"])
        load_s = now() - t0
        r = {"rows_per_s": round(n / load_s, 1), "seconds": round(load_s, 3)}
        r.update(check_rows("chdb parquet", counts("parquet_nv", False)[0], n))
        res["load_parquet"] = {"no_views": r}
        q("DROP DATABASE parquet_nv SYNC")

    if cfg.get("parquet"):
        section(res, "load_parquet", parquet)
    section(res, "load_bulk", bulk)
    res["disk"] = disk_result(st.get("bytes_nv"), st.get("bytes_v"), n,
                              "sum(bytes_on_disk) of the active parts (events, and with views "
                              "also the three AggregatingMergeTree tables); background merges "
                              "may still be pending")

    def chunks():
        out = {}
        for db, with_views in (("chunks_nv", False), ("chunks_v", True)):
            create(db, with_views)
            log("chdb: %d chunks from %d threads, %s" % (
                len(cfg["chunks"]), cfg["workers"], "with views" if with_views else "no views"))

            def make_worker(db=db):
                c = chdb.connect(path)
                return (lambda p: insert(c, db, p)), c.close

            wall, lat = concurrent_chunks(cfg["chunks"], cfg["workers"], make_worker)
            r = chunk_result(n, wall, lat, cfg, True)
            if with_views:
                r.update({"load_s": r["seconds"], "refresh_s": 0.0, "incremental": True})
            rows, vrows = counts(db, with_views)
            r.update(check_rows("chdb " + db, rows, n, vrows))
            out["views" if with_views else "no_views"] = r
            q("DROP DATABASE %s SYNC" % db)
        res["load_chunks"] = out

    section(res, "load_chunks", chunks)

    def queries():
        log("chdb: dashboard queries")
        qs = {}
        page_sql = "SELECT hour, views, users FROM bulk_v.page_hourly WHERE page = {p:String} ORDER BY hour"
        day_sql = ("SELECT day, country, device, views, users, sessions FROM bulk_v.country_daily "
                   "WHERE day = toDateTime({d:String}, 'UTC')")
        full_sql = ("SELECT hour, page, views, bytes, avg_latency, max_latency, users "
                    "FROM bulk_v.page_hourly")
        qs["page_hourly_by_page"] = dashboard_runs(
            lambda p: q(page_sql, "Arrowtable", {"p": p}), POPULAR_PAGES, cfg["runs"],
            cfg["query_budget_s"])
        qs["country_daily_by_day"] = dashboard_runs(
            lambda d: q(day_sql, "Arrowtable", {"d": d + " 00:00:00"}), DAYS, cfg["runs"],
            cfg["query_budget_s"])
        qs["page_hourly_full"] = dashboard_runs(
            lambda _: q(full_sql, "Arrowtable"), [None], cfg["runs"], cfg["query_budget_s"])
        for k, sql in (("page_hourly_by_page", page_sql), ("country_daily_by_day", day_sql),
                       ("page_hourly_full", full_sql)):
            qs[k].update(prepared=False, sql=sql)
        res["queries"] = qs

    section(res, "queries", queries)

    def adhoc():
        log("chdb: ad hoc view queries")
        res["adhoc"] = {name: dict(adhoc_runs(
            lambda s=CH_ADHOC_SQL[name].format(db="bulk_v"): q(s, "Arrowtable"),
            cfg["adhoc_runs"], cfg["adhoc_budget_s"]), sql=CH_ADHOC_SQL[name].format(db="bulk_v"))
            for name in VIEWS}

    section(res, "adhoc", adhoc)

    def hll():
        def rows(sql):
            t = q(sql, "Arrowtable").to_pylist()
            return {(day_key(r["day"]), r["country"]): r["x"] for r in t}
        exact = rows("SELECT toStartOfDay(ts) AS day, country, uniqExact(user_id) AS x "
                     "FROM bulk_v.events GROUP BY day, country")
        approx = rows("SELECT day, country, uniqCombinedMerge(users_s) AS x "
                      "FROM bulk_v.country_daily_agg GROUP BY day, country")
        h = hll_errors(exact, approx)
        h["method"] = "sketch_union"
        h["sketch"] = "uniqCombinedMerge of country_daily's uniqCombined(17) states per (day, country)"
        res["hll"] = h

    section(res, "hll", hll)
    con.close()
    res["memory"] = self_rss_result("peak RSS of the benchmark process (Python + chDB)")


# ---------------------------------------------------------------------------------------------
# PostgreSQL 15 + hll


class PgCluster:
    """A throwaway cluster: initdb into a temp dir, run by the postgres OS user when we are
    root (PostgreSQL refuses to run as root), on a free loopback port."""

    def __init__(self, root, settings):
        self.root = root
        self.data = os.path.join(root, "pgdata")
        self.sock = os.path.join(root, "sock")
        self.log = os.path.join(root, "postgres.log")
        self.as_root = os.geteuid() == 0
        os.makedirs(self.sock, exist_ok=True)
        if self.as_root:
            import pwd
            pw = pwd.getpwnam("postgres")
            for p in (root, self.sock):
                os.chown(p, pw.pw_uid, pw.pw_gid)
            # every ancestor must be traversable by postgres
            d = os.path.dirname(root)
            while d not in ("/", ""):
                st = os.stat(d)
                if not st.st_mode & 0o001:
                    os.chmod(d, st.st_mode | 0o001)
                d = os.path.dirname(d)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.run([os.path.join(PG_BIN, "initdb"), "-D", self.data, "-U", "postgres",
                  "--auth=trust", "-E", "UTF8", "--locale=C"])
        conf = dict(settings)
        conf.update({"port": str(self.port), "listen_addresses": "'127.0.0.1'",
                     "unix_socket_directories": "'%s'" % self.sock})
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write("\n# tally peers benchmark\n")
            for k, v in conf.items():
                f.write("%s = %s\n" % (k, v))
        self.run([os.path.join(PG_BIN, "pg_ctl"), "-D", self.data, "-l", self.log, "-w",
                  "-t", "120", "start"])
        self.started = True
        with open(os.path.join(self.data, "postmaster.pid")) as f:
            self.pid = int(f.readline())
        self.rss = {"hwm": 0, "anon_sum": 0}
        self._stop_sampler = threading.Event()
        self.sampler = threading.Thread(target=self._sample, daemon=True)
        self.sampler.start()

    def run(self, cmd):
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--"] + cmd
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if r.returncode != 0:
            raise RuntimeError("%s failed: %s" % (" ".join(cmd), r.stdout[-2000:]))

    def _sample(self):
        while not self._stop_sampler.is_set():
            anon = 0
            for pid in [d for d in os.listdir("/proc") if d.isdigit()]:
                try:
                    with open("/proc/%s/status" % pid) as f:
                        st = dict(line.split(":", 1) for line in f if ":" in line)
                    if int(pid) != self.pid and int(st["PPid"]) != self.pid:
                        continue
                    hwm = int(st.get("VmHWM", "0 kB").split()[0]) * 1024
                    anon += int(st.get("RssAnon", "0 kB").split()[0]) * 1024
                    self.rss["hwm"] = max(self.rss["hwm"], hwm)
                except (OSError, ValueError, KeyError):
                    continue
            self.rss["anon_sum"] = max(self.rss["anon_sum"], anon)
            self._stop_sampler.wait(0.25)

    def stop(self):
        self._stop_sampler.set()
        if getattr(self, "started", False):
            try:
                self.run([os.path.join(PG_BIN, "pg_ctl"), "-D", self.data, "-m", "fast", "-w",
                          "stop"])
            except Exception as e:  # noqa: BLE001
                log("postgres: stop failed: %s" % e)
            self.started = False


def peer_postgres(cfg, res):
    import psycopg
    res["version"] = "psycopg %s" % psycopg.__version__
    n = cfg["rows"]
    log2m = cfg.get("pg_hll_log2m")
    hll_args = "" if log2m is None else ", %d" % log2m
    settings = {"fsync": "on", "synchronous_commit": "on", "shared_buffers": "'1GB'",
                "max_wal_size": "'4GB'", "work_mem": "'64MB'", "maintenance_work_mem": "'512MB'"}
    res["notes"] += [
        "No incremental views: materialized views are created WITH NO DATA and filled by "
        "REFRESH MATERIALIZED VIEW after the load; 'with views' = the same load + refresh "
        "(refresh_s). The per-chunk commit latencies of the chunked load are those of the "
        "plain load.",
        "Approximate distinct: hll extension, hll_add_agg(hll_hash_bigint(x)%s) (%s); reads use "
        "hll_cardinality(..)::bigint. Rollup (figure 6) = hll_cardinality(hll_union_agg(users)) "
        "over country_daily grouped by (day, country): a sketch union."
        % (hll_args, "defaults: log2m 11, regwidth 5" if log2m is None else "log2m %d" % log2m),
        "Throwaway cluster: initdb --locale=C into the temp dir, run as the postgres OS user "
        "(runuser) when the benchmark runs as root, loopback TCP on a free port. Settings: "
        + ", ".join("%s=%s" % kv for kv in settings.items())
        + "; everything else default (wal_level replica, JIT on).",
        "Loads: COPY events FROM STDIN (FORMAT csv, HEADER) through psycopg 3, autocommit (one "
        "transaction per COPY, committed with fsync). Chunks: 4 connections, 4 threads.",
        "Indexes: none on events; btree on page_hourly(page, hour) and country_daily(day), "
        "rebuilt by the refresh (counted in refresh_s).",
        "Dashboard queries: server-side prepared (psycopg prepare=True), rows fetched as "
        "tuples; the full read of page_hourly and the ad hoc queries stream the result with "
        "COPY (...) TO STDOUT (FORMAT binary) and discard it (not prepared).",
    ]
    for p in (os.path.join(PG_BIN, "initdb"), os.path.join(PG_LIB, "hll.so")):
        if not os.path.exists(p):
            raise RuntimeError("%s missing (postgresql-15, postgresql-15-hll)" % p)
    pg = PgCluster(os.path.join(cfg["tmp"], "pg"), settings)
    try:
        res["version"] = _pg_body(cfg, res, pg, psycopg, n, hll_args, res["version"])
        log("postgres: stopping the cluster")
    finally:
        pg.stop()
        res["memory"] = {"peak_rss_bytes": pg.rss["hwm"],
                         "peak_anon_rss_sum_bytes": pg.rss["anon_sum"],
                         "what": "largest VmHWM of one server process (postmaster or backend; "
                                 "includes the shared buffers it touched), sampled every 0.25 s; "
                                 "peak_anon_rss_sum_bytes = peak sum of private (anonymous) RSS "
                                 "over all server processes"}


def _pg_body(cfg, res, pg, psycopg, n, hll_args, version):
    def connect(db):
        return psycopg.connect(host="127.0.0.1", port=pg.port, user="postgres", dbname=db,
                               autocommit=True)

    admin = connect("postgres")
    version = "PostgreSQL %s, %s" % (admin.execute("SHOW server_version").fetchone()[0], version)
    for db in ("bulk", "chunks"):
        admin.execute("CREATE DATABASE %s" % db)
    admin.close()

    hll = lambda c: "hll_add_agg(hll_hash_bigint(%s)%s)" % (c, hll_args)  # noqa: E731
    views = std_view_sql(hll)
    ddl = ("CREATE TABLE events (ts timestamp NOT NULL, user_id bigint, session_id bigint, "
           "page text, country text, device text, status integer, latency_ms double precision, "
           "bytes bigint)")
    copy_sql = "COPY events FROM STDIN (FORMAT csv, HEADER)"

    def create(con):
        con.execute("CREATE EXTENSION IF NOT EXISTS hll")
        con.execute(ddl)
        for name in VIEWS:
            con.execute("CREATE MATERIALIZED VIEW %s AS %s WITH NO DATA" % (name, views[name]))
        con.execute("CREATE INDEX ON page_hourly (page, hour)")
        con.execute("CREATE INDEX ON country_daily (day)")

    def refresh(con):
        t0 = now()
        for name in VIEWS:
            con.execute("REFRESH MATERIALIZED VIEW %s" % name)
        return now() - t0

    def copy_file(con, path):
        with con.cursor() as cur, cur.copy(copy_sql) as cp, open(path, "rb") as f:
            while True:
                block = f.read(1 << 20)
                if not block:
                    break
                cp.write(block)

    def counts(con, with_views):
        rows = con.execute("SELECT count(*) FROM events").fetchone()[0]
        vrows = (con.execute("SELECT sum(views) FROM page_hourly").fetchone()[0]
                 if with_views else None)
        return rows, (int(vrows) if vrows is not None else None)

    res["view_sql"] = {name: "CREATE MATERIALIZED VIEW %s AS %s WITH NO DATA" % (name, views[name])
                       for name in VIEWS}
    con = connect("bulk")
    create(con)
    st = {}

    def bulk():
        log("postgres: bulk COPY of %d rows" % n)
        t0 = now()
        copy_file(con, cfg["csv"])
        load_s = now() - t0
        nv = {"rows_per_s": round(n / load_s, 1), "seconds": round(load_s, 3)}
        nv.update(check_rows("postgres bulk", counts(con, False)[0], n))
        st["bytes_nv"] = con.execute("SELECT pg_total_relation_size('events')").fetchone()[0]
        t0 = now()
        con.execute("ANALYZE events")
        nv["analyze_s"] = round(now() - t0, 3)
        log("postgres: REFRESH MATERIALIZED VIEW x3")
        v = with_refresh(nv, refresh(con), n)
        rows, vrows = counts(con, True)
        v.update(check_rows("postgres bulk+views", rows, n, vrows))
        con.execute("ANALYZE")
        st["bytes_v"] = con.execute(
            "SELECT sum(pg_total_relation_size(c))::bigint FROM unnest(ARRAY['events', 'page_hourly', "
            "'country_daily', 'errors_minute']::regclass[]) AS c").fetchone()[0]
        res["load_bulk"] = {"no_views": nv, "views": v}

    section(res, "load_bulk", bulk)
    res["disk"] = disk_result(st.get("bytes_nv"), st.get("bytes_v"), n,
                              "pg_total_relation_size (heap, TOAST, FSM/VM, indexes) of events, "
                              "and with views also of the three materialized views; WAL and "
                              "catalogs excluded")

    def chunks():
        ccon = connect("chunks")
        create(ccon)
        log("postgres: %d chunks from %d connections" % (len(cfg["chunks"]), cfg["workers"]))

        def make_worker():
            c = connect("chunks")
            return (lambda p: copy_file(c, p)), c.close

        wall, lat = concurrent_chunks(cfg["chunks"], cfg["workers"], make_worker)
        nv = chunk_result(n, wall, lat, cfg, True)
        nv.update(check_rows("postgres chunks", counts(ccon, False)[0], n))
        ccon.execute("ANALYZE events")
        v = with_refresh(nv, refresh(ccon), n)
        rows, vrows = counts(ccon, True)
        v.update(check_rows("postgres chunks+views", rows, n, vrows))
        res["load_chunks"] = {"no_views": nv, "views": v}
        ccon.close()
        a = connect("postgres")
        a.execute("DROP DATABASE chunks")
        a.close()

    section(res, "load_chunks", chunks)

    def copy_out(sql):
        with con.cursor() as cur, cur.copy("COPY (%s) TO STDOUT (FORMAT binary)" % sql) as cp:
            for _ in cp:
                pass

    def queries():
        import datetime as dt
        log("postgres: dashboard queries")
        qs = {}
        page_sql = ("SELECT hour, views, hll_cardinality(users)::bigint AS users FROM page_hourly "
                    "WHERE page = %s ORDER BY hour")
        day_sql = ("SELECT day, country, device, views, hll_cardinality(users)::bigint AS users, "
                   "hll_cardinality(sessions)::bigint AS sessions FROM country_daily "
                   "WHERE day = %s")
        full_sql = ("SELECT hour, page, views, bytes, avg_latency, max_latency, "
                    "hll_cardinality(users)::bigint AS users FROM page_hourly")
        cur = con.cursor()

        def run(sql, arg):
            cur.execute(sql, (arg,), prepare=True)
            return cur.fetchall()

        qs["page_hourly_by_page"] = dashboard_runs(
            lambda p: run(page_sql, p), POPULAR_PAGES, cfg["runs"], cfg["query_budget_s"])
        days = [dt.datetime.strptime(d, "%Y-%m-%d") for d in DAYS]
        qs["country_daily_by_day"] = dashboard_runs(
            lambda d: run(day_sql, d), days, cfg["runs"], cfg["query_budget_s"])
        qs["page_hourly_by_page"]["prepared"] = True
        qs["country_daily_by_day"]["prepared"] = True
        qs["page_hourly_full"] = dashboard_runs(
            lambda _: copy_out(full_sql), [None], cfg["runs"], cfg["query_budget_s"])
        qs["page_hourly_full"]["prepared"] = False
        qs["page_hourly_by_page"]["sql"] = page_sql.replace("%s", "$1")
        qs["country_daily_by_day"]["sql"] = day_sql.replace("%s", "$1")
        qs["page_hourly_full"]["sql"] = "COPY (%s) TO STDOUT (FORMAT binary)" % full_sql
        res["queries"] = qs

    section(res, "queries", queries)

    def adhoc():
        log("postgres: ad hoc view queries")
        card = std_view_sql(lambda c: "hll_cardinality(%s)::bigint" % hll(c))
        res["adhoc"] = {name: dict(adhoc_runs(lambda s=card[name]: copy_out(s),
                                              cfg["adhoc_runs"], cfg["adhoc_budget_s"]),
                                   sql="COPY (%s) TO STDOUT (FORMAT binary)" % card[name])
                        for name in VIEWS}

    section(res, "adhoc", adhoc)

    def hll_fig():
        exact = {(day_key(d), c): x for d, c, x in con.execute(
            "SELECT date_trunc('day', ts), country, count(DISTINCT user_id) FROM events "
            "GROUP BY 1, 2").fetchall()}
        approx = {(day_key(d), c): x for d, c, x in con.execute(
            "SELECT day, country, hll_cardinality(hll_union_agg(users)) FROM country_daily "
            "GROUP BY 1, 2").fetchall()}
        h = hll_errors(exact, approx)
        h["method"] = "sketch_union"
        h["sketch"] = "hll_union_agg of country_daily's hll(%s) per (day, country)" % (
            "log2m 11, regwidth 5" if not hll_args else "log2m " + hll_args[2:])
        res["hll"] = h

    section(res, "hll", hll_fig)
    con.close()
    return version


PEER_FUNCS = {"duckdb": peer_duckdb, "chdb": peer_chdb, "postgres": peer_postgres}


def child_main(peer, cfg_path, out_path):
    """Runs one peer in this (venv) process and writes its figures as JSON."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with open(cfg_path) as f:
        cfg = json.load(f)
    global ONLY_SECTIONS
    ONLY_SECTIONS = set(cfg["sections"]) if cfg.get("sections") else None
    res = {"peer": peer, "ok": False, "notes": [], "errors": {}}
    t0 = now()
    try:
        PEER_FUNCS[peer](cfg, res)
        res["ok"] = not res["errors"]
    except BaseException as e:  # noqa: BLE001 - reported in the JSON
        res["errors"]["peer"] = "%s: %s" % (type(e).__name__, str(e).strip()[:2000])
        log("%s failed: %s" % (peer, res["errors"]["peer"]))
    finally:
        res["wall_s"] = round(now() - t0, 1)
        with open(out_path, "w") as f:
            json.dump(res, f, indent=1, default=str)
    return 0 if res["ok"] else 1


# ---------------------------------------------------------------------------------------------
# Installation (parent process, stdlib only)


def sh(cmd, **kw):
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def ensure_venv(peer):
    """The venv python, with the modules `peer` needs installed (only the missing ones)."""
    py = os.path.join(VENV, "bin", "python")
    if not os.path.exists(py):
        log("creating the virtualenv %s" % VENV)
        r = sh([sys.executable, "-m", "venv", VENV])
        if r.returncode != 0:
            raise RuntimeError("python3 -m venv failed (python3-venv missing?): " + r.stdout[-800:])
    missing = [pkg for mod, pkg in PIP_NEEDS[peer].items()
               if sh([py, "-c", "import " + mod]).returncode != 0]
    if missing:
        log("%s: pip install %s" % (peer, " ".join(missing)))
        r = sh([py, "-m", "pip", "install", "-q", "--disable-pip-version-check"] + missing)
        if r.returncode != 0:
            raise RuntimeError("pip install %s failed: %s" % (" ".join(missing), r.stdout[-1500:]))
    return py


def ensure_postgres():
    need = []
    if not os.path.exists(os.path.join(PG_BIN, "initdb")):
        need.append("postgresql-15")
    if not os.path.exists(os.path.join(PG_LIB, "hll.so")):
        need.append("postgresql-15-hll")
    if not need:
        return
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    log("postgres: apt-get install %s" % " ".join(need))
    r = sh(sudo + ["apt-get", "install", "-y", "-qq"] + need, env=env)
    if r.returncode != 0:
        sh(sudo + ["apt-get", "update", "-qq"], env=env)
        r = sh(sudo + ["apt-get", "install", "-y", "-qq"] + need, env=env)
    if r.returncode != 0:
        raise RuntimeError("apt-get install %s failed: %s" % (" ".join(need), r.stdout[-1500:]))


def count_rows(csv):
    lines = 0
    last = b"\n"
    with open(csv, "rb") as f:
        while True:
            b = f.read(1 << 24)
            if not b:
                break
            lines += b.count(b"\n")
            last = b[-1:]
    if last != b"\n":
        lines += 1
    return lines - 1  # header


def split_chunks(csv, out_dir, chunk_rows):
    """Splits events.csv into files of chunk_rows rows, each with the header."""
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    with open(csv, "rb") as f:
        header = f.readline()
        buf = []
        for line in f:
            buf.append(line)
            if len(buf) == chunk_rows:
                paths.append(_write_chunk(out_dir, len(paths), header, buf))
                buf = []
        if buf:
            paths.append(_write_chunk(out_dir, len(paths), header, buf))
    return paths


def _write_chunk(out_dir, i, header, lines):
    p = os.path.join(out_dir, "chunk_%06d.csv" % i)
    with open(p, "wb") as f:
        f.write(header)
        f.writelines(lines)
    return p


# ---------------------------------------------------------------------------------------------
# Report


def fmt_int(v):
    return "{:,}".format(int(round(v)))


def fmt_ms(v):
    if v is None:
        return "?"
    return "%.3g" % v if v < 100 else fmt_int(v)


def get(d, *keys):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def cell(res, render, *keys):
    v = get(res, *keys)
    if v is None:
        errs = res.get("errors") or {}
        if "install" in errs:
            return "skipped"
        return "error" if (keys[0] in errs or "peer" in errs or "timeout" in errs) else "n/a"
    try:
        return render(v)
    except Exception:  # noqa: BLE001
        return "?"


def render_table(report):
    peers = list(report["peers"])
    rows = []

    def load(v):
        s = fmt_int(v["rows_per_s"])
        if v.get("incremental") is False:
            s += " (load %.2f s + refresh %.2f s)" % (v["load_s"], v["refresh_s"])
        if v.get("rows_ok") is False:
            s += " ROWS MISMATCH"
        return s

    def lat(v):
        return "%s / %s" % (fmt_ms(v["p50_ms"]), fmt_ms(v["p99_ms"]))

    def query(v):
        s = lat(v)
        if v.get("reduced"):
            s += " (%d runs)" % v["runs"]
        return s

    def bpe(v):
        return "%.1f" % v

    def hll(v):
        if "median_rel_err" not in v:
            return "n/a"
        s = "%.2f%% / %.2f%% / %.2f%%" % (100 * v["median_rel_err"], 100 * v["p95_rel_err"],
                                          100 * v["max_rel_err"])
        return s + (" (raw rows)" if v.get("method") == "raw_approx" else "")

    spec = [
        ("Bulk CSV load, no views (rows/s)", load, ("load_bulk", "no_views")),
        ("Bulk CSV load, 3 views (rows/s)", load, ("load_bulk", "views")),
        ("Load of events.parquet, no views (rows/s)", load, ("load_parquet", "no_views")),
        ("Chunks 4×%s rows, no views (rows/s)" % fmt_int(report["params"]["chunk_rows"]),
         load, ("load_chunks", "no_views")),
        ("  chunk commit p50 / p99 (ms)", lat, ("load_chunks", "no_views")),
        ("Chunks, 3 views (rows/s)", load, ("load_chunks", "views")),
        ("  chunk commit p50 / p99 (ms)", lat, ("load_chunks", "views")),
        ("page_hourly WHERE page p50 / p99 (ms)", query, ("queries", "page_hourly_by_page")),
        ("country_daily WHERE day p50 / p99 (ms)", query, ("queries", "country_daily_by_day")),
        ("page_hourly full read p50 / p99 (ms)", query, ("queries", "page_hourly_full")),
        ("Ad hoc page_hourly, median (ms)", lambda v: fmt_ms(v), ("adhoc", "page_hourly", "median_ms")),
        ("Ad hoc country_daily, median (ms)", lambda v: fmt_ms(v), ("adhoc", "country_daily", "median_ms")),
        ("Ad hoc errors_minute, median (ms)", lambda v: fmt_ms(v), ("adhoc", "errors_minute", "median_ms")),
        ("Bytes on disk / event, no views", bpe, ("disk", "bytes_per_event_no_views")),
        ("Bytes on disk / event, with views", bpe, ("disk", "bytes_per_event_views")),
        ("Peak RSS (MiB)", lambda v: fmt_int(v / 2**20), ("memory", "peak_rss_bytes")),
        ("HLL users/(day,country) rel. err. median / p95 / max", hll, ("hll",)),
    ]
    out = ["| Figure (N = %s rows) | %s |" % (fmt_int(report["data"]["rows"]), " | ".join(peers)),
           "|---|" + "---|" * len(peers)]
    for label, render, keys in spec:
        cells = [cell(report["peers"][p], render, *keys) for p in peers]
        out.append("| %s | %s |" % (label, " | ".join(cells)))
    lines = ["\n".join(out), ""]
    for p in peers:
        r = report["peers"][p]
        lines.append("**%s** (%s, %s s)" % (p, r.get("version", "?"), r.get("wall_s", "?")))
        for note in r.get("notes", []):
            lines.append("- " + note)
        for k, e in (r.get("errors") or {}).items():
            lines.append("- ERROR in %s: %s" % (k, e))
        lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Main


def main():
    ap = argparse.ArgumentParser(description="Peers half of Tally's workload benchmark.")
    ap.add_argument("--data", help="directory with events.csv")
    ap.add_argument("--peers", default=",".join(PEERS), help="comma-separated subset of %s"
                    % ",".join(PEERS))
    ap.add_argument("--runs", type=int, default=1000, help="runs per dashboard query")
    ap.add_argument("--json", help="write the figures as JSON to this file")
    ap.add_argument("--rows", type=int, help="expected row count (default: counted from the CSV); "
                    "every load is checked against it")
    ap.add_argument("--chunk-rows", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--adhoc-runs", type=int, default=5)
    ap.add_argument("--query-budget-s", type=float, default=30.0,
                    help="time budget per dashboard query; fewer runs when exceeded (reported)")
    ap.add_argument("--adhoc-budget-s", type=float, default=60.0,
                    help="time budget per ad hoc query; fewer runs when exceeded (reported)")
    ap.add_argument("--peer-timeout-s", type=float, default=3600.0)
    ap.add_argument("--pg-hll-log2m", type=int, default=None,
                    help="log2m for PostgreSQL's hll_add_agg (default: the extension's, 11)")
    ap.add_argument("--tmp", default=None, help="parent of the temp dir (default: system temp)")
    ap.add_argument("--keep-tmp", action="store_true")
    ap.add_argument("--sections", default=None,
                    help="comma-separated figures to run (default all): load_bulk, "
                    "load_parquet, load_chunks, queries, adhoc, hll")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--child-config", help=argparse.SUPPRESS)
    ap.add_argument("--child-out", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        return child_main(a.child, a.child_config, a.child_out)
    if not a.data:
        ap.error("--data DIR is required")

    csv = os.path.abspath(os.path.join(a.data, "events.csv"))
    if not os.path.isfile(csv):
        ap.error("%s not found" % csv)
    peers = [p.strip() for p in a.peers.split(",") if p.strip()]
    for p in peers:
        if p not in PEERS:
            ap.error("unknown peer %r (known: %s)" % (p, ", ".join(PEERS)))

    counted = count_rows(csv)
    expected = a.rows if a.rows is not None else counted
    if expected != counted:
        log("WARNING: --rows %d but events.csv has %d data lines" % (expected, counted))
    tmp = tempfile.mkdtemp(prefix="tally-peers-", dir=a.tmp)
    os.chmod(tmp, 0o711)
    report = {
        "schema": SCHEMA,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "data": {"dir": os.path.abspath(a.data), "csv_bytes": os.path.getsize(csv),
                 "rows": expected, "csv_rows": counted},
        "machine": {"cores": os.cpu_count(), "platform": platform.platform(),
                    "mem_bytes": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")},
        "params": {"runs": a.runs, "chunk_rows": a.chunk_rows, "workers": a.workers,
                   "adhoc_runs": a.adhoc_runs, "query_budget_s": a.query_budget_s,
                   "adhoc_budget_s": a.adhoc_budget_s, "pages": POPULAR_PAGES[0] + ".."
                   + POPULAR_PAGES[-1], "days": DAYS[0] + ".." + DAYS[-1],
                   "pg_hll_log2m": a.pg_hll_log2m},
        "peers": {},
    }
    try:
        log("splitting %s (%d rows) into %d-row chunks" % (csv, counted, a.chunk_rows))
        chunks = split_chunks(csv, os.path.join(tmp, "chunks"), a.chunk_rows)
        for peer in peers:
            res = {"peer": peer, "ok": False, "notes": [], "errors": {}}
            try:
                py = ensure_venv(peer)
                if peer == "postgres":
                    ensure_postgres()
            except Exception as e:  # noqa: BLE001 - skip this peer, run the others
                res["errors"]["install"] = str(e)[:2000]
                log("%s skipped: cannot install: %s" % (peer, e))
                report["peers"][peer] = res
                continue
            ptmp = os.path.join(tmp, peer)
            os.makedirs(ptmp)
            os.chmod(ptmp, 0o711)
            parquet = os.path.abspath(os.path.join(a.data, "events.parquet"))
            cfg = {"csv": csv, "rows": expected, "chunks": chunks, "tmp": ptmp,
                   "parquet": parquet if os.path.isfile(parquet) else None,
                   "sections": a.sections.split(",") if a.sections else None,
                   "runs": a.runs, "chunk_rows": a.chunk_rows, "workers": a.workers,
                   "adhoc_runs": a.adhoc_runs, "query_budget_s": a.query_budget_s,
                   "adhoc_budget_s": a.adhoc_budget_s, "pg_hll_log2m": a.pg_hll_log2m}
            cfg_path = os.path.join(tmp, peer + ".cfg.json")
            out_path = os.path.join(tmp, peer + ".out.json")
            with open(cfg_path, "w") as f:
                json.dump(cfg, f)
            log("=== %s ===" % peer)
            proc = subprocess.Popen([py, os.path.abspath(__file__), "--child", peer,
                                     "--child-config", cfg_path, "--child-out", out_path])
            try:
                proc.wait(timeout=a.peer_timeout_s)
            except subprocess.TimeoutExpired:
                log("%s: timed out after %.0f s, stopping it" % (peer, a.peer_timeout_s))
                proc.terminate()
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                res["errors"]["timeout"] = "stopped after %.0f s" % a.peer_timeout_s
            if os.path.exists(out_path):
                with open(out_path) as f:
                    child = json.load(f)
                errs = res["errors"]
                res.update(child)
                res["errors"] = dict(child.get("errors") or {}, **errs)
                res["ok"] = bool(child.get("ok")) and not res["errors"]
            elif proc.returncode:
                res["errors"]["peer"] = "child exited with %s and wrote no result" % proc.returncode
            report["peers"][peer] = res
            _stop_stray_postgres(ptmp)
            shutil.rmtree(ptmp, ignore_errors=True)
    finally:
        for peer in peers:
            _stop_stray_postgres(os.path.join(tmp, peer))
        if a.keep_tmp:
            log("kept %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    report["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    print(render_table(report))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1, default=str)
        log("wrote %s" % a.json)
    return 0 if all(r.get("ok") for r in report["peers"].values()) else 1


def _stop_stray_postgres(ptmp):
    """Stops a cluster left running by a child that was killed."""
    data = os.path.join(ptmp, "pg", "pgdata")
    if os.path.exists(os.path.join(data, "postmaster.pid")):
        cmd = [os.path.join(PG_BIN, "pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop"]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--"] + cmd
        sh(cmd)


if __name__ == "__main__":
    sys.exit(main())
