#!/usr/bin/env bash
# Mutation testing (slow, not in CI): plant small bugs in the modules that decide what is refused and check
# that a fast test fails for each. Runs mutmut 2 (pip install -e '.[mutation]') on a scratch copy of the
# working tree, so the sources here are never touched, on SQLite with only the tests that judge each file
# (scripts/mutmut_config.py). Prints the score and the surviving mutants; docs/contributing.rst lists the
# survivors known to be equivalent.
#
#   scripts/mutation.sh            statuses.py, web/permissions.py and the Jobs Table's row rendering
#   scripts/mutation.sh all        the same plus manager.py (hours on a small machine)
#   scripts/mutation.sh FILE...    the named files under src/jobtower/
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-$ROOT/.venv/bin/python}
[ -x "$PY" ] || PY=$(command -v python3)
"$PY" -c "import mutmut" 2>/dev/null || { echo "mutmut is missing: run  $PY -m pip install -e '.[mutation]'" >&2; exit 2; }

FILES=(src/jobtower/statuses.py src/jobtower/web/permissions.py src/jobtower/gizmos.py)
if [ "${1:-}" = all ]; then FILES+=(src/jobtower/manager.py); shift; fi
[ $# -gt 0 ] && FILES=("$@")

WORK=${MUTATION_WORKDIR:-$(mktemp -d /tmp/jobtower-mutation.XXXXXX)}
echo "== scratch copy in $WORK"
mkdir -p "$WORK"
tar -C "$ROOT" --exclude=.git --exclude=.venv --exclude=docs/_build --exclude=.jobtower --exclude='__pycache__' \
  --exclude=.mutmut-cache -cf - . | tar -C "$WORK" -xf -
cd "$WORK"
export PYTHONPATH="$WORK/src:$WORK/scripts:$WORK" JOBTOWER_DATABASE_URL=
PATH="$(dirname "$PY"):$PATH"
status=0
for f in "${FILES[@]}"; do
  echo "== mutating $f"
  "$PY" -m mutmut run --paths-to-mutate "$f" --tests-dir tests \
    --runner "python -m pytest -x -q -p no:cacheprovider tests/test_statuses.py" --no-progress || status=$?
done
echo "== results"
"$PY" -m mutmut results || true
echo "== scratch copy kept in $WORK (mutmut show ID there shows a mutant)"
# mutmut exits non-zero when mutants survive; that is the report, not a failure of this script
exit 0
