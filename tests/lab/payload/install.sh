#!/bin/sh
# Runs in every lab guest at boot from the read-only payload disk: names the
# NICs by MAC and addresses them, installs the agent and the Duplex binaries,
# units and configuration (controllers), or the shipped host settings (H).
#   install.sh        the whole installation (at boot)
#   install.sh nics   name and address the NICs again, idempotently: the lab
#                     runs it once every agent answers, because udev may
#                     still rename a NIC after the boot-time pass.
set -eu
P=/run/duplex-lab/payload
role=$(sed -n 's/.*duplex_lab\.role=\([A-Za-z]*\).*/\1/p' /proc/cmdline)
[ -n "$role" ] || { echo "install: no duplex_lab.role on the kernel command line"; exit 1; }

# "<mac> <name> <addr/prefix>" per line in $P/roles/$role/net.
nics() {
  changed=0
  while read -r mac name addr; do
    dev=""
    for d in /sys/class/net/*; do
      [ "$(cat "$d/address")" = "$mac" ] && dev=${d##*/}
    done
    [ -n "$dev" ] || { echo "install: no NIC with MAC $mac"; exit 1; }
    if [ "$dev" != "$name" ]; then
      ip link set dev "$dev" down
      ip link set dev "$dev" name "$name"
      changed=1
    fi
    ip -br addr show dev "$name" | grep -q " ${addr%/*}/" || { ip addr add "$addr" dev "$name"; changed=1; }
    ip link set dev "$name" up
  done < "$P/roles/$role/net"
  echo "nics: changed=$changed"
}
if [ "${1:-}" = nics ]; then
  nics
  exit 0
fi

echo "duplex-lab-$role" > /etc/hostname
hostname "duplex-lab-$role"

# Networks. This runs before udev has probed every device: load the NIC
# driver and wait for each MAC, then name and address them.
modprobe virtio_net || true
while read -r mac name addr; do
  i=0
  until grep -qx "$mac" /sys/class/net/*/address 2>/dev/null; do
    i=$((i+1))
    [ $i -lt 600 ] || { echo "install: no NIC with MAC $mac"; exit 1; }
    sleep 0.1
  done
done < "$P/roles/$role/net"
nics
ip link set lo up

# Binaries (agent, verifier, Duplex daemons and CLI): links into the
# payload, which stays mounted; copying ~100 MB costs half a minute in TCG.
for b in "$P"/bin/*; do ln -sf "$b" "/usr/local/bin/${b##*/}"; done

if [ -f "$P/roles/$role/duplex.toml" ]; then
  # Controller: Duplex under systemd.
  install -d -m 0755 /etc/duplex /var/lib/duplex
  install -m 0644 "$P/roles/$role/duplex.toml" /etc/duplex/duplex.toml
  install -m 0600 "$P/cluster.secret" /etc/duplex/cluster.secret
  # The partner's BMC (address, user, password, cipher suite): a secret.
  [ -f "$P/roles/$role/partner-bmc.toml" ] && \
    install -m 0600 "$P/roles/$role/partner-bmc.toml" /etc/duplex/partner-bmc.toml
  modprobe i6300esb || true
  # The web UI's files, when the payload has them (duplex-mgmt serves them).
  if [ -d "$P/ui" ]; then
    install -d -m 0755 /usr/share/duplex/ui
    cp -r "$P/ui/." /usr/share/duplex/ui/
  fi
  # The SCSI disk driver, for the PR disks on virtio-scsi: after a reboot
  # under load udev was seen not loading it, and the disk never appeared.
  modprobe -a virtio_scsi sd_mod || true
  # The product's users and groups (duplex-mgmt runs as its own user; a
  # unit whose User= does not exist fails with status 217/USER).
  if [ -f "$P/systemd/duplex.sysusers" ]; then
    install -D -m 0644 "$P/systemd/duplex.sysusers" /usr/lib/sysusers.d/duplex.conf
    systemd-sysusers /usr/lib/sysusers.d/duplex.conf || echo "install: systemd-sysusers failed" >&2
  fi
  n=0
  for u in "$P"/systemd/*.service "$P"/systemd/*.target; do
    [ -f "$u" ] || continue
    install -m 0644 "$u" /etc/systemd/system/
    n=$((n+1))
  done
  # udev rules shipped beside the units (pool-manager's volume devices).
  for r in "$P"/systemd/*.rules; do [ -f "$r" ] || continue; install -m 0644 "$r" /etc/udev/rules.d/; done
  udevadm control --reload || true
  # udev's priority (see the drop-in); applied by restarting udevd, whose
  # kernel socket is held by systemd, so no event is lost.
  if [ -f "$P/systemd/50-duplex-udevd.conf" ]; then
    install -d -m 0755 /etc/systemd/system/systemd-udevd.service.d
    install -m 0644 "$P/systemd/50-duplex-udevd.conf" /etc/systemd/system/systemd-udevd.service.d/
    systemctl daemon-reload
    systemctl restart systemd-udevd.service || true
    # A restart drops the events its workers were still processing (seen in
    # a pr-fence cycle: the PR disk, attached just before, left without its
    # by-id link, so the heartbeat could not register its key), so replay
    # the block devices' add events and wait for them.
    udevadm trigger --action=add --subsystem-match=block || true
    udevadm settle --timeout=60 || true
  fi
  if [ "$n" -gt 0 ]; then
    # Units may name /usr/bin; the payload installs into /usr/local/bin.
    for b in "$P"/bin/*; do ln -sf "$b" "/usr/bin/${b##*/}"; done
    systemctl daemon-reload
    if [ -f /etc/systemd/system/duplex.target ]; then
      systemctl enable duplex.target >/dev/null 2>&1 || true
      systemctl start --no-block duplex.target
    fi
  fi
  # The invariant monitor's sampler (src/monitor.rs): it writes to a port
  # of its own and waits while no host reader is connected.
  systemd-run --no-block --unit=duplex-lab-monitor sh "$P/monitor.sh" || true
else
  # Host: the settings the product ships in host-config/.
  install -m 0644 "$P/host-config/multipath.conf" /etc/multipath.conf
  # iscsid.conf: drop the keys we set, then append ours.
  awk 'NR == FNR { if ($0 ~ /^[a-z]/) { split($0, a, /[ \t]*=/); drop[a[1]] = 1 }; next }
       { split($0, b, /[ \t]*=/); if (!(b[1] in drop)) print }' \
    "$P/host-config/iscsid.conf" /etc/iscsi/iscsid.conf > /run/duplex-lab/iscsid.conf
  cat /run/duplex-lab/iscsid.conf "$P/host-config/iscsid.conf" > /etc/iscsi/iscsid.conf
  echo "InitiatorName=iqn.2026-11.lab.duplex:host-h" > /etc/iscsi/initiatorname.iscsi
  mkdir -p /etc/nvme
  echo "nqn.2014-08.org.nvmexpress:uuid:5e1f0c1e-0000-4000-8000-000000000001" > /etc/nvme/hostnqn
  echo "5e1f0c1e-0000-4000-8000-000000000001" > /etc/nvme/hostid
  modprobe -a dm-multipath dm-round-robin dm-service-time scsi_dh_alua iscsi_tcp nvme-tcp || true
  systemctl start --no-block multipathd.service iscsid.service
fi
echo "install: role $role done"
