#!/usr/bin/env bash
# The main job (see README): until the lab lands, the local demo of the
# router and services; then the two-controller lab with a multipath host.
set -euo pipefail
cd "$(dirname "$0")"
exec scripts/local-demo.sh "$@"
