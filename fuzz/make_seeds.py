#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into fuzz/corpus/<target>/ (checked in; run
again after changing an input layout). The layouts are those of fuzz/src/lib.rs and of each
target's doc comment; the stored formats those of docs/format.md."""

import json
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")

# Column type indexes of fuzz/src/lib.rs `column_type`.
BOOL, INT2, INT4, INT8, FLOAT4, FLOAT8, NUM12_3, NUM38, TEXT, BYTEA, DATE, TS, TSTZ = range(13)


def write(target, name, data):
    path = os.path.join(ROOT, target)
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, name), "wb") as f:
        f.write(data)


def schema(*columns):
    """Column count byte, then (type, nullable) per column: `(INT8, False)` is NOT NULL."""
    out = bytes([len(columns) - 1])
    for kind, nullable in columns:
        out += bytes([kind, 1 if nullable else 0])
    return out


# Chunk sizes: 0 = one message; others cycle.
ONE_MESSAGE = bytes([0, 0, 0, 0])
SMALL_MESSAGES = bytes([1, 3, 7, 2])


def copy_seeds():
    # Text: delimiter byte (0 = tab), NULL byte (0 = \N).
    text = bytes([0, 0])
    events = schema((INT8, False), (TEXT, True), (FLOAT8, True), (TS, True), (BOOL, True))
    write("copy_text", "events", events + text + SMALL_MESSAGES +
          b"1\tab\\tc\t1.5\t2026-01-01 00:00:00\tt\n"
          b"2\t\\N\t-0\t2026-01-02 12:34:56.789\tf\n"
          b"3\t\\x41\\102\tNaN\t2026-01-03T01:02:03\\.\t\\N\r\n\\.\nignored\n")
    write("copy_text", "numeric_date_bytea",
          schema((NUM12_3, True), (DATE, True), (BYTEA, True), (TSTZ, True)) + text + ONE_MESSAGE +
          b"12.345\t2026-03-01\t\\\\x00ff\t2026-01-01 00:00:00+02\n"
          b"-0.5\t1999-12-31\t\\\\000abc\t\\N\n")
    write("copy_text", "ints", schema((INT2, True), (INT4, True), (FLOAT4, True)) +
          bytes([2, 1]) + SMALL_MESSAGES + b"1|2|3.5\n-32768|2147483647|1e-3\nNULL|NULL|inf\n")

    # Csv: delimiter (0 = ','), NULL (0 = empty), header (1 = yes), quote (0 = "), escape
    # (0 = the quote).
    csv = bytes([0, 0, 1, 0, 0])
    write("copy_csv", "quoted", schema((INT8, False), (TEXT, True), (FLOAT8, True)) + csv +
          SMALL_MESSAGES + b'id,name,x\n1,"a,""b""\nc",1e3\n2,,NaN\n3,"",-0\n')
    write("copy_csv", "semicolon_backslash",
          schema((TEXT, True), (DATE, True), (NUM38, True)) + bytes([1, 1, 0, 0, 1]) +
          ONE_MESSAGE + b'"x\\"y";2026-01-01;123456789012345678901234567890\nNULL;NULL;NULL\n')
    write("copy_csv", "timestamps", schema((TS, False), (TSTZ, True), (BOOL, True)) + csv +
          SMALL_MESSAGES + b"ts,tz,b\n2026-01-01 00:00:00.5,2026-01-01 00:00:00Z,yes\n"
          b"1970-01-01,2026-06-01T12:00:00+05:30,0\r\n")

    # Binary: signature, flags, header extension, tuples, trailer.
    def stream(*tuples):
        out = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
        for fields in tuples:
            out += struct.pack(">h", len(fields))
            for field in fields:
                if field is None:
                    out += struct.pack(">i", -1)
                else:
                    out += struct.pack(">i", len(field)) + field
        return out + struct.pack(">h", -1)

    def numeric(weight, sign, dscale, *digits):
        return struct.pack(">hhhh", len(digits), weight, sign, dscale) + b"".join(
            struct.pack(">h", d) for d in digits)

    pg_epoch_us = 946_684_800_000_000
    write("copy_binary", "events",
          schema((INT8, False), (TEXT, True), (FLOAT8, True)) + SMALL_MESSAGES + stream(
              (struct.pack(">q", 1), b"a", struct.pack(">d", 1.5)),
              (struct.pack(">q", -2), None, None),
              (struct.pack(">q", 3), "naïve".encode(), struct.pack(">d", float("nan")))))
    write("copy_binary", "every_type",
          schema((BOOL, True), (INT2, True), (INT4, True), (FLOAT4, True), ) + ONE_MESSAGE +
          stream((b"\x01", struct.pack(">h", -7), struct.pack(">i", 1 << 30),
                  struct.pack(">f", 0.25)), (None, None, None, None)))
    write("copy_binary", "numeric_date_ts",
          schema((NUM12_3, True), (DATE, True), (TS, True), (BYTEA, True)) + SMALL_MESSAGES +
          stream((numeric(0, 0, 3, 1, 2500), struct.pack(">i", 9497),
                  struct.pack(">q", 1_767_225_600_000_000 - pg_epoch_us), b"\x00\xff"),
                 (numeric(1, 0x4000, 1, 4, 5000), struct.pack(">i", -1),
                  struct.pack(">q", 0), b"")))


