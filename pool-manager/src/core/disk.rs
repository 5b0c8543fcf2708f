//! Disks: identity, tier, and whether a disk may join a pool.
//!
//! A disk qualifies only when the partner controller reports the same WWN
//! (so it really is dual-ported and shared), it is not in use (mounted,
//! held by another device, a member of a volume group), and it is blank
//! (no partitions, no signature) unless the caller asked to wipe it.

use duplex_api::model::Tier;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A disk as one controller sees it (`disk.list` with `local: true`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskInfo {
    /// Stable path (`/dev/disk/by-id/...`); kernel names change across boots.
    pub path: String,
    /// Kernel name (`vdc`, `sdb`, `nvme0n1`), for the operator only.
    pub kernel_name: String,
    /// NAA WWN (lowercase hex). Disks that report none (virtio) get a
    /// locally assigned NAA 3 name derived from the serial, see
    /// [`synthetic_wwn`].
    pub wwn: String,
    /// True when `wwn` was derived from the serial.
    #[serde(default)]
    pub wwn_derived: bool,
    /// Vendor serial.
    pub serial: String,
    /// Model, when reported.
    #[serde(default)]
    pub model: String,
    /// Capacity in bytes.
    pub size: u64,
    /// Spinning disk.
    pub rotational: bool,
    /// Transport (`sas`, `nvme`, `sata`, `virtio`...).
    pub transport: String,
    /// Partition names.
    #[serde(default)]
    pub partitions: Vec<String>,
    /// Signature found on the whole disk (`LVM2_member`, `ext4`...).
    #[serde(default)]
    pub signature: Option<String>,
    /// Where the disk or its partitions are mounted.
    #[serde(default)]
    pub mountpoints: Vec<String>,
    /// Devices stacked on the disk (device-mapper, md).
    #[serde(default)]
    pub holders: Vec<String>,
    /// The volume group the disk is a physical volume of.
    #[serde(default)]
    pub vg: Option<String>,
}

impl DiskInfo {
    /// A blank, rotational virtio disk of `size` bytes, named by its serial
    /// (as the simulator and the tests make them).
    pub fn virtio(serial: &str, size: u64) -> DiskInfo {
        DiskInfo {
            path: format!("/dev/disk/by-id/virtio-{serial}"),
            kernel_name: format!("sim-{serial}"),
            wwn: synthetic_wwn("virtio", serial),
            wwn_derived: true,
            serial: serial.into(),
            model: "sim".into(),
            size,
            rotational: true,
            transport: "virtio".into(),
            partitions: vec![],
            signature: None,
            mountpoints: vec![],
            holders: vec![],
            vg: None,
        }
    }

    /// The disk's tier: NVMe or non-rotational is `fast`.
    pub fn tier(&self) -> Tier {
        tier_of(self.rotational, &self.transport)
    }
}

/// `fast` for NVMe or non-rotational media, `regular` otherwise.
pub fn tier_of(rotational: bool, transport: &str) -> Tier {
    if transport == "nvme" || !rotational {
        Tier::Fast
    } else {
        Tier::Regular
    }
}

/// A locally assigned NAA (type 3) WWN for a disk that reports none: `3`
/// followed by 15 hex digits of SHA-256 over the transport and serial. Both
/// controllers derive the same name from the same disk.
pub fn synthetic_wwn(transport: &str, serial: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"duplex-disk\0");
    h.update(transport.as_bytes());
    h.update(b"\0");
    h.update(serial.as_bytes());
    let d = h.finalize();
    let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
    format!("3{}", &hex[..15])
}

/// Normalises a WWN as tools print it (`0x5000c500a1b2c3d4`, `naa.5000...`,
/// `eui.`) to lowercase hex without prefix.
pub fn normalise_wwn(raw: &str) -> String {
    let s = raw.trim().to_ascii_lowercase();
    let s = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("naa."))
        .or_else(|| s.strip_prefix("eui."))
        .unwrap_or(&s);
    s.chars().filter(char::is_ascii_hexdigit).collect()
}

/// Why a disk may not join a pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Refusal {
    /// The partner does not report a disk with this WWN.
    NotShared {
        /// The partner's id.
        partner: String,
    },
    /// The partner could not be asked, so sharing cannot be proven.
    PartnerUnreachable {
        /// The partner's id.
        partner: String,
    },
    /// There is no partner configured (a lone controller has no shared disks).
    NoPartner,
    /// Mounted somewhere.
    Mounted {
        /// The mount points.
        at: Vec<String>,
    },
    /// Other block devices sit on it.
    Held {
        /// The holders.
        by: Vec<String>,
    },
    /// Already a member of a volume group.
    InVolumeGroup {
        /// The VG.
        vg: String,
    },
    /// Recorded in another pool of the desired state.
    InPool {
        /// The pool.
        pool: String,
    },
    /// Has partitions (wipe to use it).
    Partitioned {
        /// The partitions.
        partitions: Vec<String>,
    },
    /// Has a signature (wipe to use it).
    Signature {
        /// What was found.
        signature: String,
    },
}

impl Refusal {
    /// One sentence for the operator.
    pub fn explain(&self, path: &str) -> String {
        match self {
            Refusal::NotShared { partner } => format!(
                "{path} is not seen by controller {partner} with the same WWN: pools need dual-ported disks both controllers see"
            ),
            Refusal::PartnerUnreachable { partner } => format!(
                "controller {partner} cannot be asked whether it sees {path}, so it cannot be proven shared"
            ),
            Refusal::NoPartner => format!("{path}: no partner controller is configured, so no disk is shared"),
            Refusal::Mounted { at } => format!("{path} is in use: mounted at {}", at.join(", ")),
            Refusal::Held { by } => format!("{path} is in use by {}", by.join(", ")),
            Refusal::InVolumeGroup { vg } => format!("{path} is already in volume group {vg}"),
            Refusal::InPool { pool } => format!("{path} is already in pool {pool}"),
            Refusal::Partitioned { partitions } => format!(
                "{path} has partitions ({}); pass wipe: true to erase them",
                partitions.join(", ")
            ),
            Refusal::Signature { signature } => format!(
                "{path} holds a {signature} signature; pass wipe: true to erase it"
            ),
        }
    }

