#!/usr/bin/env bash
# The whole test suite: unit tests and end-to-end tests against real crisp daemons, runc, CNI
# plugins and a local registry. Runs as root on a fresh machine; installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" = 0 ] || { echo "test.sh: run as root: the tests create namespaces, mounts and containers" >&2; exit 1; }

bash contrib/install-deps.sh
# Every binary first: end-to-end tests run the daemon, the lab and the conformance runner.
cargo build --locked --workspace --bins
cargo test --locked --workspace --no-fail-fast