def pg_seeds():
    def message(kind, body=b""):
        return kind + struct.pack(">i", len(body) + 4) + body

    def query(sql):
        return message(b"Q", sql.encode() + b"\0")

    startup = struct.pack(">i", 196_608) + b"user\0tally\0database\0tally\0\0"
    startup = struct.pack(">i", len(startup) + 4) + startup
    # First byte: 0 raw, 1 startup first, 2 startup first and Sync + Terminate last,
    # 3 SSLRequest and startup first.
    write("pg_session", "raw_startup_query", b"\0" + startup + query("SELECT 1") + message(b"X"))
    write("pg_session", "select", b"\1" + query("SELECT id, name, x, ts, ok FROM t WHERE id > 1; "
                                                 "SELECT * FROM v ORDER BY n"))
    write("pg_session", "ssl_then_query", b"\3" + query("SHOW server_version"))
    write("pg_session", "transaction", b"\1" + query(
        "BEGIN; INSERT INTO t VALUES (9, 'z', 0.5, NULL, true); SAVEPOINT s; "
        "ROLLBACK TO SAVEPOINT s; ROLLBACK"))
    copy_in = query("COPY t (id, name) FROM STDIN") + message(b"d", b"10\tten\n11\t\\N\n") + \
        message(b"d", b"12\ttw") + message(b"d", b"elve\n") + message(b"c")
    write("pg_session", "copy_in", b"\1" + copy_in + query("SELECT count(*) FROM t"))
    write("pg_session", "copy_in_csv_fail", b"\1" + query("COPY t FROM STDIN (FORMAT csv)") +
          message(b"d", b"1,a,") + message(b"f", b"client gave up\0"))
    write("pg_session", "copy_out", b"\1" + query("COPY (SELECT * FROM t) TO STDOUT (FORMAT binary)"))
    # Extended protocol: Parse, Bind (one text parameter), Describe, Execute; Sync is appended.
    parse = message(b"P", b"s1\0SELECT name FROM t WHERE id = $1\0" + struct.pack(">hi", 1, 20))
    bind = message(b"B", b"p1\0s1\0" + struct.pack(">hh", 1, 0) + struct.pack(">h", 1) +
                   struct.pack(">i", 1) + b"1" + struct.pack(">hh", 1, 0))
    describe = message(b"D", b"Pp1\0")
    execute = message(b"E", b"p1\0" + struct.pack(">i", 0))
    write("pg_session", "extended", b"\2" + parse + bind + describe + execute)
    # Deep statements: one within the limits, one past them (54001), then a query on.
    deep = "SELECT " + "(" * 300 + "1" + ")" * 300 + "; SELECT 1" + "+1" * 400
    too_deep = "SELECT 1" + "+1" * 5001
    write("pg_session", "deep", b"\1" + query(deep) + query(too_deep) + query("SELECT 1"))
    write("pg_session", "deep_extended", b"\2" + message(b"P", b"\0" + too_deep.encode() + b"\0\0\0") +
          message(b"S") + query("SELECT 2"))
    write("pg_session", "extended_unnamed_error", b"\2" + message(b"P", b"\0SELECT 1/0\0\0\0") +
          message(b"B", b"\0\0\0\0\0\0\0\0") + message(b"E", b"\0\0\0\0\0") + message(b"S") +
          query("SELECT 2"))


