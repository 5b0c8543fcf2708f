#!/bin/sh
# Fault injection in a lab guest: a SCSI disk leaves this controller
# (`delete /dev/disk/by-id/...`, the kernel forgets the device) or every
# SCSI host is scanned again (`rescan`, it comes back). The agent runs
# argument vectors, not shell lines, and a redirection needs a shell.
set -eu
case "${1:-}" in
  delete)
    dev=$(readlink -f "$2")
    echo 1 > "/sys/block/${dev##*/}/device/delete" ;;
  rescan)
    for h in /sys/class/scsi_host/host*; do echo "- - -" > "$h/scan"; done ;;
  *) echo "usage: scsi.sh delete DEVICE | rescan" >&2; exit 2 ;;
esac
