#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for testing grid.py --cluster slurm against the real thing.
#
#   tools/slurm_local.sh start    # install slurm-wlm and munge (apt-get, as root) when missing, then start
#                                 # munged, slurmctld and slurmd; waits until the node is idle
#   tools/slurm_local.sh status   # exit 0 when all three run and the node answers, else 1
#   tools/slurm_local.sh stop     # cancel this cluster's jobs, stop the three daemons by their process ids
#
# Everything (munge key and socket, slurm.conf, state, spool, logs, pid files) lives in one folder,
# $SLURM_LOCAL_DIR (default /tmp/slurm_local); Slurm's commands find the cluster with
#   export SLURM_CONF=$SLURM_LOCAL_DIR/slurm.conf
# The node is this machine: NodeName from `hostname -s`, CPUs from nproc, RealMemory from /proc/meminfo,
# one partition "local" (the default), no GPUs, accounting off.  Ports: $SLURM_LOCAL_PORT (slurmctld,
# default 6817) and the next one (slurmd).  Starting waits at most $SLURM_LOCAL_WAIT seconds (default 60).
set -euo pipefail

DIR=${SLURM_LOCAL_DIR:-/tmp/slurm_local}
PORT=${SLURM_LOCAL_PORT:-6817}
WAIT=${SLURM_LOCAL_WAIT:-60}
CONF=$DIR/slurm.conf
SOCKET=$DIR/munge/munge.socket
DAEMONS=(munged slurmctld slurmd)
export SLURM_CONF=$CONF

die() { echo "slurm_local: $*" >&2; exit 1; }
[[ $PORT =~ ^[0-9]+$ ]] || die "SLURM_LOCAL_PORT=$PORT: give a port number like 6817"
[[ $WAIT =~ ^[0-9]+$ ]] || die "SLURM_LOCAL_WAIT=$WAIT: give a number of seconds like 60"

# The pid of a daemon this script started and that is still alive (its pid file names a live process of that
# name), else nothing.
alive_pid() {
    local pid
    pid=$(cat "$DIR/$1.pid" 2>/dev/null) || return 0
    [[ $pid =~ ^[0-9]+$ ]] || return 0
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$1" ]] && echo "$pid"
    return 0
}

# The node's state as sinfo reports it (idle, mixed, allocated, down*, ...), or nothing when slurmctld does
# not answer.
node_state() {
    timeout 10 sinfo -h -N -o %T 2>/dev/null | head -n 1 || true
}

usable_state() { [[ $1 == idle || $1 == mixed || $1 == allocated ]]; }

last_log_line() {  # what a daemon last wrote to its stderr (the daemons run in the foreground)
    local line
    line=$(grep -v '^\s*$' "$DIR/log/$1.out" 2>/dev/null | tail -n 1) || true
    echo "${line:-nothing in $DIR/log/$1.out}"
}

# Start a daemon (NAME ARGS...) in the foreground of a session of its own, logging to log/NAME.out, and
# remember its pid; returns once the process runs NAME (or has ended, which the caller finds out).
launch() {
    local name=$1 pid i
    shift
    setsid "$name" "$@" </dev/null >>"$DIR/log/$name.out" 2>&1 &
    pid=$!
    echo "$pid" >"$DIR/$name.pid"
    for ((i = 0; i < 50; i++)); do  # until the forked shell has become the daemon
        [[ -e /proc/$pid && $(cat "/proc/$pid/comm" 2>/dev/null) != "$name" ]] || return 0
        sleep 0.1
    done
}

install_packages() {
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sinfo >/dev/null \
        && command -v munged >/dev/null && return 0
    [[ $(id -u) == 0 ]] || die "slurm-wlm/munge are not installed and installing needs root: run as root"
    command -v apt-get >/dev/null || die "slurm-wlm/munge are not installed and there is no apt-get: install them"
    local t0=$SECONDS
    echo "slurm_local: installing slurm-wlm and munge with apt-get"
    apt-get update -qq >"$DIR/log/apt.log" 2>&1 || die "apt-get update failed; see $DIR/log/apt.log"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge \
        >>"$DIR/log/apt.log" 2>&1 || die "apt-get install slurm-wlm munge failed; see $DIR/log/apt.log"
    echo "slurm_local: installed in $((SECONDS - t0)) s"
}

write_config() {
    local host cpus mem
    host=$(hostname -s)
    cpus=$(nproc)
    mem=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
    [[ -n $host && $cpus -ge 1 && $mem -ge 1 ]] || die "cannot read this machine's name, CPUs or memory"
    cat >"$CONF.tmp" <<EOF
# Written by tools/slurm_local.sh: a one-node cluster on this machine.
ClusterName=local
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# a requeued job waits cred_expire seconds before it may start again (default 120)
AuthInfo=socket=$SOCKET,cred_expire=5
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/slurmd-%n
SlurmctldPidFile=$DIR/slurmctld.daemon.pid
SlurmdPidFile=$DIR/slurmd.daemon.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
# look at pending jobs every 2 s (defaults 60 and 30): requeued and freed-up jobs start within seconds
SchedulerParameters=sched_interval=2,bf_interval=2
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
KillWait=5
MinJobAge=300
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    mv "$CONF.tmp" "$CONF"
}