def sql_seeds():
    """Deep statements for sql_text (plain SQL text) and pg_session (as simple queries): each
    shape near its limit and past it (docs/sql.md, "Limits on statement depth")."""
    plus = lambda n: "SELECT x" + "+1" * (n - 1) + " FROM t"
    parens = lambda n: "SELECT " + "(" * n + "1" + ")" * n
    chain = lambda n, op: "SELECT count(*) FROM t WHERE " + op.join("x <> %d" % i for i in range(n))
    case = lambda n: "SELECT " + "CASE WHEN true THEN " * n + "1" + " END" * n
    scalar = lambda n: "SELECT " + "(SELECT " * n + "1" + ")" * n
    exists = lambda n: "SELECT 1 WHERE " + "EXISTS (SELECT 1 WHERE " * n + "true" + ")" * n
    derived = lambda n: "SELECT * FROM " + "(SELECT * FROM " * n + "t" + ") q" * n
    in_list = lambda n: "SELECT x IN (" + ", ".join(str(i) for i in range(n)) + ") FROM t"
    seeds = {
        "plus_300": plus(300), "plus_5001": plus(5001), "parens_200": parens(200),
        "parens_5001": parens(5001), "and_100": chain(100, " AND "), "or_100": chain(100, " OR "),
        "case_100": case(100), "scalar_12": scalar(12), "scalar_13": scalar(13),
        "exists_13": exists(13), "derived_50": derived(50), "in_list_2000": in_list(2000),
        "mixed": "SELECT CASE WHEN x BETWEEN 1 AND 2 AND NOT b THEN (SELECT abs(x)) ELSE "
                 "CAST(x AS BIGINT) END FROM (SELECT * FROM t) q WHERE s LIKE 'a%' OR x IN (1, 2)",
        "unbalanced": "SELECT ((( CASE WHEN ) END END ))) (SELECT",
    }
    for name, sql in seeds.items():
        write("sql_text", name, sql.encode())


def state_seeds():
    # views value: version 1, u16 LE count, then tag + payload per state.
    def value(*states):
        return bytes([1]) + struct.pack("<H", len(states)) + b"".join(states)

    count = lambda n: b"\x01" + struct.pack("<q", n)
    sum_int = lambda v: b"\x02" + (b"\x00" if v is None else b"\x01" + struct.pack("<q", v))
    sum_float = lambda v: b"\x03" + (b"\x00" if v is None else b"\x01" + struct.pack("<d", v))
    sum_dec = lambda v: b"\x04" + b"\x01" + (v % (1 << 128)).to_bytes(16, "little")
    min_bytes = lambda b: b"\x05\x01\x05" + struct.pack("<I", len(b)) + b
    max_int = lambda v: b"\x06\x01\x01" + struct.pack("<q", v)
    max_none = b"\x06\x00"
    avg = lambda s, c: b"\x07" + struct.pack("<dq", s, c)
    blob = lambda tag, b: bytes([tag]) + struct.pack("<I", len(b)) + b
    # DataSketches HLL in list mode: preamble (2 ints, version 1, family 7, lg_k 15, lg_arr 3,
    # compact flag, coupon count, mode LIST with target HLL4), then coupons (value << 26 | slot).
    coupons = [(3 << 26) | 12345, (1 << 26) | 7, (5 << 26) | 30000]
    hll = bytes([2, 1, 7, 15, 3, 8, len(coupons), 0]) + b"".join(
        struct.pack("<I", c) for c in coupons)
    hll_empty = bytes([2, 1, 7, 15, 3, 8 | 4, 0, 0])
    # Distinct sets: 2 = sorted values; 1 = roaring treemap (u64 bitmaps, u32 high key, then a
    # bitmap without run containers: cookie 12346, container count, descriptions, offsets,
    # array values).
    values = b"\x02" + struct.pack("<I", 2) + struct.pack("<I", 1) + b"a" + struct.pack("<I", 2) + b"bc"
    array = [1, 5, 9]
    bitmap = struct.pack("<II", 12346, 1) + struct.pack("<HH", 0, len(array) - 1) + \
        struct.pack("<I", 16) + b"".join(struct.pack("<H", v) for v in array)
    ints = b"\x01" + struct.pack("<Q", 1) + struct.pack("<I", 0) + bitmap
    first = value(count(3), sum_int(None), sum_float(1.5), sum_dec(-7), min_bytes(b"m"),
                  max_int(4), avg(3.0, 2))
    second = value(count(2), sum_int(5), sum_float(None), sum_dec(10), min_bytes(b"a"),
                   max_none, avg(1.0, 1))
    # First byte: where the two merged values are cut apart.
    write("view_state", "plain_pair", bytes([len(first)]) + first + second)
    sketches = value(blob(8, hll), blob(9, values), blob(9, ints), blob(8, hll_empty), blob(9, b"\0"))
    write("view_state", "sketches", bytes([len(sketches)]) + sketches + sketches)
    write("view_state", "truncated", b"\x05" + first[:9])


