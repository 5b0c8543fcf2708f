//! RAID layouts: how many disks each needs, what fraction of raw capacity
//! it gives, how many disks may fail, and the LVM arguments that build it.

use super::Invalid;
use duplex_api::model::Layout as CfgLayout;
use serde::{Deserialize, Serialize};

/// A pool's layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "layout", rename_all = "snake_case")]
pub enum Layout {
    /// Concatenation: all the capacity, no redundancy.
    Linear,
    /// RAID1 with 2 or 3 copies of every block.
    Mirror {
        /// Number of copies (2 or 3).
        copies: u8,
    },
    /// Striping with one parity block per stripe.
    Raid5,
    /// Striping with two parity blocks per stripe.
    Raid6,
    /// Striped two-way mirrors.
    Raid10,
}

/// The layout names `pool.create` and `pool.layouts` accept.
pub const LAYOUT_NAMES: [&str; 5] = ["linear", "mirror", "raid5", "raid6", "raid10"];

/// One row of `pool.layouts`.
pub use duplex_api::methods::pool::LayoutRow as LayoutInfo;

impl Layout {
    /// Parses a layout name and the optional copy count (`field` prefixes
    /// errors: `layout`, `copies`).
    pub fn parse(name: &str, copies: Option<u8>) -> Result<Layout, Invalid> {
        let l = match name {
            "linear" => Layout::Linear,
            "mirror" | "raid1" => {
                let copies = copies.unwrap_or(2);
                if !(2..=3).contains(&copies) {
                    return Err(Invalid::new(
                        "copies",
                        format!("a mirror has 2 or 3 copies, not {copies}"),
                    ));
                }
                return Ok(Layout::Mirror { copies });
            }
            "raid5" => Layout::Raid5,
            "raid6" => Layout::Raid6,
            "raid10" => Layout::Raid10,
            other => {
                return Err(Invalid::new(
                    "layout",
                    format!(
                        "unknown layout {other:?} (one of {})",
                        LAYOUT_NAMES.join(", ")
                    ),
                ))
            }
        };
        if copies.is_some() {
            return Err(Invalid::new("copies", "only a mirror has copies"));
        }
        Ok(l)
    }

