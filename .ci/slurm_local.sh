#!/usr/bin/env bash
# A single-node SLURM cluster on this machine (localhost only), from Debian's packages, for as long as
# one command runs:
#
#   sudo bash .ci/slurm_local.sh snakemake --profile profiles/slurm digits
#   sudo bash .ci/slurm_local.sh --install-only     # only install the Debian packages
#
# Starts munged, MariaDB, slurmdbd (so that `sacct`, which the Snakemake SLURM executor polls, has an
# accounting database), slurmctld and slurmd, each in the foreground of a background shell so its pid
# is known; exports SLURM_CONF so the command's sbatch/squeue/sacct/scancel talk to this cluster; runs
# the command; then, whatever happened (EXIT/INT/TERM trap), cancels the jobs left in the queue and
# stops every daemon it started by its pid, and exits with the command's status. Nothing stays
# running. Every file lives in a fresh directory (printed; kept with the daemons' logs when
# SLURM_LOCAL_KEEP=1). Installs the packages with apt-get when a binary is missing.
#
# Environment: SLURM_LOCAL_DIR (work directory, kept; default a new mktemp -d, removed unless
# SLURM_LOCAL_KEEP=1). Needs root: munged, slurmd and MariaDB's
# bootstrap run as root here, as on a test machine; this is not a production setup.
set -euo pipefail

