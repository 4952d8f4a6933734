#!/usr/bin/env bash
# A real Slurm cluster on this machine, for tests and for trying `kgov-train submit`.
#
#   scripts/dev_slurm_cluster.sh [--nodes N] up      install (apt) if missing, configure, start, wait for the nodes
#   scripts/dev_slurm_cluster.sh down                cancel our jobs, stop the daemons (and munged if we started it),
#                                                    remove the nodes' network namespaces, bridge and /etc/hosts lines
#   scripts/dev_slurm_cluster.sh status              daemons, network, sinfo, squeue
#   scripts/dev_slurm_cluster.sh env                 KEY=VALUE lines for clients (SLURM_CONF, the jobcomp file, ...)
#
# Debian 12's slurm-wlm (Slurm 22.05) and munge, run as root. One node (this host) with
# partitions `cpu` (default) and `gpu` (same node, no real GPUs).
#
# --nodes N (N >= 2): N nodes kgov-n1..kgov-nN on this machine, each slurmd in its own network
# namespace (/run/netns/kgov-nI) and UTS namespace (hostname kgov-nI), with address $NET.(10+I) on
# interface `kgov0` (the same name on every node: GLOO_SOCKET_IFNAME=kgov0), one end of a veth pair
# whose other end is on the bridge kgovbr0 ($NET.1/24) in the root namespace, where slurmctld stays.
# The names go in /etc/hosts (lines marked "# kgov-dev-slurm node"). Jobs inherit their slurmd's
# namespaces, so a job on two nodes talks across a real (virtual) network. The nodes share this
# machine's CPUs and memory: each declares all of them. A shell "on" a node:
#   nsenter --net=/run/netns/kgov-n2 --uts=/proc/$(cat $KGOV_SLURM_ROOT/run/slurmd-kgov-n2.pid)/ns/uts bash
# (not `ip netns exec`: it remounts /sys, where slurmd then finds no cgroups). `down`, `status` and
# `env` without --nodes act on the configured cluster; `up --nodes M` while an N-node one is
# configured refuses: `down` first.
#
# Besides the nodes' network, everything we write lives under $KGOV_SLURM_ROOT (default
# /var/lib/kgov-slurm); /etc/slurm/slurm.conf becomes a symlink to our config only when no
# other slurm.conf is there, so plain `sinfo` works.
# No accounting database, so no `sacct`: final job states are appended by jobcomp/filetxt
# to $KGOV_SLURM_ROOT/log/jobcomp.txt (one line per finished job: JobId=.. JobState=..).
#
# `up` on a running cluster changes nothing: `down` then `up` to apply a changed config.
# Environment: KGOV_SLURM_ROOT, KGOV_SLURM_UP_TIMEOUT (seconds, default 90),
# KGOV_SLURM_CTLD_PORT / KGOV_SLURM_D_PORT (default 6817 / 6818), KGOV_SLURM_NET (multi-node: the
# first three octets of the nodes' /24, default 10.77.0).
set -euo pipefail

ROOT="${KGOV_SLURM_ROOT:-/var/lib/kgov-slurm}"
UP_TIMEOUT="${KGOV_SLURM_UP_TIMEOUT:-90}"
CTLD_PORT="${KGOV_SLURM_CTLD_PORT:-6817}"
D_PORT="${KGOV_SLURM_D_PORT:-6818}"
CLUSTER=kgovdev
NET="${KGOV_SLURM_NET:-10.77.0}"
BRIDGE=kgovbr0
IFNAME=kgov0                      # every node's interface on the bridge
HOSTS_MARK="# kgov-dev-slurm node"
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
LAYOUT="$RUN/nodes"              # node count of the configured cluster, from `up` until `down`
export SLURM_CONF="$CONF"

say() { printf 'dev-slurm: %s\n' "$*"; }
die() { printf 'dev-slurm: ERROR: %s\n' "$*" >&2; exit 1; }

usage() {
    sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit "${1:-2}"
}

