#!/usr/bin/env bash
# A simulated controller pair on this machine: controllers A and B with the
# real daemons (routers joined by the peer link, config-keeper replicating,
# heartbeat on file-backed heartbeat disks and loopback links, pool-manager
# on one simulated shelf shared through a file, targets on its simulator,
# duplex-mgmt serving the web UI), all on 127.0.0.1. For the browser tests
# and for trying the UI; the lab runs the same daemons on real kernels.
#
#   scripts/sim-pair.sh up DIR     start it; prints (and writes DIR/env) the
#                                  UI addresses and the users' passwords
#   scripts/sim-pair.sh down DIR   stop it
#
# Needs the binaries (cargo build --workspace --bins) and, for the UI, ui/dist
# (scripts/ui-tests.sh builds it).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
bin=$repo/target/debug

usage() { echo "usage: $0 up|down DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
cmd=$1
dir=$2

down() {
  [ -f "$dir/pids" ] || return 0
  local pids
  mapfile -t pids < "$dir/pids"
  kill -TERM "${pids[@]}" 2>/dev/null || true
  # Bounded: daemons stop within seconds; anything left after 10 s is killed.
  for _ in $(seq 1 100); do
    local alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  kill -KILL "${pids[@]}" 2>/dev/null || true
  rm -f "$dir/pids"
}

case "$cmd" in
  down) down; exit 0 ;;
  up) ;;
  *) usage ;;
esac

for b in duplex-router duplex-config-keeper duplex-heartbeat duplex-pool-manager duplex-targets duplex-mgmt duplexctl; do
  [ -x "$bin/$b" ] || { echo "sim-pair: $bin/$b is missing: run cargo build --workspace --bins" >&2; exit 1; }
done
[ -f "$dir/pids" ] && down
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
rm -rf "$dir/A" "$dir/B" "$dir"/hb*.img "$dir/shelf.json"

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
cluster_uuid=$(cat /proc/sys/kernel/random/uuid)
secret=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
admin_pw=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
ro_pw=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
declare -A peer_port hb_port ui_port
for c in A B; do
  peer_port[$c]=$(free_port)
  hb_port[$c]=$(free_port)
  ui_port[$c]=$(free_port)
done
for i in 0 1 2; do
  truncate -s 1M "$dir/hb$i.img"
done
printf '%s' "$secret" > "$dir/cluster.secret"
chmod 600 "$dir/cluster.secret"

# The controllers' addresses in config are documentation addresses: the
# simulators hold them in memory, nothing is configured on this machine.
# The shared-disk timings are relaxed: this machine also runs a browser and
# a compiler, and a simulated pair has nothing to gain from a quick verdict.
for c in A B; do
  p=$([ "$c" = A ] && echo B || echo A)
  mkdir -p "$dir/$c/run" "$dir/$c/state"
  cat > "$dir/$c/duplex.toml" <<TOML
controller_id = "$c"
socket_dir = "$dir/$c/run"
state_dir = "$dir/$c/state"

[peer]
controller_id = "$p"
listen = ["127.0.0.1:${peer_port[$c]}"]
addresses = ["127.0.0.1:${peer_port[$p]}"]
secret_file = "$dir/cluster.secret"

[heartbeat]
disks = ["$dir/hb0.img", "$dir/hb1.img", "$dir/hb2.img"]
links = [{ local = "127.0.0.1:${hb_port[$c]}", peer = "127.0.0.1:${hb_port[$p]}" }]
fence = []
hb_interval_ms = 200
ic_timeout_ms = 3000
disk_interval_ms = 500
suspect_timeout_ms = 5000
disk_timeout_ms = 20000

[mgmt]
listen = ["127.0.0.1"]
port = ${ui_port[$c]}
ui_dir = "$repo/ui/dist"
TOML
done

