//! Front-end link state from sysfs: `/sys/class/net/IF/carrier` is `1`
//! while the link is up. Reading it fails with EINVAL while the interface
//! is administratively down, which counts as down; an interface that does
//! not exist counts as down too (a renamed or removed port serves no host).

use crate::backend::FrontendLinks;
use std::path::PathBuf;

/// [`FrontendLinks`] on interfaces named in the configuration.
#[derive(Debug, Clone)]
pub struct SysfsCarrier {
    root: PathBuf,
    names: Vec<String>,
}

impl SysfsCarrier {
    /// Watches `names` under `/sys/class/net`.
    pub fn new(names: &[String]) -> Self {
        Self::with_root(PathBuf::from("/sys/class/net"), names)
    }

    /// Watches `names` under another directory (tests).
    pub fn with_root(root: PathBuf, names: &[String]) -> Self {
        SysfsCarrier {
            root,
            names: names.to_vec(),
        }
    }
}

impl FrontendLinks for SysfsCarrier {
    fn any_up(&self) -> Result<bool, String> {
        if self.names.is_empty() {
            return Err("no front-end interfaces configured".into());
        }
        Ok(self.names.iter().any(|n| {
            std::fs::read_to_string(self.root.join(n).join("carrier"))
                .is_ok_and(|c| c.trim() == "1")
        }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test setup: a panic is the failure report
    use super::*;

    #[test]
    fn any_interface_with_carrier_is_up() {
        let d = tempfile::tempdir().unwrap();
        for (n, c) in [("fe0", "0\n"), ("fe1", "1\n")] {
            std::fs::create_dir(d.path().join(n)).unwrap();
            std::fs::write(d.path().join(n).join("carrier"), c).unwrap();
        }
        let both = SysfsCarrier::with_root(d.path().into(), &["fe0".into(), "fe1".into()]);
        assert_eq!(both.any_up(), Ok(true));
        let one = SysfsCarrier::with_root(d.path().into(), &["fe0".into(), "gone".into()]);
        assert_eq!(one.any_up(), Ok(false), "down and absent are both down");
        assert!(SysfsCarrier::with_root(d.path().into(), &[])
            .any_up()
            .is_err());
    }
}
