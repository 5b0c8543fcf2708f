#!/usr/bin/env bash
# The main job (see README): brings up the two-controller lab in QEMU with a
# multipath host, applies the demo and prints the host's view. The lab stays
# up; `tests/lab/run.sh down` stops it. `scripts/local-demo.sh` is the quick
# look without QEMU.
set -euo pipefail
cd "$(dirname "$0")"
export DUPLEX_LAB_CACHE="${DUPLEX_LAB_CACHE:-/var/cache/duplex-lab}"
exec tests/lab/run.sh up "$@"
