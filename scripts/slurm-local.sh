#!/usr/bin/env bash
# A real single-node Slurm cluster on this (Debian) machine, for the Slurm
# integration tests. Needs root; works without systemd and without cgroups
# (proctrack/linuxproc, task/none), so it runs in plain containers and VMs.
#
#   scripts/slurm-local.sh up      install if missing, configure, start, wait idle
#   scripts/slurm-local.sh down    stop slurmd, slurmctld, munged
#   scripts/slurm-local.sh status  exit 0 if the node answers idle/mixed/alloc
#
# The config goes to /etc/slurm/slurm.conf (Debian's default path), so plain
# `sbatch`/`squeue`/`scontrol` work with no environment. The test harness also
# sets SLURM_CONF to that path, which is equivalent. An existing slurm.conf
# that this script did not write is never overwritten.
#
# `up` exits 3 with one line "slurm unavailable: ..." when Slurm cannot be had
# here at all (not root, no apt-get, install failed e.g. offline), so tests can
# skip with that message; any other failure to come up exits 1.
#
# Finished jobs stay visible to `squeue -t all` / `scontrol show job` for
# MinJobAge (300 s). The node uses 127.0.0.1 so `hostname -s` need not resolve.
set -euo pipefail

CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
MARKER='# written by scalemake scripts/slurm-local.sh'
SPOOL=/var/spool/slurm-scalemake
LOGDIR=/var/log/slurm-scalemake
CTLD_PID=/run/slurmctld-scalemake.pid
SLURMD_PID=/run/slurmd-scalemake.pid
MUNGE_PID=/run/munge/munged.pid
MUNGE_KEY=/etc/munge/munge.key
READY_TIMEOUT=${SLURM_LOCAL_TIMEOUT:-30}
NODE=$(hostname -s)

export SLURM_CONF=$CONF

say() { printf 'slurm-local: %s\n' "$*" >&2; }
unavailable() { echo "slurm unavailable: $*" >&2; exit 3; }
die() { say "$*"; exit 1; }

proc_alive() { # pid -> 0 if running. /proc, not kill -0: a non-root
  # `status` cannot signal root's daemons, and a zombie is not running.
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat%% *}" != Z ]
}

pid_alive() { # pidfile -> 0 if the process it names is running
  local pid
  [ -s "$1" ] && pid=$(cat "$1" 2>/dev/null) && [ -n "$pid" ] && proc_alive "$pid"
}

node_state() { # short state of our node, e.g. idle, mix, alloc, down*, drain
  local out
  out=$(timeout 5 sinfo -h -n "$NODE" -o %t 2>/dev/null) || true
  printf '%s\n' "${out%%$'\n'*}"
}

ready_state() { # state -> 0 if the node can run jobs
  case "$1" in
    idle | mix | alloc | comp) return 0 ;;
    *) return 1 ;;
  esac
}

node_ready() { ready_state "$(node_state)"; }

install_packages() {
  local pkgs=(slurmd slurmctld slurm-client munge)
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null &&
    command -v sbatch >/dev/null && command -v munged >/dev/null; then
    return 0
  fi
  command -v apt-get >/dev/null || unavailable "apt-get not found (not Debian?)"
  say "installing ${pkgs[*]}"
  # Postinst scripts would try to start the daemons with no config yet; a
  # policy-rc.d returning 101 stops that (only ours, only for this install).
  local policy=/usr/sbin/policy-rc.d own_policy=
  if [ ! -e $policy ]; then
    printf '#!/bin/sh\nexit 101\n' >$policy && chmod +x $policy && own_policy=1
  fi
  local apt=(apt-get install -y -qq --no-install-recommends "${pkgs[@]}")
  local ok=
  # Try with the current package lists first; `apt-get update` only if needed.
  if DEBIAN_FRONTEND=noninteractive "${apt[@]}" >/tmp/slurm-local-apt.log 2>&1; then
    ok=1
  elif DEBIAN_FRONTEND=noninteractive apt-get update -qq >>/tmp/slurm-local-apt.log 2>&1 &&
    DEBIAN_FRONTEND=noninteractive "${apt[@]}" >>/tmp/slurm-local-apt.log 2>&1; then
    ok=1
  fi
  [ -n "$own_policy" ] && rm -f $policy
  [ -n "$ok" ] || unavailable "apt-get install ${pkgs[*]} failed (see /tmp/slurm-local-apt.log)"
}

write_config() {
  if [ -e "$CONF" ] && ! grep -qxF "$MARKER" "$CONF"; then
    unavailable "$CONF exists and was not written by scalemake; not touching it"
  fi
  local cpus mem_mb real_mb
  cpus=$(nproc)
  mem_mb=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
  # Leave headroom: a RealMemory above what slurmd measures drains the node.
  real_mb=$((mem_mb - 1024))
  [ "$real_mb" -ge 512 ] || real_mb=$((mem_mb / 2))
  # Without a default, a job with no --mem gets the whole node's memory and
  # jobs run one at a time.
  local def_mb=$((real_mb / cpus))
  [ "$def_mb" -le 1024 ] || def_mb=1024
  mkdir -p "$CONF_DIR" "$SPOOL/ctld" "$SPOOL/d" "$LOGDIR"
  local tmp
  tmp=$(mktemp)
  cat >"$tmp" <<EOF
$MARKER
ClusterName=scalemake
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
# No cgroups here: track processes by /proc and do no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
# Memory is a consumable, so --mem is honoured and bounded by RealMemory.
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$def_mb
SchedulerType=sched/backfill
StateSaveLocation=$SPOOL/ctld
SlurmdSpoolDir=$SPOOL/d
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$LOGDIR/slurmctld.log
SlurmdLogFile=$LOGDIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# A node that was down comes back by itself once slurmd registers again.
ReturnToService=2
SlurmdTimeout=30
SlurmctldTimeout=30
InactiveLimit=0
# Finished jobs stay in squeue -t all / scontrol show job this many seconds.
MinJobAge=300
KillWait=5
Waittime=0
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$real_mb State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
  if [ -e "$CONF" ] && cmp -s "$tmp" "$CONF"; then
    rm -f "$tmp"
    return 0
  fi
  # A changed config (new hostname, CPUs, memory) needs fresh daemons.
  if pid_alive "$CTLD_PID" || pid_alive "$SLURMD_PID"; then
    say "config changed; restarting daemons"
    stop_slurm
  fi
  install -m 0644 "$tmp" "$CONF"
  rm -f "$tmp"
}

