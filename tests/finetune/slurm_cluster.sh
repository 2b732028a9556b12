#!/bin/bash
# A one-node Slurm cluster on this machine for `make test-slurm`: Debian's slurm-wlm and munge (installed here when
# missing; needs root), slurmctld and slurmd on 127.0.0.1 with the machine's CPUs, state under $SLURM_HOME.
#   tests/finetune/slurm_cluster.sh start    write the config, start munged, slurmctld and slurmd, wait for the node
#   tests/finetune/slurm_cluster.sh stop     stop them (by the pids they wrote)
# Clients find the cluster through SLURM_CONF=$SLURM_HOME/slurm.conf (printed by start).
set -euo pipefail
SLURM_HOME=${SLURM_HOME:-/tmp/study-slurm}
CONF=$SLURM_HOME/slurm.conf

install() {
  command -v slurmctld >/dev/null && command -v munged >/dev/null && return
  [ "$(id -u)" = 0 ] || { echo "slurm-wlm and munge are missing and only root can install them" >&2; exit 1; }
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
}

start() {
  install
  mkdir -p "$SLURM_HOME/state" "$SLURM_HOME/spool" "$SLURM_HOME/munge"
  chown munge:munge "$SLURM_HOME/munge"
  if [ ! -S "$SLURM_HOME/munge/munge.socket" ] || ! munge -n -S "$SLURM_HOME/munge/munge.socket" >/dev/null 2>&1; then
    runuser -u munge -- munged --socket="$SLURM_HOME/munge/munge.socket" --pid-file="$SLURM_HOME/munge/munged.pid" \
      --log-file="$SLURM_HOME/munge/munged.log" --seed-file="$SLURM_HOME/munge/munged.seed"
  fi
  cpus=$(nproc)
  mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2 ))
  cat > "$CONF" <<CONF
ClusterName=study
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$SLURM_HOME/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$SLURM_HOME/state
SlurmdSpoolDir=$SLURM_HOME/spool
SlurmctldPidFile=$SLURM_HOME/slurmctld.pid
SlurmdPidFile=$SLURM_HOME/slurmd.pid
SlurmctldLogFile=$SLURM_HOME/slurmctld.log
SlurmdLogFile=$SLURM_HOME/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
MinJobAge=600
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
  export SLURM_CONF=$CONF
  slurmctld -c -f "$CONF"
  slurmd -f "$CONF" -N localhost
  for _ in $(seq 60); do
    if sinfo -h -o %t 2>/dev/null | grep -qx idle; then echo "SLURM_CONF=$CONF"; return; fi
    sleep 1
  done
  echo "the node did not come up; see $SLURM_HOME/slurmctld.log and slurmd.log" >&2
  sinfo >&2 || true
  exit 1
}

stop() {
  for d in slurmd slurmctld munge/munged; do
    if [ -f "$SLURM_HOME/$d.pid" ]; then kill "$(cat "$SLURM_HOME/$d.pid")" 2>/dev/null || true; rm -f "$SLURM_HOME/$d.pid"; fi
  done
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
