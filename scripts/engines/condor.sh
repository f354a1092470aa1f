#!/usr/bin/env bash
# A loopback-only personal HTCondor pool for the tests and benchmarks (Debian 12, as root).
#
#   scripts/engines/condor.sh [up]     install once (about a minute), then start the pool (about 2 s)
#   scripts/engines/condor.sh down     stop the pool
#   scripts/engines/condor.sh env      print the client environment (export lines) and nothing else
#
# HTCondor is not packaged for bookworm: a minimal Debian 13 (trixie) tree is debootstrapped, trixie's
# `condor` package is installed inside it, and its binaries are copied out and patchelf'd to load the
# trixie libraries from that tree. The daemons then run natively on this host (so jobs see the host's
# files, users and python) and listen on 127.0.0.1 only. Everything is idempotent: an existing tree is
# reused and a running pool is left alone.
#
# HTCondor will not run jobs owned by root. The script creates the unprivileged user $CONDOR_USER and an
# IDTOKEN for it; a root process that uses the client environment below authenticates as that user, so
# its jobs run as $CONDOR_USER (whose job folders must be writable by it: jobtower sees to that).
#
# The client environment is written to $PREFIX/client.env (KEY=VALUE lines, read by the tests and the
# benchmark) and printed as export lines on stdout:  eval "$(scripts/engines/condor.sh env)"
set -euo pipefail

ENGINES_DIR=${ENGINES_DIR:-/var/cache/engines}
SYSROOT=$ENGINES_DIR/trixie-root
PREFIX=$ENGINES_DIR/htcondor
CONDOR_USER=${CONDOR_USER:-ciuser}
CONDOR_UID=${CONDOR_UID:-2001}
UID_DOMAIN=ci.local
export DEBIAN_FRONTEND=noninteractive

log() { echo "[condor $(date +%T)] $*" >&2; }
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
# The Debian mirror this host's apt already uses.
host_mirror() {
  { awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null
    awk '$1=="deb"{print $2; exit}' /etc/apt/sources.list 2>/dev/null; } | grep -v security | head -n 1 || true
}
apt_install() { # install only the packages that are missing
  local p missing=()
  for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "apt-get install ${missing[*]}"
  # wait for another apt/dpkg run to finish instead of failing on its lock
  apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null
  apt-get -o DPkg::Lock::Timeout=600 install -y -q "${missing[@]}" >/dev/null
}

build_tree() {
  [ -x "$SYSROOT/usr/sbin/condor_master" ] && return 0
  local mirror=${DEBIAN_MIRROR:-$(host_mirror)}
  [ -n "$mirror" ] || mirror=http://deb.debian.org/debian
  local tmp=$SYSROOT.partial
  if mountpoint -q "$tmp/proc" 2>/dev/null; then umount "$tmp/proc"; fi
  rm -rf "$tmp"
  mkdir -p "$ENGINES_DIR"
  log "debootstrap trixie into $tmp (from $mirror)"
  debootstrap --variant=minbase trixie "$tmp" "$mirror" > "$ENGINES_DIR/debootstrap.log" 2>&1 \
    || { tail -20 "$ENGINES_DIR/debootstrap.log" >&2; die "debootstrap failed"; }
  mount -t proc proc "$tmp/proc"
  log "apt-get install condor inside the trixie tree"
  if ! chroot "$tmp" /bin/sh -c 'apt-get update -q && apt-get install -y -q --no-install-recommends condor && apt-get clean' \
      > "$ENGINES_DIR/condor-apt.log" 2>&1; then
    umount "$tmp/proc"; tail -20 "$ENGINES_DIR/condor-apt.log" >&2; die "installing condor failed"
  fi
  umount "$tmp/proc"
  mv "$tmp" "$SYSROOT"
}

copy_binaries() {
  if [ -e "$PREFIX/.patched" ] && [ ! "$SYSROOT/usr/sbin/condor_master" -nt "$PREFIX/.patched" ]; then return 0; fi
  log "copying the condor binaries into $PREFIX and pointing them at the trixie libraries"
  local ldso=$SYSROOT/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2
  local rpath=$SYSROOT/usr/lib/x86_64-linux-gnu:$SYSROOT/usr/lib
  rm -rf "$PREFIX/bin" "$PREFIX/sbin" "$PREFIX/libexec" "$PREFIX/lib" "$PREFIX/share"
  mkdir -p "$PREFIX/bin" "$PREFIX/sbin" "$PREFIX/libexec" "$PREFIX/lib" "$PREFIX/share"
  cp -a "$SYSROOT"/usr/bin/condor_* "$PREFIX/bin/"
  cp -a "$SYSROOT"/usr/sbin/condor_* "$PREFIX/sbin/"
  cp -a "$SYSROOT/usr/libexec/condor" "$PREFIX/libexec/condor"
  cp -a "$SYSROOT/usr/lib/condor" "$PREFIX/lib/condor"
  if [ -d "$SYSROOT/usr/share/condor" ]; then cp -a "$SYSROOT/usr/share/condor" "$PREFIX/share/condor"; fi
  local f
  while IFS= read -r -d '' f; do
    if readelf -l "$f" 2>/dev/null | grep -q 'Requesting program interpreter'; then
      patchelf --set-interpreter "$ldso" --force-rpath --set-rpath "$rpath" "$f"
    fi
  done < <(find "$PREFIX/bin" "$PREFIX/sbin" "$PREFIX/libexec" -type f -print0)
  touch "$PREFIX/.patched"
}

