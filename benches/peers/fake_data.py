#!/usr/bin/env python3
"""TEST STAND-IN ONLY: a small generator of clickstream events for exercising run.py.

The real data comes from Tally's Rust data generator; this script only produces the same
columns and file layout (DIR/events.csv and DIR/events.parquet) so that the peers benchmark
can be tested before that generator exists. Its distributions are plausible, not the
contract: do not publish numbers measured on its output.

    python3 fake_data.py --out DIR [--rows 200000] [--seed 1]

events.csv: header, comma-separated, no quoting, NULL = empty field, ts as
'YYYY-MM-DD HH:MM:SS.ffffff'. Rows span 7 days from 2026-01-01; 1% of rows are up to 6 hours
late (their ts lies before their neighbours'). A few latency_ms and bytes are NULL.
events.parquet: the same rows, ts as TIMESTAMP(MICROS) without time zone (written by DuckDB
from the CSV; skipped with a warning when DuckDB is not importable).
"""
import argparse
import bisect
import datetime as dt
import itertools
import math
import os
import random
import sys

COUNTRIES = ["US", "DE", "GB", "FR", "IN", "BR", "JP", "CA", "AU", "ES", "IT", "NL", "SE", "PL",
             "MX", "KR", "CN", "RU", "TR", "AR", "ZA", "NG", "EG", "ID", "VN", "PH", "CH", "AT",
             "BE", "NO"]
DEVICES = ["desktop", "mobile", "tablet"]
COLUMNS = "ts,user_id,session_id,page,country,device,status,latency_ms,bytes"


def zipf_cdf(n, s):
    w = [1.0 / (k ** s) for k in range(1, n + 1)]
    return list(itertools.accumulate(w)), sum(w)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--pages", type=int, default=1000)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    rng = random.Random(a.seed)
    n = a.rows
    users = max(1000, n // 25)
    page_cdf, page_tot = zipf_cdf(a.pages, 1.1)
    user_cdf, user_tot = zipf_cdf(users, 0.8)
    country_w = list(itertools.accumulate(1.0 / (i + 1) for i in range(len(COUNTRIES))))
    user_country = [COUNTRIES[bisect.bisect(country_w, rng.random() * country_w[-1])]
                    for _ in range(users + 1)]
    user_device = [rng.choices(DEVICES, (55, 38, 7))[0] for _ in range(users + 1)]
    start = dt.datetime(2026, 1, 1)
    span_us = 7 * 86400 * 1_000_000
    late_us = 6 * 3600 * 1_000_000
    path = os.path.join(a.out, "events.csv")
    with open(path, "w", buffering=1 << 20) as f:
        f.write(COLUMNS + "\n")
        for i in range(n):
            t_us = (i * span_us) // n + rng.randrange(max(1, span_us // n))
            if rng.random() < 0.01:
                t_us = max(0, t_us - rng.randrange(late_us))
            ts = start + dt.timedelta(microseconds=t_us)
            u = bisect.bisect(user_cdf, rng.random() * user_tot) + 1
            session = u * 1000 + t_us // (30 * 60 * 1_000_000) % 1000
            page = bisect.bisect(page_cdf, rng.random() * page_tot) + 1
            country = user_country[u] if rng.random() < 0.95 else rng.choice(COUNTRIES)
            device = user_device[u] if rng.random() < 0.9 else rng.choice(DEVICES)
            r = rng.random()
            status = 200 if r < 0.90 else 304 if r < 0.95 else 404 if r < 0.98 else 500 if r < 0.995 else 503
            latency = "" if rng.random() < 0.002 else "%.3f" % math.exp(rng.gauss(3.5, 0.8))
            nbytes = "" if rng.random() < 0.002 else str(int(math.exp(rng.gauss(8.5, 1.2))))
            f.write("%s,%d,%d,/p/%d,%s,%s,%d,%s,%s\n" % (
                ts.strftime("%Y-%m-%d %H:%M:%S.%f"), u, session, page, country, device,
                status, latency, nbytes))
            if i and i % 1_000_000 == 0:
                print(f"fake_data: {i} rows", file=sys.stderr)
    try:
        import duckdb
    except ImportError:
        print("fake_data: duckdb not importable, events.parquet not written", file=sys.stderr)
        return
    pq = os.path.join(a.out, "events.parquet")
    duckdb.sql(f"""COPY (SELECT * FROM read_csv('{path}', header = true, columns = {{
        'ts': 'TIMESTAMP', 'user_id': 'BIGINT', 'session_id': 'BIGINT', 'page': 'VARCHAR',
        'country': 'VARCHAR', 'device': 'VARCHAR', 'status': 'INTEGER', 'latency_ms': 'DOUBLE',
        'bytes': 'BIGINT'}})) TO '{pq}' (FORMAT parquet)""")
    print(f"fake_data: wrote {n} rows to {path} and {pq}", file=sys.stderr)


if __name__ == "__main__":
    main()
