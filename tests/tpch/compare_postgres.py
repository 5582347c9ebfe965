#!/usr/bin/env python3
"""Runs the 22 TPC-H queries of this directory on Tally and on PostgreSQL over psql, compares
every row, prints per-query times, and (with --write-answers) records PostgreSQL's results in
answers/ for the end-to-end test (tests/e2e/tpch.rs), which runs on machines without PostgreSQL.

Both servers must hold the same generated data, loaded with dss.ddl and
`\\copy <table> FROM '<table>.csv' WITH (FORMAT csv, HEADER)` from
`tpchgen-cli csv -s 0.01` (the generator is deterministic). For example:

    tpchgen-cli csv -s 0.01 -o /tmp/tpch
    initdb -D /tmp/pg -U postgres --auth=trust --locale=C -E UTF8
    pg_ctl -D /tmp/pg -o '-p 55434 -c listen_addresses=127.0.0.1' start
    tally serve --data /tmp/tally --listen 127.0.0.1:55433
    # load both, then:
    tests/tpch/compare_postgres.py --tally 'host=127.0.0.1 port=55433 user=tally dbname=tally' \\
        --postgres 'host=127.0.0.1 port=55434 user=postgres dbname=postgres' --write-answers

PostgreSQL refuses the standard `interval '90' day (3)` of Q1, so it gets `interval '90' day`.
"""

import argparse
import math
import pathlib
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent


def run(conninfo, sql):
    """Runs `sql` through psql; returns (header, rows, seconds). Fields are tab-separated."""
    start = time.monotonic()
    out = subprocess.run(
        ["psql", "-X", "-q", "-A", "-F", "\t", "-P", "footer=off", "-v", "ON_ERROR_STOP=1",
         "-d", conninfo],
        input=sql, capture_output=True, text=True)
    seconds = time.monotonic() - start
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip())
    lines = out.stdout.splitlines()
    return lines[0].split("\t"), [line.split("\t") for line in lines[1:]], seconds


def same_field(a, b):
    """Numbers within rounding (averages differ in scale between engines), text without the
    trailing blanks of CHAR(n), which PostgreSQL pads and Tally does not keep."""
    try:
        x, y = float(a), float(b)
    except ValueError:
        return a.rstrip(" ") == b.rstrip(" ")
    return math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-4)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tally", required=True, help="libpq conninfo of the Tally server")
    parser.add_argument("--postgres", required=True, help="libpq conninfo of PostgreSQL")
    parser.add_argument("--write-answers", action="store_true",
                        help="record PostgreSQL's results in answers/qN.tsv")
    args = parser.parse_args()
    failed = []
    print("query  rows  tally_s  postgres_s  result")
    for n in range(1, 23):
        sql = (HERE / f"q{n}.sql").read_text()
        t_header, t_rows, t_s = run(args.tally, sql)
        p_header, p_rows, p_s = run(args.postgres, sql.replace("day (3)", "day"))
        problems, notes = [], []
        if len(t_header) != len(p_header):
            problems.append(f"columns {t_header} != {p_header}")
        elif t_header != p_header:
            # PostgreSQL names an unaliased call after its function (`sum`), DataFusion after
            # the whole expression (`sum(lineitem.l_quantity)`): reported, not a failure.
            notes.append(f"names {t_header} != {p_header}")
        if len(t_rows) != len(p_rows):
            problems.append(f"{len(t_rows)} rows != {len(p_rows)}")
        for i, (t, p) in enumerate(zip(t_rows, p_rows)):
            if len(t) != len(p) or not all(map(same_field, t, p)):
                problems.append(f"row {i + 1}: {t} != {p}")
                break
        print(f"q{n:<5} {len(t_rows):>4}  {t_s:7.3f}  {p_s:10.3f}  "
              + "; ".join(problems or ["same"] + notes))
        if problems:
            failed.append(n)
        if args.write_answers:
            rows = ["\t".join(field.rstrip(" ") for field in row) for row in [p_header] + p_rows]
            (HERE / "answers" / f"q{n}.tsv").write_text("\n".join(rows) + "\n")
    if failed:
        sys.exit(f"different results: {', '.join(f'q{n}' for n in failed)}")


if __name__ == "__main__":
    main()
