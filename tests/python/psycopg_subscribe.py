"""The view changefeed through psycopg 3: `COPY (SUBSCRIBE TO v) TO STDOUT` read with
cursor.copy() while another connection commits, a subscriber that leaves mid-way and comes back
with `FROM <last sequence applied>`, and the refusals.

Usage: psycopg_subscribe.py DSN

Run by tests/e2e/pg_psycopg.rs. Checks that every commit to the view is seen exactly once after
de-duplicating by sequence, and that applying the changes by group key gives `SELECT * FROM v`.
Exits non-zero on the first failed check.
"""

import csv
import signal
import sys
import threading
import time

import psycopg
from psycopg import errors

from common import check

VIEW = ("CREATE MATERIALIZED VIEW per_page AS "
        "SELECT page, count(*) AS n, sum(ms) AS total FROM clicks GROUP BY page")
# Pages touched by each commit, in order: one, two or three groups per commit.
COMMITS = [["/a"], ["/b", "/c"], ["/a"], ["/new"], ["/c", "/a", "/b"], ["/d"], ["/a"],
           ["/e", "/b"], ["/a"], ["/f"]]
LEAVE_AFTER = 4  # commits the first subscriber reads before it leaves


def insert(conn, i, pages):
    """One commit: a row per page. Returns its sequence (nothing else writes meanwhile)."""
    rows = ", ".join(f"('2026-01-01 00:00:{i:02}', '{p}', {i}.5)" for p in pages)
    conn.execute(f"INSERT INTO clicks VALUES {rows}")
    return last_commit(conn)


def last_commit(conn):
    """The sequence of the latest commit, as tally_views reports it."""
    return conn.execute(
        "SELECT last_commit FROM tally_views WHERE name = 'per_page'").fetchone()[0]


def text_row(row):
    """(seq, kind, page, n, total) from a COPY text row (psycopg gives str)."""
    seq, kind, page, n, total = row
    return int(seq), kind, page, int(n), float(total)


def view(conn):
    return {r[0]: (r[1], r[2]) for r in conn.execute("SELECT * FROM per_page").fetchall()}


def expect_error(conn, sql, error, what):
    try:
        with conn.cursor().copy(sql) as copy:
            for _ in copy:
                pass
    except error as e:
        print(f"ok: {what} ({e.sqlstate}: {str(e).strip()})")
        return
    raise AssertionError(f"{what}: {sql} did not fail with {error.__name__}")


