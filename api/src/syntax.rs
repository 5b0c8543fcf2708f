//! Syntax of the scalar values in the configuration: names, sizes with units,
//! IQNs (RFC 3720 3.2.6), NQNs (NVMe base specification 4.5), identifiers of
//! volumes (unit serial, NAA WWN, NGUID, UUID) and interface addresses.
//!
//! Every checker returns `Err(reason)`; the caller attaches the field path.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest object name; LVM and configfs both accept it.
pub const MAX_NAME_LEN: usize = 63;

/// Checks an object name: 1..=63 characters of `[A-Za-z0-9_.-]`, starting
/// with a letter or digit (LVM refuses names starting with `-`, and names
/// reach LV names, configfs directories and CLI arguments).
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!("longer than {MAX_NAME_LEN} characters"));
    }
    let first = name.chars().next().unwrap_or('-');
    if !first.is_ascii_alphanumeric() {
        return Err(format!("{name:?} must start with a letter or a digit"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(format!(
            "{name:?} contains {c:?}; allowed are letters, digits, '_', '.', '-'"
        ));
    }
    Ok(())
}

/// Checks a Linux network interface name (at most 15 bytes, no '/', no
/// whitespace, not "." or "..").
pub fn check_ifname(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 15 {
        return Err(format!("{name:?} must be 1 to 15 characters"));
    }
    if name == "." || name == ".." {
        return Err(format!("{name:?} is not an interface name"));
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace() || !c.is_ascii())
    {
        return Err(format!(
            "{name:?} contains '/', ':', whitespace or non-ASCII"
        ));
    }
    Ok(())
}

fn is_lower_hex(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f'))
}

/// Checks a SCSI unit serial: lowercase hex, 8 to 32 digits. dm-multipath
/// builds the WWID from the serial's hex digits only, so anything else
/// makes two volumes collide on the host.
pub fn check_unit_serial(s: &str) -> Result<(), String> {
    if !is_lower_hex(s) || s.len() < 8 || s.len() > 32 {
        return Err(format!("{s:?} must be 8 to 32 lowercase hex digits"));
    }
    Ok(())
}

/// Checks an NAA world wide name: 16 (NAA 2, 3 or 5) or 32 (NAA 6)
/// lowercase hex digits, the first digit being the NAA type.
pub fn check_naa_wwn(s: &str) -> Result<(), String> {
    if !is_lower_hex(s) {
        return Err(format!("{s:?} must be lowercase hex digits"));
    }
    let naa = s.chars().next().unwrap_or('0');
    match (s.len(), naa) {
        (16, '2' | '3' | '5') | (32, '6') => Ok(()),
        (16, _) => Err(format!(
            "{s:?}: a 16-digit WWN must start with NAA type 2, 3 or 5"
        )),
        (32, _) => Err(format!("{s:?}: a 32-digit WWN must start with NAA type 6")),
        _ => Err(format!("{s:?} must be 16 or 32 hex digits")),
    }
}

/// Checks an NVMe namespace globally unique identifier: 32 lowercase hex
/// digits, not all zero (the spec reserves zero for "not reported").
pub fn check_nguid(s: &str) -> Result<(), String> {
    if !is_lower_hex(s) || s.len() != 32 {
        return Err(format!("{s:?} must be 32 lowercase hex digits"));
    }
    if s.chars().all(|c| c == '0') {
        return Err("must not be all zeros".into());
    }
    Ok(())
}

/// Checks a UUID in the canonical lowercase 8-4-4-4-12 form.
pub fn check_uuid(s: &str) -> Result<(), String> {
    let groups: Vec<&str> = s.split('-').collect();
    let lens = [8, 4, 4, 4, 12];
    let ok = groups.len() == 5
        && groups
            .iter()
            .zip(lens)
            .all(|(g, n)| g.len() == n && is_lower_hex(g));
    if !ok {
        return Err(format!(
            "{s:?} must be a lowercase UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)"
        ));
    }
    if s.chars().all(|c| c == '0' || c == '-') {
        return Err("must not be the nil UUID".into());
    }
    Ok(())
}

fn check_domain_label_chars(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|label| {
            !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

fn check_iqn_date(s: &str) -> bool {
    // yyyy-mm, a month 01..=12
    let b = s.as_bytes();
    b.len() == 7
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[5..].iter().all(u8::is_ascii_digit)
        && matches!(
            &s[5..],
            "01" | "02" | "03" | "04" | "05" | "06" | "07" | "08" | "09" | "10" | "11" | "12"
        )
}

/// Checks an iSCSI name (RFC 3720 section 3.2.6): `iqn.yyyy-mm.reversed.domain[:anything]`
/// or `eui.` followed by 16 hex digits, at most 223 bytes. Names are
/// compared after stringprep, which for our ASCII-only policy means they
/// must be lowercase.
pub fn check_iqn(s: &str) -> Result<(), String> {
    if s.len() > 223 {
        return Err("longer than 223 bytes (RFC 3720 3.2.6.1)".into());
    }
    if s.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(format!(
            "{s:?} must be lowercase (RFC 3720 names are case-folded)"
        ));
    }
    if s.chars()
        .any(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':')))
    {
        return Err(format!(
            "{s:?} may contain only a-z, 0-9, '-', '.', ':' (RFC 3720 3.2.6.2)"
        ));
    }
    if let Some(rest) = s.strip_prefix("iqn.") {
        let (head, _suffix) = rest.split_once(':').unwrap_or((rest, ""));
        let Some((date, domain)) = head.split_once('.') else {
            return Err(format!("{s:?} must be iqn.yyyy-mm.reversed.domain[:name]"));
        };
        if !check_iqn_date(date) {
            return Err(format!("{s:?}: {date:?} is not a yyyy-mm date"));
        }
        if !check_domain_label_chars(domain) {
            return Err(format!("{s:?}: {domain:?} is not a reversed domain name"));
        }
        Ok(())
    } else if let Some(hex) = s.strip_prefix("eui.") {
        if hex.len() == 16 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
            Ok(())
        } else {
            Err(format!("{s:?}: eui. must be followed by 16 hex digits"))
        }
    } else {
        Err(format!("{s:?} must start with \"iqn.\" or \"eui.\""))
    }
}

