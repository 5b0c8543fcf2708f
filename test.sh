#!/usr/bin/env bash
# Runs every test the project has (see README); CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TERM_COLOR=never
# A clean clone builds once: incremental caches would only take disk.
if [ "${CI:-}" = true ]; then export CARGO_INCREMENTAL=0; fi

echo "== format"
cargo fmt --all -- --check
echo "== build (the integration tests start these binaries)"
cargo build --workspace --bins
echo "== clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== unit and integration tests"
cargo test --workspace
echo "== netlink against the real kernel, in a private network namespace"
unshare --net sh -c 'ip link set lo up && cargo test -q -p duplex-targets --lib -- --ignored netlink'
echo "== browser tests (the web UI in Debian's Chromium, against a simulated controller pair)"
scripts/ui-tests.sh
echo "== lab tier (real kernels in QEMU)"
scripts/lab-tests.sh
