#!/usr/bin/env bash
# The whole test suite: unit tests and end-to-end tests against real crisp daemons, runc, CNI
# plugins and a local registry. Runs as root on a fresh machine; installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" = 0 ] || { echo "test.sh: run as root: the tests create namespaces, mounts and containers" >&2; exit 1; }

bash contrib/install-deps.sh
# Every binary first: end-to-end tests run the daemon, the lab and the conformance runner.
cargo build --locked --workspace --bins

log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --locked --workspace --all-targets --no-fail-fast 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# cargo prints a result line per test binary; one total closes the run.
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
