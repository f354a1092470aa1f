#!/usr/bin/env bash
# Start the services the tests need, if they are not running: PostgreSQL on 127.0.0.1:5432, and a
# loopback HTCondor pool (installed on first use by scripts/engines/condor.sh, about a minute; its client
# environment is written to /var/cache/engines/htcondor/client.env, where the tests read it), and a
# loopback Slurm cluster with slurmdbd accounting and slurmrestd (scripts/engines/slurm.sh; installed on
# first use).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

log() { echo "[services] $*" >&2; }

ensure_postgres() {
  if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then return 0; fi
  if ! command -v pg_ctlcluster >/dev/null; then
    log "PostgreSQL is not installed: apt-get install postgresql (the tests need it on 127.0.0.1:5432)"
    return 1
  fi
  log "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n 1)" main start
  for _ in $(seq 1 60); do
    pg_isready -q -h 127.0.0.1 -p 5432 && return 0
    sleep 0.5
  done
  log "PostgreSQL did not come up on 127.0.0.1:5432"
  return 1
}

ensure_condor() {
  "$here/engines/condor.sh" up >/dev/null
}

ensure_slurm() {
  "$here/engines/slurm.sh" up
}

ensure_postgres
ensure_condor
ensure_slurm