def part_seeds():
    # A delta part (format 2): version 1, group count n (u32 LE), then keys and states as two
    # binary columns (n + 1 offsets u32 LE, then the bytes), keys strictly ascending.
    def column(values):
        offsets, at = [], 0
        for v in [b""] + values:
            at += len(v)
            offsets.append(at)
        return b"".join(struct.pack("<I", o) for o in offsets) + b"".join(values)

    def part(groups):
        keys = [k for k, _ in groups]
        states = [v for _, v in groups]
        return b"\x01" + struct.pack("<I", len(groups)) + column(keys) + column(states)

    value = lambda *states: bytes([1]) + struct.pack("<H", len(states)) + b"".join(states)
    count = lambda n: b"\x01" + struct.pack("<q", n)
    avg = lambda s, c: b"\x07" + struct.pack("<dq", s, c)
    coupons = [(3 << 26) | 12345, (1 << 26) | 7]
    hll = bytes([2, 1, 7, 15, 3, 8, len(coupons), 0]) + b"".join(
        struct.pack("<I", c) for c in coupons)
    sketch = b"\x08" + struct.pack("<I", len(hll)) + hll
    text_key = lambda t: b"\x01" + t + b"\x00\x00"
    write("view_part", "two_groups", part([
        (text_key(b"/a"), value(count(2), avg(3.5, 2), sketch)),
        (text_key(b"/b"), value(count(1), avg(1.0, 1), sketch)),
    ]))
    write("view_part", "no_group_key", part([(b"", value(count(7)))]))
    write("view_part", "empty", part([]))


def key_seeds():
    def int_(v):
        return b"\x01" + ((v % (1 << 64)) ^ (1 << 63)).to_bytes(8, "big")

    def text(b):
        return b"\x01" + b.replace(b"\0", b"\0\xff") + b"\0\0"

    def float_(v):
        bits = struct.unpack(">Q", struct.pack(">d", v))[0]
        bits = bits ^ (1 << 63) if bits >> 63 == 0 else bits ^ ((1 << 64) - 1)
        return b"\x01" + bits.to_bytes(8, "big")

    def dec(v):
        return b"\x01" + ((v % (1 << 128)) ^ (1 << 127)).to_bytes(16, "big")

    # First byte: number of kinds; then kinds (0 int, 1 float, 2 decimal, 3 bool, 4 bytes).
    write("view_key", "int_text_null", bytes([3, 0, 4, 1]) + int_(-3) + text(b"x\0y") + b"\0")
    write("view_key", "two_texts", bytes([2, 4, 4]) + text(b"ab") + text(b"a\0"))
    write("view_key", "floats", bytes([2, 1, 1]) + float_(-0.5) + float_(2.0))
    write("view_key", "decimal_bool", bytes([3, 2, 2, 3]) + dec(-12345) + dec(7) + b"\x01\x01")


def catalog_seeds():
    table = {"v": 1, "id": 3, "name": "events", "columns": [
        {"name": "ts", "type": "timestamp", "nullable": False},
        {"name": "user_id", "type": "big_int", "nullable": True},
        {"name": "amount", "type": "numeric", "precision": 12, "scale": 2, "nullable": True},
        {"name": "page", "type": "text", "nullable": True}],
        "time_column": "ts", "bloom_filter_columns": ["user_id"]}
    segment = {"v": 1, "id": 17, "table_id": 3, "file_name": "00000017.parquet", "rows": 1000,
               "bytes": 65536, "time_range": [1767225600000000, 1767311999000000]}
    view = {"v": 1, "id": 4, "name": "per_page", "table_id": 3,
            "query": "SELECT page, count(*) AS n FROM events GROUP BY page",
            "status": "ready", "indexed": True}
    # First byte: 0 table, 1 segment, 2 view.
    write("catalog_json", "table", b"\0" + json.dumps(table).encode())
    write("catalog_json", "segment", b"\1" + json.dumps(segment).encode())
    write("catalog_json", "view", b"\2" + json.dumps(view).encode())


