#!/usr/bin/env bash
# Install jobtower into .venv and serve the standalone site (SQLite in ./.jobtower) on 127.0.0.1:8000.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q -e '.[site]'
exec .venv/bin/jobtower serve "$@"
