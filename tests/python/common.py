"""What the client scripts of tests/python/ share: the checks, and the table they exercise.

Each script imports this module from its own directory (Python puts a script's directory first
on sys.path), so the scripts still run alone: `python3 tests/python/<script>.py DSN`.
"""

from datetime import timezone

UTC = timezone.utc
KINDS = ["alpha", "beta", "gamma"]

# A column of every type Tally has, in a fixed order; row generators and expected values of the
# scripts follow it.
COLUMNS = ["id", "kind", "value", "ratio", "small", "medium", "label", "day", "at", "at_tz",
           "payload", "ok", "amount"]
COLUMN_TYPES = ["BIGINT NOT NULL", "TEXT", "DOUBLE PRECISION", "REAL", "SMALLINT", "INTEGER",
                "TEXT", "DATE", "TIMESTAMP", "TIMESTAMPTZ", "BYTEA", "BOOLEAN", "NUMERIC(12, 3)"]


def readings_ddl(table):
    """CREATE TABLE for a table of COLUMNS."""
    columns = ",\n    ".join(f"{c} {t}" for c, t in zip(COLUMNS, COLUMN_TYPES))
    return f"CREATE TABLE {table} (\n    {columns}\n)"


def check(actual, expected, what):
    """Raises with both values (and the first difference of two lists) when they differ;
    prints the check otherwise."""
    if actual != expected:
        detail = ""
        if isinstance(actual, list) and isinstance(expected, list):
            detail = f" ({len(actual)} items, expected {len(expected)})"
            for i, (a, e) in enumerate(zip(actual, expected)):
                if a != e:
                    detail += f"; item {i}: expected {e!r}, got {a!r}"
                    break
        raise AssertionError(
            f"{what}{detail}: expected {short(expected)}, got {short(actual)}")
    print(f"ok: {what}")


def short(value, limit=1000):
    """repr(value), cut to `limit` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"