# ---------------------------------------------------------------- node layout
# One entry per node: "name address". One node: this host on 127.0.0.1. N nodes: kgov-nI on
# $NET.(10+I), each slurmd in its own network and UTS namespace (MULTI=1).
NODES=()
MULTI=0
CTLD_NAME=""
CTLD_ADDR=""
this_host() {
    local host
    host="$(hostname -s 2>/dev/null || true)"
    # The node name ends up in SLURM_JOB_NODELIST and MASTER_ADDR, so it must resolve.
    if [[ -z "$host" ]] || ! getent hosts "$host" >/dev/null 2>&1; then host=localhost; fi
    printf '%s' "$host"
}
layout_nodes() {
    local n="$1" i
    if [[ "$n" == 1 ]]; then
        NODES=("$(this_host) 127.0.0.1")
        CTLD_NAME="$(node_name 0)"; CTLD_ADDR=127.0.0.1
        return 0
    fi
    ((n <= 64)) || die "--nodes $n: at most 64"
    [[ "$NET" =~ ^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$ ]] || die "KGOV_SLURM_NET wants three octets (e.g. 10.77.0), got '$NET'"
    MULTI=1
    NODES=()
    for ((i = 1; i <= n; i++)); do NODES+=("kgov-n$i $NET.$((10 + i))"); done
    # slurmctld stays in the root namespace; the nodes reach it on the bridge's address.
    CTLD_NAME="$(this_host)"; CTLD_ADDR="$NET.1"
}
node_name() { local e="${NODES[$1]}"; printf '%s' "${e%% *}"; }
node_addr() { local e="${NODES[$1]}"; printf '%s' "${e#* }"; }
node_pidfile() { printf '%s/slurmd-%s.pid' "$RUN" "$(node_name "$1")"; }

# ---------------------------------------------------------------- helpers
need_root() { [[ "$(id -u)" == 0 ]] || die "must run as root (installs packages and starts daemons)"; }

