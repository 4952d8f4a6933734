#!/usr/bin/env bash
# A real Slurm cluster on this machine, for tests and for trying `kgov-train submit`.
#
#   scripts/dev_slurm_cluster.sh [--nodes N] up      install (apt) if missing, configure, start, wait for the node
#   scripts/dev_slurm_cluster.sh down                cancel our jobs, stop slurmd, slurmctld (and munged if we started it)
#   scripts/dev_slurm_cluster.sh status              daemons, sinfo, squeue
#   scripts/dev_slurm_cluster.sh env                 KEY=VALUE lines for clients (SLURM_CONF, the jobcomp file, ...)
#
# Debian 12's slurm-wlm (Slurm 22.05) and munge, run as root. One node (this host) with
# partitions `cpu` (default) and `gpu` (same node, no real GPUs). Everything we write lives
# under $KGOV_SLURM_ROOT (default /var/lib/kgov-slurm); /etc/slurm/slurm.conf becomes a
# symlink to our config only when no other slurm.conf is there, so plain `sinfo` works.
# No accounting database, so no `sacct`: final job states are appended by jobcomp/filetxt
# to $KGOV_SLURM_ROOT/log/jobcomp.txt (one line per finished job: JobId=.. JobState=..).
#
# `up` on a running cluster changes nothing: `down` then `up` to apply a changed config.
# Environment: KGOV_SLURM_ROOT, KGOV_SLURM_UP_TIMEOUT (seconds, default 90),
# KGOV_SLURM_CTLD_PORT / KGOV_SLURM_D_PORT (default 6817 / 6818).
set -euo pipefail

ROOT="${KGOV_SLURM_ROOT:-/var/lib/kgov-slurm}"
UP_TIMEOUT="${KGOV_SLURM_UP_TIMEOUT:-90}"
CTLD_PORT="${KGOV_SLURM_CTLD_PORT:-6817}"
D_PORT="${KGOV_SLURM_D_PORT:-6818}"
CLUSTER=kgovdev
MARKER="# written by kgov-train scripts/dev_slurm_cluster.sh"

ETC="$ROOT/etc"
CONF="$ETC/slurm.conf"
LOG="$ROOT/log"
RUN="$ROOT/run"
JOBCOMP="$LOG/jobcomp.txt"
CTLD_PID="$RUN/slurmctld.pid"
D_PID="$RUN/slurmd.pid"
MUNGED_OURS="$RUN/munged.ours"   # exists while a munged we started runs
MUNGE_SOCKET=/run/munge/munge.socket.2
export SLURM_CONF="$CONF"

say() { printf 'dev-slurm: %s\n' "$*"; }
die() { printf 'dev-slurm: ERROR: %s\n' "$*" >&2; exit 1; }

usage() {
    sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit "${1:-2}"
}

# ---------------------------------------------------------------- node layout
# One entry per node: "name address". A later --nodes N mode (network namespaces)
# only has to fill this list differently and start one slurmd per entry.
NODES=()
layout_nodes() {
    local n="$1"
    if [[ "$n" != 1 ]]; then
        die "--nodes $n: not yet; only a one-node cluster is implemented (multi-node via network namespaces is planned)"
    fi
    local host
    host="$(hostname -s 2>/dev/null || true)"
    # The node name ends up in SLURM_JOB_NODELIST and MASTER_ADDR, so it must resolve.
    if [[ -z "$host" ]] || ! getent hosts "$host" >/dev/null 2>&1; then host=localhost; fi
    NODES=("$host 127.0.0.1")
}
node_name() { local e="${NODES[$1]}"; printf '%s' "${e%% *}"; }
node_addr() { local e="${NODES[$1]}"; printf '%s' "${e#* }"; }

# ---------------------------------------------------------------- helpers
need_root() { [[ "$(id -u)" == 0 ]] || die "must run as root (installs packages and starts daemons)"; }

