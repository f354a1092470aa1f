#!/usr/bin/env bash
# A one-node loopback Slurm cluster for the tests and benchmarks (Debian 12, as root).
#
#   scripts/engines/slurm.sh [up]     install once (munge, slurm-wlm, slurmdbd, slurmrestd from Debian, about
#                                     70 s), then start munged, slurmdbd, slurmctld, slurmd and slurmrestd
#   scripts/engines/slurm.sh down     stop the daemons this script starts (never MariaDB)
#   scripts/engines/slurm.sh status   say whether the cluster answers, and slurmrestd (when `up` set it up: its
#                                     facts file exists) is running and answers an authenticated ping at the
#                                     URL of its facts (exit 1 when either does not)
#   scripts/engines/slurm.sh token [USER [SECONDS]]
#                                     print a JWT for slurmrestd (scontrol token; default: this user, 1 h)
#
# The controller and the node are this host, on 127.0.0.1. Accounting goes through slurmdbd to the
# machine's MariaDB (127.0.0.1:3306, reached as root with an empty password unless MYSQL_ROOT_ARGS says
# otherwise), so `sacct` reports jobs that left the queue. The node declares more CPUs than the host has
# (config_overrides) and DefMemPerCPU is small, so several small test jobs run at once instead of one
# job taking the whole node. Everything is idempotent: a running daemon is left alone, and the
# configuration files are rewritten only when their content changes (a changed slurm.conf is applied
# with `scontrol reconfigure`; a changed authentication setting restarts the daemon it concerns).
#
# slurmrestd, Slurm's REST API (Debian: slurmrestd, and slurm-wlm-jwt-plugin for auth/jwt), listens on
# 127.0.0.1:$SLURMRESTD_PORT (6820) with JWT authentication: slurmctld and slurmdbd accept JWTs signed
# with the HS256 key $JWT_KEY (made once, mode 0600, owned by slurm), `scontrol token` issues them, and
# slurmrestd runs as the unprivileged user `slurmrestd` (it refuses root and SlurmUser). The facts the
# tests read (SLURMRESTD_URL, and SLURMRESTD_API: the OpenAPI plugin version it serves) are written to
# $ENGINES_DIR/slurm/slurmrestd.env as KEY=VALUE lines.
set -euo pipefail

CLUSTER=${SLURM_CLUSTER_NAME:-jobtower}
NODE_CPUS=${SLURM_NODE_CPUS:-16}
NODE_MEMORY_MB=${SLURM_NODE_MEMORY_MB:-8192}
DEF_MEM_PER_CPU_MB=${SLURM_DEF_MEM_PER_CPU_MB:-64}
DBD_PASSWORD=${SLURM_DBD_PASSWORD:-jobtower-slurmdbd}
MYSQL_ROOT_ARGS=${MYSQL_ROOT_ARGS:--h 127.0.0.1 -P 3306 -u root}
SLURMRESTD_PORT=${SLURMRESTD_PORT:-6820}
# The OpenAPI plugins slurmrestd loads: Slurm 22.05 offers v0.0.36 to v0.0.38 (and dbv0.0.36 to dbv0.0.38).
SLURMRESTD_API=${SLURMRESTD_API:-v0.0.38}
JWT_KEY=/var/spool/slurmctld/jwt_hs256.key
ENGINES_DIR=${ENGINES_DIR:-/var/cache/engines}
FACTS=$ENGINES_DIR/slurm/slurmrestd.env
export DEBIAN_FRONTEND=noninteractive

log() { echo "[slurm $(date +%T)] $*" >&2; }
die() { log "$*"; exit 1; }
# a live process named in a pid file (a zombie nobody reaped does not count)
alive() {
  [ -s "$1" ] || return 1
  local state
  state=$(awk '{print $3}' "/proc/$(cat "$1")/stat" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}
wait_for() { # wait_for SECONDS CMD...
  local end=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $end ] || return 1
    sleep 0.25
  done
}
apt_install() { # install only the packages that are missing
  local p missing=()
  for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "apt-get install ${missing[*]}"
  apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null
  apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}" >/dev/null
}
# write_if_changed FILE MODE OWNER: stdin becomes FILE only when it differs; return 0 when it changed
write_if_changed() {
  local file=$1 mode=$2 owner=$3 tmp
  tmp=$(mktemp "$file.XXXXXX")
  cat > "$tmp"
  if [ -f "$file" ] && cmp -s "$tmp" "$file"; then rm -f "$tmp"; return 1; fi
  chmod "$mode" "$tmp"; chown "$owner" "$tmp"; mv "$tmp" "$file"
  return 0
}

