#!/usr/bin/env bash
# A one-node loopback Slurm cluster for the tests and benchmarks (Debian 12, as root).
#
#   scripts/engines/slurm.sh [up]     install once (munge, slurm-wlm, slurmdbd from Debian, about 70 s),
#                                     then start munged, slurmdbd, slurmctld and slurmd (about 2 s)
#   scripts/engines/slurm.sh down     stop the daemons this script starts (never MariaDB)
#   scripts/engines/slurm.sh status   say whether the cluster answers (exit 1 when it does not)
#
# The controller and the node are this host, on 127.0.0.1. Accounting goes through slurmdbd to the
# machine's MariaDB (127.0.0.1:3306, reached as root with an empty password unless MYSQL_ROOT_ARGS says
# otherwise), so `sacct` reports jobs that left the queue. The node declares more CPUs than the host has
# (config_overrides) and DefMemPerCPU is small, so several small test jobs run at once instead of one
# job taking the whole node. Everything is idempotent: a running daemon is left alone, and the
# configuration files are rewritten only when their content changes (a changed slurm.conf is applied
# with `scontrol reconfigure`).
set -euo pipefail

CLUSTER=${SLURM_CLUSTER_NAME:-jobtower}
NODE_CPUS=${SLURM_NODE_CPUS:-16}
NODE_MEMORY_MB=${SLURM_NODE_MEMORY_MB:-8192}
DEF_MEM_PER_CPU_MB=${SLURM_DEF_MEM_PER_CPU_MB:-64}
DBD_PASSWORD=${SLURM_DBD_PASSWORD:-jobtower-slurmdbd}
MYSQL_ROOT_ARGS=${MYSQL_ROOT_ARGS:--h 127.0.0.1 -P 3306 -u root}
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
  write_if_changed /etc/slurm/slurmdbd.conf 600 slurm:slurm <<EOF || true
# written by jobtower's scripts/engines/slurm.sh
AuthType=auth/munge
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

up() {
  [ "$(id -u)" = 0 ] || { ready && return 0; die "the Slurm cluster is not running and only root can start it: run $0 up as root"; }
  local started=$SECONDS
  apt_install munge slurm-wlm slurmdbd mariadb-client
  mkdir -p /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
  chown slurm:slurm /var/spool/slurmctld /var/log/slurm
  start_munge
  local changed=0
  write_slurm_conf && changed=1  # first: sacctmgr reads it to find slurmdbd
  start_slurmdbd
  if alive /run/slurmctld.pid; then
    if [ $changed = 1 ]; then log "slurm.conf changed: scontrol reconfigure"; scontrol reconfigure; fi
  else
    /usr/sbin/slurmctld
  fi
  alive /run/slurmd.pid || /usr/sbin/slurmd
  if ! wait_for 60 ready; then
    tail -20 /var/log/slurm/slurmctld.log >&2 || true
    die "the Slurm node did not become idle within 60 s (see /var/log/slurm/slurmd.log and slurmctld.log)"
  fi
  # a node drained by an earlier failure comes back
  scontrol update nodename="$(hostname -s)" state=resume >/dev/null 2>&1 || true
  log "Slurm $(sinfo -V | awk '{print $2}') cluster $CLUSTER up on 127.0.0.1 ($((SECONDS - started)) s)"
}

down() {
  local p
  for p in /run/slurmd.pid /run/slurmctld.pid /run/slurmdbd.pid /run/munge/munged.pid; do
    if alive "$p"; then
      local pid; pid=$(cat "$p")
      kill -TERM "$pid"
      for _ in $(seq 1 80); do alive "$p" || break; sleep 0.25; done
      if alive "$p"; then kill -KILL "$pid"; fi
      log "stopped $(basename "$p" .pid) ($pid)"
    fi
  done
}

case "${1:-up}" in
  up) up ;;
  down) down ;;
  status) ready && echo "Slurm cluster $CLUSTER answers" || { echo "Slurm does not answer" >&2; exit 1; } ;;
  *) echo "usage: $0 [up|down|status]" >&2; exit 2 ;;
esac
