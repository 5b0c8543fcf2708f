#!/usr/bin/env bash
# The lab tier of the tests: real kernels (LIO, nvmet, dm-multipath, LVM)
# in QEMU. Runs the lab's smoke scenario, then the services' lab tests on a
# second lab that is snapshotted once clean and restored before each tier.
# Needs root; bounded waits everywhere; every lab is torn down on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
export DUPLEX_LAB_CACHE="${DUPLEX_LAB_CACHE:-/var/cache/duplex-lab}"
profile="${DUPLEX_LAB_PROFILE:-debug}"
lab="$repo/target/$profile/duplex-lab"

echo "== lab: smoke (boot, the demo through the services, host multipath, planned handover under verified writes)"
tests/lab/run.sh smoke

echo "== lab: services on real kernels"
export DUPLEX_LAB=1
export DUPLEX_LAB_BENCH=0   # benchmarks are run on purpose, not in every test run
DUPLEX_LAB_RUN=$(mktemp -d /tmp/duplex-lab-tier.XXXXXX)
export DUPLEX_LAB_RUN
cleanup() { "$lab" down || true; rm -rf "$DUPLEX_LAB_RUN"; }
trap cleanup EXIT
"$lab" up
"$lab" snapshot clean

echo "== lab: the rig (BMC power off/on from the partner over IPMI, watchdog reset, disk pull/fail)"
# #[ignore]d without a lab; here they run, one at a time (one shared lab).
cargo test -p duplex-lab --test rig -- --include-ignored --test-threads=1 --nocapture

echo "== lab: fault scenarios (bmc-fence, watchdog-panic, disk-vanish, hb-disk-fail, power-cut)"
"$lab" restore clean
"$lab" scenario all

echo "== lab: targets (iSCSI + NVMe/TCP multipath, ALUA/ANA, ACLs, flip under I/O)"
"$lab" restore clean
cargo test -p duplex-targets --test lab -- --nocapture

echo "== lab: pool-manager (system_id ownership, takeover, snapshots/clones, RAID rebuild)"
"$lab" restore clean
cargo test -p duplex-pool-manager --test lab -- --nocapture
