#!/usr/bin/env bash
# Installs what crisp needs, builds it, and starts it on the default config with the lab
# registry beside it, then prints how to reach it with crictl. Run as root; run again to
# rebuild and restart.
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" = 0 ] || { echo "start.sh: run as root (crisp manages namespaces, mounts and cgroups)" >&2; exit 1; }

bash contrib/install-deps.sh
cargo build --release --locked --bins
install -m 0755 target/release/crisp target/release/crisp-monitor target/release/crisp-lab target/release/crisp-conformance /usr/local/bin/

install -d /etc/crisp /etc/cni/net.d /var/lib/crisp-lab /var/log/crisp
[ -e /etc/crisp/crisp.toml ] || install -m 0644 contrib/crisp.toml /etc/crisp/crisp.toml
if ! compgen -G '/etc/cni/net.d/*.conf*' >/dev/null; then
  install -m 0644 contrib/cni/10-crisp-bridge.conflist /etc/cni/net.d/
fi

wait_for() { # what, seconds, test command...
  local what=$1 seconds=$2; shift 2
  for _ in $(seq $((seconds * 10))); do "$@" && return 0; sleep 0.1; done
  echo "start.sh: $what did not come up within ${seconds}s" >&2
  return 1
}

# The lab registry: the images pods run here, since no public registry is reachable.
lab_log=/var/log/crisp/lab.log
if curl -fsS -o /dev/null http://127.0.0.1:5000/v2/; then
  echo "lab registry already serving on 127.0.0.1:5000"
else
  setsid nohup /usr/local/bin/crisp-lab serve --addr 127.0.0.1:5000 --dir /var/lib/crisp-lab >"$lab_log" 2>&1 </dev/null &
  lab_pid=$!
  echo $lab_pid >/run/crisp-lab.pid
  lab_ready() { grep -qx ready "$lab_log" || { kill -0 "$lab_pid" 2>/dev/null || { cat "$lab_log" >&2; exit 1; }; false; }; }
  wait_for "the lab registry (see $lab_log)" 120 lab_ready
  grep '^pushed' "$lab_log"
fi

# crisp itself: under systemd where it runs, else as a background process.
socket=$(/usr/local/bin/crisp config | sed -n 's/^listen = "\(.*\)"$/\1/p')
log=/var/log/crisp/crisp.log
if [ -d /run/systemd/system ]; then
  install -m 0644 contrib/crisp.service /etc/systemd/system/crisp.service
  systemctl daemon-reload
  rm -f "$socket"
  systemctl restart crisp
  log="journalctl -u crisp"
else
  if [ -s /run/crisp.pid ] && kill -0 "$(cat /run/crisp.pid)" 2>/dev/null; then
    kill -TERM "$(cat /run/crisp.pid)"
    wait_for "the old crisp to stop" 30 bash -c "! kill -0 $(cat /run/crisp.pid) 2>/dev/null"
  fi
  rm -f "$socket" # a crashed crisp's socket must not pass for the new one's
  setsid nohup /usr/local/bin/crisp >>"$log" 2>&1 </dev/null &
  echo $! >/run/crisp.pid
fi
wait_for "crisp (see $log)" 30 test -S "$socket"

cat <<MSG

crisp is running on unix://$socket (config /etc/crisp/crisp.toml, log: $log).
Reach it with crictl:
  crictl --runtime-endpoint unix://$socket --image-endpoint unix://$socket version
  crictl --runtime-endpoint unix://$socket --image-endpoint unix://$socket info
Or once for all crictl commands:
  printf 'runtime-endpoint: unix://$socket\nimage-endpoint: unix://$socket\n' > /etc/crictl.yaml
Pull and list images from the lab registry (docker.io and registry.k8s.io resolve through it):
  crictl --runtime-endpoint unix://$socket --image-endpoint unix://$socket pull busybox
  crictl --runtime-endpoint unix://$socket --image-endpoint unix://$socket images
Check it against the conformance suite, and time a cold pull:
  crisp-conformance --endpoint unix://$socket --test-registry 127.0.0.1:5000 --docker-io-mirrored
  crisp-conformance bench pull --endpoint unix://$socket --test-registry 127.0.0.1:5000
Stop crisp and the lab registry: contrib/stop.sh
MSG
