#!/usr/bin/env bash
# Debian's containerd with its CRI plugin, configured like crisp's default, to run the
# conformance suite and `crisp-conformance bench --compare` against:
#   - the same CNI conf dir and plugins (/etc/cni/net.d, so the same conflist and bridge),
#   - the same lab registry on 127.0.0.1:5000 as mirror of docker.io and registry.k8s.io
#     (contrib/start.sh starts it), and its pause image as the sandbox image,
#   - runc, cgroupfs, oom_score_adj clamped as crisp does on this kind of host.
# Its root, state and socket are its own, under /var/lib/crisp-compare and /run/crisp-compare:
# nothing touches a system containerd.
#
#   bash contrib/containerd.sh start   # prints the endpoint
#   bash contrib/containerd.sh stop    # removes its pods, stops it, checks nothing is left
set -euo pipefail

root=/var/lib/crisp-compare/containerd
state=/run/crisp-compare/containerd
socket=/run/crisp-compare/containerd.sock
config=/run/crisp-compare/containerd.toml
pidfile=/run/crisp-compare/containerd.pid
log=/var/log/crisp/containerd-compare.log
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

die() { echo "containerd.sh: $*" >&2; exit 1; }
# The pid file's process, if it is still this script's containerd: a pid left by one that died
# may name another process since, which stop must not kill.
running() {
  local pid
  pid=$(cat "$pidfile" 2>/dev/null) && [ -n "$pid" ] || return 1
  tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF -- "$config"
}

write_config() {
  cat >"$config" <<EOF
version = 2
root = "$root"
state = "$state"
# This host refuses to lower oom_score_adj below the daemon's own; crisp clamps the same way.
oom_score = 0
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
]

[grpc]
  address = "$socket"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.10"
  restrict_oom_score_adj = true
  disable_apparmor = true
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  netns_mounts_under_state_dir = true
  tolerate_missing_hugetlb_controller = true

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "/etc/cni/net.d"
    max_conf_num = 1

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "/usr/sbin/runc"
        Root = "$state/runc"
        SystemdCgroup = false

  [plugins."io.containerd.grpc.v1.cri".registry.mirrors]
    [plugins."io.containerd.grpc.v1.cri".registry.mirrors."127.0.0.1:5000"]
      endpoint = ["http://127.0.0.1:5000"]
    [plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]
      endpoint = ["http://127.0.0.1:5000"]
    [plugins."io.containerd.grpc.v1.cri".registry.mirrors."registry.k8s.io"]
      endpoint = ["http://127.0.0.1:5000"]
EOF
}

start() {
  if running; then
    echo "containerd already running (pid $(cat "$pidfile")): unix://$socket"
    return 0
  fi
  if ! command -v containerd >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends containerd; } ||
      die "containerd is not installed and apt-get could not install it"
  fi
  # Debian enables its own containerd; it would serve /run/containerd beside this one.
  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    systemctl disable --now containerd >/dev/null 2>&1 || true
  fi
  curl -fsS -o /dev/null http://127.0.0.1:5000/v2/ ||
    die "no lab registry on 127.0.0.1:5000: run contrib/start.sh first (containerd pulls the pause image from it)"
  compgen -G '/etc/cni/net.d/*.conf*' >/dev/null || die "no CNI config in /etc/cni/net.d: run contrib/start.sh first"

  install -d "$root" "$state" /var/log/crisp
  write_config
  rm -f "$socket" "$socket.ttrpc"
  setsid nohup containerd --config "$config" </dev/null >>"$log" 2>&1 &
  echo $! >"$pidfile"
  for _ in $(seq 300); do
    running || { tail -n 20 "$log" >&2; die "containerd exited while starting (log: $log)"; }
    if [ -S "$socket" ] && ctr --address "$socket" version >/dev/null 2>&1; then
      echo "containerd $(containerd --version | awk '{ print $3 }') running: unix://$socket (log: $log)"
      echo "compare: crisp-conformance bench --compare unix://$socket"
      echo "suite:   crisp-conformance --endpoint unix://$socket --test-registry 127.0.0.1:5000"
      return 0
    fi
    sleep 0.1
  done
  die "containerd's socket $socket did not come up within 30s (log: $log)"
}

# Processes whose command line has argument $2 exactly and whose program is named $1.
pids_with_arg() {
  local p args a
  for p in /proc/[0-9]*; do
    mapfile -d '' -t args <"$p/cmdline" 2>/dev/null || continue
    [ "${#args[@]}" -gt 0 ] && [ "$(basename -- "${args[0]}")" = "$1" ] || continue
    for a in "${args[@]:1}"; do [ "$a" = "$2" ] && { echo "${p#/proc/}"; break; }; done
  done
}

term_then_kill() {
  [ "$#" -gt 0 ] || return 0
  kill -TERM "$@" 2>/dev/null || true
  for _ in $(seq 100); do
    local alive=0 p
    for p in "$@"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && return 0
    sleep 0.1
  done
  kill -KILL "$@" 2>/dev/null || true
}

# Mount points under $1, deepest first.
mounts_under() {
  awk -v dir="$1/" 'index($5, dir) == 1 { print length($5), $5 }' /proc/self/mountinfo | sort -rn | cut -d' ' -f2-
}

stop() {
  # Pods first, through the CRI, so that CNI DEL frees their addresses on the shared network.
  if running && command -v crictl >/dev/null; then
    timeout 120 crictl --runtime-endpoint "unix://$socket" --timeout 60s rmp -fa >/dev/null 2>&1 ||
      echo "containerd.sh: removing pods through the CRI failed; cleaning up by force" >&2
  fi
  if running; then
    term_then_kill "$(cat "$pidfile")"
  fi
  rm -f "$pidfile"
  # Pods still there: their shims, then runc's containers, then their mounts.
  local left=0 ids=() shims=()
  mapfile -t shims < <(pids_with_arg containerd-shim-runc-v2 "$socket")
  if [ "${#shims[@]}" -gt 0 ]; then
    left=1
    if [ -d "$state/runc/k8s.io" ]; then
      mapfile -t ids < <(runc --root "$state/runc/k8s.io" list -q 2>/dev/null)
      for id in "${ids[@]}"; do runc --root "$state/runc/k8s.io" delete --force "$id" >/dev/null 2>&1 || true; done
    fi
    term_then_kill "${shims[@]}"
  fi
  local m
  for dir in "$state" "$root"; do
    while read -r m; do
      [ -n "$m" ] || continue
      m=$(printf '%b' "$m")
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done < <(mounts_under "$dir")
  done
  for id in "${ids[@]}"; do
    find /sys/fs/cgroup -mindepth 2 -maxdepth 6 -type d -name "$id" 2>/dev/null | sort -r | xargs -r rmdir 2>/dev/null || true
  done
  rm -rf --one-file-system "$state" "$socket" "$socket.ttrpc" "$config"
  rmdir /run/containerd/s /run/containerd 2>/dev/null || true
  if [ "$left" = 1 ]; then
    echo "containerd.sh: pods were left (crictl missing or failing to remove them through the CRI):" \
      "their processes and mounts are gone, but their CNI addresses may still be reserved under" \
      "/var/lib/cni/networks" >&2
    return 1
  fi
  echo "containerd stopped; nothing of it is left running"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) die "usage: containerd.sh start|stop" ;;
esac