start_munge() {
  mkdir -p /run/munge && chown munge:munge /run/munge
  [ -s /etc/munge/munge.key ] || die "/etc/munge/munge.key is missing: reinstall munge (apt-get install --reinstall munge)"
  alive /run/munge/munged.pid || runuser -u munge -- /usr/sbin/munged
  wait_for 10 munge -n || die "munged does not answer (see /var/log/munge/munged.log)"
}

start_slurmdbd() {
  # shellcheck disable=SC2086
  if ! mysqladmin $MYSQL_ROOT_ARGS ping >/dev/null 2>&1; then
    # no database server answers: this machine's own MariaDB, installed on first use
    apt_install mariadb-server
    [ -S /run/mysqld/mysqld.sock ] || /etc/init.d/mariadb start >/dev/null
  fi
  # The database user slurmdbd connects as, from 127.0.0.1 and from localhost (skip-name-resolve).
  # shellcheck disable=SC2086
  mysql $MYSQL_ROOT_ARGS -e "
    CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DBD_PASSWORD';
    CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DBD_PASSWORD';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';" \
    || die "cannot reach MariaDB as root with: mysql $MYSQL_ROOT_ARGS (start it, or set MYSQL_ROOT_ARGS)"
  local changed=0
  write_if_changed /etc/slurm/slurmdbd.conf 600 slurm:slurm <<EOF && changed=1
# written by jobtower's scripts/engines/slurm.sh
AuthType=auth/munge
AuthAltTypes=auth/jwt
AuthAltParameters=jwt_key=$JWT_KEY
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=slurm
PidFile=/run/slurmdbd.pid
LogFile=/var/log/slurm/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=3306
StorageUser=slurm
StoragePass=$DBD_PASSWORD
StorageLoc=slurm_acct_db
EOF
  if [ $changed = 1 ] && alive /run/slurmdbd.pid; then
    log "slurmdbd.conf changed: restarting slurmdbd"; stop_pid /run/slurmdbd.pid
  fi
  alive /run/slurmdbd.pid || /usr/sbin/slurmdbd
  wait_for 60 sacctmgr -n list cluster || die "slurmdbd does not answer (see /var/log/slurm/slurmdbd.log)"
}

