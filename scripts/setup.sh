#!/usr/bin/env bash
# Installs what building and testing Tally needs on Debian, and nothing that is already there.
# Idempotent: safe to run before every build.
set -euo pipefail

need=()
command -v clang >/dev/null 2>&1 || need+=(clang)
dpkg -s libclang-dev >/dev/null 2>&1 || need+=(libclang-dev)
command -v make >/dev/null 2>&1 || need+=(make)
command -v g++ >/dev/null 2>&1 || need+=(g++)
# psql: the end-to-end tests of the Postgres wire server drive it.
command -v psql >/dev/null 2>&1 || need+=(postgresql-client)
# Python 3 with venv support: the psycopg end-to-end test runs in a virtualenv (below).
command -v python3 >/dev/null 2>&1 || need+=(python3)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need+=(python3-venv)
# A JRE (its modules include the compiler that source-file mode needs) and pgjdbc: the JDBC
# end-to-end test runs tests/java/JdbcSession.java with them (tests/e2e/pg_jdbc.rs).
command -v java >/dev/null 2>&1 || need+=(default-jre-headless)
[ -f /usr/share/java/postgresql.jar ] || need+=(libpostgresql-jdbc-java)

if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}" >&2
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

# psycopg 3 for tests/python/: in a virtualenv, since Debian's pip refuses system installs.
# The e2e test looks for this python (or $TALLY_PYTHON).
venv="$HOME/.cache/tally-venv"
if ! "$venv/bin/python" -c 'import psycopg' >/dev/null 2>&1; then
  echo "setup: installing psycopg into $venv" >&2
  python3 -m venv --clear "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "psycopg[binary]>=3.1"
fi
# The other clients of tests/python/ (tests/e2e/pg_clients.rs): psycopg2, asyncpg, SQLAlchemy 2
# and pandas, each installed only when its import fails.
py_need=()
"$venv/bin/python" -c 'import psycopg2' >/dev/null 2>&1 || py_need+=(psycopg2-binary)
"$venv/bin/python" -c 'import asyncpg' >/dev/null 2>&1 || py_need+=(asyncpg)
"$venv/bin/python" -c 'import sqlalchemy, sys; sys.exit(int(sqlalchemy.__version__.split(".")[0]) < 2)' \
  >/dev/null 2>&1 || py_need+=("SQLAlchemy>=2")
"$venv/bin/python" -c 'import pandas' >/dev/null 2>&1 || py_need+=(pandas)
# tpchgen-cli generates the TPC-H data set of tests/e2e/tpch.rs.
"$venv/bin/tpchgen-cli" --version >/dev/null 2>&1 || py_need+=(tpchgen-cli)
# Apache DataSketches reads the sketches of views in tests/python/datasketches_interop.py.
"$venv/bin/python" -c 'import datasketches' >/dev/null 2>&1 || py_need+=(datasketches)
if [ ${#py_need[@]} -gt 0 ]; then
  echo "setup: installing ${py_need[*]} into $venv" >&2
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "${py_need[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install the Rust toolchain (rustup) first" >&2
  exit 1
fi
