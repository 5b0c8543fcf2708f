#!/usr/bin/env bash
# The lab tier of the tests: real kernels (LIO, nvmet, dm-multipath, LVM)
# in QEMU. One lab is booted for every tier and snapshotted once clean;
# each tier starts from that snapshot (about 10 s to restore, against
# 2-4 min for a boot on a loaded machine): the smoke scenario, the rig's
# own tests, the fault scenarios that need no reboot, the services' lab
# tests. Then a second boot with the heartbeat on for the failover
# scenarios.
# Needs root; bounded waits everywhere; the lab is torn down on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
export DUPLEX_LAB_CACHE="${DUPLEX_LAB_CACHE:-/var/cache/duplex-lab}"
profile="${DUPLEX_LAB_PROFILE:-debug}"
lab="$repo/target/$profile/duplex-lab"
DUPLEX_LAB_RUN=$(mktemp -d /tmp/duplex-lab-tier.XXXXXX)
export DUPLEX_LAB_RUN
cleanup() { "$lab" down || true; rm -rf "$DUPLEX_LAB_RUN"; }
trap cleanup EXIT
t_tier=$SECONDS
t=$SECONDS
# Prints how long the section that just ended took.
took() { echo "== lab: $1 took $((SECONDS - t)) s"; t=$SECONDS; }

echo "== lab: boot (packages, binaries, images, A/B/H), snapshot clean"
tests/lab/run.sh boot
"$lab" snapshot clean
took boot

echo "== lab: smoke (the demo through the services, host multipath, planned handover under verified writes, invariant monitor)"
"$lab" scenario smoke
took smoke

echo "== lab: the rig (BMC power off/on from the partner over IPMI, watchdog reset, disk pull/fail, the monitor sees a pool live on both)"
"$lab" restore clean
# #[ignore]d without a lab; here they run, one at a time (one shared lab).
cargo test -p duplex-lab --test rig -- --include-ignored --test-threads=1 --nocapture
took rig

# The framework's scenarios that need no reboot. The others repeat, with a
# boot each, what another part of this tier proves: bmc-fence and
# watchdog-panic the rig's IPMI and watchdog tests, handover smoke's
# handover and the failover tier's planned move, power-cut (both
# controllers booted again) is the failover matrix's `power-cut`. They stay
# one command away: `duplex-lab scenario all`.
echo "== lab: fault scenarios (disk-vanish hb-disk-fail; on demand: bmc-fence watchdog-panic handover power-cut; the failover power-cut runs below)"
"$lab" restore clean
"$lab" scenario run disk-vanish hb-disk-fail
took scenarios

export DUPLEX_LAB=1
export DUPLEX_LAB_BENCH=0   # benchmarks are run on purpose, not in every test run

echo "== lab: targets (iSCSI + NVMe/TCP multipath, ALUA/ANA, ACLs, flip under I/O)"
"$lab" restore clean
cargo test -p duplex-targets --test lab -- --nocapture
took targets

echo "== lab: pool-manager (system_id ownership, takeover, snapshots/clones, RAID rebuild)"
"$lab" restore clean
cargo test -p duplex-pool-manager --test lab -- --nocapture
took pool-manager

# The heartbeat lives in the guests' configuration, so it needs its own
# boot; snapshots are no use to it (a restore moves both clocks and leaves
# the heartbeat disks, on tmpfs, where they were).
# Issue 15's matrix items 1, 2, 3 and 5; the rest (ic-one among them) is
# `duplex-lab failover all` on a lab that is up. With a PR disk: the pool
# of these scenarios lives behind SCSI-3 reservations (issue 14), and the
# owner's plug is pulled with its BMC out of reach, so scsi_pr fences
# (pr-fence); the IPMI fence is freeze's (and the rig's), and `kill`
# itself is run.sh's default scenario, one command away.
echo "== lab: failover (heartbeat on, pool on a PR disk: planned failover and giveback, the owner killed and fenced by SCSI-3 PR, the owner frozen and fenced over IPMI, the interconnect cut, both controllers' power cut under acknowledged config writes; verified host writes on both protocols)"
"$lab" down
DUPLEX_LAB_HEARTBEAT=1 DUPLEX_LAB_PR_DISKS=1 DUPLEX_LAB_FAILOVER="planned pr-fence freeze ic-cut power-cut" tests/lab/run.sh up
took failover

# Issue 17's lab test: the web UI (built by scripts/ui-tests.sh, shipped in
# the payload) of controller A, through the lab's forwarded management port
# (127.0.0.1:18443 -> A's mgmt0:443), shows the real cluster.
echo "== lab: the web UI of A through the forwarded management port shows the real cluster (Chromium)"
if [ -f ui/dist/index.html ] && [ -d ui/node_modules/playwright-core ]; then
  ui_pw=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
  "$lab" exec A -- duplexctl call config.apply \
    "{\"changes\": [{\"op\": \"upsert\", \"kind\": \"user\", \"object\": {\"name\": \"admin\", \"password\": \"$ui_pw\", \"role\": \"admin\"}}]}" > /dev/null
  DUPLEX_LAB_UI=https://127.0.0.1:18443 DUPLEX_LAB_UI_PASSWORD=$ui_pw timeout 600 node ui/lab-check.mjs
else
  echo "ui/dist or ui/node_modules is missing: run scripts/ui-tests.sh first" >&2
  exit 1
fi
took ui
echo "== lab: tier done in $((SECONDS - t_tier)) s"
