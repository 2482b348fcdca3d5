#!/usr/bin/env bash
# Bring up a real single-node SLURM cluster (slurmctld + slurmd + slurmdbd on a
# private MariaDB) in a fresh temporary folder, for CI and for tests.
#
# Usage (stdout carries ONLY `export ...` lines, all logging goes to stderr):
#     env_sh=$(bash .ci/slurm-up.sh) && eval "$env_sh"
#     trap 'bash .ci/slurm-down.sh' EXIT
# or: bash .ci/slurm-up.sh >/dev/null && source "$(ls -td /tmp/ablate-slurm.* | head -1)/env.sh"
#
# Exports: SLURM_CONF, ABLATE_SLURM_DIR, ABLATE_SLURM_PARTITION (default
# partition, preemptable) and ABLATE_SLURM_HIGH_PARTITION (preempts the former).
# Needs root (apt, SlurmUser=root, slurmd). See .ci/SLURM.md.
#
# Environment knobs:
#   ABLATE_SLURM_TIMEOUT   seconds to wait for each daemon (default 60)
#   ABLATE_SLURM_BASE      parent of the instance folder (default /tmp; /dev/shm
#                          makes MariaDB initialisation faster on slow disks)
#   ABLATE_SLURM_KEEP_OLD  =1: do not stop the instance named by an inherited
#                          ABLATE_SLURM_DIR before starting a new one
set -euo pipefail

# Keep the caller's stdout for the export lines only; everything else -> stderr.
exec 3>&1 1>&2

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TIMEOUT="${ABLATE_SLURM_TIMEOUT:-60}"
T0=$SECONDS

