#!/usr/bin/env bash
# Installs every Debian package crisp needs to build, run and be tested on a fresh machine.
set -euo pipefail

packages=(
  runc crun                      # OCI runtime handlers
  containernetworking-plugins    # CNI plugins: bridge, host-local, loopback, portmap, ...
  busybox-static                 # the rootfs of the lab's test images
  docker-registry                # the lab's local registry on 127.0.0.1
  protobuf-compiler              # k8s-cri's build runs protoc
  iproute2 iptables              # netns, veth and host-port inspection
  gcc libc6-dev                  # C: the static built-in pause program, zstd's bundled library
  procps psmisc util-linux       # pgrep, fuser, nsenter, mount in tests
  curl ca-certificates
  openssl                        # a self-signed certificate for the streaming server's TLS test
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# Debian enables the registry as a service; the lab starts its own registries on free ports.
if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
  systemctl disable --now docker-registry >/dev/null 2>&1 || true
fi
