#!/usr/bin/env bash
# Entry point of the Duplex lab (see tests/lab/README.md).
#   run.sh up      host packages, binaries, images (cached), boot A/B/H, apply
#                  the demo and print the host's view, then pull A's plug under
#                  host writes and show B's takeover; leaves the lab running
#   run.sh boot    the same preparation and boot, without the demo (the lab
#                  tier: one booted lab, snapshotted, serves every tier)
#   run.sh down    tear the lab down (safe to repeat)
#   run.sh smoke   same preparation, `duplex-lab scenario smoke`, tear down (CI)
#   run.sh lab ... any duplex-lab command (status, exec H -- CMD, kill A, ...)
# Environment:
#   DUPLEX_LAB_PROFILE=release   build the binaries in release (default: debug,
#                                which CI builds anyway for the tests)
#   DUPLEX_LAB_CACHE=DIR         image cache (default tests/lab/cache)
#   DUPLEX_LAB_PR_DISKS=N        add N SCSI-3 PR capable shelf disks (tgt)
#   DUPLEX_LAB_HEARTBEAT=0|1     heartbeat service on the controllers (up: 1,
#                                the other commands: 0)
#   DUPLEX_LAB_FAILOVER=NAMES    failover scenarios `up` runs after the demo
#                                (default kill; none skips them)
# Needs root (namespaces, taps), no stdin; works with CI=true.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cmd="${1:-}"
profile="${DUPLEX_LAB_PROFILE:-debug}"
export DEBIAN_FRONTEND=noninteractive
log() { echo "run.sh: $*" >&2; }

[ "$(id -u)" = 0 ] || { log "needs root (network namespaces, tap devices)"; exit 1; }
if ! command -v cargo >/dev/null && [ -f "$HOME/.cargo/env" ]; then
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi

lab_bin() { echo "$repo/target/$profile/duplex-lab"; }