log() { printf '[slurm-up %3ds] %s\n' "$((SECONDS - T0))" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (apt-get, SlurmUser=root, slurmd)"

# --------------------------------------------------------------------------
# 0. A previous instance from this shell (inherited ABLATE_SLURM_DIR) is stopped.
if [ -n "${ABLATE_SLURM_DIR:-}" ] && [ -d "${ABLATE_SLURM_DIR}" ] && [ "${ABLATE_SLURM_KEEP_OLD:-0}" != 1 ]; then
    log "stopping previous instance in $ABLATE_SLURM_DIR"
    bash "$HERE/slurm-down.sh" "$ABLATE_SLURM_DIR" || log "warning: slurm-down.sh of the old instance failed"
fi

# --------------------------------------------------------------------------
# 1. Packages (Debian 12: SLURM 22.05, MariaDB 10.11)
PKGS=(slurmctld slurmd slurm-client slurmdbd mariadb-server)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]} (apt-get)"
    # Keep the packages' maintainer scripts from starting system-wide services.
    made_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        made_policy=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    rc=0
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } </dev/null >&2 || rc=$?
    [ "$made_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
    [ "$rc" = 0 ] || die "apt-get install failed (rc=$rc)"
    log "packages installed"
fi
for b in slurmctld slurmd slurmdbd sbatch sacct sacctmgr mariadbd mariadb-install-db mariadb mariadb-admin; do
    command -v "$b" >/dev/null 2>&1 || [ -x "/usr/sbin/$b" ] || die "missing binary: $b"
done
export PATH="$PATH:/usr/sbin:/sbin"

# --------------------------------------------------------------------------
# 2. Fresh folder and free ports
D="$(mktemp -d "${ABLATE_SLURM_BASE:-/tmp}/ablate-slurm.XXXXXX")"
chmod 755 "$D"
mkdir -p "$D"/{state,spool,run,log,mysql}
CONF="$D/slurm.conf"
export SLURM_CONF="$CONF"
export ABLATE_SLURM_DIR="$D"
log "instance folder: $D"

# On any failure from here on (set -e, die, timeouts): show log tails and stop
# whatever was started.
on_exit() {
    local rc=$?
    [ "$rc" = 0 ] && return 0
    log "FAILED (rc=$rc); log tails:"
    for f in "$D"/log/*.log; do
        [ -f "$f" ] || continue
        echo "----- $f" >&2
        tail -n 25 "$f" >&2 || true
    done
    bash "$HERE/slurm-down.sh" "$D" >&2 || true
    exit "$rc"
}
trap on_exit EXIT

port_busy() { (exec 6<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
PICKED=" "
pick_port() {  # pick_port VAR: random free port in 10000-31999 (below the Linux ephemeral range)
    local p
    for _ in $(seq 1 200); do
        p=$((10000 + (RANDOM * 32768 + RANDOM) % 22000))
        case "$PICKED" in *" $p "*) continue ;; esac
        port_busy "$p" && continue
        PICKED="$PICKED$p "
        printf -v "$1" '%s' "$p"
        return 0
    done
    die "no free port found"
}
pick_port MYSQL_PORT; pick_port DBD_PORT; pick_port CTLD_PORT; pick_port SLURMD_PORT
log "ports: mariadb=$MYSQL_PORT slurmdbd=$DBD_PORT slurmctld=$CTLD_PORT slurmd=$SLURMD_PORT"

HOST="$(hostname -s)"
NCPU="$(nproc)"
MEM_MB=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 ))
DBPASS="ablate-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
CLUSTER=ablate

# wait_for SECONDS DESCRIPTION CMD...: poll CMD every 0.25 s
wait_for() {
    local limit=$1 what=$2; shift 2
    local end=$((SECONDS + limit))
    until out="$("$@" 2>&1)"; do
        if [ "$SECONDS" -ge "$end" ]; then
            log "timed out after ${limit}s waiting for $what; last output of '$*':"
            printf '%s\n' "$out" | tail -n 5 >&2
            return 1
        fi
        sleep 0.25
    done
}

# --------------------------------------------------------------------------
# 3. MariaDB on its own data dir, socket and loopback port
SOCK="$D/run/mysqld.sock"
MY=(mariadb --no-defaults --protocol=socket -S "$SOCK" -u root)
# Durability is irrelevant for a throw-away CI database: no fsyncs, no buffer pool dumps.
MYSQLD_OPTS=(--user=root --datadir="$D/mysql" --skip-name-resolve
    --innodb-buffer-pool-size=256M --innodb-log-file-size=64M --innodb-lock-wait-timeout=900
    --innodb-flush-log-at-trx-commit=0 --innodb-doublewrite=0 --innodb-flush-method=nosync
    --innodb-buffer-pool-dump-at-shutdown=0 --innodb-buffer-pool-load-at-startup=0)
log "initialising MariaDB"
mariadb-install-db --no-defaults "${MYSQLD_OPTS[@]}" \
    --auth-root-authentication-method=socket --skip-test-db \
    >"$D/log/mariadb-install.log" 2>&1
ABLATE_SLURM_DAEMON="$D" setsid mariadbd --no-defaults "${MYSQLD_OPTS[@]}" \
    --socket="$SOCK" --port="$MYSQL_PORT" --bind-address=127.0.0.1 \
    --pid-file="$D/run/mariadb.pid" --log-error="$D/log/mariadb.log" --max-connections=200 \
    </dev/null >>"$D/log/mariadb.log" 2>&1 3>&- &
wait_for "$TIMEOUT" "MariaDB" mariadb-admin --no-defaults -S "$SOCK" -u root ping
"${MY[@]}" <<SQL
CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$DBPASS';
CREATE USER 'slurm'@'localhost' IDENTIFIED BY '$DBPASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
FLUSH PRIVILEGES;
SQL
log "MariaDB up (127.0.0.1:$MYSQL_PORT, $SOCK)"

# --------------------------------------------------------------------------
# 4. Configuration
cat >"$D/slurmdbd.conf" <<EOF
# generated by .ci/slurm-up.sh
AuthType=auth/none
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
DebugLevel=info
LogFile=$D/log/slurmdbd.log
PidFile=$D/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$MYSQL_PORT
StorageUser=slurm
StoragePass=$DBPASS
StorageLoc=slurm_acct_db
EOF
chmod 600 "$D/slurmdbd.conf"

cat >"$CONF" <<EOF
# generated by .ci/slurm-up.sh ($(date -u +%FT%TZ))
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/none
CredType=cred/none
# credential lifetime; also the delay before a requeued job may start again (default 120 s)
AuthInfo=cred_expire=10
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MailProg=/bin/true

StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/run/slurmctld.pid
SlurmdPidFile=$D/run/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info

# scheduling
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=5,bf_interval=2,bf_continue
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
MaxArraySize=1001
MaxJobCount=20000

# requeue / preemption / timing
JobRequeue=1
ReturnToService=2
MinJobAge=60
KillWait=5
OverTimeLimit=0
InactiveLimit=0
Waittime=0
MessageTimeout=10
SlurmctldTimeout=60
SlurmdTimeout=60
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE

# accounting (sacct; submitit needs it to see job states)
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$DBD_PORT
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none

NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$NCPU RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP PriorityTier=1 PreemptMode=REQUEUE OverSubscribe=NO
PartitionName=high  Nodes=$HOST Default=NO  MaxTime=INFINITE State=UP PriorityTier=10 PreemptMode=OFF OverSubscribe=NO
EOF

# --------------------------------------------------------------------------
# 5. Daemons: slurmdbd, (register cluster), slurmctld, slurmd
log "starting slurmdbd"
ABLATE_SLURM_DAEMON="$D" slurmdbd </dev/null >>"$D/log/slurmdbd.stdout.log" 2>&1 3>&-
wait_for "$TIMEOUT" "slurmdbd" sacctmgr -n list cluster
if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
    sacctmgr -i add cluster "$CLUSTER" >&2
fi

log "starting slurmctld"
ABLATE_SLURM_DAEMON="$D" slurmctld -f "$CONF" </dev/null >>"$D/log/slurmctld.stdout.log" 2>&1 3>&-
wait_for "$TIMEOUT" "slurmctld" scontrol ping

log "starting slurmd"
ABLATE_SLURM_DAEMON="$D" slurmd -f "$CONF" </dev/null >>"$D/log/slurmd.stdout.log" 2>&1 3>&-
node_idle() { sinfo -h -n "$HOST" -o '%T' | grep -qx 'idle'; }
wait_for "$TIMEOUT" "node $HOST idle" node_idle
wait_for "$TIMEOUT" "sacct" sacct -n -a -X

trap - EXIT

# --------------------------------------------------------------------------
# 6. Environment
cat >"$D/env.sh" <<EOF
export SLURM_CONF=$CONF
export ABLATE_SLURM_DIR=$D
export ABLATE_SLURM_PARTITION=debug
export ABLATE_SLURM_HIGH_PARTITION=high
EOF
cat >"$D/ports" <<EOF
mariadb=$MYSQL_PORT
slurmdbd=$DBD_PORT
slurmctld=$CTLD_PORT
slurmd=$SLURMD_PORT
EOF
log "cluster '$CLUSTER' up: node $HOST ($NCPU CPUs, ${MEM_MB} MB), partitions debug (default) + high; env in $D/env.sh"
cat "$D/env.sh" >&3