start_munge() {
  if pid_alive "$MUNGE_PID"; then return 0; fi
  id munge >/dev/null 2>&1 || die "user munge missing (broken munge install?)"
  mkdir -p /run/munge /var/log/munge /var/lib/munge /etc/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge /etc/munge
  chmod 0755 /run/munge
  chmod 0700 /var/log/munge /var/lib/munge /etc/munge
  if [ ! -s "$MUNGE_KEY" ]; then
    # Newer munge ships mungekey, older create-munge-key; dd works everywhere.
    if command -v mungekey >/dev/null; then
      mungekey --create --keyfile="$MUNGE_KEY" >/dev/null
    elif command -v create-munge-key >/dev/null; then
      create-munge-key -f >/dev/null
    else
      dd if=/dev/urandom of="$MUNGE_KEY" bs=1 count=1024 status=none
    fi
  fi
  chown munge:munge "$MUNGE_KEY"
  chmod 0400 "$MUNGE_KEY"
  rm -f /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock "$MUNGE_PID"
  # munged refuses to run as root; it daemonizes itself.
  runuser -u munge -- munged --pid-file="$MUNGE_PID" ||
    die "munged failed to start (see /var/log/munge/munged.log)"
  local i
  for i in $(seq 50); do
    [ -S /run/munge/munge.socket.2 ] && return 0
    sleep 0.1
  done
  die "munged started but its socket never appeared"
}

start_slurm() {
  if ! pid_alive "$CTLD_PID"; then
    slurmctld || die "slurmctld failed to start (see $LOGDIR/slurmctld.log)"
  fi
  if ! pid_alive "$SLURMD_PID"; then
    slurmd || die "slurmd failed to start (see $LOGDIR/slurmd.log)"
  fi
}

wait_ready() {
  local deadline=$((SECONDS + READY_TIMEOUT)) state
  while [ $SECONDS -lt $deadline ]; do
    state=$(node_state)
    if ready_state "$state"; then return 0; fi
    # Drained/down for a reason (e.g. Low RealMemory) won't fix itself.
    case "$state" in
      drain* | drng* | fail*) break ;;
    esac
    sleep 0.5
  done
  say "node $NODE not idle after ${READY_TIMEOUT}s (state: ${state:-no answer})"
  timeout 5 scontrol show node "$NODE" 2>/dev/null | grep -E 'State=|Reason=' >&2 || true
  tail -n 5 "$LOGDIR/slurmctld.log" "$LOGDIR/slurmd.log" >&2 2>/dev/null || true
  exit 1
}

stop_pidfile() { # name pidfile: TERM, wait up to 10 s, then KILL
  local name=$1 file=$2 pid i
  if ! pid_alive "$file"; then
    rm -f "$file"
    return 0
  fi
  pid=$(cat "$file")
  kill "$pid" 2>/dev/null || true
  for i in $(seq 100); do
    proc_alive "$pid" || break
    sleep 0.1
  done
  if proc_alive "$pid"; then
    say "$name ($pid) ignored SIGTERM; killing"
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
  say "stopped $name"
}

stop_slurm() {
  stop_pidfile slurmd "$SLURMD_PID"
  stop_pidfile slurmctld "$CTLD_PID"
}

cmd_up() {
  [ "$(id -u)" -eq 0 ] || unavailable "needs root (run as root or via sudo)"
  local t0=$SECONDS
  install_packages
  write_config # restarts running daemons if the config changed
  if pid_alive "$MUNGE_PID" && pid_alive "$CTLD_PID" && pid_alive "$SLURMD_PID" &&
    node_ready; then
    say "already up: node $NODE $(node_state); SLURM_CONF=$CONF"
    return 0
  fi
  # Each start below skips a daemon that is still running.
  start_munge
  start_slurm
  wait_ready
  say "up in $((SECONDS - t0))s: node $NODE $(node_state), partition debug; SLURM_CONF=$CONF"
}

cmd_down() {
  stop_slurm
  stop_pidfile munged "$MUNGE_PID"
}

cmd_status() {
  command -v sinfo >/dev/null || { echo "down: slurm not installed"; exit 1; }
  # No slurmctld here means no answer; skip sinfo's ~10 s of retries.
  pid_alive "$CTLD_PID" || { echo "down: slurmctld not running"; exit 1; }
  # slurmctld keeps calling a dead slurmd idle until SlurmdTimeout.
  pid_alive "$SLURMD_PID" || { echo "down: slurmd not running"; exit 1; }
  local state
  state=$(node_state)
  if ready_state "$state"; then
    echo "up: node $NODE $state"
  else
    echo "down: node $NODE ${state:-no answer}"
    exit 1
  fi
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  *)
    echo "usage: $0 up|down|status" >&2
    exit 2
    ;;
esac