write_slurm_conf() { # return 0 when slurm.conf changed
  local host; host=$(hostname -s)
  write_if_changed /etc/slurm/slurm.conf 644 root:root <<EOF
# written by jobtower's scripts/engines/slurm.sh: one node, this host, on loopback
ClusterName=$CLUSTER
SlurmctldHost=$host(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
AuthAltTypes=auth/jwt
AuthAltParameters=jwt_key=$JWT_KEY
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmdSpoolDir=/var/spool/slurmd
StateSaveLocation=/var/spool/slurmctld
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
# tests want seconds: schedule every second, kill 2 s after SIGTERM, keep ended jobs 5 min in squeue
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
KillWait=2
MinJobAge=300
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$DEF_MEM_PER_CPU_MB
# the node may declare more CPUs and memory than the host has: small test jobs run side by side
SlurmdParameters=config_overrides
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
NodeName=$host NodeAddr=127.0.0.1 CPUs=$NODE_CPUS RealMemory=$NODE_MEMORY_MB State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

ready() { sinfo -h -o '%T' 2>/dev/null | grep -Eqx 'idle|mixed|allocated'; }

# stop_pid PIDFILE: TERM the process, KILL it after 20 s
stop_pid() {
  alive "$1" || return 0
  local pid; pid=$(cat "$1")
  kill -TERM "$pid"
  for _ in $(seq 1 80); do alive "$1" || break; sleep 0.25; done
  if alive "$1"; then kill -KILL "$pid"; fi
  log "stopped $(basename "$1" .pid) ($pid)"
}

make_jwt_key() { # the HS256 key slurmctld and slurmdbd check JWTs with: made once, 0600, owned by slurm
  if [ ! -s "$JWT_KEY" ]; then
    log "making the JWT key $JWT_KEY"
    (umask 077; dd if=/dev/urandom bs=32 count=1 2>/dev/null > "$JWT_KEY")
  fi
  chown slurm:slurm "$JWT_KEY"; chmod 600 "$JWT_KEY"
}

# rest_answers URL: slurmrestd at URL answers an authenticated ping (a JWT of this user from `token`; the
# ping goes on to slurmctld, so a slurmrestd that lost its controller or its JWT key does not answer)
rest_answers() {
  local jwt; jwt=$(token "$(id -un)" 60 2>/dev/null) || return 1
  [ -n "$jwt" ] || return 1
  python3 - "$1" "$SLURMRESTD_API" "$(id -un)" "$jwt" <<'PY'
import json, sys, urllib.request
url, api, user, token = sys.argv[1:]
request = urllib.request.Request(f"{url.rstrip('/')}/slurm/{api}/ping",
                                 headers={"X-SLURM-USER-NAME": user, "X-SLURM-USER-TOKEN": token})
with urllib.request.urlopen(request, timeout=5) as reply:
    sys.exit(1 if json.load(reply).get("errors") else 0)
PY
}

start_slurmrestd() {
  id slurmrestd >/dev/null 2>&1 \
    || useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin slurmrestd
  if ! alive /run/slurmrestd.pid; then
    # the plugins this slurmrestd has: `slurmrestd -s list` (OpenAPI) and `-a list` (authentication);
    # slurmrestd refuses to run as root, even to list them
    local plugins; plugins=$(runuser -u slurmrestd -- slurmrestd -s list 2>&1 || true)
    grep -qw "openapi/$SLURMRESTD_API" <<<"$plugins" \
      || die "slurmrestd offers no openapi/$SLURMRESTD_API plugin; slurmrestd -s list says: $(tr '\n' ' ' <<<"$plugins")"
    touch /var/log/slurm/slurmrestd.log
    # From /: slurmrestd keeps the folder it starts in as its working folder, and once that folder is
    # deleted (a test's temporary one, a CI checkout) every submit fails with "getcwd failed".
    cd /
    # SLURM_JWT=daemon: slurmrestd passes each request's JWT on to slurmctld and slurmdbd (no munge)
    SLURM_JWT=daemon setsid /usr/sbin/slurmrestd -u slurmrestd -g slurmrestd -a rest_auth/jwt \
      -s "openapi/$SLURMRESTD_API,openapi/db$SLURMRESTD_API" "127.0.0.1:$SLURMRESTD_PORT" \
      >>/var/log/slurm/slurmrestd.log 2>&1 </dev/null &
    echo $! > /run/slurmrestd.pid
  fi
  if ! wait_for 30 rest_answers "http://127.0.0.1:$SLURMRESTD_PORT"; then
    tail -20 /var/log/slurm/slurmrestd.log >&2 || true
    die "slurmrestd does not answer on 127.0.0.1:$SLURMRESTD_PORT (see /var/log/slurm/slurmrestd.log)"
  fi
  mkdir -p "$(dirname "$FACTS")"
  write_if_changed "$FACTS" 644 root:root <<EOF || true
SLURMRESTD_URL=http://127.0.0.1:$SLURMRESTD_PORT
SLURMRESTD_API=$SLURMRESTD_API
EOF
}

up() {
  [ "$(id -u)" = 0 ] || { ready && return 0; die "the Slurm cluster is not running and only root can start it: run $0 up as root"; }
  local started=$SECONDS
  apt_install munge slurm-wlm slurmdbd slurmrestd slurm-wlm-jwt-plugin mariadb-client
  mkdir -p /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
  chown slurm:slurm /var/spool/slurmctld /var/log/slurm
  make_jwt_key
  start_munge
  local changed=0
  write_slurm_conf && changed=1  # first: sacctmgr reads it to find slurmdbd
  start_slurmdbd
  if alive /run/slurmctld.pid; then
    if [ $changed = 1 ]; then log "slurm.conf changed: scontrol reconfigure"; scontrol reconfigure; fi
    # authentication plugins load when slurmctld starts: a slurmctld started before slurm.conf said
    # AuthAltTypes=auth/jwt issues no tokens until it restarts
    if ! scontrol token username=root lifespan=10 >/dev/null 2>&1; then
      log "slurmctld issues no JWTs: restarting it"; stop_pid /run/slurmctld.pid
    fi
  fi
  alive /run/slurmctld.pid || /usr/sbin/slurmctld
  alive /run/slurmd.pid || /usr/sbin/slurmd
  if ! wait_for 60 ready; then
    tail -20 /var/log/slurm/slurmctld.log >&2 || true
    die "the Slurm node did not become idle within 60 s (see /var/log/slurm/slurmd.log and slurmctld.log)"
  fi
  # a node drained by an earlier failure comes back
  scontrol update nodename="$(hostname -s)" state=resume >/dev/null 2>&1 || true
  start_slurmrestd
  log "Slurm $(sinfo -V | awk '{print $2}') cluster $CLUSTER up on 127.0.0.1, slurmrestd on" \
      "127.0.0.1:$SLURMRESTD_PORT ($((SECONDS - started)) s)"
}

down() {
  local p
  for p in /run/slurmrestd.pid /run/slurmd.pid /run/slurmctld.pid /run/slurmdbd.pid /run/munge/munged.pid; do
    stop_pid "$p"
  done
}

token() { # token [USER [SECONDS]]: print a JWT for slurmrestd
  local user=${1:-$(id -un)} lifespan=${2:-3600}
  scontrol token username="$user" lifespan="$lifespan" | sed -n 's/^SLURM_JWT=//p'
}

status() { # the controller answers; slurmrestd too when `up` set it up (its facts exist): exit 1 if not
  if ! ready; then echo "Slurm cluster $CLUSTER does not answer (sinfo): run $0 up as root" >&2; return 1; fi
  echo "Slurm cluster $CLUSTER answers"
  if [ ! -f "$FACTS" ]; then
    echo "slurmrestd: not set up here (no $FACTS; $0 up starts it)"
    return 0
  fi
  local url api pid
  url=$(sed -n 's/^SLURMRESTD_URL=//p' "$FACTS")
  api=$(sed -n 's/^SLURMRESTD_API=//p' "$FACTS")
  [ -n "$url" ] || { echo "slurmrestd: $FACTS names no SLURMRESTD_URL: run $0 up as root" >&2; return 1; }
  SLURMRESTD_API=${api:-$SLURMRESTD_API}
  # alive, and slurmrestd itself: a pid file left by a slurmrestd that died may name another process now
  if ! alive /run/slurmrestd.pid || [ "$(cat "/proc/$(cat /run/slurmrestd.pid)/comm" 2>/dev/null)" != slurmrestd ]; then
    echo "slurmrestd is not running (expected: $FACTS names $url; /run/slurmrestd.pid names no live" \
         "slurmrestd): run $0 up as root" >&2
    return 1
  fi
  pid=$(cat /run/slurmrestd.pid)
  if ! rest_answers "$url" >/dev/null 2>&1; then
    echo "slurmrestd (pid $pid) runs but does not answer an authenticated ping at $url/slurm/$SLURMRESTD_API/ping" \
         "(see /var/log/slurm/slurmrestd.log): stop it (kill $pid), then $0 up as root starts it again" >&2
    return 1
  fi
  echo "slurmrestd answers at $url (pid $pid, openapi/$SLURMRESTD_API, JWT authentication)"
}

case "${1:-up}" in
  up) up ;;
  down) down ;;
  status) status ;;
  token) shift; token "$@" ;;
  *) echo "usage: $0 [up|down|status|token [USER [SECONDS]]]" >&2; exit 2 ;;
esac
