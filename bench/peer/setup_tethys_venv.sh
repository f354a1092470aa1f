#!/usr/bin/env bash
# Create (once) a virtualenv holding Tethys Platform 4.6.1, the peer the benchmarks compare against.
# Usage: bench/peer/setup_tethys_venv.sh        -> prints the venv's python on the last line of stdout
# Env:   JOBTOWER_TETHYS_VENV  venv directory (default: bench/.venvs/tethys)
#        PYTHON                interpreter used to create the venv (default: python3)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
venv=${JOBTOWER_TETHYS_VENV:-$here/../.venvs/tethys}
python=${PYTHON:-python3}
pins=("tethys-platform==4.6.1" "condorpy==0.7.0" "psycopg[binary]")

log() { echo "[setup_tethys_venv] $*" >&2; }
# pip warns once per package about configured local index folders that do not exist: drop that noise
pip_install() { "$venv/bin/python" -m pip install -q "$@" 2>&1 | { grep -v 'is ignored: it is neither' || true; } >&2; }

if [ ! -x "$venv/bin/python" ]; then
  log "creating virtualenv $venv"
  mkdir -p "$(dirname "$venv")"
  "$python" -m venv "$venv"
fi
venv=$(cd "$venv" && pwd)

# Install only when something is missing or at another version (keeps repeated runs fast and offline-safe).
if "$venv/bin/python" - <<'PY' 2>/dev/null; then
import importlib.metadata as m
ok = (m.version("tethys-platform") == "4.6.1" and m.version("condorpy") == "0.7.0"
      and m.version("psycopg") and m.version("psycopg-binary"))
raise SystemExit(0 if ok else 1)
PY
  log "tethys-platform 4.6.1 already installed in $venv"
else
  log "installing ${pins[*]} into $venv"
  pip_install "${pins[@]}"
fi

echo "$venv/bin/python"