write_config() {
  id condor >/dev/null 2>&1 || useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin condor
  id "$CONDOR_USER" >/dev/null 2>&1 || useradd -m -u "$CONDOR_UID" -U -s /bin/bash "$CONDOR_USER"
  mkdir -p "$PREFIX"/etc/config.d "$PREFIX"/etc/passwords.d "$PREFIX"/etc/tokens.d \
           "$PREFIX"/var/{log,spool,execute,run,lock,cred_dir} "$PREFIX/client-tokens"
  chown condor:condor "$PREFIX"/var/{log,spool,execute,run,lock}
  chmod 755 "$PREFIX/var/execute"
  chmod 700 "$PREFIX"/etc/passwords.d "$PREFIX"/etc/tokens.d "$PREFIX/var/cred_dir"
  cat > "$PREFIX/etc/condor_config" <<CONF
RELEASE_DIR = $PREFIX
LOCAL_DIR = $PREFIX/var
ETC = $PREFIX/etc
BIN = \$(RELEASE_DIR)/bin
SBIN = \$(RELEASE_DIR)/sbin
LIBEXEC = \$(RELEASE_DIR)/libexec/condor
LIB = \$(RELEASE_DIR)/lib/condor
SHARE = \$(RELEASE_DIR)/share/condor
LOG = \$(LOCAL_DIR)/log
SPOOL = \$(LOCAL_DIR)/spool
EXECUTE = \$(LOCAL_DIR)/execute
RUN = \$(LOCAL_DIR)/run
LOCK = \$(LOCAL_DIR)/lock
CRED_STORE_DIR = \$(LOCAL_DIR)/cred_dir
SEC_PASSWORD_DIRECTORY = \$(ETC)/passwords.d
SEC_TOKEN_SYSTEM_DIRECTORY = \$(ETC)/tokens.d
CONDOR_IDS = $(id -u condor).$(id -g condor)
LOCAL_CONFIG_FILE =
LOCAL_CONFIG_DIR = \$(ETC)/config.d
use SECURITY : recommended_v9_0
CONF
  cat > "$PREFIX/etc/config.d/50-loopback-pool.config" <<CONF
# One machine is the central manager, the submit node and the execute node, on loopback only.
use ROLE : CentralManager
use ROLE : Submit
use ROLE : Execute
NETWORK_INTERFACE = 127.0.0.1
BIND_ALL_INTERFACES = False
# otherwise the daemons also advertise an IPv6 address of the host
ENABLE_IPV6 = False
CONDOR_HOST = 127.0.0.1
COLLECTOR_HOST = 127.0.0.1:9618
USE_SHARED_PORT = True
UID_DOMAIN = $UID_DOMAIN
FILESYSTEM_DOMAIN = $UID_DOMAIN
TRUST_UID_DOMAIN = True
SEC_DEFAULT_AUTHENTICATION = REQUIRED
SEC_DEFAULT_INTEGRITY = REQUIRED
ALLOW_DAEMON = condor@\$(UID_DOMAIN) root@\$(UID_DOMAIN)
ALLOW_NEGOTIATOR = condor@\$(UID_DOMAIN) root@\$(UID_DOMAIN)
ALLOW_ADMINISTRATOR = root@\$(UID_DOMAIN) condor@\$(UID_DOMAIN)
ALLOW_WRITE = *
ALLOW_READ = *
use POLICY : ALWAYS_RUN_JOBS
NUM_CPUS = 4
RUNBENCHMARKS = 0
# as root the master would otherwise tune host sysctls (pid_max, port ranges, ...)
ENABLE_KERNEL_TUNING = False
# leave the host's cgroups alone; jobs see the real /tmp
BASE_CGROUP =
MOUNT_UNDER_SCRATCH =
CONDOR_ADMIN =
MAIL = /bin/true
# tests want seconds, not the minutes big pools are tuned for
SCHEDD_INTERVAL = 1
NEGOTIATOR_INTERVAL = 1
NEGOTIATOR_MIN_INTERVAL = 1
NEGOTIATOR_CYCLE_DELAY = 1
NEGOTIATOR_UPDATE_INTERVAL = 2
STARTER_UPDATE_INTERVAL = 1
SHADOW_QUEUE_UPDATE_INTERVAL = 1
UPDATE_INTERVAL = 2
MASTER_UPDATE_INTERVAL = 5
JOB_START_DELAY = 0
JOB_START_COUNT = 10
CLAIM_WORKLIFE = 3600
DAGMAN_USER_LOG_SCAN_INTERVAL = 1
DAGMAN_SUBMIT_DELAY = 0
DAGMAN_USE_STRICT = 0
CONF
  # The client environment, as KEY=VALUE lines (no shell needed to read it). IDTOKENS only: offered
  # FS as well, the schedd prefers it, and root may not own jobs.
  cat > "$PREFIX/client.env.tmp" <<ENV
CONDOR_CONFIG=$PREFIX/etc/condor_config
_CONDOR_SEC_TOKEN_DIRECTORY=$PREFIX/client-tokens
_CONDOR_SEC_CLIENT_AUTHENTICATION_METHODS=IDTOKENS
JOBTOWER_CONDOR_BIN=$PREFIX/bin
JOBTOWER_CONDOR_SBIN=$PREFIX/sbin
JOBTOWER_CONDOR_USER=$CONDOR_USER
JOBTOWER_CONDOR_TOKEN_FILE=$PREFIX/client-tokens/$CONDOR_USER
ENV
  mv "$PREFIX/client.env.tmp" "$PREFIX/client.env"
}

