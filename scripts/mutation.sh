#!/usr/bin/env bash
# Mutation testing (slow, not in CI): plant small bugs in the modules that decide what is refused and check
# that a fast test fails for each. Runs mutmut 2 (pip install -e '.[mutation]') on a scratch copy of the
# working tree, so the sources here are never touched, on SQLite with only the tests that judge each file
# (scripts/mutmut_config.py). Prints the score and the surviving mutants; docs/contributing.rst lists the
# survivors known to be equivalent.
#
#   scripts/mutation.sh            statuses.py, web/permissions.py and the Jobs Table's row rendering
#   scripts/mutation.sh all        the same plus manager.py (hours on a small machine)
#   scripts/mutation.sh FILE...    the named files (paths such as src/jobtower/statuses.py)
#   scripts/mutation.sh --driver FILE [FIRST-LAST | after:FUNCTION] [ARGS...]
#                                  the cache-free driver (scripts/mutate_driver.py) on FILE's lines
#                                  FIRST-LAST (or those after a function), only the tests that run each
#                                  mutated line; ARGS go to
#                                  the driver (--only DIR/mutants.json re-runs a run's survivors)
#   PYTHON=/path/to/venv/bin/python scripts/mutation.sh   another interpreter than .venv/bin/python
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-$ROOT/.venv/bin/python}
[ -x "$PY" ] || PY=$(command -v python3)
"$PY" -c "import mutmut" 2>/dev/null || { echo "mutmut is missing: run  $PY -m pip install -e '.[mutation]'" >&2; exit 2; }

if [ "${1:-}" = --driver ]; then
  shift
  [ $# -gt 0 ] || { echo "usage: scripts/mutation.sh --driver FILE [FIRST-LAST | after:FUNCTION] [--only DIR/mutants.json]" >&2; exit 2; }
  file=$1; shift
  lines=()
  if [ $# -gt 0 ] && [[ $1 =~ ^([0-9]+-[0-9]+|after:[A-Za-z_][A-Za-z0-9_]*)$ ]]; then lines=(--lines "$1"); shift; fi
  exec "$PY" scripts/mutate_driver.py "$file" "${lines[@]}" "$@"
fi

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
for f in "${FILES[@]}"; do
  name=$(basename "$f" .py)
  echo "== mutating $f"
  # one cache per file: mutmut 2 loses track of lines when one cache holds several files' runs
  rm -f .mutmut-cache
  "$PY" -m mutmut run --paths-to-mutate "$f" --tests-dir tests \
    --runner "python -m pytest -x -q -p no:cacheprovider tests/test_statuses.py" --no-progress  || true
  "$PY" -m mutmut results > "results-$name.txt" 2>&1 || true
  cp .mutmut-cache "mutmut-cache-$name"
  "$PY" - "$f" <<'PYEOF'
import sqlite3, sys
counts = dict(sqlite3.connect(".mutmut-cache").execute("select status, count(*) from mutant group by status"))
killed = counts.get("ok_killed", 0) + counts.get("ok_suspicious", 0)
tried = killed + counts.get("bad_survived", 0) + counts.get("bad_timeout", 0)
score = f"{100 * killed / tried:.0f}%" if tried else "n/a"
print(f"-- {sys.argv[1]}: score {score} ({killed} killed of {tried} tried); {counts}")
PYEOF
  cat "results-$name.txt"
done
echo "== scratch copy kept in $WORK: results-*.txt; to see a mutant: cd $WORK && cp mutmut-cache-NAME .mutmut-cache && mutmut show ID"
# mutmut exits non-zero when mutants survive; that is the report, not a failure of this script
exit 0
