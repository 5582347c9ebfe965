"""Accuracy of Tally's sketch views against exact answers and against the peers' sketches.

    ~/.cache/tally-peers-venv/bin/python benches/peers/sketch_accuracy.py \
        --data DIR --tally target/release/tally [--json out.json]

DIR holds `events.csv` and `events.parquet` from `tally-bench generate`. The script starts
`tally serve` on a temporary data directory and a free port, COPYs `events.csv` into it, keeps
these views, and compares them with DuckDB's exact answers over `events.parquet`:

- percentiles: `approx_percentile_cont` p50/p95/p99 of `latency_ms` per (hour, page) and per
  (day, page), beside DuckDB's `approx_quantile` and chDB's `quantileTDigest` on the same
  groups; error = |estimate - exact| / exact, exact = DuckDB's `quantile_cont`;
- top-k: `approx_top_k(page, 10)` per (day, country): recall of the exact top 10 (an item
  counts when its exact count reaches the exact 10th count), beside DuckDB's `approx_top_k`
  and chDB's `topK(10)`;
- theta: users of day d and of day d + 6 per country, from a per-day theta view, beside the
  exact intersection; and the retention query's latency over pgwire (median, p99).

Progress goes to stderr, a markdown table to stdout.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

import chdb
import duckdb
import psycopg

QUANTILES = (0.5, 0.95, 0.99)
MIN_GROUP_ROWS = 100


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def pct(values, p):
    values = sorted(values)
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(p * len(values)))]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_tally(binary, tmp):
    port = free_port()
    proc = subprocess.Popen([binary, "serve", "--data", os.path.join(tmp, "tally"),
                             "--listen", f"127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "log"), "w"))
    dsn = f"host=127.0.0.1 port={port} user=tally dbname=tally sslmode=disable"
    for _ in range(100):
        try:
            psycopg.connect(dsn).close()
            return proc, dsn
        except psycopg.OperationalError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("tally serve did not start; see " + os.path.join(tmp, "log"))


def percentile_views():
    out = []
    for name, unit in (("lat_hourly", "hour"), ("lat_daily", "day")):
        cols = ", ".join(
            f"approx_percentile_cont({q}) WITHIN GROUP (ORDER BY latency_ms) AS p{int(q * 100)}"
            for q in QUANTILES)
        out.append((name, unit, f"SELECT date_trunc('{unit}', ts) AS t, page, count(*) AS n, "
                                f"{cols} FROM events GROUP BY 1, 2"))
    return out


def load_tally(dsn, csv_path):
    with psycopg.connect(dsn, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE events (ts TIMESTAMP NOT NULL, user_id BIGINT, "
                    "session_id BIGINT, page TEXT, country TEXT, device TEXT, status INT, "
                    "latency_ms DOUBLE PRECISION, bytes BIGINT) WITH (time_column = 'ts')")
        for name, _, sql in percentile_views():
            cur.execute(f"CREATE MATERIALIZED VIEW {name} AS {sql}")
        cur.execute("CREATE MATERIALIZED VIEW top_daily AS SELECT date_trunc('day', ts) AS day, "
                    "country, approx_top_k(page, 10) AS top FROM events GROUP BY 1, 2")
        cur.execute("CREATE MATERIALIZED VIEW users_daily AS SELECT date_trunc('day', ts) AS day, "
                    "country, theta_sketch(user_id) AS users FROM events GROUP BY 1, 2")
        started = time.time()
        with open(csv_path, "rb") as f, \
                cur.copy("COPY events FROM STDIN WITH (FORMAT csv, HEADER)") as copy:
            while chunk := f.read(1 << 20):
                copy.write(chunk)
        log(f"tally: COPY of {csv_path} with 4 sketch views in {time.time() - started:.1f} s")


def key(t, g):
    return (str(t)[:19], g)


def tally_percentiles(dsn):
    out = {}
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        for name, unit, _ in percentile_views():
            cur.execute(f"SELECT t, page, n, p50, p95, p99 FROM {name}")
            out[unit] = {key(t, g): (n, (a, b, c)) for t, g, n, a, b, c in cur.fetchall()}
    return out


def duck_percentiles(con):
    exact, approx = {}, {}
    qs = "[" + ", ".join(str(q) for q in QUANTILES) + "]"
    for unit in ("hour", "day"):
        rows = con.sql(f"SELECT date_trunc('{unit}', ts) AS t, page, count(*), "
                       f"quantile_cont(latency_ms, {qs}), approx_quantile(latency_ms, {qs}) "
                       f"FROM events GROUP BY 1, 2").fetchall()
        exact[unit] = {key(t, g): (n, tuple(e)) for t, g, n, e, _ in rows if e is not None}
        approx[unit] = {key(t, g): tuple(a) for t, g, _, _, a in rows if a is not None}
    return exact, approx


def chdb_percentiles(parquet):
    out = {}
    for unit in ("hour", "day"):
        trunc = "toStartOfHour(ts)" if unit == "hour" else "toStartOfDay(ts)"
        sql = (f"SELECT {trunc} AS t, page, quantilesTDigest(0.5, 0.95, 0.99)(latency_ms) "
               f"FROM file('{parquet}', Parquet) GROUP BY t, page FORMAT JSONCompact")
        data = json.loads(str(chdb.query(sql, "JSONCompact")))["data"]
        out[unit] = {key(t, g): tuple(q) for t, g, q in data}
    return out


def errors(exact, approx):
    """{quantile: [relative errors]} over groups of at least MIN_GROUP_ROWS rows."""
    out = {q: [] for q in QUANTILES}
    for k, (n, ex) in exact.items():
        if n < MIN_GROUP_ROWS or approx.get(k) is None or None in approx[k]:
            continue
        est = approx[k]
        for i, q in enumerate(QUANTILES):
            if ex[i]:
                out[q].append(abs(est[i] - ex[i]) / abs(ex[i]))
    return out


def top_k_recall(con, dsn, parquet):
    exact = {}
    for day, country, page, c in con.sql(
            "SELECT date_trunc('day', ts), country, page, count(*) FROM events "
            "GROUP BY 1, 2, 3").fetchall():
        exact.setdefault(key(day, country), {})[page] = c

    def recall(found):
        scores = []
        for k, counts in exact.items():
            if sum(counts.values()) < MIN_GROUP_ROWS or k not in found:
                continue
            top = sorted(counts.values(), reverse=True)
            tenth = top[min(9, len(top) - 1)]
            wanted = min(10, len(top))
            hits = sum(1 for item in list(found[k])[:10] if counts.get(item, 0) >= tenth)
            scores.append(hits / wanted)
        return scores

    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute('SELECT day, country, "top" FROM top_daily')
        # A json column: psycopg parses it.
        tally = {key(d, c): [e["value"] for e in t] for d, c, t in cur.fetchall()}
    duck = {key(d, c): list(t) for d, c, t in con.sql(
        "SELECT date_trunc('day', ts), country, approx_top_k(page, 10) FROM events "
        "GROUP BY 1, 2").fetchall()}
    data = json.loads(str(chdb.query(
        f"SELECT toStartOfDay(ts), country, topK(10)(page) FROM file('{parquet}', Parquet) "
        f"GROUP BY 1, 2 FORMAT JSONCompact", "JSONCompact")))["data"]
    ch = {key(d, c): t for d, c, t in data}
    return {"tally": recall(tally), "duckdb": recall(duck), "chdb": recall(ch)}


RETENTION = ("SELECT a.country, theta_estimate(theta_intersect(a.users, b.users)) AS retained "
             "FROM users_daily a JOIN users_daily b ON a.country = b.country "
             "AND b.day = a.day + INTERVAL '6 days' WHERE a.day = TIMESTAMP '2026-01-01'")


def theta_errors(con, dsn, runs):
    exact = dict(con.sql(
        "SELECT a.country, count(*) FROM "
        "(SELECT DISTINCT country, user_id FROM events WHERE date_trunc('day', ts) = "
        "TIMESTAMP '2026-01-01') a JOIN (SELECT DISTINCT country, user_id FROM events "
        "WHERE date_trunc('day', ts) = TIMESTAMP '2026-01-07') b "
        "ON a.country = b.country AND a.user_id = b.user_id GROUP BY 1").fetchall())
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(RETENTION)
        est = dict(cur.fetchall())
        lat = []
        for _ in range(runs):
            t = time.perf_counter()
            cur.execute(RETENTION)
            cur.fetchall()
            lat.append(time.perf_counter() - t)
    errs = [abs(float(est.get(c, 0)) - n) / n for c, n in exact.items() if n >= 100]
    return errs, lat, sum(exact.values())


def row(name, values):
    return (f"| {name} | " + " | ".join(
        f"median {pct(v, 0.5) * 100:.2f}%, p95 {pct(v, 0.95) * 100:.2f}%" for v in values) + " |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--tally", required=True)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--json")
    args = ap.parse_args()
    csv_path = os.path.abspath(os.path.join(args.data, "events.csv"))
    parquet = os.path.abspath(os.path.join(args.data, "events.parquet"))
    con = duckdb.connect()
    con.sql(f"CREATE TABLE events AS SELECT * FROM read_parquet('{parquet}')")
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        proc, dsn = start_tally(args.tally, tmp)
        try:
            load_tally(dsn, csv_path)
            log("exact and approximate percentiles …")
            tally = tally_percentiles(dsn)
            exact, duck = duck_percentiles(con)
            ch = chdb_percentiles(parquet)
            print("| groups | system | " + " | ".join(f"p{int(q * 100)} error" for q in QUANTILES)
                  + " |")
            print("|---|---|" + "---|" * len(QUANTILES))
            for unit in ("hour", "day"):
                groups = sum(1 for n, _ in exact[unit].values() if n >= MIN_GROUP_ROWS)
                tally_only = {k: v[1] for k, v in tally[unit].items()}
                for system, approx in (("Tally", tally_only), ("DuckDB approx_quantile", duck[unit]),
                                       ("chDB quantileTDigest", ch[unit])):
                    e = errors(exact[unit], approx)
                    result[f"{unit}/{system}"] = {str(q): [pct(e[q], 0.5), pct(e[q], 0.95)]
                                                  for q in QUANTILES}
                    print(row(f"(page, {unit}), {groups} groups ≥ {MIN_GROUP_ROWS} rows | {system}",
                              [e[q] for q in QUANTILES]))
            log("top-k recall …")
            recall = top_k_recall(con, dsn, parquet)
            for system, scores in recall.items():
                mean = sum(scores) / max(1, len(scores))
                result[f"topk/{system}"] = mean
                print(f"| top-10 pages per (day, country), {len(scores)} groups | {system} | "
                      f"mean recall {mean:.3f}, min {min(scores):.2f} | | |")
            log("theta retention …")
            errs, lat, total = theta_errors(con, dsn, args.runs)
            result["theta"] = {"median": pct(errs, 0.5), "max": max(errs),
                               "latency_ms": [pct(lat, 0.5) * 1e3, pct(lat, 0.99) * 1e3]}
            print(f"| users of day 1 also active on day 7, per country ({len(errs)} countries, "
                  f"{total} users in all) | Tally theta | median {pct(errs, 0.5) * 100:.2f}%, "
                  f"max {max(errs) * 100:.2f}% | | |")
            print(f"| retention query over pgwire (psycopg, {args.runs} runs) | Tally | "
                  f"median {pct(lat, 0.5) * 1e3:.1f} ms, p99 {pct(lat, 0.99) * 1e3:.1f} ms | | |")
        finally:
            proc.terminate()
            proc.wait()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