install_packages() {
  local need=() updated=0
  command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
  command -v debootstrap >/dev/null || need+=(debootstrap)
  dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)
  command -v cpio >/dev/null || need+=(cpio)
  command -v depmod >/dev/null || need+=(kmod)
  command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
  command -v ip >/dev/null || need+=(iproute2)
  command -v strip >/dev/null || need+=(binutils)
  # The controllers' BMCs (ipmi_sim) and the host side's IPMI client.
  command -v ipmi_sim >/dev/null || need+=(openipmi)
  command -v ipmitool >/dev/null || need+=(ipmitool)
  if [ "${DUPLEX_LAB_PR_DISKS:-0}" != 0 ]; then
    # PR-capable shelf disks: tgt in the namespace, QEMU's iSCSI client.
    command -v tgtd >/dev/null || need+=(tgt)
    dpkg -s qemu-block-extra >/dev/null 2>&1 || need+=(qemu-block-extra)
  fi
  if [ ${#need[@]} -gt 0 ] || ! command -v qemu-img >/dev/null \
     || ! apt-cache show linux-image-amd64 >/dev/null 2>&1; then
    timeout 600 apt-get update -q >&2
    updated=1
  fi
  # qemu-img must come from the same QEMU release as qemu-system-x86 (a
  # newer qemu-utils from backports Breaks the bookworm qemu-system-common).
  local qv
  qv=$(apt-cache policy qemu-system-x86 | awk '/Candidate:/{print $2}')
  if ! command -v qemu-img >/dev/null || [[ " ${need[*]} " == *" qemu-system-x86 "* ]]; then
    need+=("qemu-utils=$qv")
  fi
  if [ ${#need[@]} -gt 0 ]; then
    [ $updated = 1 ] || timeout 600 apt-get update -q >&2
    log "installing ${need[*]}"
    timeout 900 apt-get install -y -q --no-install-recommends --allow-downgrades "${need[@]}" >&2
  fi
}

build() {
  local flag=() t0
  [ "$profile" = release ] && flag=(--release)
  t0=$(date +%s)
  log "building the workspace binaries ($profile)"
  (cd "$repo" && timeout 2400 cargo build "${flag[@]}" --bins --workspace >&2)
  DUPLEX_LAB_BUILD_SECONDS=$(( $(date +%s) - t0 ))
  export DUPLEX_LAB_BUILD_SECONDS
}

images() {
  local t0
  t0=$(date +%s)
  DUPLEX_LAB_IMAGES=$("$here/images.sh")
  DUPLEX_LAB_IMAGES_SECONDS=$(( $(date +%s) - t0 ))
  export DUPLEX_LAB_IMAGES DUPLEX_LAB_IMAGES_SECONDS
}

# The web UI the controllers serve (shipped in the payload when built):
# its npm packages from the lockfile, then the bundle. Skipped, with a
# line, where Node.js is missing: the lab runs without the UI.
build_ui() {
  if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
    log "no Node.js/npm here: the controllers will have no web UI"
    return 0
  fi
  log "building the web UI (ui/)"
  (cd "$repo/ui" && timeout 600 npm ci --no-audit --no-fund --loglevel=error >&2 \
    && timeout 300 node build.mjs >&2)
}

# An administrator for the web UI of the lab that is up: a random password
# kept in the run directory (0600), and where to open the UI.
ui_admin() {
  local run="${DUPLEX_LAB_RUN:-$here/run}" pw
  [ -f "$repo/ui/dist/index.html" ] || return 0
  pw=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
  "$(lab_bin)" exec A -- duplexctl call config.apply \
    "{\"changes\": [{\"op\": \"upsert\", \"kind\": \"user\", \"object\": {\"name\": \"admin\", \"password\": \"$pw\", \"role\": \"admin\"}}]}" \
    >/dev/null 2>&1 || { log "could not create the web UI's admin user"; return 0; }
  (umask 077 && printf '%s\n' "$pw" > "$run/ui-admin-password")
  log "web UI: https://127.0.0.1:18443 (controller A; B on 18444), user admin, password in $run/ui-admin-password (self-signed certificate)"
}

prepare() {
  install_packages
  build
  build_ui
  images
  log "build ${DUPLEX_LAB_BUILD_SECONDS}s, images ${DUPLEX_LAB_IMAGES_SECONDS}s ($DUPLEX_LAB_IMAGES)"
}

case "$cmd" in
  up)
    # The main job shows a failover, so the heartbeat runs unless asked not to.
    export DUPLEX_LAB_HEARTBEAT="${DUPLEX_LAB_HEARTBEAT:-1}"
    prepare
    "$(lab_bin)" up
    "$(lab_bin)" demo || { log "demo failed; the lab is still up (run.sh down to stop it)"; exit 1; }
    failover="${DUPLEX_LAB_FAILOVER:-kill}"
    if [ "$DUPLEX_LAB_HEARTBEAT" = 1 ] && [ "$failover" != none ]; then
      what=""
      if [ "$failover" = kill ]; then
        what=" (the owner's plug pulled under verified host writes, the partner fences it over IPMI and takes over; then it is powered on, rejoins and gets its pool back)"
      fi
      log "failover scenarios: $failover$what"
      # The JSON goes to the run directory's failover.json; the summary to the terminal.
      # shellcheck disable=SC2086
      "$(lab_bin)" failover $failover >/dev/null || { log "failover FAILED; the lab is still up (run.sh down to stop it)"; exit 1; }
    fi
    ui_admin
    log "the lab is up: $(lab_bin) status | exec A|B|H -- CMD | failover NAME | down"
    ;;
  boot)
    prepare
    "$(lab_bin)" up
    ;;
  down)
    if [ -x "$(lab_bin)" ]; then
      "$(lab_bin)" down
    else
      log "no duplex-lab binary in target/$profile; nothing to tear down through it"
    fi
    ;;
  smoke)
    prepare
    trap '"$(lab_bin)" down || true' EXIT
    "$(lab_bin)" scenario smoke
    ;;
  lab)
    # Any duplex-lab command on the lab built here: run.sh lab exec H -- multipath -ll
    shift
    exec "$(lab_bin)" "$@"
    ;;
  *)
    echo "usage: $0 up|boot|down|smoke|lab ARGS..." >&2
    exit 2
    ;;
esac
