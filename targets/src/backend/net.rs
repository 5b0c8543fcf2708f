//! Floating addresses on the interfaces. The Linux side uses iproute2's
//! `ip -json` (netlink underneath; typed parse of its JSON) and iputils'
//! `arping -U` for the gratuitous ARP burst, both through the one executor.
//! Why not a netlink crate: a gratuitous ARP needs a raw packet socket, which
//! this workspace cannot open without `unsafe`; iproute2 and arping are in
//! the appliance image anyway. For IPv6 the address is added `nodad` with
//! `ndisc_notify` on, so the kernel itself sends the unsolicited neighbour
//! advertisement.

use crate::core::net::{IfAddr, NetStep};
use duplex_services::exec::{Cmd, ExecError};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Why a floating-address operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A tool failed.
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// A tool is missing.
    #[error("{0} not found")]
    Missing(&'static str),
    /// A sysctl write failed.
    #[error("writing {path}")]
    Sysctl {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Where floating addresses live: the kernel, or a set in memory.
#[derive(Clone)]
pub enum NetBackend {
    /// The kernel, through `ip` and `arping`.
    Linux {
        /// iproute2's `ip`.
        ip: PathBuf,
        /// iputils' `arping`, if installed.
        arping: Option<PathBuf>,
    },
    /// An in-memory address set (tests, `--sim`).
    Sim(Arc<Mutex<BTreeSet<IfAddr>>>),
}

#[derive(Deserialize)]
struct IpLink {
    ifname: String,
    #[serde(default)]
    addr_info: Vec<IpAddrInfo>,
}

#[derive(Deserialize)]
struct IpAddrInfo {
    local: Option<IpAddr>,
    prefixlen: Option<u8>,
}

/// Parses `ip -json addr show`.
pub fn parse_ip_json(out: &str) -> Result<BTreeSet<IfAddr>, serde_json::Error> {
    let links: Vec<IpLink> = serde_json::from_str(out)?;
    Ok(links
        .into_iter()
        .flat_map(|l| {
            let name = l.ifname;
            l.addr_info.into_iter().filter_map(move |a| {
                Some(IfAddr {
                    interface: name.clone(),
                    address: a.local?,
                    prefix: a.prefixlen?,
                })
            })
        })
        .collect())
}

fn first_existing(paths: &[&str]) -> Option<PathBuf> {
    paths.iter().map(PathBuf::from).find(|p| p.exists())
}

impl NetBackend {
    /// The kernel's interfaces.
    pub fn linux() -> Result<NetBackend, NetError> {
        let ip = first_existing(&["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"])
            .ok_or(NetError::Missing("ip (iproute2)"))?;
        let arping = first_existing(&["/usr/sbin/arping", "/usr/bin/arping", "/sbin/arping"]);
        Ok(NetBackend::Linux { ip, arping })
    }

    /// An empty in-memory set.
    pub fn sim() -> NetBackend {
        NetBackend::Sim(Arc::new(Mutex::new(BTreeSet::new())))
    }

    /// Every address on every interface.
    pub async fn observe(&self) -> Result<BTreeSet<IfAddr>, NetError> {
        match self {
            NetBackend::Linux { ip, .. } => {
                let out = Cmd::new(ip)
                    .args(["-json", "addr", "show"])
                    .timeout(Duration::from_secs(10))
                    .run()
                    .await?;
                parse_ip_json(&out.stdout).map_err(|source| {
                    NetError::Exec(ExecError::Parse {
                        command: format!("{} -json addr show", ip.display()),
                        source,
                    })
                })
            }
            NetBackend::Sim(s) => Ok(s.lock().map(|s| s.clone()).unwrap_or_default()),
        }
    }

    /// Applies one step; an address up is announced to the segment.
    pub async fn apply(&self, step: &NetStep) -> Result<(), NetError> {
        match self {
            NetBackend::Linux { ip, arping } => match step {
                NetStep::Up(a) => {
                    let cidr = format!("{}/{}", a.address, a.prefix);
                    let mut args = vec!["addr", "add", cidr.as_str(), "dev", a.interface.as_str()];
                    if a.address.is_ipv6() {
                        let path = format!("/proc/sys/net/ipv6/conf/{}/ndisc_notify", a.interface);
                        std::fs::write(&path, "1\n")
                            .map_err(|source| NetError::Sysctl { path, source })?;
                        args.push("nodad");
                    }
                    Cmd::new(ip)
                        .args(args)
                        .timeout(Duration::from_secs(10))
                        .run()
                        .await?;
                    if a.address.is_ipv4() {
                        announce(arping.as_deref(), a).await;
                    }
                    Ok(())
                }
                NetStep::Down(a) => {
                    let cidr = format!("{}/{}", a.address, a.prefix);
                    Cmd::new(ip)
                        .args(["addr", "del", cidr.as_str(), "dev", a.interface.as_str()])
                        .timeout(Duration::from_secs(10))
                        .run()
                        .await?;
                    Ok(())
                }
            },
            NetBackend::Sim(s) => {
                if let Ok(mut s) = s.lock() {
                    match step {
                        NetStep::Up(a) => {
                            s.insert(a.clone());
                        }
                        NetStep::Down(a) => {
                            s.remove(a);
                        }
                    }
                }
                Ok(())
            }
        }
    }
}

/// A burst of gratuitous ARP so neighbours and switches learn the new
/// place at once. Best effort: the address is up either way.
async fn announce(arping: Option<&Path>, a: &IfAddr) {
    let Some(arping) = arping else {
        tracing::warn!(address = %a.address, "arping not installed: no gratuitous ARP");
        return;
    };
    let addr = a.address.to_string();
    let r = Cmd::new(arping)
        .args([
            "-U",
            "-c",
            "3",
            "-w",
            "2",
            "-I",
            a.interface.as_str(),
            addr.as_str(),
        ])
        .timeout(Duration::from_secs(5))
        .run()
        .await;
    // arping -U gets no replies by design and may exit 1.
    if let Err(ExecError::Spawn { .. } | ExecError::Timeout { .. }) = r {
        tracing::warn!(address = %addr, "gratuitous ARP failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ip_json() {
        let out = r#"[{"ifindex":1,"ifname":"lo","addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8}]},
            {"ifindex":2,"ifname":"fe0","addr_info":[{"family":"inet","local":"10.50.0.11","prefixlen":24},
            {"family":"inet6","local":"fe80::5054:ff:fed0:a00","prefixlen":64}]},{"ifindex":3,"ifname":"eth9"}]"#;
        let set = parse_ip_json(out).unwrap_or_default();
        assert_eq!(set.len(), 3);
        assert!(set.iter().any(|a| a.interface == "fe0" && a.prefix == 24));
    }
}