start_munged() {
    if [[ ! -s $DIR/munge/munge.key ]]; then
        (umask 077 && head -c 1024 /dev/urandom >"$DIR/munge/munge.key.tmp") && mv "$DIR/munge/munge.key.tmp" "$DIR/munge/munge.key"
    fi
    chmod 400 "$DIR/munge/munge.key"
    rm -f "$SOCKET" "$SOCKET.lock"
    launch munged --foreground --force --key-file="$DIR/munge/munge.key" --socket="$SOCKET" \
        --pid-file="$DIR/munge/munged.daemon.pid" --seed-file="$DIR/munge/munge.seed"
    local i
    for ((i = 0; i < 50; i++)); do
        munge -n --socket="$SOCKET" 2>/dev/null | unmunge --socket="$SOCKET" >/dev/null 2>&1 && return 0
        [[ -n $(alive_pid munged) ]] || die "munged exited: $(last_log_line munged)"
        sleep 0.2
    done
    die "munged does not answer on $SOCKET after 10 s: $(last_log_line munged)"
}

cmd_status() {
    local d pid pids="" missing="" state
    for d in "${DAEMONS[@]}"; do
        pid=$(alive_pid "$d")
        if [[ -n $pid ]]; then pids+=" $d $pid"; else missing+=" $d"; fi
    done
    if [[ -n $missing ]]; then
        echo "slurm_local: not running (no${missing}) in $DIR"
        return 1
    fi
    state=$(node_state)
    if ! usable_state "$state"; then
        echo "slurm_local: daemons up (${pids# }) but the node is ${state:-not answering}; see $DIR/log/"
        return 1
    fi
    echo "slurm_local: running (${pids# }), node $(hostname -s) $state; export SLURM_CONF=$CONF"
}

cmd_stop() {
    local d pid i jobs
    if [[ -n $(alive_pid slurmctld) ]]; then  # the jobs' processes outlive slurmd: end them first
        jobs=$(timeout 10 squeue -h -o %A 2>/dev/null || true)
        if [[ -n $jobs ]]; then
            timeout 10 scancel $jobs 2>/dev/null || true
            for ((i = 0; i < 50; i++)); do
                [[ -z $(timeout 10 squeue -h -t running,completing -o %A 2>/dev/null || true) ]] && break
                sleep 0.2
            done
        fi
    fi
    for d in slurmd slurmctld munged; do
        pid=$(alive_pid "$d")
        [[ -n $pid ]] || { rm -f "$DIR/$d.pid"; continue; }
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            [[ -n $(alive_pid "$d") ]] || break
            sleep 0.2
        done
        [[ -z $(alive_pid "$d") ]] || kill -KILL "$pid" 2>/dev/null || true
        rm -f "$DIR/$d.pid"
    done
    echo "slurm_local: stopped"
}

cmd_start() {
    local t0 d state
    if cmd_status >/dev/null; then
        cmd_status
        return 0
    fi
    mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log" "$DIR/munge" || die "cannot create $DIR"
    chmod 755 "$DIR/munge"  # clients need to reach the socket; the key itself is 400
    install_packages
    t0=$SECONDS
    [[ $(id -u) == 0 ]] || die "slurmd starts jobs as their users and needs root: run as root"
    cmd_stop >/dev/null  # whatever is left of an earlier start
    write_config
    [[ -n $(alive_pid munged) ]] || start_munged
    launch slurmctld -D -f "$CONF"
    launch slurmd -D -f "$CONF"
    while ((SECONDS - t0 < WAIT)); do
        for d in slurmctld slurmd; do
            [[ -n $(alive_pid "$d") ]] || die "$d exited: $(last_log_line "$d")"
        done
        state=$(node_state)
        if [[ $state == down* || $state == drain* ]]; then  # left so by an earlier cluster in this folder
            timeout 10 scontrol update nodename="$(hostname -s)" state=resume 2>/dev/null || true
        fi
        if usable_state "$state"; then
            echo "slurm_local: node $(hostname -s) $state after $((SECONDS - t0)) s ($(nproc) CPUs); export SLURM_CONF=$CONF"
            return 0
        fi
        sleep 0.5
    done
    die "the node is not idle after $WAIT s (sinfo: ${state:-no answer}); see $DIR/log/"
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *) echo "usage: tools/slurm_local.sh start|stop|status" >&2; exit 2 ;;
esac
