#!/usr/bin/env bash
# Stops what contrib/start.sh started: crisp and the lab registry.
set -uo pipefail

stop_pid() { # name pidfile
  local pid
  [ -s "$2" ] && pid=$(cat "$2") && kill -0 "$pid" 2>/dev/null || { rm -f "$2"; return 0; }
  kill -TERM "$pid"
  for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || { rm -f "$2"; echo "stopped $1"; return 0; }; sleep 0.1; done
  echo "stop.sh: $1 (pid $pid) did not stop within 30s" >&2
  return 1
}

if [ -d /run/systemd/system ] && systemctl is-active -q crisp 2>/dev/null; then
  systemctl stop crisp && echo "stopped crisp"
fi
stop_pid crisp /run/crisp.pid
stop_pid "the lab registry" /run/crisp-lab.pid

# Pods outlive the daemon by design. With none left, remove the network plumbing the first pod
# made: the netns dir's bind mount and the default network's bridge.
netns_dir=/run/crisp/netns
if [ -d "$netns_dir" ] && [ -z "$(ls -A "$netns_dir" 2>/dev/null)" ]; then
  mountpoint -q "$netns_dir" && umount "$netns_dir"
  ip link show crisp0 >/dev/null 2>&1 && ip link del crisp0 && echo "removed the crisp0 bridge"
elif [ -d "$netns_dir" ]; then
  echo "stop.sh: pods are still running (see $netns_dir); they keep running without crisp" >&2
fi
exit 0