/// Checks an NVMe qualified name (NVMe base specification 2.0, 4.5):
/// at most 223 bytes, either `nqn.yyyy-mm.reversed.domain:anything` or the
/// UUID form `nqn.2014-08.org.nvmexpress:uuid:<uuid>`.
pub fn check_nqn(s: &str) -> Result<(), String> {
    if s.len() > 223 {
        return Err("longer than 223 bytes (NVMe base spec 4.5)".into());
    }
    if !s.is_ascii() || s.chars().any(|c| c.is_whitespace() || c.is_ascii_control()) {
        return Err(format!("{s:?} must be printable ASCII without spaces"));
    }
    // The NVMe specification allows any UTF-8 after the ':', but the name
    // is a directory under nvmet/hosts and nvmet/subsystems: a '/' would
    // make it a path. Linux refuses it there too.
    if s.contains('/') {
        return Err(format!(
            "{s:?} must not contain '/' (it names a configfs directory)"
        ));
    }
    if let Some(uuid) = s.strip_prefix("nqn.2014-08.org.nvmexpress:uuid:") {
        return check_uuid(&uuid.to_ascii_lowercase())
            .map_err(|e| format!("{s:?}: UUID-form NQN: {e}"));
    }
    let Some(rest) = s.strip_prefix("nqn.") else {
        return Err(format!("{s:?} must start with \"nqn.\""));
    };
    let Some((head, suffix)) = rest.split_once(':') else {
        return Err(format!(
            "{s:?} must be nqn.yyyy-mm.reversed.domain:identifier"
        ));
    };
    let Some((date, domain)) = head.split_once('.') else {
        return Err(format!(
            "{s:?} must be nqn.yyyy-mm.reversed.domain:identifier"
        ));
    };
    if !check_iqn_date(date) {
        return Err(format!("{s:?}: {date:?} is not a yyyy-mm date"));
    }
    if !check_domain_label_chars(domain) {
        return Err(format!("{s:?}: {domain:?} is not a reversed domain name"));
    }
    if suffix.is_empty() {
        return Err(format!("{s:?}: the part after ':' must not be empty"));
    }
    Ok(())
}

