#!/usr/bin/env bash
# Install jobtower with its test tools into .venv, run the static checks (ruff, mypy), start the services,
# build the docs (warnings are errors) and run the whole test suite on SQLite and then on PostgreSQL;
# then a second tier: the fast suite (no HTCondor, no browser) on Django 6 under Python 3.12, on SQLite.
# Exits non-zero on any failure. JOBTOWER_SKIP_DJANGO6=1 leaves the second tier out (a laptop without 3.12).
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

echo "== tests on SQLite (the PostgreSQL-only ones run in the next tier)"
env -u JOBTOWER_DATABASE_URL .venv/bin/python -m pytest -m "not postgres" "$@"

echo "== tests on PostgreSQL"
JOBTOWER_DATABASE_URL=${JOBTOWER_TEST_POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/jobtower} \
  .venv/bin/python -m pytest "$@"

echo "== fast tests on Django 6 (Python 3.12, SQLite)"
if [ "${JOBTOWER_SKIP_DJANGO6:-}" = 1 ]; then
  echo "skipped: JOBTOWER_SKIP_DJANGO6=1"
  exit 0
fi
# Django 6 needs Python 3.12+: pyenv's on these machines, else python3.12 on PATH, else $PYTHON312.
PYTHON312=${PYTHON312:-$(command -v /root/.pyenv/versions/3.12.1/bin/python || command -v python3.12 || true)}
if [ -z "$PYTHON312" ]; then
  echo "no Python 3.12 for the Django 6 tier: set PYTHON312=/path/to/python3.12 (or JOBTOWER_SKIP_DJANGO6=1)" >&2
  exit 1
fi
[ -x .venv-django6/bin/python ] || "$PYTHON312" -m venv .venv-django6
.venv-django6/bin/python -m pip install -q -e '.[test]' 'Django>=6,<7'
.venv-django6/bin/python -c 'import django, sys; assert django.VERSION[0] == 6, django.get_version()'
env -u JOBTOWER_DATABASE_URL .venv-django6/bin/python -m pytest -m "not condor and not browser and not postgres" "$@"
