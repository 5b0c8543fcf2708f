//! Stable identities of a volume: SCSI unit serial and LU WWN, NVMe NGUID
//! and UUID. Made once from random bytes when the volume is created,
//! recorded in the desired state, and never changed: both controllers must
//! present the same identity so hosts merge the paths (design brief 5).

use serde::{Deserialize, Serialize};

/// The identity of one volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// SCSI unit serial: 32 lowercase hex digits (dm-multipath keys on the
    /// hex digits only).
    pub serial: String,
    /// SCSI LU WWN: NAA 6 (32 hex digits) with the Linux-IO OUI 001405.
    pub wwn: String,
    /// NVMe NGUID: 32 hex digits.
    pub nguid: String,
    /// NVMe UUID (RFC 4122 version 4).
    pub uuid: String,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Identity {
    /// Builds an identity from 64 random bytes (the caller draws them; the
    /// core stays free of randomness so tests are deterministic).
    pub fn from_random(r: &[u8; 64]) -> Identity {
        let serial = hex(&r[0..16]);
        // NAA 6, IEEE OUI 00-14-05 (what LIO uses), 25 digits vendor specific.
        let wwn = format!("6001405{}", &hex(&r[16..29])[..25]);
        let mut ng = [0u8; 16];
        ng.copy_from_slice(&r[29..45]);
        ng[0] |= 0x01; // never all zero
        let nguid = hex(&ng);
        let mut u = [0u8; 16];
        u.copy_from_slice(&r[45..61]);
        u[6] = (u[6] & 0x0f) | 0x40;
        u[8] = (u[8] & 0x3f) | 0x80;
        let h = hex(&u);
        let uuid = format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        );
        Identity {
            serial,
            wwn,
            nguid,
            uuid,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use duplex_api::syntax::{check_naa_wwn, check_nguid, check_unit_serial, check_uuid};

    #[test]
    fn identities_pass_config_keeper_checks() {
        for seed in [0u8, 1, 0x7f, 0xff] {
            let id = Identity::from_random(&[seed; 64]);
            check_unit_serial(&id.serial).unwrap();
            check_naa_wwn(&id.wwn).unwrap();
            check_nguid(&id.nguid).unwrap();
            check_uuid(&id.uuid).unwrap();
        }
        let a = Identity::from_random(&[1; 64]);
        let mut r = [1u8; 64];
        r[3] = 9;
        assert_ne!(a.serial, Identity::from_random(&r).serial);
    }
}