INSTALL_ONLY=0
if [[ "${1:-}" == "--install-only" ]]; then INSTALL_ONLY=1; shift; fi   # CI: packages now, cluster later
if [[ $INSTALL_ONLY -eq 0 && ( $# -eq 0 || "$1" == "-h" || "$1" == "--help" ) ]]; then
  sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "slurm_local.sh: needs root (it starts munged, MariaDB and the SLURM daemons)" >&2
  exit 2
fi

PACKAGES=(slurm-wlm slurmdbd munge mariadb-server)
need_install=0
for bin in slurmctld slurmd slurmdbd sbatch sacct sacctmgr munged mariadbd mariadb-install-db; do
  command -v "$bin" >/dev/null 2>&1 || [[ -x /usr/sbin/$bin ]] || need_install=1
done
if [[ $need_install -eq 1 ]]; then
  echo "slurm_local.sh: installing ${PACKAGES[*]}" >&2
  # policy-rc.d: Debian's maintainer scripts would start system-wide munge/mariadb/slurm services;
  # this script starts its own private daemons instead, so keep the packaged ones stopped.
  created_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    created_policy=1
  fi
  apt_rc=0
  { DEBIAN_FRONTEND=noninteractive apt-get update -q &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"; } || apt_rc=$?
  [[ $created_policy -eq 1 ]] && rm -f /usr/sbin/policy-rc.d
  [[ $apt_rc -eq 0 ]] || exit "$apt_rc"
fi
export PATH="$PATH:/usr/sbin:/sbin"
[[ $INSTALL_ONLY -eq 1 ]] && exit 0

# Refuse to start beside another SLURM: its daemons would answer on the ports or share the state.
for port in 6817 6818 6819; do
  if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
    echo "slurm_local.sh: port $port is in use (another SLURM on this machine?); not starting a second one" >&2
    exit 2
  fi
done

W="${SLURM_LOCAL_DIR:-$(mktemp -d /tmp/slurm-local.XXXXXX)}"
mkdir -p "$W"/{state,spool,log,run,munge,mysql,mysql-run}
chmod 755 "$W"
echo "slurm_local.sh: cluster files and logs in $W" >&2
HOST="$(hostname -s)"
# The node as slurmd sees it (sockets, cores, threads): with only CPUs=N, slurmd counts the cores
# differently and the node offers fewer CPUs than it has.
NODE="$(slurmd -C | head -n 1 | sed 's/ RealMemory=[0-9]*//')"
# Leave 1 GiB to the system: slurmd refuses a node whose configured memory exceeds what it has.
MEM_MB=$(( $(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) - 1024 ))
DB_PORT=13306
DB_PASS="local-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"

PIDS=()      # every daemon started here, in start order
NAMES=()
COMMAND_RC=""   # set once the command has run

stop_all() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  [[ -n "$COMMAND_RC" ]] || COMMAND_RC=$rc   # setup failed or a signal came first
  if [[ -n "${CMD_PID:-}" ]] && kill -0 "$CMD_PID" 2>/dev/null; then
    echo "slurm_local.sh: stopping the command (process group $CMD_PID)" >&2
    kill -TERM -- "-$CMD_PID" 2>/dev/null
    for _ in $(seq 1 20); do kill -0 "$CMD_PID" 2>/dev/null || break; sleep 0.5; done
    kill -KILL -- "-$CMD_PID" 2>/dev/null
    wait "$CMD_PID" 2>/dev/null
  fi
  # Jobs first: their slurmstepd processes detach from slurmd, so stopping the daemons alone would
  # leave a running job behind.
  if [[ -n "${SLURM_CONF:-}" ]] && kill -0 "${SLURMCTLD_PID:-0}" 2>/dev/null; then
    timeout 20 scancel --full --quiet --user=root 2>/dev/null
    for _ in $(seq 1 60); do
      [[ -z "$(timeout 10 squeue --noheader 2>/dev/null)" ]] && break
      sleep 1
    done
  fi
  local i
  for (( i=${#PIDS[@]}-1; i>=0; i-- )); do
    local pid=${PIDS[$i]}
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null
      for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
      if kill -0 "$pid" 2>/dev/null; then
        echo "slurm_local.sh: ${NAMES[$i]} (pid $pid) ignored SIGTERM for 15 s: SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null
      fi
    fi
    wait "$pid" 2>/dev/null
  done
  [[ -n "${LINKED_CONF:-}" ]] && rm -f /etc/slurm/slurm.conf
  local left=""
  for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && left+=" $pid"; done
  if [[ -n "$left" ]]; then
    echo "slurm_local.sh: still running after stop:$left" >&2
    COMMAND_RC=70
  fi
  if [[ "${SLURM_LOCAL_KEEP:-0}" != 1 && -z "${SLURM_LOCAL_DIR:-}" ]]; then rm -rf "$W"; fi
  exit "$COMMAND_RC"
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start() {  # start NAME COMMAND...: run a daemon in the foreground of a background job, record its pid
  local name=$1; shift
  "$@" >"$W/log/$name.out" 2>&1 &
  PIDS+=($!)
  NAMES+=("$name")
}

wait_for() {  # wait_for WHAT SECONDS COMMAND...: poll until COMMAND succeeds
  local what=$1 secs=$2; shift 2
  for _ in $(seq 1 $((secs * 2))); do
    # timeout: a client whose daemon is not up yet can retry for minutes
    timeout 10 "$@" >/dev/null 2>&1 && return 0
    local i
    for i in "${!PIDS[@]}"; do
      if ! kill -0 "${PIDS[$i]}" 2>/dev/null; then
        echo "slurm_local.sh: ${NAMES[$i]} exited while waiting for $what; its log:" >&2
        tail -n 30 "$W/log/${NAMES[$i]}".* "$W/mysql-run/${NAMES[$i]}.log" >&2 2>/dev/null
        return 1
      fi
    done
    sleep 0.5
  done
  echo "slurm_local.sh: timed out after ${secs}s waiting for $what; \`$*\` says:" >&2
  timeout 10 "$@" 2>&1 | tail -n 20 >&2 || true
  return 1
}

# --- munge --------------------------------------------------------------------------------------
# SLURM 22.05's clients reach munged at its default socket for slurmdbd connections whatever
# AuthInfo says, so munged must listen there. A munged already running there (a machine with munge
# installed as a service) is used as it is; else one starts here with a fresh key.
MUNGE_SOCKET=/run/munge/munge.socket.2
if timeout 10 munge --socket="$MUNGE_SOCKET" -n >/dev/null 2>&1; then
  echo "slurm_local.sh: using the munged already listening on $MUNGE_SOCKET" >&2
else
  mkdir -p /run/munge
  dd if=/dev/urandom of="$W/munge/munge.key" bs=1 count=1024 status=none
  chmod 700 "$W/munge"; chmod 400 "$W/munge/munge.key"
  start munged munged --foreground --force --key-file="$W/munge/munge.key" --socket="$MUNGE_SOCKET" \
    --pid-file="$W/run/munged.pid" --log-file="$W/log/munged.log" --seed-file="$W/munge/munged.seed"
  wait_for munged 20 munge --socket="$MUNGE_SOCKET" -n
fi

# --- MariaDB: slurmdbd's storage, TCP on 127.0.0.1 only -------------------------------------------
# MariaDB drops to the mysql user: its data, socket and log live in directories that user owns.
chown mysql:mysql "$W/mysql" "$W/mysql-run"
mariadb-install-db --user=mysql --datadir="$W/mysql" --auth-root-authentication-method=socket \
  >"$W/log/mariadb-install.out" 2>&1
start mariadbd mariadbd --no-defaults --user=mysql --datadir="$W/mysql" --socket="$W/mysql-run/mysqld.sock" \
  --port=$DB_PORT --bind-address=127.0.0.1 --pid-file="$W/mysql-run/mysqld.pid" --log-error="$W/mysql-run/mariadbd.log" \
  --innodb-buffer-pool-size=64M
wait_for mariadbd 60 mariadb --no-defaults --socket="$W/mysql-run/mysqld.sock" -uroot -e 'SELECT 1'
mariadb --no-defaults --socket="$W/mysql-run/mysqld.sock" -uroot <<SQL
CREATE DATABASE slurm_acct_db;
CREATE USER 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
SQL

# --- SLURM configuration --------------------------------------------------------------------------
cat >"$W/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=root
LogFile=$W/log/slurmdbd.log
PidFile=$W/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
chmod 600 "$W/slurmdbd.conf"

cat >"$W/slurm.conf" <<EOF
ClusterName=local
SlurmctldHost=$HOST
AuthType=auth/munge
SlurmUser=root
SlurmdUser=root
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$W/state
SlurmdSpoolDir=$W/spool
SlurmctldPidFile=$W/run/slurmctld.pid
SlurmdPidFile=$W/run/slurmd.pid
SlurmctldLogFile=$W/log/slurmctld.log
SlurmdLogFile=$W/log/slurmd.log
# No cgroups: containers and CI machines rarely delegate them; process tracking by process tree.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
# Finished jobs stay visible to squeue for 5 minutes; the executor asks sacct anyway.
MinJobAge=300
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
JobCompType=jobcomp/none
$NODE RealMemory=$MEM_MB State=UNKNOWN
PartitionName=local Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF="$W/slurm.conf"
# Inside a job SLURM drops SLURM_CONF, and `srun` (which the Snakemake executor runs in every job)
# then looks only at /etc/slurm/slurm.conf: point that at ours for as long as the cluster runs.
if [[ -e /etc/slurm/slurm.conf || -L /etc/slurm/slurm.conf ]]; then
  echo "slurm_local.sh: /etc/slurm/slurm.conf exists (a configured SLURM on this machine?); not replacing it" >&2
  exit 2
fi
mkdir -p /etc/slurm
ln -s "$SLURM_CONF" /etc/slurm/slurm.conf
LINKED_CONF=1

start slurmdbd slurmdbd -D
wait_for slurmdbd 60 sacctmgr --immediate --noheader list cluster
timeout 30 sacctmgr --immediate add cluster local >/dev/null
start slurmctld slurmctld -D -i -f "$SLURM_CONF"
SLURMCTLD_PID=${PIDS[-1]}
wait_for slurmctld 60 scontrol ping
start slurmd slurmd -D -f "$SLURM_CONF"
wait_for "node $HOST idle" 60 bash -c "sinfo --noheader --Node --format=%T | grep -qx idle"
echo "slurm_local.sh: cluster up (SLURM_CONF=$SLURM_CONF):" >&2
sinfo >&2

# The command runs in its own session (setsid) so that the trap can stop all of it, children
# included, and in the background so that a signal to this script runs the trap at once.
set +e
setsid "$@" &
CMD_PID=$!
wait "$CMD_PID"
COMMAND_RC=$?
set -e
exit "$COMMAND_RC"
