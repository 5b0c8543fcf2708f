#!/usr/bin/env bash
# Local demo of the foundation: builds the daemons, starts the router and
# every service on a temporary socket directory (no root paths touched),
# shows `duplexctl services`, a routed call and its trace, then stops them.
# Pass --keep to leave them running (the script prints how to stop them).
set -euo pipefail
cd "$(dirname "$0")/.."

keep=0
[ "${1:-}" = "--keep" ] && keep=1

cargo build --workspace --bins --quiet
bin=target/debug
dir=$(mktemp -d /tmp/duplex-demo.XXXXXX)
mkdir -p "$dir/run" "$dir/state"
cat > "$dir/duplex.toml" <<TOML
controller_id = "A"
socket_dir = "$dir/run"
state_dir = "$dir/state"
TOML
export DUPLEX_CONFIG="$dir/duplex.toml"

pids=()
stop() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
[ "$keep" = 1 ] || trap 'stop; rm -rf "$dir"' EXIT

"$bin/duplex-router" 2>"$dir/router.log" & pids+=($!)
# This machine has no LVM activation or configfs, so the storage daemons run
# on their simulators here; the lab runs them on real kernels.
"$bin/duplex-config-keeper" 2>"$dir/config-keeper.log" & pids+=($!)
"$bin/duplex-heartbeat" 2>"$dir/heartbeat.log" & pids+=($!)
"$bin/duplex-pool-manager" --sim 2>"$dir/pool-manager.log" & pids+=($!)
"$bin/duplex-targets" --sim 2>"$dir/targets.log" & pids+=($!)

# Bounded wait until all four services are registered and up.
for _ in $(seq 1 100); do
  up=$("$bin/duplexctl" --json services 2>/dev/null | grep -c '"state": "up"' || true)
  [ "$up" -ge 4 ] && break
  sleep 0.1
done

echo "== duplexctl services"
"$bin/duplexctl" services
echo
echo "== duplexctl call cluster.status"
"$bin/duplexctl" call cluster.status 2>"$dir/call.err"
action=$(sed -n 's/^action_id: //p' "$dir/call.err")
echo "(action_id $action)"
echo
echo "== duplexctl call config.status"
"$bin/duplexctl" call config.status 2>/dev/null
echo
echo "== duplexctl trace $action"
"$bin/duplexctl" trace "$action"
echo
if [ "$keep" = 1 ]; then
  echo "Left running; logs and sockets in $dir."
  echo "Use: DUPLEX_CONFIG=$dir/duplex.toml $bin/duplexctl services"
  echo "Stop: kill ${pids[*]}"
fi