pid_alive() {  # pidfile -> 0 if the process in it is alive (a daemon that exits removes its file: read it once)
    local pid
    pid="$(cat "$1" 2>/dev/null)" && [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null
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
    net_down
    rm -f "$LAYOUT"
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
    pid_alive "$CTLD_PID" && munge_ok && ctld_ok || return 1
    ((MULTI == 0)) || net_ok || return 1
    local i
    for i in "${!NODES[@]}"; do
        pid_alive "$(node_pidfile "$i")" && node_usable "$(node_name "$i")" || return 1
    done
}

# ---------------------------------------------------------------- multi-node network
# Bridge $BRIDGE ($NET.1/24) here; per node a network namespace /run/netns/<name> holding `lo` and
# $IFNAME ($NET.(10+i)), one end of a veth pair whose other end, <name>-h, is on the bridge.
in_netns() { local ns="$1"; shift; nsenter --net="/run/netns/$ns" "$@"; }

our_netns() {  # the network namespaces of ours that exist, whatever the layout
    local f
    for f in /run/netns/kgov-n*; do
        if [[ -e "$f" && "${f##*/}" =~ ^kgov-n[0-9]+$ ]]; then printf '%s\n' "${f##*/}"; fi
    done
    return 0
}

netns_pids() {  # netns name -> pids of the processes inside it (slurmd and what it started)
    local f="/run/netns/$1" id p
    [[ "$(stat -f -L -c %T "$f" 2>/dev/null)" == nsfs ]] || return 0
    id="net:[$(stat -L -c %i "$f")]"
    for p in /proc/[0-9]*; do
        if [[ "$(readlink "$p/ns/net" 2>/dev/null)" == "$id" ]]; then printf '%s\n' "${p#/proc/}"; fi
    done
    return 0
}

hosts_set() {  # "add": one marked /etc/hosts line per node; otherwise none. Written in place (may be a bind mount).
    local tmp want="" i
    if [[ "${1:-}" == add ]]; then
        for i in "${!NODES[@]}"; do want+="$(node_addr "$i") $(node_name "$i") $HOSTS_MARK"$'\n'; done
    fi
    if [[ ! -f /etc/hosts ]]; then
        [[ -n "$want" ]] || return 0
        touch /etc/hosts
    fi
    tmp="$(mktemp)"
    { grep -vF "$HOSTS_MARK" /etc/hosts || true; printf '%s' "$want"; } >"$tmp"
    cmp -s "$tmp" /etc/hosts || cat "$tmp" >/etc/hosts
    rm -f "$tmp"
}

net_ok() {
    [[ "$(cat "/sys/class/net/$BRIDGE/operstate" 2>/dev/null)" == up ]] || return 1
    local i name
    for i in "${!NODES[@]}"; do
        name="$(node_name "$i")"
        [[ -e "/run/netns/$name" ]] && ip link show "$name-h" >/dev/null 2>&1 || return 1
        grep -qxF "$(node_addr "$i") $name $HOSTS_MARK" /etc/hosts 2>/dev/null || return 1
    done
}

net_up() {
    ((MULTI)) || return 0
    local t err i name addr
    for t in ip nsenter unshare hostname; do
        command -v "$t" >/dev/null || fail_up "--nodes ${#NODES[@]} needs '$t' (iproute2, util-linux)"
    done
    if ip -o -4 addr show 2>/dev/null | awk '{print $4}' | grep -q "^${NET//./\\.}\."; then
        fail_up "$NET.0/24 is already used by an interface here (ip -4 addr): pick another with KGOV_SLURM_NET"
    fi
    err="$(ip link add "$BRIDGE" type bridge 2>&1)" \
        || fail_up "cannot create the bridge $BRIDGE: $err (the multi-node mode needs CAP_NET_ADMIN and bridge/veth/netns support)"
    # shellcheck disable=SC2015
    ip addr add "$NET.1/24" dev "$BRIDGE" && ip link set "$BRIDGE" up || fail_up "cannot configure the bridge $BRIDGE"
    for i in "${!NODES[@]}"; do
        name="$(node_name "$i")"; addr="$(node_addr "$i")"
        err="$(ip netns add "$name" 2>&1)" || fail_up "cannot create the network namespace $name: $err"
        err="$(ip link add "$name-h" type veth peer name "$IFNAME" netns "$name" 2>&1)" \
            || fail_up "cannot create the veth pair $name-h/$IFNAME: $err"
        # shellcheck disable=SC2015
        ip link set "$name-h" master "$BRIDGE" && ip link set "$name-h" up \
            && in_netns "$name" ip link set lo up \
            && in_netns "$name" ip addr add "$addr/24" dev "$IFNAME" \
            && in_netns "$name" ip link set "$IFNAME" up \
            || fail_up "cannot configure node $name's network"
    done
    hosts_set add
}

net_down() {  # whatever of ours exists, for any layout: processes left in the namespaces, veths, bridge, hosts lines
    local name pids i l removed=0
    command -v ip >/dev/null || { hosts_set none; return 0; }  # no iproute2: no namespaces of ours either
    for name in $(our_netns); do
        removed=1
        pids="$(netns_pids "$name")"
        if [[ -n "$pids" ]]; then
            say "stopping processes left in node $name: $(tr '\n' ' ' <<<"$pids")"
            # shellcheck disable=SC2086
            kill -TERM $pids 2>/dev/null || true
            for i in $(seq 50); do [[ -n "$(netns_pids "$name")" ]] || break; sleep 0.1; done
            pids="$(netns_pids "$name")"
            # shellcheck disable=SC2086
            if [[ -n "$pids" ]]; then kill -KILL $pids 2>/dev/null || true; fi
        fi
        ip link del "$name-h" 2>/dev/null || true
        if ! ip netns del "$name" 2>/dev/null; then
            umount "/run/netns/$name" 2>/dev/null || true
            rm -f "/run/netns/$name"
        fi
    done
    # `ip netns add` bind-mounts /run/netns on itself the first time; left empty by us, it goes too.
    if ((removed)) && [[ -z "$(ls -A /run/netns 2>/dev/null)" ]] && mountpoint -q /run/netns 2>/dev/null; then
        umount /run/netns 2>/dev/null || true
    fi
    for l in $(ip -o link show type veth 2>/dev/null | sed -n 's/^[0-9]*: \(kgov-n[0-9]*-h\)[@:].*/\1/p'); do
        ip link del "$l" 2>/dev/null || true
    done
    if ip link show "$BRIDGE" >/dev/null 2>&1; then ip link del "$BRIDGE" 2>/dev/null || true; fi
    hosts_set none
}

start_slurmd() {  # node index
    local name; name="$(node_name "$1")"
    if ((MULTI)); then
        # Its own network namespace and hostname; the jobs it starts inherit both.
        # shellcheck disable=SC2016
        nsenter --net="/run/netns/$name" unshare --uts -- sh -c 'hostname "$1" && exec slurmd -N "$1"' sh "$name"
    else
        slurmd -N "$name"
    fi
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

    local ctld_host="$CTLD_NAME" ctld_addr="$CTLD_ADDR" nodelist="" i name
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
    # slurmd's pid file name has %n expanded; keep a fixed name for the first node.
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
        say "cluster '$CLUSTER' is already up ($(nodes_summary)); nothing to do"
        print_usage
        return 0
    fi
    install_packages
    start_munge
    # Start from a known point: whatever of ours is half-running goes first.
    stop_slurm quiet
    net_down
    mkdir -p "$RUN"
    echo "${#NODES[@]}" >"$LAYOUT"
    net_up
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
        if ((MULTI)); then
            say "starting slurmd for node $(node_name "$i") ($(node_addr "$i") on $IFNAME, own network and UTS namespace)"
        else
            say "starting slurmd for node $(node_name "$i")"
        fi
        start_slurmd "$i" || fail_up "slurmd -N $(node_name "$i") failed to start"
    done

    local name state resumed
    for i in "${!NODES[@]}"; do
        name="$(node_name "$i")"
        resumed=0
        until node_usable "$name"; do
            state="$(node_state "$name")"
            if [[ "$state" == drain* || "$state" == down ]] && ((resumed == 0)) && pid_alive "$(node_pidfile "$i")"; then
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

nodes_summary() {
    local i out=""
    for i in "${!NODES[@]}"; do out+="${out:+, }node $(node_name "$i"): $(node_state "$(node_name "$i")")"; done
    printf '%s' "$out"
}

print_usage() {
    local n; n="$(node_name 0)"
    sinfo 2>/dev/null || true
    if ((MULTI)); then
        local last; last="$(node_name $((${#NODES[@]} - 1)))"
        cat <<EOF

Use it (as root):
  export SLURM_CONF=$CONF     # only needed if /etc/slurm/slurm.conf is not ours
  srun -N${#NODES[@]} hostname                      # one task per node, each in its own network namespace
  sbatch -N2 -o out.txt --wrap 'srun hostname'  # partitions: cpu (default), gpu (same nodes, no GPUs)
  export GLOO_SOCKET_IFNAME=$IFNAME              # in jobs: every node's interface on the bridge has this name
  squeue; scontrol show job <id>                # jobs are remembered MinJobAge=600s after they end
  grep 'JobId=<id> ' $JOBCOMP   # final state (JobState=COMPLETED/FAILED/...); no sacct here
  nsenter --net=/run/netns/$last --uts=/proc/\$(cat $RUN/slurmd-$last.pid)/ns/uts bash   # a shell on $last
  tail $LOG/slurmctld.log $LOG/slurmd-$n.log
  $0 status | down
EOF
        return 0
    fi
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
    pid="$(cat "$pf" 2>/dev/null)" && [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    say "$name (pid $pid) ignored SIGTERM for 10s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
}

stop_slurm() {  # every slurmd of ours (whatever the layout; all at once), then slurmctld
    local quiet="${1:-}" pf name pid
    for pf in "$RUN"/slurmd-*.pid; do
        pid="$(cat "$pf" 2>/dev/null)" && [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || continue
        name="${pf##*/slurmd-}"; name="${name%.pid}"
        [[ -n "$quiet" ]] || say "stopping slurmd ($name)"
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pf in "$RUN"/slurmd-*.pid; do stop_pid slurmd "$pf"; done
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
    if [[ -n "$(our_netns)" ]] || ip link show "$BRIDGE" >/dev/null 2>&1; then say "removing the nodes' network"; fi
    net_down
    rm -f "$LAYOUT"
    stop_munge_if_ours
    if is_ours /etc/slurm/slurm.conf; then rm -f /etc/slurm/slurm.conf; fi
    say "cluster '$CLUSTER' is down (packages stay installed; state and logs stay in $ROOT)"
}

cmd_status() {
    command -v sinfo >/dev/null || { say "slurm is not installed"; return 3; }
    local i pf name
    printf 'munged:    %s\n' "$(munge_ok && echo running || echo 'not running')"
    printf 'slurmctld: %s\n' "$(pid_alive "$CTLD_PID" && echo "running (pid $(cat "$CTLD_PID"))" || echo 'not running')"
    for i in "${!NODES[@]}"; do
        pf="$(node_pidfile "$i")"
        printf 'slurmd %s: %s\n' "$(node_name "$i")" "$(pid_alive "$pf" && echo "running (pid $(cat "$pf"))" || echo 'not running')"
    done
    if ((MULTI)); then
        printf 'bridge %s: %s\n' "$BRIDGE" "$(ip -br addr show "$BRIDGE" 2>/dev/null | awk '{print $2, $3}' || true)"
        for i in "${!NODES[@]}"; do
            name="$(node_name "$i")"
            if [[ -e "/run/netns/$name" ]]; then
                printf 'netns %s: %s\n' "$name" "$(in_netns "$name" ip -br -4 addr show "$IFNAME" 2>/dev/null | awk '{print $1, $2, $3}')"
            else
                printf 'netns %s: missing\n' "$name"
            fi
        done
    fi
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
    # multi-node: the interface the nodes reach each other on (GLOO_SOCKET_IFNAME / NCCL_SOCKET_IFNAME)
    echo "KGOV_SLURM_IFNAME=$(if ((MULTI)); then printf '%s' "$IFNAME"; fi)"
}

# ---------------------------------------------------------------- main
main() {
    local nodes="" cmd=""
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
    local configured=""
    if [[ -s "$LAYOUT" ]]; then configured="$(cat "$LAYOUT")"; fi
    [[ "$configured" =~ ^[1-9][0-9]*$ ]] || configured=""
    if [[ -z "$nodes" ]]; then
        nodes="${configured:-1}"  # the configured cluster, else one node
    elif [[ "$cmd" == up && -n "$configured" && "$configured" != "$nodes" ]]; then
        die "a $configured-node cluster is configured (running, or not taken down): '$0 down' first, then '$0 --nodes $nodes up'"
    fi
    [[ "$nodes" =~ ^[1-9][0-9]*$ ]] || die "--nodes wants a positive integer, got '$nodes'"
    layout_nodes "$nodes"
    "cmd_$cmd"
}

main "$@"