/// Checks a CHAP user name: 1 to 255 printable ASCII characters, like a
/// secret (LIO writes it verbatim into configfs and the initiator's
/// login; a control character there corrupts both).
pub fn check_chap_user(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 255 {
        return Err("must be 1 to 255 characters".into());
    }
    if !s.is_ascii() || s.chars().any(|c| c.is_ascii_control()) {
        return Err("must be printable ASCII".into());
    }
    Ok(())
}

/// Checks a CHAP secret. RFC 3720 11.1.4 recommends at least
/// 96 bits of secret; Windows initiators refuse fewer than 12 characters and
/// LIO stores at most 255.
pub fn check_chap_secret(s: &str) -> Result<(), String> {
    if s.len() < 12 || s.len() > 255 {
        return Err("must be 12 to 255 characters (RFC 3720 11.1.4)".into());
    }
    if !s.is_ascii() || s.chars().any(|c| c.is_ascii_control()) {
        return Err("must be printable ASCII".into());
    }
    Ok(())
}

/// A size in bytes, written with a unit on the wire ("10GiB", "512M").
/// Bare numbers are refused: a missing unit is the classic off-by-2^30.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Size(pub u64);

const UNITS: [(&str, u64); 13] = [
    ("TiB", 1 << 40),
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
    ("TB", 1_000_000_000_000),
    ("GB", 1_000_000_000),
    ("MB", 1_000_000),
    ("KB", 1_000),
    ("T", 1 << 40),
    ("G", 1 << 30),
    ("M", 1 << 20),
    ("K", 1 << 10),
    ("B", 1),
];

impl Size {
    /// The size in bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl FromStr for Size {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(|| {
            format!("{s:?} has no unit (use B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)")
        })?;
        let (num, unit) = t.split_at(split);
        if num.is_empty() {
            return Err(format!("{s:?} must start with a number"));
        }
        let unit = unit.trim();
        let mult = UNITS
            .iter()
            .find(|(u, _)| *u == unit)
            .map(|(_, m)| *m)
            .ok_or_else(|| {
                format!("{s:?}: unknown unit {unit:?} (use B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)")
            })?;
        let n: u64 = num
            .parse()
            .map_err(|_| format!("{s:?}: {num:?} is not a number"))?;
        let bytes = n
            .checked_mul(mult)
            .ok_or_else(|| format!("{s:?} is too large"))?;
        Ok(Size(bytes))
    }
}

impl fmt::Display for Size {
    /// Canonical form: the largest binary unit that divides the size, so
    /// that "1024MiB" and "1GiB" store (and digest) identically.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, mult) in [
            ("TiB", 1u64 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ] {
            if self.0 != 0 && self.0 % mult == 0 {
                return write!(f, "{}{unit}", self.0 / mult);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl Serialize for Size {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Number(serde_json::Number),
        }
        match Raw::deserialize(d)? {
            Raw::Text(s) => s.parse().map_err(serde::de::Error::custom),
            Raw::Number(n) => Err(serde::de::Error::custom(format!(
                "{n} has no unit (write e.g. \"{n}GiB\")"
            ))),
        }
    }
}

/// An interface address: an IP address with its prefix length
/// ("192.0.2.10/24", "2001:db8::10/64").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IfAddr {
    /// The address itself.
    pub addr: IpAddr,
    /// The prefix length (0..=32 for IPv4, 0..=128 for IPv6).
    pub prefix: u8,
}

