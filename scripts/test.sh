#!/usr/bin/env bash
# Install jobtower with its test tools into .venv, run the static checks (ruff, mypy), start the services,
# build the docs (warnings are errors) and run the whole test suite on SQLite and then on PostgreSQL.
# Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q -e '.[test]'

echo "== ruff"
.venv/bin/python -m ruff check .

echo "== mypy"
.venv/bin/python -m mypy

scripts/services.sh
scripts/browser.sh

echo "== docs"
.venv/bin/python -m sphinx -W --keep-going -q -b html docs docs/_build/html

echo "== tests on SQLite"
env -u JOBTOWER_DATABASE_URL .venv/bin/python -m pytest "$@"

echo "== tests on PostgreSQL"
JOBTOWER_DATABASE_URL=${JOBTOWER_TEST_POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/jobtower} \
  .venv/bin/python -m pytest "$@"
