"""Sketches of Tally's views read and written by Apache DataSketches' Python package.

    python3 tests/python/datasketches_interop.py DSN

Loads a small event table over COPY, keeps a per-day view of every sketch Tally has, fetches
the views' BYTEA sketch columns with psycopg and checks, for each sketch family, that:
- the Python package deserializes Tally's bytes and gets the answers Tally's SQL gives;
- a sketch the Python package builds from the same values unions with Tally's (the values are
  hashed the way DataSketches' other libraries hash them), in Python and in Tally's SQL.
Prints one line per check and PASS at the end.
"""

import random
import sys

import datasketches as ds
import psycopg

from common import check

DAYS = 3
ROWS_PER_DAY = 20_000


def events():
    """Deterministic events: (day, user_id, page, latency_ms); users overlap between days."""
    rng = random.Random(7)
    rows = []
    for day in range(DAYS):
        for _ in range(ROWS_PER_DAY):
            user = rng.randrange(day * 3_000, day * 3_000 + 8_000)
            page = f"/page/{int(rng.paretovariate(1.2)) % 500}"
            latency = round(rng.lognormvariate(3.0, 1.0), 3)
            rows.append((f"2026-12-0{day + 1}", user, page, latency))
    return rows


def load(conn, rows):
    with conn.cursor() as cur:
        cur.execute("DROP MATERIALIZED VIEW IF EXISTS per_day")
        cur.execute("DROP TABLE IF EXISTS ev")
        cur.execute("CREATE TABLE ev (day DATE NOT NULL, user_id BIGINT, page TEXT, "
                    "latency_ms DOUBLE PRECISION)")
        cur.execute("CREATE MATERIALIZED VIEW per_day AS SELECT day, "
                    "approx_count_distinct(user_id) AS users, "
                    "approx_count_distinct(page) AS pages, "
                    "approx_percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) AS p95, "
                    "approx_top_k(page, 5) AS pages_top, theta_sketch(user_id) AS users_theta "
                    "FROM ev GROUP BY day")
        with cur.copy("COPY ev FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)


def by_day(rows):
    days = {}
    for day, user, page, latency in rows:
        days.setdefault(day, []).append((user, page, latency))
    return days


def check_hll(conn, days):
    """HLL: Tally's stored sketches are DataSketches HLL sketches of the same registers."""
    with conn.cursor() as cur:
        cur.execute("SELECT to_char(day, '%Y-%m-%d'), users, users_sketch, pages, pages_sketch "
                    "FROM per_day "
                    "ORDER BY day")
        fetched = cur.fetchall()
    check(len(fetched), DAYS, "per_day has one row per day")
    union_tally = ds.hll_union(15)
    union_python = ds.hll_union(15)
    for day, users, users_sketch, pages, pages_sketch in fetched:
        values = days[day]
        for column, estimate, blob, items in (
                ("users", users, users_sketch, [u for u, _, _ in values]),
                ("pages", pages, pages_sketch, [p for _, p, _ in values])):
            tally = ds.hll_sketch.deserialize(bytes(blob))
            python = ds.hll_sketch(15, ds.tgt_hll_type.HLL_8)
            for item in items:
                python.update(item)
            # The same values hashed the same way set the same registers: a union of both is
            # the union of either alone.
            both = ds.hll_union(15)
            both.update(tally)
            both.update(python)
            alone = ds.hll_union(15)
            alone.update(tally)
            check(both.get_result().get_estimate(), alone.get_result().get_estimate(),
                  f"HLL {column} of {day}: Python's sketch of the same values adds nothing")
            exact = len(set(items))
            check(abs(tally.get_estimate() - exact) <= 0.03 * exact, True,
                  f"HLL {column} of {day}: Python's estimate of Tally's sketch is within 3%")
            check(abs(estimate - round(alone.get_result().get_estimate())) <= 1, True,
                  f"HLL {column} of {day}: Tally's column equals Python's estimate")
            if column == "users":
                union_tally.update(tally)
                union_python.update(python)
    check(round(union_tally.get_result().get_estimate()),
          round(union_python.get_result().get_estimate()),
          "HLL: the union over days is the same from Tally's and Python's sketches")
    # A sketch made in Python unions with Tally's in SQL.
    python_all = ds.hll_sketch(15, ds.tgt_hll_type.HLL_8)
    for values in days.values():
        for user, _, _ in values:
            python_all.update(user)
    with conn.cursor() as cur:
        cur.execute("SELECT hll_cardinality(hll_union_agg(s)) FROM "
                    "(SELECT users_sketch AS s FROM per_day UNION ALL SELECT %s::bytea)",
                    (python_all.serialize_compact(),))
        (merged,) = cur.fetchone()
        cur.execute("SELECT hll_cardinality(hll_union_agg(users_sketch)) FROM per_day")
        (alone,) = cur.fetchone()
    check(merged, alone, "HLL: Tally's SQL unions a Python sketch of the same users to the same "
                         "estimate")


def rank_of(value, values):
    """The fraction of `values` at or below `value`, and the fraction strictly below it."""
    below = sum(1 for v in values if v < value)
    at_or_below = sum(1 for v in values if v <= value)
    return below / len(values), at_or_below / len(values)


def within_rank(value, values, p, tolerance=0.01):
    """True when `value` could be the `p` quantile of `values` within `tolerance` of rank."""
    below, at_or_below = rank_of(value, values)
    return below - tolerance <= p <= at_or_below + tolerance


def check_quantiles(conn, days):
    """t-digest: Python reads Tally's sketches and unions with them, both ways."""
    with conn.cursor() as cur:
        cur.execute("SELECT to_char(day, '%Y-%m-%d'), p95, p95_sketch FROM per_day ORDER BY day")
        fetched = cur.fetchall()
    all_values = []
    for day, p95, blob in fetched:
        values = [latency for _, _, latency in days[day]]
        all_values += values
        tally = ds.tdigest_double.deserialize(bytes(blob))
        check(tally.get_total_weight(), len(values),
              f"t-digest of {day}: Python reads Tally's sketch of every value")
        check(within_rank(p95, values, 0.95), True,
              f"t-digest of {day}: Tally's p95 is within 1% of rank 0.95")
        check(within_rank(tally.get_quantile(0.95), values, 0.95), True,
              f"t-digest of {day}: Python's p95 of Tally's sketch is within 1% of rank 0.95")
        python = ds.tdigest_double(200)
        for v in values:
            python.update(v)
        python.merge(tally)
        check(within_rank(python.get_quantile(0.95), values, 0.95), True,
              f"t-digest of {day}: Python's sketch merged with Tally's keeps p95 within 1%")
    # Tally's SQL unions a sketch Python built of all the values with its own: every value twice.
    python_all = ds.tdigest_double(200)
    for v in all_values:
        python_all.update(v)
    with conn.cursor() as cur:
        cur.execute("SELECT sketch_quantile(quantile_union_agg(s), 0.99), "
                    "sketch_quantile(quantile_union_agg(s), 0.5) FROM "
                    "(SELECT p95_sketch AS s FROM per_day UNION ALL SELECT %s::bytea)",
                    (python_all.serialize(),))
        p99, p50 = cur.fetchone()
    check(within_rank(p99, all_values, 0.99) and within_rank(p50, all_values, 0.5), True,
          "t-digest: Tally's SQL unions a Python sketch of the same values (p50 and p99 within "
          "1% of rank)")


def check_top_k(conn, days):
    """Frequent items: Python reads Tally's sketches; merged sketches count every value twice."""
    with conn.cursor() as cur:
        cur.execute("SELECT to_char(day, '%Y-%m-%d'), pages_top, pages_top_sketch "
                    "FROM per_day ORDER BY day")
        fetched = cur.fetchall()
    for day, top, blob in fetched:
        pages = [p for _, p, _ in days[day]]
        counts = {}
        for page in pages:
            counts[page] = counts.get(page, 0) + 1
        # A json column: psycopg parses it.
        top = [(e["value"], e["count"]) for e in top]
        exact = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
        check(top, exact, f"top-k of {day}: Tally's top 5 pages are the exact ones (exact mode)")
        tally = ds.frequent_strings_sketch.deserialize(bytes(blob))
        check(tally.total_weight, len(pages), f"top-k of {day}: Python reads every value")
        items = tally.get_frequent_items(ds.frequent_items_error_type.NO_FALSE_NEGATIVES)
        python_top = sorted(((i, e) for i, e, _, _ in items), key=lambda kv: (-kv[1], kv[0]))[:5]
        check(python_top, exact, f"top-k of {day}: Python's top 5 of Tally's sketch")
        python = ds.frequent_strings_sketch(10)
        for page in pages:
            python.update(page)
        with conn.cursor() as cur:
            cur.execute("SELECT sketch_top_k(topk_union_agg(s), 5) FROM "
                        "(SELECT pages_top_sketch AS s FROM per_day WHERE day = %s::date "
                        "UNION ALL SELECT %s::bytea)", (day, python.serialize()))
            (merged,) = cur.fetchone()
        doubled = [(v, 2 * c) for v, c in exact]
        check([(e["value"], e["count"]) for e in merged], doubled,
              f"top-k of {day}: Tally's SQL unions Python's sketch of the same pages")
        python.merge(tally)
        items = python.get_frequent_items(ds.frequent_items_error_type.NO_FALSE_NEGATIVES)
        python_top = sorted(((i, e) for i, e, _, _ in items), key=lambda kv: (-kv[1], kv[0]))[:5]
        check(python_top, doubled, f"top-k of {day}: Python merges Tally's sketch into its own")


def check_theta(conn, days):
    """Theta: the same values hash to the same sketch; intersections agree with Python's."""
    with conn.cursor() as cur:
        cur.execute("SELECT to_char(day, '%Y-%m-%d'), theta_estimate(users_theta), users_theta "
                    "FROM per_day ORDER BY day")
        fetched = cur.fetchall()
    sketches = {}
    for day, estimate, blob in fetched:
        tally = ds.compact_theta_sketch.deserialize(bytes(blob))
        sketches[day] = tally
        check(tally.get_estimate(), estimate,
              f"theta of {day}: Python's estimate of Tally's sketch is Tally's")
        python = ds.update_theta_sketch()
        for user, _, _ in days[day]:
            python.update(user)
        both = ds.theta_union()
        both.update(tally)
        both.update(python.compact())
        alone = ds.theta_union()
        alone.update(tally)
        check(both.get_result().get_estimate(), alone.get_result().get_estimate(),
              f"theta of {day}: Python's sketch of the same users adds nothing")
        with conn.cursor() as cur:
            cur.execute("SELECT theta_estimate(theta_union_agg(s)) FROM (SELECT users_theta AS s "
                        "FROM per_day WHERE day = %s::date UNION ALL "
                        "SELECT %s::bytea)", (day, python.compact().serialize()))
            (merged,) = cur.fetchone()
        check(merged, estimate, f"theta of {day}: Tally's SQL unions Python's sketch to the same "
                                "estimate")
    first, second = sorted(sketches)[:2]
    with conn.cursor() as cur:
        cur.execute("SELECT theta_estimate(theta_intersect(a.users_theta, b.users_theta)), "
                    "theta_estimate(theta_a_not_b(a.users_theta, b.users_theta)) "
                    "FROM per_day a, per_day b WHERE a.day = %s::date AND b.day = %s::date", (first, second))
        both, only_first = cur.fetchone()
    inter = ds.theta_intersection()
    inter.update(sketches[first])
    inter.update(sketches[second])
    check(both, inter.get_result().get_estimate(),
          "theta: Tally's intersection of two days is Python's")
    check(only_first, ds.theta_a_not_b().compute(sketches[first], sketches[second]).get_estimate(),
          "theta: Tally's A-not-B of two days is Python's")
    a = {u for u, _, _ in days[first]}
    b = {u for u, _, _ in days[second]}
    exact = len(a & b)
    check(abs(both - exact) <= 0.1 * exact, True,
          f"theta: the intersection estimate {both:.0f} is within 10% of the exact {exact}")


def main():
    dsn = sys.argv[1]
    rows = events()
    days = by_day(rows)
    with psycopg.connect(dsn, autocommit=True) as conn:
        load(conn, rows)
        check_hll(conn, days)
        check_quantiles(conn, days)
        check_top_k(conn, days)
        check_theta(conn, days)
    print("PASS")


if __name__ == "__main__":
    main()
