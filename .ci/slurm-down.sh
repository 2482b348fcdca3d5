#!/usr/bin/env bash
# Stop a SLURM test cluster started by .ci/slurm-up.sh.
#
# Usage: bash .ci/slurm-down.sh [DIR]      (DIR defaults to $ABLATE_SLURM_DIR)
#
# Cancels the cluster's jobs, stops slurmd, slurmctld, slurmdbd and MariaDB by
# the pid files in DIR/run, then kills leftover processes started for this
# instance (marked with ABLATE_SLURM_DAEMON=DIR in their environment).
# Deletes nothing: configs, logs, state and the database stay in DIR.
# Safe to run twice, and on a half-started instance.
set -uo pipefail

D="${1:-${ABLATE_SLURM_DIR:-}}"
log() { printf '[slurm-down %2ds] %s\n' "$SECONDS" "$*" >&2; }
[ -n "$D" ] || { log "no instance given (argument or ABLATE_SLURM_DIR)"; exit 0; }
[ -d "$D" ] || { log "no such folder: $D"; exit 0; }
D="$(cd "$D" && pwd)"
export SLURM_CONF="$D/slurm.conf"
unset ABLATE_SLURM_DAEMON
export PATH="$PATH:/usr/sbin:/sbin"

pid_of() { local f="$D/run/$1.pid"; [ -s "$f" ] && tr -dc '0-9' <"$f"; }
alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

# stop NAME SECONDS: SIGTERM by pid file, wait, then SIGKILL
stop() {
    local name=$1 limit=$2 pid i
    pid="$(pid_of "$name")" || true
    alive "$pid" || return 0
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < limit * 4; i++)); do
        alive "$pid" || return 0
        sleep 0.25
    done
    log "$name did not exit in ${limit}s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
}

# 1. Cancel this cluster's jobs while slurmctld still runs.
if alive "$(pid_of slurmctld)" && [ -f "$SLURM_CONF" ]; then
    jobs="$(timeout 10 squeue -h -o '%F' 2>/dev/null | sort -u | tr '\n' ' ')"
    if [ -n "${jobs// /}" ]; then
        log "cancelling jobs: $jobs"
        # shellcheck disable=SC2086
        timeout 10 scancel $jobs 2>/dev/null || true
        for ((i = 0; i < 40; i++)); do
            [ -z "$(timeout 5 squeue -h -t RUNNING,COMPLETING -o '%i' 2>/dev/null)" ] && break
            sleep 0.25
        done
    fi
fi

# 2. Daemons, in reverse start order.
stop slurmd 15
stop slurmctld 15
stop slurmdbd 15
stop mariadb 30

# 3. Leftovers of this instance (slurmstepd, daemons whose pid file was lost).
me=$$
for env in /proc/[0-9]*/environ; do
    pid="${env#/proc/}"; pid="${pid%/environ}"
    [ "$pid" = "$me" ] && continue
    if { tr '\0' '\n' <"$env"; } 2>/dev/null | grep -qxF "ABLATE_SLURM_DAEMON=$D"; then
        log "killing leftover pid $pid ($({ tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | cut -c1-60))"
        kill -KILL "$pid" 2>/dev/null || true
    fi
done

rm -f "$D/run/mysqld.sock" "$D/run/mysqld.sock.lock"
date -u +%FT%TZ >"$D/stopped"
log "stopped instance $D (files kept)"
