#!/bin/sh
# The invariant monitor's sampler on a controller (src/monitor.rs reads it).
# Every 200 ms: what the kernel serves here (device-mapper devices of LVM,
# ALUA port-group states of the LIO backstores, nvmet ANA group states and
# namespaces), written as one block to a virtio-serial port of its own,
# org.duplex.monitor, which the host reads and stamps with its clock. The
# agent's port is not used: it serves one client at a time.
# The fast path uses shell builtins only (no fork per file). Every 10 s, in
# the background, this controller's own view (config.get: epoch, pool
# owners, volumes) is added as a `cfg` line: a duplexctl call costs about a
# second of the guest's one vCPU under TCG, so more often would disturb
# what the scenario measures.
# A write blocks while no host reader is connected; the host drops the
# block that was waiting.
set -u
PORT=/dev/virtio-ports/org.duplex.monitor
CFG=/run/duplex-lab/monitor-cfg
CORE=/sys/kernel/config/target/core
NVMET=/sys/kernel/config/nvmet
mkdir -p /run/duplex-lab
until [ -e "$PORT" ]; do sleep 1; done
exec 3>"$PORT"
n=0
job=0
last=-10
while :; do
  n=$((n+1))
  out="S $n"
  for d in /sys/block/dm-*/dm; do
    read -r u < "$d/uuid" 2>/dev/null || continue
    case $u in LVM-*) ;; *) continue ;; esac
    read -r name < "$d/name" || name=-
    read -r sus < "$d/suspended" || sus=0
    out="$out
dm $u $name $sus"
  done
  for f in "$CORE"/*/*/alua/*/alua_access_state; do
    [ -r "$f" ] || continue
    g=${f%/alua_access_state}
    gp=${g##*/}
    [ "$gp" = default_tg_pt_gp ] && continue
    bs=${g%/alua/*}
    read -r st < "$f" || continue
    mem=0
    read -r m < "$g/members" 2>/dev/null && [ -n "$m" ] && mem=1
    lu=-
    read -r l < "$bs/alua_lu_gp" 2>/dev/null && lu=${l#LU Group Alias: }
    out="$out
alua ${bs##*/} $gp $st $mem $lu"
  done
  for f in "$NVMET"/ports/*/ana_groups/*/ana_state; do
    [ -r "$f" ] || continue
    g=${f%/ana_state}
    p=${g%/ana_groups/*}
    read -r st < "$f" || continue
    out="$out
ana ${p##*/} ${g##*/} $st"
  done
  for l in "$NVMET"/ports/*/subsystems/*; do
    [ -e "$l" ] || continue
    p=${l%/subsystems/*}
    out="$out
link ${p##*/} ${l##*/}"
  done
  for f in "$NVMET"/subsystems/*/namespaces/*/ana_grpid; do
    [ -r "$f" ] || continue
    ns=${f%/ana_grpid}
    sub=${ns%/namespaces/*}
    read -r grp < "$f" || continue
    read -r en < "$ns/enable" || en=0
    read -r dev < "$ns/device_path" || dev=-
    out="$out
ns ${sub##*/} ${ns##*/} $grp $en ${dev:--}"
  done
  read -r up _ < /proc/uptime
  up=${up%.*}
  if [ -s "$CFG.done" ]; then
    read -r c < "$CFG.done" && out="$out
cfg $c"
    rm -f "$CFG.done"
  fi
  if [ $((up - last)) -ge 10 ]; then
    last=$up
    if [ "$job" = 0 ] || ! kill -0 "$job" 2>/dev/null; then
      ( timeout 8 duplexctl --json call config.get '{}' 2>/dev/null | tr -d '\n' > "$CFG.tmp" \
          && [ -s "$CFG.tmp" ] && mv "$CFG.tmp" "$CFG.done" ) &
      job=$!
    fi
  fi
  printf '%s\nE\n' "$out" >&3 || exit 1
  sleep 0.2
done