def tdigest(k=200, values=None, centroids=None):
    """A DataSketches t-digest of doubles: empty, one value, or (mean, weight) centroids."""
    head = lambda pre, flags: bytes([pre, 1, 20]) + struct.pack("<H", k) + bytes([flags, 0, 0])
    if values is not None:
        return head(1, 2) + struct.pack("<d", values)
    if not centroids:
        return head(1, 1)
    means = [m for m, _ in centroids]
    out = head(2, 0) + struct.pack("<II", len(centroids), 0) + struct.pack("<dd", min(means), max(means))
    return out + b"".join(struct.pack("<dQ", m, w) for m, w in centroids)


def quantile_seeds():
    many = tdigest(centroids=[(1.0, 1), (2.5, 3), (40.0, 2), (900.0, 1)])
    one = tdigest(values=7.5)
    empty = tdigest()
    # First byte: where the two sketches are cut apart.
    write("quantile_sketch", "many_one", bytes([len(many)]) + many + one)
    write("quantile_sketch", "empty_many", bytes([len(empty)]) + empty + many)
    write("quantile_sketch", "small_k", bytes([0]) + tdigest(k=10, centroids=[(0.0, 5), (1.0, 5)]))
    # View state tag 10 holds the same bytes.
    blob = lambda tag, data: bytes([tag]) + struct.pack("<I", len(data)) + data
    state = b"\x01" + struct.pack("<H", 3) + blob(10, many) + blob(10, empty) + blob(10, one)
    write("view_state", "quantiles", bytes([len(state)]) + state + state)
def sketch_seeds():
    """topk_state and theta_state: a cut byte, then two sketch images (docs/format.md, tags 11
    and 12: DataSketches' frequent strings and compact theta layouts)."""

    def frequent(items, offset=0):
        if not items:
            return bytes([1, 1, 10, 10, 3, 5, 0, 0])
        items = sorted(items.items())
        out = bytes([4, 1, 10, 10, 3, 0, 0, 0]) + struct.pack("<II", len(items), 0)
        out += struct.pack("<QQ", sum(c for _, c in items) + offset, offset)
        out += b"".join(struct.pack("<Q", c) for _, c in items)
        out += b"".join(struct.pack("<I", len(v)) + v.encode() for v, _ in items)
        return out

    def theta(hashes, theta=None):
        # Seed hash of DataSketches' default seed 9001: 0x93cc.
        flags = 0x1A  # read-only, compact, ordered
        if not hashes and theta is None:
            return bytes([1, 3, 3, 0, 0, flags | 4]) + struct.pack("<H", 0x93CC)
        hashes = sorted(hashes)
        if theta is None:
            out = bytes([2, 3, 3, 0, 0, flags]) + struct.pack("<HII", 0x93CC, len(hashes), 0)
        else:
            out = bytes([3, 3, 3, 0, 0, flags]) + struct.pack("<HII", 0x93CC, len(hashes), 0)
            out += struct.pack("<Q", theta)
        return out + b"".join(struct.pack("<Q", h) for h in hashes)

    def pair(a, b):
        return bytes([len(a)]) + a + b

    pages = frequent({"/home": 5, "/docs": 3, "/blog": 1})
    write("topk_state", "two", pair(pages, frequent({"/home": 2, "/about": 7})))
    write("topk_state", "empty", pair(frequent({}), pages))
    write("topk_state", "offset", pair(frequent({"a": 9, "b": 4}, offset=2), pages))
    small = theta([1 << 40, 1 << 50, 1 << 60, 3 << 60])
    write("theta_state", "two", pair(small, theta([1 << 50, 5 << 59, 7])))
    write("theta_state", "empty", pair(theta([]), small))
    write("theta_state", "estimating", pair(theta([1 << 40, 1 << 55], theta=1 << 58), small))


if __name__ == "__main__":
    copy_seeds()
    pg_seeds()
    sql_seeds()
    state_seeds()
    part_seeds()
    key_seeds()
    catalog_seeds()
    quantile_seeds()
    sketch_seeds()