impl IfAddr {
    fn bits(self) -> (u128, u8) {
        match self.addr {
            IpAddr::V4(a) => (u128::from(u32::from(a)), 32),
            IpAddr::V6(a) => (u128::from(a), 128),
        }
    }

    /// The network part of the address as (bits, width).
    fn network(self) -> (u128, u8) {
        let (bits, width) = self.bits();
        let host_bits = u32::from(width - self.prefix.min(width));
        let mask = if host_bits >= 128 {
            0
        } else {
            (u128::MAX >> host_bits) << host_bits
        };
        (bits & mask & (u128::MAX >> (128 - u32::from(width))), width)
    }

    /// True when the two subnets share at least one address.
    pub fn overlaps(self, other: IfAddr) -> bool {
        let (_, wa) = self.bits();
        let (_, wb) = other.bits();
        if wa != wb {
            return false;
        }
        let shorter = if self.prefix <= other.prefix {
            self
        } else {
            other
        };
        let longer = if self.prefix <= other.prefix {
            other
        } else {
            self
        };
        let narrowed = IfAddr {
            addr: longer.addr,
            prefix: shorter.prefix,
        };
        narrowed.network() == shorter.network()
    }

    /// True when both sit in exactly the same subnet.
    pub fn same_subnet(self, other: IfAddr) -> bool {
        self.prefix == other.prefix && self.network() == other.network()
    }

    /// Checks that the address can be configured on an interface: a unicast
    /// address that is not the network or broadcast address of its subnet.
    pub fn check_host(self) -> Result<(), String> {
        let (bits, width) = self.bits();
        if self.addr.is_unspecified() || self.addr.is_multicast() || self.addr.is_loopback() {
            return Err(format!("{self} is not a usable unicast address"));
        }
        if width == 32 && self.prefix < 31 {
            let host_bits = 32 - u32::from(self.prefix);
            let host_mask = (1u128 << host_bits) - 1;
            let host = bits & host_mask;
            if host == 0 {
                return Err(format!("{self} is the network address of its subnet"));
            }
            if host == host_mask {
                return Err(format!("{self} is the broadcast address of its subnet"));
            }
        }
        Ok(())
    }
}

impl fmt::Display for IfAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for IfAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} must be address/prefix (e.g. 192.0.2.10/24)"))?;
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("{s:?}: {a:?} is not an IP address"))?;
        let prefix: u8 = p
            .parse()
            .map_err(|_| format!("{s:?}: {p:?} is not a prefix length"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(format!("{s:?}: prefix {prefix} is larger than {max}"));
        }
        if prefix == 0 {
            return Err(format!("{s:?}: prefix 0 covers every address"));
        }
        Ok(IfAddr { addr, prefix })
    }
}