pid_alive() {  # pidfile -> 0 if the process in it is alive
    [[ -s "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

tail_logs() {
    local f
    for f in /var/log/munge/munged.log "$LOG/slurmctld.log" "$LOG/slurmd-"*.log; do
        [[ -f "$f" ]] || continue
        printf -- '----- last lines of %s -----\n' "$f" >&2
        tail -n 25 "$f" >&2
    done
}

fail_up() {  # a failed `up` says why, shows the logs, and stops what it started
    printf 'dev-slurm: ERROR: %s\n' "$*" >&2
    tail_logs
    stop_slurm quiet
    stop_munge_if_ours
    printf 'dev-slurm: ERROR: %s (daemons stopped; logs in %s)\n' "$*" "$LOG" >&2
    exit 1
}

munge_ok() { command -v munge >/dev/null && munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

ctld_ok() { scontrol ping 2>/dev/null | grep -q 'is UP'; }

node_state() {  # node name -> sinfo's long state (idle, mixed, allocated, down*, drained, ...)
    sinfo -h -N -n "$1" -o '%T' 2>/dev/null | head -n 1
}

node_usable() {
    case "$(node_state "$1")" in idle | mixed | allocated | completing) return 0 ;; *) return 1 ;; esac
}

all_up() {
    pid_alive "$CTLD_PID" && pid_alive "$D_PID" && munge_ok && ctld_ok || return 1
    local i
    for i in "${!NODES[@]}"; do node_usable "$(node_name "$i")" || return 1; done
}

# ---------------------------------------------------------------- install
install_packages() {
    local missing=()
    command -v slurmctld >/dev/null || missing+=(slurmctld)
    command -v slurmd >/dev/null || missing+=(slurmd)
    command -v sbatch >/dev/null || missing+=(slurm-client)
    command -v munged >/dev/null || missing+=(munge)
    [[ ${#missing[@]} == 0 ]] && return 0
    command -v apt-get >/dev/null || die "slurm/munge missing (${missing[*]}) and no apt-get to install them"
    say "installing slurm-wlm and munge with apt-get (missing: ${missing[*]}) ..."
    export DEBIAN_FRONTEND=noninteractive
    local log="/tmp/kgov-slurm-apt.log"
    apt-get update -q >"$log" 2>&1 || { tail -n 20 "$log" >&2; die "apt-get update failed (log: $log)"; }
    apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confold slurm-wlm munge >>"$log" 2>&1 \
        || { tail -n 30 "$log" >&2; die "apt-get install slurm-wlm munge failed (log: $log)"; }
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
        || die "apt-get install finished but slurmctld/slurmd/munged are still not on PATH"
    say "installed: $(slurmctld -V)"
}

# ---------------------------------------------------------------- munge
start_munge() {
    if munge_ok; then return 0; fi
    if [[ ! -s /etc/munge/munge.key ]]; then
        say "creating a munge key"
        mkdir -p /etc/munge
        if command -v mungekey >/dev/null; then
            mungekey --create --keyfile=/etc/munge/munge.key --force
        else
            dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
        fi
    fi
    chown munge:munge /etc/munge /etc/munge/munge.key
    chmod 0700 /etc/munge
    chmod 0400 /etc/munge/munge.key
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
    # A stale socket/pid from a killed munged makes a new one refuse to start.
    if [[ -S "$MUNGE_SOCKET" ]] && ! munge_ok; then rm -f "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock" /run/munge/munged.pid; fi
    say "starting munged"
    runuser -u munge -- munged >/dev/null 2>&1 \
        || { mkdir -p "$LOG"; fail_up "munged failed to start (see /var/log/munge/munged.log)"; }
    local i
    for i in $(seq 50); do munge_ok && break; sleep 0.1; done
    munge_ok || fail_up "munged started but munge -n | unmunge fails"
    mkdir -p "$RUN"
    touch "$MUNGED_OURS"
}

# ---------------------------------------------------------------- config
write_config() {
    mkdir -p "$ETC" "$LOG" "$RUN" "$ROOT/state" "$ROOT/spool"
    # Hardware as slurmd sees it; RealMemory leaves a margin for the OS and the daemons.
    local hw cpus boards sockets cores threads mem_mb margin real_mem def_mem
    hw="$(slurmd -C 2>/dev/null | head -n 1)"
    field() { sed -n "s/.*[[:space:]]$1=\([0-9]*\).*/\1/p" <<<"$hw"; }
    cpus="$(field CPUs)"; boards="$(field Boards)"; sockets="$(field SocketsPerBoard)"
    cores="$(field CoresPerSocket)"; threads="$(field ThreadsPerCore)"
    [[ -n "$cpus" ]] || cpus="$(nproc)"
    mem_mb=$(($(sed -n 's/^MemTotal:[[:space:]]*\([0-9]*\) kB/\1/p' /proc/meminfo) / 1024))
    margin=$((mem_mb / 10)); ((margin < 1024)) && margin=1024
    real_mem=$((mem_mb - margin)); ((real_mem < 256)) && real_mem=256
    # Without a default, a job with no --mem gets the whole node's memory and jobs run one at a time.
    def_mem=$((real_mem / cpus))
    local topo="CPUs=$cpus"
    if [[ -n "$boards" && -n "$sockets" && -n "$cores" && -n "$threads" ]]; then
        topo="CPUs=$cpus Boards=$boards SocketsPerBoard=$sockets CoresPerSocket=$cores ThreadsPerCore=$threads"
    fi

    local ctld_host ctld_addr nodelist="" i name
    ctld_host="$(node_name 0)"; ctld_addr="$(node_addr 0)"
    local tmp="$CONF.tmp"
    {
        echo "$MARKER"
        echo "# Regenerated by every 'up' that starts the daemons; edit the script, not this file."
        cat <<EOF
ClusterName=$CLUSTER
SlurmctldHost=$ctld_host($ctld_addr)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$D_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
SlurmdParameters=config_overrides

# No usable cgroup hierarchy is assumed (containers, VMs): track processes via /proc, no binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none

SchedulerType=sched/backfill
# Start batch jobs at once (default batch_sched_delay=3 starts them on a 3 s tick).
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$def_mem

# No slurmdbd: no sacct. Final states go to a text file, and scontrol remembers a job MinJobAge s.
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$JOBCOMP
MinJobAge=600

StateSaveLocation=$ROOT/state
SlurmdSpoolDir=$ROOT/spool/slurmd-%n
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$RUN/slurmd-%n.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
KillWait=5
Waittime=0

EOF
        for i in "${!NODES[@]}"; do
            name="$(node_name "$i")"
            echo "NodeName=$name NodeAddr=$(node_addr "$i") NodeHostname=$name $topo RealMemory=$real_mem State=UNKNOWN"
            nodelist+="${nodelist:+,}$name"
        done
        echo "PartitionName=cpu Nodes=$nodelist Default=YES MaxTime=INFINITE State=UP"
        echo "PartitionName=gpu Nodes=$nodelist Default=NO MaxTime=INFINITE State=UP"
    } >"$tmp"
    mv "$tmp" "$CONF"
    for i in "${!NODES[@]}"; do mkdir -p "$ROOT/spool/slurmd-$(node_name "$i")"; done
    # slurmd's pid file name has %n expanded; keep a fixed name for one node.
    ln -sfn "$RUN/slurmd-$(node_name 0).pid" "$D_PID"

    # Let plain `sinfo`/`sbatch` find the cluster, unless a real slurm.conf is there.
    if [[ ! -e /etc/slurm/slurm.conf && ! -L /etc/slurm/slurm.conf ]] || is_ours /etc/slurm/slurm.conf; then
        mkdir -p /etc/slurm
        ln -sfn "$CONF" /etc/slurm/slurm.conf
    else
        say "note: /etc/slurm/slurm.conf belongs to another Slurm; clients need: export SLURM_CONF=$CONF"
    fi
}

is_ours() { [[ -L "$1" && "$(readlink "$1")" == "$CONF" ]]; }

# ---------------------------------------------------------------- up / down / status
cmd_up() {
    need_root
    if command -v slurmctld >/dev/null && [[ -f "$CONF" ]] && all_up; then
        say "cluster '$CLUSTER' is already up (node $(node_name 0): $(node_state "$(node_name 0)")); nothing to do"
        print_usage
        return 0
    fi
    install_packages
    start_munge
    # Start from a known point: whatever of ours is half-running goes first.
    stop_slurm quiet
    write_config
    local f
    for f in "$LOG"/slurm*.log; do  # keep one previous run's logs
        if [[ -f "$f" ]]; then mv -f "$f" "$f.1"; fi
    done
    if [[ ! -s "$ROOT/state/job_state" ]]; then
        # Fresh state: job ids restart at 1, so old jobcomp lines would be misread.
        : >"$JOBCOMP"
    fi
    touch "$JOBCOMP"

    say "starting slurmctld"
    slurmctld || fail_up "slurmctld failed to start"
    local i t0=$SECONDS
    until ctld_ok; do
        ((SECONDS - t0 < UP_TIMEOUT)) || fail_up "slurmctld did not answer 'scontrol ping' within ${UP_TIMEOUT}s"
        pid_alive "$CTLD_PID" || { sleep 1; pid_alive "$CTLD_PID" || ctld_ok || fail_up "slurmctld exited"; }
        sleep 0.5
    done
    for i in "${!NODES[@]}"; do
        say "starting slurmd for node $(node_name "$i")"
        slurmd -N "$(node_name "$i")" || fail_up "slurmd -N $(node_name "$i") failed to start"
    done

    local name state resumed=0
    for i in "${!NODES[@]}"; do
        name="$(node_name "$i")"
        until node_usable "$name"; do
            state="$(node_state "$name")"
            if [[ "$state" == drain* || "$state" == down ]] && ((resumed == 0)) && pid_alive "$D_PID"; then
                # Left drained/down by an earlier run (e.g. killed jobs): slurmd is fine now.
                scontrol update NodeName="$name" State=RESUME >/dev/null 2>&1 || true
                resumed=1
            fi
            if ((SECONDS - t0 >= UP_TIMEOUT)); then
                sinfo -R >&2 2>/dev/null || true
                fail_up "node $name is '${state:-unknown}', not idle, after ${UP_TIMEOUT}s"
            fi
            sleep 0.5
        done
    done
    say "cluster '$CLUSTER' is up in $((SECONDS - t0))s after starting the daemons"
    print_usage
}

print_usage() {
    local n; n="$(node_name 0)"
    sinfo 2>/dev/null || true
    cat <<EOF

Use it (as root):
  export SLURM_CONF=$CONF     # only needed if /etc/slurm/slurm.conf is not ours
  sbatch -p cpu --wrap 'hostname; sleep 1'      # partitions: cpu (default), gpu (same node $n, no GPUs)
  squeue; scontrol show job <id>                # jobs are remembered MinJobAge=600s after they end
  grep 'JobId=<id> ' $JOBCOMP   # final state (JobState=COMPLETED/FAILED/...); no sacct here
  tail $LOG/slurmctld.log $LOG/slurmd-$n.log
  $0 status | down
EOF
}

stop_pid() {  # name pidfile
    local name="$1" pf="$2" pid i
    pid_alive "$pf" || return 0
    pid="$(cat "$pf")"
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    say "$name (pid $pid) ignored SIGTERM for 10s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
}

stop_slurm() {
    local quiet="${1:-}" i
    for i in "${!NODES[@]}"; do
        [[ -n "$quiet" ]] || ! pid_alive "$RUN/slurmd-$(node_name "$i").pid" || say "stopping slurmd ($(node_name "$i"))"
        stop_pid slurmd "$RUN/slurmd-$(node_name "$i").pid"
    done
    [[ -n "$quiet" ]] || ! pid_alive "$CTLD_PID" || say "stopping slurmctld"
    stop_pid slurmctld "$CTLD_PID"
}

stop_munge_if_ours() {
    [[ -f "$MUNGED_OURS" ]] || return 0
    if pid_alive /run/munge/munged.pid; then
        say "stopping munged (we started it)"
        stop_pid munged /run/munge/munged.pid
    fi
    rm -f "$MUNGED_OURS"
}

cmd_down() {
    need_root
    if [[ -f "$CONF" ]] && command -v squeue >/dev/null && ctld_ok; then
        local jobs
        jobs="$(squeue -h -o '%A' 2>/dev/null | sort -u | tr '\n' ' ')"
        if [[ -n "${jobs// /}" ]]; then
            say "cancelling jobs: $jobs"
            # shellcheck disable=SC2086
            scancel $jobs 2>/dev/null || true
            local t0=$SECONDS
            while [[ -n "$(squeue -h -o '%A' 2>/dev/null)" ]] && ((SECONDS - t0 < 20)); do sleep 0.5; done
        fi
    fi
    stop_slurm
    stop_munge_if_ours
    if is_ours /etc/slurm/slurm.conf; then rm -f /etc/slurm/slurm.conf; fi
    say "cluster '$CLUSTER' is down (packages stay installed; state and logs stay in $ROOT)"
}

cmd_status() {
    command -v sinfo >/dev/null || { say "slurm is not installed"; return 3; }
    local i pf
    printf 'munged:    %s\n' "$(munge_ok && echo running || echo 'not running')"
    printf 'slurmctld: %s\n' "$(pid_alive "$CTLD_PID" && echo "running (pid $(cat "$CTLD_PID"))" || echo 'not running')"
    for i in "${!NODES[@]}"; do
        pf="$RUN/slurmd-$(node_name "$i").pid"
        printf 'slurmd %s: %s\n' "$(node_name "$i")" "$(pid_alive "$pf" && echo "running (pid $(cat "$pf"))" || echo 'not running')"
    done
    [[ -f "$CONF" ]] || { say "not configured yet (run: $0 up)"; return 3; }
    if ! ctld_ok; then say "slurmctld is not answering: cluster is down"; return 3; fi
    echo; sinfo; echo; squeue
}

cmd_env() {
    echo "SLURM_CONF=$CONF"
    echo "KGOV_SLURM_ROOT=$ROOT"
    echo "KGOV_SLURM_JOBCOMP=$JOBCOMP"
    echo "KGOV_SLURM_LOGDIR=$LOG"
    echo "KGOV_SLURM_NODES=$(for i in "${!NODES[@]}"; do printf '%s ' "$(node_name "$i")"; done | sed 's/ $//')"
}

# ---------------------------------------------------------------- main
main() {
    local nodes=1 cmd=""
    while (($#)); do
        case "$1" in
            --nodes) [[ $# -ge 2 ]] || usage; nodes="$2"; shift 2 ;;
            --nodes=*) nodes="${1#--nodes=}"; shift ;;
            -h | --help) usage 0 ;;
            up | down | status | env) [[ -z "$cmd" ]] || usage; cmd="$1"; shift ;;
            *) printf 'dev-slurm: unknown argument: %s\n' "$1" >&2; usage ;;
        esac
    done
    [[ -n "$cmd" ]] || usage
    [[ "$nodes" =~ ^[1-9][0-9]*$ ]] || die "--nodes wants a positive integer, got '$nodes'"
    layout_nodes "$nodes"
    "cmd_$cmd"
}

main "$@"