print_env() {
  [ -s "$PREFIX/client.env" ] || die "no pool installed under $PREFIX: run $0 up (as root)"
  local line
  while IFS= read -r line; do printf 'export %s\n' "$line"; done < "$PREFIX/client.env"
  printf 'export PATH=%s/bin:%s/sbin:"$PATH"\n' "$PREFIX" "$PREFIX"
}

pool_ready() {
  condor_status -af Name 2>/dev/null | grep -q slot && condor_status -schedd -af Name 2>/dev/null | grep -q .
}

up() {
  if [ "$(id -u)" != 0 ]; then
    # Without root nothing can be installed; a pool that runs already is fine.
    [ -s "$PREFIX/client.env" ] || die "HTCondor is not installed and this is not root: run $0 up as root"
    export CONDOR_CONFIG=$PREFIX/etc/condor_config PATH=$PREFIX/bin:$PREFIX/sbin:$PATH
    pool_ready || die "the pool under $PREFIX is not running and only root can start it: run $0 up as root"
    print_env
    return 0
  fi
  local started=$SECONDS
  apt_install debootstrap patchelf binutils
  build_tree
  copy_binaries
  write_config
  export CONDOR_CONFIG=$PREFIX/etc/condor_config PATH=$PREFIX/bin:$PREFIX/sbin:$PATH
  if alive "$PREFIX/master.pid"; then
    log "condor_master runs already (pid $(cat "$PREFIX/master.pid"))"
  elif pool_ready; then
    # its master was killed, but the daemons still serve (they leave within minutes: up again then)
    log "the pool answers without its condor_master; leaving it as it is"
  else
    log "starting condor_master"
    # setsid: the pool outlives the shell that started it (scripts/test.sh may be interrupted)
    setsid condor_master -f > "$PREFIX/var/log/master.stdout" 2>&1 < /dev/null &
    echo $! > "$PREFIX/master.pid"
  fi
  if ! wait_for 90 pool_ready; then
    tail -30 "$PREFIX/var/log/MasterLog" >&2 || true
    die "the pool did not come up within 90 s"
  fi
  if [ ! -s "$PREFIX/client-tokens/$CONDOR_USER" ]; then
    condor_token_create -identity "$CONDOR_USER@$UID_DOMAIN" > "$PREFIX/client-tokens/$CONDOR_USER.tmp"
    mv "$PREFIX/client-tokens/$CONDOR_USER.tmp" "$PREFIX/client-tokens/$CONDOR_USER"
  fi
  # The token directory must belong to the uid that reads it (root).
  chown -R root:root "$PREFIX/client-tokens"
  chmod 700 "$PREFIX/client-tokens"
  chmod 600 "$PREFIX/client-tokens/$CONDOR_USER"
  log "HTCondor $(condor_version | head -1 | awk '{print $2}') pool up on 127.0.0.1:9618 ($((SECONDS - started)) s); jobs run as $CONDOR_USER"
  print_env
}

down() {
  if alive "$PREFIX/master.pid"; then
    local pid; pid=$(cat "$PREFIX/master.pid")
    log "stopping condor_master $pid"
    kill -TERM "$pid"
    for _ in $(seq 1 120); do alive "$PREFIX/master.pid" || break; sleep 0.25; done
    if alive "$PREFIX/master.pid"; then kill -KILL "$pid"; fi
  fi
  rm -f "$PREFIX/master.pid"
}

case "${1:-up}" in
  up) up ;;
  down) down ;;
  env) print_env ;;
  *) echo "usage: $0 [up|down|env]" >&2; exit 2 ;;
esac