impl Serialize for IfAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IfAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name("vol-1.a_b").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("-x").is_err());
        assert!(check_name("a b").is_err());
        assert!(check_name("a/b").is_err());
        assert!(check_name(&"a".repeat(64)).is_err());
    }

    #[test]
    fn sizes_need_units() {
        assert_eq!("10GiB".parse::<Size>(), Ok(Size(10 << 30)));
        assert_eq!(
            "1024MiB".parse::<Size>().map(|s| s.to_string()),
            Ok("1GiB".into())
        );
        assert_eq!("512M".parse::<Size>(), Ok(Size(512 << 20)));
        assert_eq!("1GB".parse::<Size>(), Ok(Size(1_000_000_000)));
        assert!("10".parse::<Size>().is_err());
        assert!("GiB".parse::<Size>().is_err());
        assert!("10 parsecs".parse::<Size>().is_err());
        assert!("99999999999999999999GiB".parse::<Size>().is_err());
        assert!(serde_json::from_str::<Size>("10").is_err());
        assert_eq!(Size(1_000_000_000).to_string(), "1000000000B");
    }

    #[test]
    fn iqns() {
        assert!(check_iqn("iqn.2003-01.org.linux-iscsi.host1:sn.123").is_ok());
        assert!(check_iqn("iqn.1991-05.com.microsoft:win-host").is_ok());
        assert!(check_iqn("eui.02004567a425678d").is_ok());
        assert!(check_iqn("iqn.2003-13.org.x:y").is_err());
        assert!(check_iqn("iqn.2003-01").is_err());
        assert!(check_iqn("IQN.2003-01.org.x").is_err());
        assert!(check_iqn("iqn.2003-01.org.x:a_b").is_err());
        assert!(check_iqn("eui.1234").is_err());
        assert!(check_iqn("naa.1234").is_err());
        assert!(check_iqn(&format!("iqn.2003-01.org.x:{}", "a".repeat(220))).is_err());
    }

    #[test]
    fn nqns() {
        assert!(
            check_nqn("nqn.2014-08.org.nvmexpress:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6")
                .is_ok()
        );
        assert!(check_nqn("nqn.2024-01.com.example:host-1").is_ok());
        assert!(check_nqn("nqn.2014-08.org.nvmexpress:uuid:nope").is_err());
        assert!(check_nqn("nqn.2024-01.com.example").is_err());
        assert!(check_nqn("nqn.2024-01.com.example:").is_err());
        assert!(check_nqn("iqn.2024-01.com.example:x").is_err());
        assert!(check_nqn("nqn.2024-01.com.example:with space").is_err());
        // Issue 16 point 4: a path inside a name.
        assert!(check_nqn("nqn.2024-01.com.example:h1/../../subsystems/evil").is_err());
        assert!(check_nqn("nqn.2024-01.com.example:h1\u{7f}").is_err());
        assert!(check_nqn("nqn.2024-01.com.example:h1.x_y@z").is_ok());
    }

    #[test]
    fn chap_users_are_printable() {
        assert!(check_chap_user("host-1@example").is_ok());
        assert!(check_chap_user("us\nNULL\0x").is_err());
        assert!(check_chap_user("").is_err());
        assert!(check_chap_user(&"u".repeat(256)).is_err());
    }

    #[test]
    fn ids() {
        assert!(check_unit_serial("0123456789abcdef").is_ok());
        assert!(check_unit_serial("0123456789ABCDEF").is_err());
        assert!(check_unit_serial("xyz12345").is_err());
        assert!(check_naa_wwn("6001405abcdef0123456789abcdef012").is_ok());
        assert!(check_naa_wwn("5000c500a1b2c3d4").is_ok());
        assert!(check_naa_wwn("7001405abcdef0123456789abcdef012").is_err());
        assert!(check_nguid("0123456789abcdef0123456789abcdef").is_ok());
        assert!(check_nguid("00000000000000000000000000000000").is_err());
        assert!(check_uuid("f81d4fae-7dec-11d0-a765-00a0c91e6bf6").is_ok());
        assert!(check_uuid("f81d4fae7dec11d0a76500a0c91e6bf6").is_err());
    }

    #[test]
    fn addresses() {
        let a: IfAddr = "192.0.2.10/24".parse().unwrap();
        let b: IfAddr = "192.0.2.200/25".parse().unwrap();
        let c: IfAddr = "192.0.3.1/24".parse().unwrap();
        let d: IfAddr = "192.0.2.20/24".parse().unwrap();
        assert!(a.overlaps(b));
        assert!(!a.overlaps(c));
        assert!(a.same_subnet(d));
        assert!(!a.same_subnet(b));
        assert!("192.0.2.0/24"
            .parse::<IfAddr>()
            .unwrap()
            .check_host()
            .is_err());
        assert!("192.0.2.255/24"
            .parse::<IfAddr>()
            .unwrap()
            .check_host()
            .is_err());
        assert!("10.0.0.1/33".parse::<IfAddr>().is_err());
        assert!("10.0.0.1".parse::<IfAddr>().is_err());
        assert!("10.0.0.1/0".parse::<IfAddr>().is_err());
        let v6: IfAddr = "2001:db8::10/64".parse().unwrap();
        assert!(v6.overlaps("2001:db8::/48".parse().unwrap()));
        assert!(!v6.overlaps(a));
    }
}
