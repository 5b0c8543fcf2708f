#!/usr/bin/env bash
# Builds (or reuses) the lab's guest images: kernel, busybox initramfs and a
# raw ext4 base image with a bookworm rootfs. Everything lands in
# $DUPLEX_LAB_CACHE/<key>/ where <key> hashes every input (this script, the
# files baked into the image, the package list, the kernel version), so a
# second run with the same inputs only prints the folder.
# Usage: images.sh   -> prints the image folder on stdout (logs go to stderr)
set -euo pipefail
# Only the folder goes to stdout; every tool's chatter goes to stderr.
exec 3>&1 1>&2
here="$(cd "$(dirname "$0")" && pwd)"
cache="${DUPLEX_LAB_CACHE:-$here/cache}"
mkdir -p "$cache"
log() { echo "images: $*" >&2; }

# Packages of the guest rootfs (one image for controllers and host).
packages=(systemd-sysv udev kmod iproute2 lvm2 open-iscsi multipath-tools
  nvme-cli sg3-utils fio iputils-arping iputils-ping procps util-linux
  e2fsprogs ipmitool)

# The Debian mirror the host's apt already uses, so debootstrap goes to the
# same registry (no other network access is allowed).
mirror=""
for f in /etc/apt/sources.list.d/*.sources; do
  [ -f "$f" ] || continue
  u=$(awk '/^URIs:/{print $2}' "$f" | grep -E '/debian/?$' | head -n1 || true)
  if [ -n "$u" ]; then mirror="$u"; break; fi
done
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
  mirror=$(awk '$1=="deb" && $2 ~ /\/debian\/?$/ {print $2; exit}' /etc/apt/sources.list || true)
fi
mirror="${mirror:-http://deb.debian.org/debian}"

# Kernel: whatever linux-image-amd64 points to today.
kpkg=$(timeout 60 apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-6/{print $2; exit}')
[ -n "$kpkg" ] || { log "cannot resolve the kernel package (apt-get update?)"; exit 1; }
kver_pkg=$(timeout 60 apt-cache policy "$kpkg" | awk '/Candidate:/{print $2}')

key=$( { cat "$here/images.sh"; cat "$here"/guest/*; echo "${packages[*]}"; echo "$kpkg $kver_pkg $mirror"; } | sha256sum | cut -c1-16)
out="$cache/$key"
# Several labs (clones, parallel test runs) may share the cache: one builds
# a given key, the others wait for it and reuse it.
exec 9>"$cache/$key.lock"
timeout 1800 flock 9 || { log "waited too long for another build of $key"; exit 1; }
if [ -f "$out/done" ]; then
  log "reusing $out"
  touch "$out"
  echo "$out" >&3
  exit 0
fi

t0=$(date +%s)
work="$cache/build-$key.$$"
rm -rf "$work"; mkdir -p "$work"; chmod 0755 "$work"
trap 'rm -rf "$work"' EXIT

# --- kernel -------------------------------------------------------------
log "kernel $kpkg $kver_pkg"
# apt drops privileges to _apt for downloads: use a folder it can write.
dl=$(mktemp -d /tmp/duplex-lab-kernel.XXXXXX)
chmod 0755 "$dl"; chown _apt "$dl" 2>/dev/null || true
(cd "$dl" && timeout 300 apt-get download -q "$kpkg" >&2)
mv "$dl"/*.deb "$work/"
rmdir "$dl"
mkdir -p "$work/kernel"
dpkg-deb -x "$work"/"$kpkg"_*.deb "$work/kernel"
kver=${kpkg#linux-image-}
mods="$work/kernel/lib/modules/$kver"
# Drop module trees a VM without hardware never needs; keeps the image small.
for d in drivers/gpu drivers/media drivers/net/wireless drivers/net/ethernet \
  drivers/infiniband drivers/staging drivers/bluetooth drivers/iio \
  drivers/hid drivers/usb drivers/input drivers/video drivers/mmc \
  drivers/isdn drivers/net/can drivers/thunderbolt sound net/wireless \
  net/bluetooth net/mac80211 fs/nls fs/btrfs fs/xfs fs/ocfs2 fs/gfs2 \
  fs/nfs fs/nfsd fs/cifs fs/smb fs/ceph fs/f2fs \
  drivers/ata drivers/block/floppy.ko drivers/i2c drivers/edac drivers/hwmon \
  drivers/char/tpm drivers/platform arch/x86/crypto; do
  rm -rf "${mods:?}/kernel/$d"
done
depmod -b "$work/kernel" "$kver"

# --- initramfs: busybox, virtio + ext4, find the root disk by serial ------
log "initramfs"
ird="$work/initramfs"
mkdir -p "$ird"/{bin,dev,proc,sys,newroot,mods}
cp /bin/busybox "$ird/bin/busybox"
for m in virtio_pci virtio_blk ext4 crc32c_generic; do
  modprobe -d "$work/kernel" -S "$kver" --show-depends "$m" | awk '$1=="insmod"{print $2}'
done | awk '!seen[$0]++' > "$work/modlist"
: > "$ird/mods/order"
while read -r p; do
  b=$(basename "$p")
  cp "$p" "$ird/mods/$b"
  echo "$b" >> "$ird/mods/order"
done < "$work/modlist"
cp "$here/guest/initramfs-init" "$ird/init"
chmod 0755 "$ird/init"
(cd "$ird" && find . | cpio -o -H newc --quiet | gzip -1) > "$work/initrd.img"

# --- rootfs -------------------------------------------------------------
log "debootstrap from $mirror"
root="$work/rootfs"
incl=$(IFS=,; echo "${packages[*]}")
timeout 900 debootstrap --variant=minbase --include="$incl" bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 \
  || { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }
# Modules for the guest kernel.
mkdir -p "$root/lib/modules"
cp -a "$mods" "$root/lib/modules/"
# Files baked into the image: the payload installer and its units.
install -m 0755 "$here/guest/duplex-lab-payload" "$root/usr/local/sbin/duplex-lab-payload"
install -m 0644 "$here/guest/duplex-lab-payload.service" "$root/etc/systemd/system/"
install -m 0644 "$here/guest/duplex-lab-agent.service" "$root/etc/systemd/system/"
echo "/dev/root / ext4 rw,noatime 0 0" > "$root/etc/fstab"
echo "duplex-lab" > "$root/etc/hostname"
chroot "$root" /bin/sh -euc '
  passwd -d root >/dev/null
  systemctl enable duplex-lab-payload.service duplex-lab-agent.service >/dev/null 2>&1
  # Masked: slow or harmful in the lab (see LAB.md). multipathd and iscsid
  # are started by the payload on the host VM only: on a controller
  # multipathd would grab the shared shelf disks.
  for u in getty@tty1.service getty-static.service systemd-timesyncd.service nvmf-autoconnect.service \
      lvm2-monitor.service lvm2-lvmpolld.socket rtslib-fb-targetctl.service \
      systemd-logind.service apt-daily.timer apt-daily-upgrade.timer \
      e2scrub_all.timer e2scrub_reap.service fstrim.timer dpkg-db-backup.timer \
      man-db.timer systemd-tmpfiles-clean.timer blk-availability.service \
      systemd-pcrphase.service systemd-pcrphase-sysinit.service \
      systemd-pcrphase-initrd.service systemd-binfmt.service \
      proc-sys-fs-binfmt_misc.automount systemd-update-utmp.service \
      systemd-update-utmp-runlevel.service systemd-journal-flush.service \
      modprobe@efi_pstore.service modprobe@fuse.service modprobe@drm.service \
      sys-kernel-debug.mount sys-kernel-tracing.mount dev-hugepages.mount \
      dev-mqueue.mount; do
    systemctl mask "$u" >/dev/null 2>&1 || true
  done
  for u in multipathd.service multipathd.socket iscsid.service iscsid.socket \
      open-iscsi.service nvmefc-boot-connections.service; do
    systemctl disable "$u" >/dev/null 2>&1 || true
  done
  # The journal stays in memory: nothing to flush at boot, nothing to keep.
  mkdir -p /etc/systemd/journald.conf.d
  printf "[Journal]\nStorage=volatile\nRuntimeMaxUse=32M\n" > /etc/systemd/journald.conf.d/lab.conf
  # Quick stops: a lab VM is reset or killed, never nursed.
  mkdir -p /etc/systemd/system.conf.d
  # The watchdog (i6300esb) belongs to the heartbeat service: systemd must
  # never open it, at runtime or around a reboot (one opener only).
  printf "[Manager]\nDefaultTimeoutStopSec=10s\nRuntimeWatchdogSec=off\nRebootWatchdogSec=off\nKExecWatchdogSec=off\n" \
    > /etc/systemd/system.conf.d/lab.conf
  # The watchdog driver is loaded at boot even before udev probes the PCI bus.
  echo i6300esb > /etc/modules-load.d/duplex-lab-watchdog.conf
  # Serial console logs in as root at once: `duplex-lab console` is for debugging.
  mkdir -p /etc/systemd/system/serial-getty@ttyS0.service.d
  printf "[Service]\nExecStart=\nExecStart=-/sbin/agetty --autologin root --keep-baud 115200 %%I \$TERM\n" \
    > /etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf
'
# LVM on shared disks: the firmware owns activation, never udev.
sed -i 's/^\(\s*\)# event_activation = 1/\1event_activation = 0/' "$root/etc/lvm/lvm.conf" || true
# Trim.
rm -rf "$root"/usr/share/{doc,man,info,locale,lintian,bug} "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/*
mkdir -p "$root/usr/share/locale"
log "base image"
mkfs.ext4 -q -F -L duplexroot -E lazy_itable_init=1 -d "$root" "$work/base.img" 3G

mkdir -p "$out.tmp"
mv "$work/initrd.img" "$work/base.img" "$out.tmp/"
cp "$work/kernel/boot/vmlinuz-$kver" "$out.tmp/vmlinuz"
echo "$kver" > "$out.tmp/kver"
rm -rf "$out"; mv "$out.tmp" "$out"
echo "$(( $(date +%s) - t0 ))" > "$out/build_seconds"
touch "$out/done"
# Drop image sets nobody used for a day and abandoned half builds; a set in
# use by a running lab (its VMs' backing file) is never that old.
find "$cache" -mindepth 1 -maxdepth 1 -type d -regextype posix-extended \
  -regex '.*/[0-9a-f]{16}' ! -name "$key" -mmin +1440 \
  -exec rm -rf {} + 2>/dev/null || true
find "$cache" -mindepth 1 -maxdepth 1 -type d -name 'build-*' -mmin +180 \
  -exec rm -rf {} + 2>/dev/null || true
touch "$out"
log "built $out in $(cat "$out/build_seconds") s"
echo "$out" >&3
