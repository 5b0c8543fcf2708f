#!/bin/sh
# Fault injection in a lab guest: sends one magic SysRq key to the kernel
# (`c` crashes it), for `duplex-lab panic|kernel-hang`. The agent runs
# argument vectors, not shell lines, and a redirection needs a shell.
set -eu
case "${1:-}" in
  [a-z]) printf '%s' "$1" > /proc/sysrq-trigger ;;
  *) echo "usage: sysrq.sh KEY" >&2; exit 2 ;;
esac