    /// True when `wipe` would lift the refusal.
    pub fn wipeable(&self) -> bool {
        matches!(
            self,
            Refusal::Partitioned { .. } | Refusal::Signature { .. }
        )
    }
}

/// What the partner said about its disks.
#[derive(Debug, Clone, Copy)]
pub enum PartnerDisks<'a> {
    /// No partner in the configuration.
    None,
    /// The partner could not be reached.
    Unreachable(&'a str),
    /// The partner's own discovery.
    Seen(&'a str, &'a [DiskInfo]),
}

/// Decides whether `disk` may join a new pool. `in_pool` is the pool of the
/// desired state that already lists the disk, if any. Refusals that `wipe`
/// lifts are ignored when `wipe` is set; the others never are (an in-use
/// disk is never wiped).
pub fn qualify(
    disk: &DiskInfo,
    partner: PartnerDisks<'_>,
    in_pool: Option<&str>,
    wipe: bool,
) -> Result<(), Refusal> {
    if !disk.mountpoints.is_empty() {
        return Err(Refusal::Mounted {
            at: disk.mountpoints.clone(),
        });
    }
    if !disk.holders.is_empty() {
        return Err(Refusal::Held {
            by: disk.holders.clone(),
        });
    }
    if let Some(pool) = in_pool {
        return Err(Refusal::InPool { pool: pool.into() });
    }
    if let Some(vg) = &disk.vg {
        return Err(Refusal::InVolumeGroup { vg: vg.clone() });
    }
    match partner {
        PartnerDisks::None => return Err(Refusal::NoPartner),
        PartnerDisks::Unreachable(p) => {
            return Err(Refusal::PartnerUnreachable { partner: p.into() })
        }
        PartnerDisks::Seen(p, theirs) => {
            if !theirs.iter().any(|d| d.wwn == disk.wwn) {
                return Err(Refusal::NotShared { partner: p.into() });
            }
        }
    }
    if !wipe {
        if !disk.partitions.is_empty() {
            return Err(Refusal::Partitioned {
                partitions: disk.partitions.clone(),
            });
        }
        if let Some(sig) = &disk.signature {
            return Err(Refusal::Signature {
                signature: sig.clone(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) fn test_disk(serial: &str) -> DiskInfo {
    DiskInfo {
        kernel_name: "vdx".into(),
        model: String::new(),
        ..DiskInfo::virtio(serial, 2 << 30)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use duplex_api::syntax::check_naa_wwn;

    #[test]
    fn derived_wwns_are_valid_and_stable() {
        let a = synthetic_wwn("virtio", "shelf0");
        assert_eq!(a, synthetic_wwn("virtio", "shelf0"));
        assert_ne!(a, synthetic_wwn("virtio", "shelf1"));
        check_naa_wwn(&a).unwrap();
        assert_eq!(normalise_wwn("0x5000C500A1B2C3D4"), "5000c500a1b2c3d4");
        assert_eq!(normalise_wwn("naa.6001405abc"), "6001405abc");
    }

    #[test]
    fn tiers() {
        assert_eq!(tier_of(false, "sas"), Tier::Fast);
        assert_eq!(tier_of(true, "nvme"), Tier::Fast);
        assert_eq!(tier_of(true, "sas"), Tier::Regular);
    }

    #[test]
    fn qualification() {
        let d = test_disk("shelf0");
        let other = test_disk("shelf9");
        let both = [d.clone()];
        let only_other = [other];
        let seen = PartnerDisks::Seen("B", &both);
        assert_eq!(qualify(&d, seen, None, false), Ok(()));
        assert_eq!(
            qualify(&d, PartnerDisks::Seen("B", &only_other), None, false),
            Err(Refusal::NotShared {
                partner: "B".into()
            })
        );
        assert!(matches!(
            qualify(&d, PartnerDisks::Unreachable("B"), None, false),
            Err(Refusal::PartnerUnreachable { .. })
        ));
        assert_eq!(
            qualify(&d, PartnerDisks::None, None, false),
            Err(Refusal::NoPartner)
        );
        assert!(matches!(
            qualify(&d, seen, Some("p1"), true),
            Err(Refusal::InPool { .. })
        ));
        let mut sig = d.clone();
        sig.signature = Some("ext4".into());
        let e = qualify(&sig, seen, None, false).unwrap_err();
        assert!(e.wipeable());
        assert!(e.explain(&sig.path).contains("wipe"));
        assert_eq!(qualify(&sig, seen, None, true), Ok(()));
        let mut parts = d.clone();
        parts.partitions = vec!["vdx1".into()];
        assert!(matches!(
            qualify(&parts, seen, None, false),
            Err(Refusal::Partitioned { .. })
        ));
        // In use is never lifted by wipe.
        let mut mounted = sig.clone();
        mounted.mountpoints = vec!["/".into()];
        assert!(matches!(
            qualify(&mounted, seen, None, true),
            Err(Refusal::Mounted { .. })
        ));
        let mut held = d.clone();
        held.holders = vec!["dm-3".into()];
        assert!(!qualify(&held, seen, None, true).unwrap_err().wipeable());
        let mut member = d;
        member.vg = Some("dx-p".into());
        assert!(matches!(
            qualify(&member, seen, None, true),
            Err(Refusal::InVolumeGroup { .. })
        ));
    }
}