def main(dsn):
    # A wedged stream must fail the test, not hang it.
    signal.alarm(120)
    writer = psycopg.connect(dsn, autocommit=True)
    writer.execute("CREATE TABLE clicks (ts TIMESTAMP NOT NULL, page TEXT, ms DOUBLE PRECISION)")
    writer.execute("INSERT INTO clicks VALUES ('2026-01-01 00:00:00', '/a', 1), "
                   "('2026-01-01 00:00:00', '/b', 2), ('2026-01-01 00:00:00', '/c', 3)")
    writer.execute(VIEW)

    errs = psycopg.connect(dsn, autocommit=True)
    expect_error(errs, "COPY (SUBSCRIBE TO nope) TO STDOUT", errors.UndefinedTable,
                 "an unknown view is 42P01")
    expect_error(errs, "SUBSCRIBE TO clicks", errors.FeatureNotSupported,
                 "a table cannot be subscribed to")
    expect_error(errs, "COPY (SUBSCRIBE TO per_page FROM 999999) TO STDOUT",
                 errors.InvalidParameterValue, "FROM a sequence in the future is 22023")
    expect_error(errs, "SUBSCRIBE TO per_page FROM latest", errors.SyntaxError,
                 "FROM takes a number")
    expect_error(errs, "COPY (SUBSCRIBE per_page TO STDOUT", errors.SyntaxError,
                 "unbalanced parentheses")
    check(errs.execute("SELECT 1").fetchone()[0], 1, "the session is usable after the errors")

    state = {}       # page -> (n, total), applied by group key
    seen = set()     # sequences of the changes applied
    commits = []     # sequence of each commit made
    applied = 0      # the last sequence applied

    # Subscriber A: the snapshot, then LEAVE_AFTER commits, then it leaves mid-stream.
    a = psycopg.connect(dsn, autocommit=True)
    with a.cursor().copy("COPY (SUBSCRIBE TO per_page) TO STDOUT") as copy:
        rows = copy.rows()
        groups = len(view(writer))
        for _ in range(groups):
            seq, kind, page, n, total = text_row(next(rows))
            check(kind, "snapshot", "the stream starts with a snapshot")
            state[page] = (n, total)
            applied = seq
        check(applied, last_commit(writer), "the snapshot is at the latest sequence")
        for i, pages in enumerate(COMMITS[:LEAVE_AFTER], start=1):
            commit = insert(writer, i, pages)
            commits.append(commit)
            for _ in pages:
                seq, kind, page, n, total = text_row(next(rows))
                check((kind, seq), ("change", commit), f"commit {i} arrives as a change")
                state[page] = (n, total)
            seen.add(commit)
            applied = commit
        # A commit made while A is still connected but no longer reading.
        commits.append(insert(writer, LEAVE_AFTER + 1, COMMITS[LEAVE_AFTER]))
    # The client goes away in the middle of the stream.
    a.close()
    print("ok: the first subscriber left mid-stream")

    pages_of = {c: COMMITS[k] for k, c in enumerate(commits)}
    for i in range(LEAVE_AFTER + 2, len(COMMITS) - 2):
        commits.append(insert(writer, i, COMMITS[i - 1]))
        pages_of[commits[-1]] = COMMITS[i - 1]

    # Subscriber B resumes after the last sequence it applied, in csv; commits keep coming.
    b = psycopg.connect(dsn, autocommit=True)
    with b.cursor().copy(f"COPY (SUBSCRIBE TO per_page FROM {applied}) TO STDOUT (FORMAT csv)") as copy:
        for i in range(len(COMMITS) - 2, len(COMMITS) + 1):
            commits.append(insert(writer, i, COMMITS[i - 1]))
            pages_of[commits[-1]] = COMMITS[i - 1]
        pending = {s: len(pages_of[s]) for s in commits if s > applied}
        for data in copy:
            line = bytes(data).decode()
            [(seq, kind, page, n, total)] = list(csv.reader([line]))
            seq = int(seq)
            check(kind, "change", f"sequence {seq} resumes from the ring, without a snapshot")
            if seq <= applied and seq in seen:
                continue  # at-least-once: a repeat of what was applied is skipped
            state[page] = (int(n), float(total))
            pending[seq] -= 1
            if pending[seq] == 0:
                seen.add(seq)
                del pending[seq]
            if not pending:
                break
    b.close()

    check(sorted(seen), commits, "every commit was seen exactly once across the reconnect")
    check(state, view(writer), "the changes applied by group key equal SELECT * FROM per_page")

    # A cancel request ends the stream with 57014 and leaves the session usable.
    d = psycopg.connect(dsn, autocommit=True)
    try:
        with d.cursor().copy("COPY (SUBSCRIBE TO per_page) TO STDOUT") as copy:
            rows = copy.rows()
            next(rows)
            threading.Thread(target=lambda: (time.sleep(0.2), d.cancel())).start()
            for _ in rows:
                pass
        raise AssertionError("the stream ended without an error")
    except errors.QueryCanceled:
        print("ok: a cancel request ends the stream")
    check(d.execute("SELECT 1").fetchone()[0], 1, "the session is usable after the cancel")
    d.close()

    # Plain SUBSCRIBE answers with the same stream; a DROP ends it with 42P01.
    c = psycopg.connect(dsn, autocommit=True)
    try:
        with c.cursor().copy("SUBSCRIBE per_page") as copy:
            rows = copy.rows()
            for _ in range(len(state)):
                check(text_row(next(rows))[1], "snapshot", "SUBSCRIBE starts with a snapshot")
            writer.execute("DROP MATERIALIZED VIEW per_page")
            for row in rows:
                raise AssertionError(f"a row after the drop: {row}")
        raise AssertionError("the stream ended without an error")
    except errors.UndefinedTable as e:
        check("was dropped" in str(e), True, "dropping the view ends its subscription")
    c.close()
    print("PASS")


if __name__ == "__main__":
    main(sys.argv[1])