    /// The layout's name.
    pub fn name(self) -> &'static str {
        match self {
            Layout::Linear => "linear",
            Layout::Mirror { .. } => "mirror",
            Layout::Raid5 => "raid5",
            Layout::Raid6 => "raid6",
            Layout::Raid10 => "raid10",
        }
    }

    /// The fewest disks LVM accepts for the layout (raid5 needs 2 data
    /// stripes, raid6 3, raid10 2 stripes of 2 copies).
    pub fn min_disks(self) -> usize {
        match self {
            Layout::Linear => 1,
            Layout::Mirror { copies } => usize::from(copies),
            Layout::Raid5 => 3,
            Layout::Raid6 => 5,
            Layout::Raid10 => 4,
        }
    }

    /// Disks the layout really uses out of `n` (raid10 pairs them).
    pub fn disks_used(self, n: usize) -> usize {
        match self {
            Layout::Raid10 => n - n % 2,
            _ => n,
        }
    }

    /// Usable fraction of the raw capacity of `n` equal disks.
    pub fn capacity_fraction(self, n: usize) -> f64 {
        if n < self.min_disks() {
            return 0.0;
        }
        let nf = n as f64;
        let f = match self {
            Layout::Linear => 1.0,
            Layout::Mirror { copies } => 1.0 / f64::from(copies),
            Layout::Raid5 => (nf - 1.0) / nf,
            Layout::Raid6 => (nf - 2.0) / nf,
            Layout::Raid10 => ((n / 2) as f64) / nf,
        };
        (f * 10_000.0).round() / 10_000.0
    }

    /// Disks that may fail, whichever they are, without data loss.
    pub fn fault_tolerance(self) -> usize {
        match self {
            Layout::Linear => 0,
            Layout::Mirror { copies } => usize::from(copies) - 1,
            Layout::Raid5 | Layout::Raid10 => 1,
            Layout::Raid6 => 2,
        }
    }

    /// Checks that `n` disks are enough (`field` is the disks parameter).
    pub fn check_disks(self, field: &str, n: usize) -> Result<(), Invalid> {
        if n < self.min_disks() {
            return Err(Invalid::new(
                field,
                format!(
                    "layout {} needs at least {} disks, {n} given",
                    self.describe(),
                    self.min_disks()
                ),
            ));
        }
        Ok(())
    }

    /// "mirror (3 copies)", "raid5", ...
    pub fn describe(self) -> String {
        match self {
            Layout::Mirror { copies } => format!("mirror ({copies} copies)"),
            other => other.name().to_string(),
        }
    }

    /// `lvcreate` arguments for the thin pool's data LV on `n` data disks.
    pub fn data_lv_args(self, n: usize) -> Vec<String> {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        match self {
            Layout::Linear => s(&["--type", "linear"]),
            Layout::Mirror { copies } => {
                s(&["--type", "raid1", "--mirrors", &(copies - 1).to_string()])
            }
            Layout::Raid5 => s(&["--type", "raid5", "--stripes", &(n - 1).to_string()]),
            Layout::Raid6 => s(&["--type", "raid6", "--stripes", &(n - 2).to_string()]),
            Layout::Raid10 => s(&[
                "--type",
                "raid10",
                "--stripes",
                &(n / 2).to_string(),
                "--mirrors",
                "1",
            ]),
        }
    }

    /// `lvcreate` arguments for the thin pool's metadata LV: mirrored with as
    /// many copies as the data tolerates failures, so the metadata is never
    /// the weak part of the pool.
    pub fn meta_lv_args(self) -> Vec<String> {
        match self.fault_tolerance() {
            0 => vec!["--type".into(), "linear".into()],
            t => vec![
                "--type".into(),
                "raid1".into(),
                "--mirrors".into(),
                t.to_string(),
            ],
        }
    }

    /// The copy count config-keeper records (`pools[].copies`, raid1
    /// only).
    pub fn config_copies(self) -> Option<u32> {
        match self {
            Layout::Mirror { copies } => Some(u32::from(copies)),
            _ => None,
        }
    }

    /// The layout config-keeper records (`raid1` for a mirror; its copy
    /// count is [`Layout::config_copies`]).
    pub fn to_config(self) -> CfgLayout {
        match self {
            Layout::Linear => CfgLayout::Linear,
            Layout::Mirror { .. } => CfgLayout::Raid1,
            Layout::Raid5 => CfgLayout::Raid5,
            Layout::Raid6 => CfgLayout::Raid6,
            Layout::Raid10 => CfgLayout::Raid10,
        }
    }

    /// The layout of a config-keeper record (`copies` as recorded; absent
    /// means 2).
    pub fn from_config(l: CfgLayout, copies: Option<u8>) -> Result<Layout, Invalid> {
        Ok(match l {
            CfgLayout::Linear => Layout::Linear,
            CfgLayout::Raid1 => Layout::Mirror {
                copies: copies.unwrap_or(2),
            },
            CfgLayout::Raid5 => Layout::Raid5,
            CfgLayout::Raid6 => Layout::Raid6,
            CfgLayout::Raid10 => Layout::Raid10,
            CfgLayout::Raid0 => {
                return Err(Invalid::new(
                    "layout",
                    "raid0 is not offered: one failed disk loses the whole pool",
                ))
            }
        })
    }

    /// The `pool.layouts` row for `n` disks.
    pub fn info(self, n: usize) -> LayoutInfo {
        let reason = self.check_disks("disks", n).err().map(|e| e.reason);
        LayoutInfo {
            layout: self.name().to_string(),
            copies: match self {
                Layout::Mirror { copies } => Some(copies),
                _ => None,
            },
            possible: reason.is_none(),
            reason,
            capacity_fraction: self.capacity_fraction(n),
            fault_tolerance: if n >= self.min_disks() {
                self.fault_tolerance()
            } else {
                0
            },
            disks_used: if n >= self.min_disks() {
                self.disks_used(n)
            } else {
                0
            },
        }
    }

    /// Every layout, for `pool.layouts`.
    pub fn all() -> [Layout; 6] {
        [
            Layout::Linear,
            Layout::Mirror { copies: 2 },
            Layout::Mirror { copies: 3 },
            Layout::Raid5,
            Layout::Raid6,
            Layout::Raid10,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_layouts() {
        assert_eq!(Layout::parse("linear", None), Ok(Layout::Linear));
        assert_eq!(
            Layout::parse("mirror", None),
            Ok(Layout::Mirror { copies: 2 })
        );
        assert_eq!(
            Layout::parse("mirror", Some(3)),
            Ok(Layout::Mirror { copies: 3 })
        );
        assert_eq!(
            Layout::parse("mirror", Some(4)).unwrap_err().field,
            "copies"
        );
        assert_eq!(Layout::parse("raid5", Some(2)).unwrap_err().field, "copies");
        assert_eq!(Layout::parse("raid7", None).unwrap_err().field, "layout");
    }

    #[test]
    fn fractions_and_tolerance_per_disk_count() {
        // (layout, disks, fraction, tolerance)
        let table = [
            (Layout::Linear, 1, 1.0, 0),
            (Layout::Linear, 4, 1.0, 0),
            (Layout::Mirror { copies: 2 }, 2, 0.5, 1),
            (Layout::Mirror { copies: 3 }, 3, 0.3333, 2),
            (Layout::Raid5, 3, 0.6667, 1),
            (Layout::Raid5, 4, 0.75, 1),
            (Layout::Raid6, 5, 0.6, 2),
            (Layout::Raid6, 6, 0.6667, 2),
            (Layout::Raid10, 4, 0.5, 1),
            (Layout::Raid10, 5, 0.4, 1),
        ];
        for (l, n, f, t) in table {
            let info = l.info(n);
            assert!(info.possible, "{l:?} on {n}");
            assert_eq!(info.capacity_fraction, f, "{l:?} on {n}");
            assert_eq!(info.fault_tolerance, t, "{l:?} on {n}");
        }
        assert_eq!(Layout::Raid10.info(5).disks_used, 4);
    }

    #[test]
    fn too_few_disks_say_how_many() {
        for (l, n) in [
            (Layout::Linear, 0),
            (Layout::Mirror { copies: 3 }, 2),
            (Layout::Raid5, 2),
            (Layout::Raid6, 4),
            (Layout::Raid10, 3),
        ] {
            let e = l.check_disks("disks", n).unwrap_err();
            assert_eq!(e.field, "disks");
            assert!(e.reason.contains("at least"), "{}", e.reason);
            assert!(!l.info(n).possible);
            assert_eq!(l.info(n).capacity_fraction, 0.0);
        }
    }

    #[test]
    fn lvm_arguments() {
        assert_eq!(
            Layout::Raid5.data_lv_args(4),
            ["--type", "raid5", "--stripes", "3"]
        );
        assert_eq!(
            Layout::Raid10.data_lv_args(5),
            ["--type", "raid10", "--stripes", "2", "--mirrors", "1"]
        );
        assert_eq!(
            Layout::Raid6.meta_lv_args(),
            ["--type", "raid1", "--mirrors", "2"]
        );
        assert_eq!(Layout::Linear.meta_lv_args(), ["--type", "linear"]);
        assert_eq!(
            Layout::from_config(Layout::Mirror { copies: 3 }.to_config(), Some(3)),
            Ok(Layout::Mirror { copies: 3 })
        );
    }
}