: > "$dir/pids"
# A failed start leaves nothing running.
trap 'rc=$?; [ $rc -eq 0 ] || { echo "sim-pair: start failed (logs in $dir/A, $dir/B)" >&2; down; }' EXIT
start() { # controller, log name, program, args...
  local c=$1 name=$2
  shift 2
  DUPLEX_CONFIG="$dir/$c/duplex.toml" RUST_LOG="${RUST_LOG:-info}" \
    "$@" > "$dir/$c/$name.log" 2>&1 &
  echo $! >> "$dir/pids"
}
ctl() { # controller, duplexctl args...
  local c=$1
  shift
  DUPLEX_CONFIG="$dir/$c/duplex.toml" timeout 60 "$bin/duplexctl" "$@"
}
# Bounded wait for a condition (a command); names what it waited for.
wait_for() { # what, seconds, command...
  local what=$1 secs=$2
  shift 2
  local end=$((SECONDS + secs))
  until "$@" > /dev/null 2>&1; do
    if [ $SECONDS -ge $end ]; then
      echo "sim-pair: timed out after ${secs}s waiting for $what (logs in $dir/A, $dir/B)" >&2
      down
      exit 1
    fi
    sleep 0.2
  done
}
services_up() { # controller
  [ "$(ctl "$1" --json services 2>/dev/null | grep -c '"state": "up"')" -ge 4 ]
}
phase_normal() { # controller
  ctl "$1" --json call cluster.status 2>/dev/null | python3 -c '
import json, sys
sys.exit(0 if json.load(sys.stdin)["result"]["state"]["phase"] == "normal" else 1)'
}

for c in A B; do
  start "$c" router "$bin/duplex-router"
done
for c in A B; do
  wait_for "$c's router" 30 test -S "$dir/$c/run/router.sock"
  start "$c" config-keeper "$bin/duplex-config-keeper"
  start "$c" heartbeat "$bin/duplex-heartbeat"
  start "$c" pool-manager "$bin/duplex-pool-manager" --sim --sim-shelf "$dir/shelf.json"
  start "$c" targets "$bin/duplex-targets" --sim
  start "$c" mgmt "$bin/duplex-mgmt"
done
for c in A B; do
  wait_for "$c's services" 60 services_up "$c"
done

ctl A call cluster.init '{"cluster_id": "sim-pair"}' > /dev/null 2>> "$dir/setup.log"
for c in A B; do
  wait_for "$c's heartbeat to reach normal" 90 phase_normal "$c"
done
ctl A call config.apply "$(cat <<JSON
{"changes": [
  {"op": "upsert", "kind": "cluster", "object": {"id": "$cluster_uuid", "epoch": 1, "secret_ref": "$dir/cluster.secret"}},
  {"op": "upsert", "kind": "controller", "object": {"id": "A", "name": "controller A", "interconnect": ["10.51.0.1/24"], "management": "192.0.2.1/24", "portals": ["198.51.100.1/24"]}},
  {"op": "upsert", "kind": "controller", "object": {"id": "B", "name": "controller B", "interconnect": ["10.51.0.2/24"], "management": "192.0.2.2/24", "portals": ["198.51.100.2/24"]}},
  {"op": "upsert", "kind": "user", "object": {"name": "admin", "password": "$admin_pw", "role": "admin"}},
  {"op": "upsert", "kind": "user", "object": {"name": "viewer", "password": "$ro_pw", "role": "read_only"}}
]}
JSON
)" > /dev/null 2>> "$dir/setup.log"
for c in A B; do
  wait_for "$c's management endpoint" 30 test -f "$dir/$c/state/mgmt/cert.pem"
done

cat > "$dir/env" <<ENV
DUPLEX_UI_A=https://127.0.0.1:${ui_port[A]}
DUPLEX_UI_B=https://127.0.0.1:${ui_port[B]}
DUPLEX_ADMIN_USER=admin
DUPLEX_ADMIN_PASSWORD=$admin_pw
DUPLEX_RO_USER=viewer
DUPLEX_RO_PASSWORD=$ro_pw
DUPLEX_CONFIG_A=$dir/A/duplex.toml
DUPLEX_CONFIG_B=$dir/B/duplex.toml
ENV
cat "$dir/env"
