//! Floating addresses on the interfaces. The Linux side speaks rtnetlink
//! (the `rtnetlink` crate: list links and addresses, add and delete
//! addresses), then sends a burst of gratuitous ARP with iputils'
//! `arping -U` through the one executor: a gratuitous ARP needs a raw
//! packet socket, which this workspace cannot open without `unsafe`. For
//! IPv6 the address is added `nodad` with `ndisc_notify` on, so the kernel
//! itself sends the unsolicited neighbour advertisement.

use crate::core::net::{IfAddr, NetStep};
use duplex_services::exec::{Cmd, ExecError};
use futures::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressHeaderFlags, AddressMessage};
use rtnetlink::packet_route::link::{LinkAttribute, LinkMessage};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long one netlink request may take.
const NETLINK_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a floating-address operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A tool failed.
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// The netlink socket could not be opened.
    #[error("opening a netlink socket")]
    Socket(#[source] std::io::Error),
    /// The kernel refused or failed a netlink request.
    #[error("netlink: {what}")]
    Netlink {
        /// The request.
        what: String,
        /// The kernel's answer.
        #[source]
        source: rtnetlink::Error,
    },
    /// A netlink request got no answer in time.
    #[error("netlink: {0} did not answer within 10 s")]
    Timeout(String),
    /// The interface does not exist.
    #[error("no interface {0}")]
    NoInterface(String),
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
    /// The kernel, through rtnetlink (and `arping` for the announcement).
    Linux {
        /// iputils' `arping`, if installed.
        arping: Option<PathBuf>,
    },
    /// An in-memory address set (tests, `--sim`).
    Sim(Arc<Mutex<BTreeSet<IfAddr>>>),
}

/// Interface index → name, from link messages.
pub fn link_names(links: &[LinkMessage]) -> BTreeMap<u32, String> {
    links
        .iter()
        .filter_map(|l| {
            l.attributes.iter().find_map(|a| match a {
                LinkAttribute::IfName(n) => Some((l.header.index, n.clone())),
                _ => None,
            })
        })
        .collect()
}

/// The address an address message is about: `IFA_LOCAL` when present (on
/// point-to-point links `IFA_ADDRESS` is the peer), else `IFA_ADDRESS`.
fn message_address(m: &AddressMessage) -> Option<IpAddr> {
    let local = m.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(ip) => Some(*ip),
        _ => None,
    });
    local.or_else(|| {
        m.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(ip) => Some(*ip),
            _ => None,
        })
    })
}

/// Every address with its interface name, from netlink's answers.
pub fn addresses(links: &BTreeMap<u32, String>, msgs: &[AddressMessage]) -> BTreeSet<IfAddr> {
    msgs.iter()
        .filter_map(|m| {
            Some(IfAddr {
                interface: links.get(&m.header.index)?.clone(),
                address: message_address(m)?,
                prefix: m.header.prefix_len,
            })
        })
        .collect()
}

fn first_existing(paths: &[&str]) -> Option<PathBuf> {
    paths.iter().map(PathBuf::from).find(|p| p.exists())
}

/// One netlink connection for the span of an operation.
struct Netlink {
    handle: rtnetlink::Handle,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Netlink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Bounds a netlink request in time and names it in errors.
async fn bounded<T>(
    what: &str,
    f: impl std::future::Future<Output = Result<T, rtnetlink::Error>>,
) -> Result<T, NetError> {
    match tokio::time::timeout(NETLINK_TIMEOUT, f).await {
        Ok(r) => r.map_err(|source| NetError::Netlink {
            what: what.to_string(),
            source,
        }),
        Err(_) => Err(NetError::Timeout(what.to_string())),
    }
}

impl Netlink {
    fn open() -> Result<Netlink, NetError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(NetError::Socket)?;
        Ok(Netlink {
            handle,
            task: tokio::spawn(conn),
        })
    }

    async fn links(&self) -> Result<Vec<LinkMessage>, NetError> {
        bounded(
            "list links",
            self.handle.link().get().execute().try_collect::<Vec<_>>(),
        )
        .await
    }

    async fn address_messages(&self) -> Result<Vec<AddressMessage>, NetError> {
        bounded(
            "list addresses",
            self.handle
                .address()
                .get()
                .execute()
                .try_collect::<Vec<_>>(),
        )
        .await
    }

    async fn index_of(&self, name: &str) -> Result<u32, NetError> {
        link_names(&self.links().await?)
            .into_iter()
            .find(|(_, n)| n == name)
            .map(|(i, _)| i)
            .ok_or_else(|| NetError::NoInterface(name.to_string()))
    }
}

impl NetBackend {
    /// The kernel's interfaces.
    pub fn linux() -> Result<NetBackend, NetError> {
        let arping = first_existing(&["/usr/sbin/arping", "/usr/bin/arping", "/sbin/arping"]);
        Ok(NetBackend::Linux { arping })
    }

    /// An empty in-memory set.
    pub fn sim() -> NetBackend {
        NetBackend::Sim(Arc::new(Mutex::new(BTreeSet::new())))
    }

    /// Every address on every interface.
    pub async fn observe(&self) -> Result<BTreeSet<IfAddr>, NetError> {
        match self {
            NetBackend::Linux { .. } => {
                let nl = Netlink::open()?;
                let links = link_names(&nl.links().await?);
                Ok(addresses(&links, &nl.address_messages().await?))
            }
            NetBackend::Sim(s) => Ok(s.lock().map(|s| s.clone()).unwrap_or_default()),
        }
    }

    /// Applies one step; an address up is announced to the segment.
    pub async fn apply(&self, step: &NetStep) -> Result<(), NetError> {
        match self {
            NetBackend::Linux { arping } => match step {
                NetStep::Up(a) => {
                    let nl = Netlink::open()?;
                    let index = nl.index_of(&a.interface).await?;
                    let mut req = nl.handle.address().add(index, a.address, a.prefix);
                    if a.address.is_ipv6() {
                        let path = format!("/proc/sys/net/ipv6/conf/{}/ndisc_notify", a.interface);
                        std::fs::write(&path, "1\n")
                            .map_err(|source| NetError::Sysctl { path, source })?;
                        req.message_mut().header.flags |= AddressHeaderFlags::Nodad;
                    }
                    bounded(
                        &format!("add {}/{} on {}", a.address, a.prefix, a.interface),
                        req.execute(),
                    )
                    .await?;
                    if a.address.is_ipv4() {
                        announce(arping.as_deref(), a).await;
                    }
                    Ok(())
                }
                NetStep::Down(a) => {
                    let nl = Netlink::open()?;
                    let links = link_names(&nl.links().await?);
                    let msgs = nl.address_messages().await?;
                    let found = msgs.into_iter().find(|m| {
                        links.get(&m.header.index) == Some(&a.interface)
                            && message_address(m) == Some(a.address)
                            && m.header.prefix_len == a.prefix
                    });
                    // Already gone: the step's goal holds.
                    let Some(m) = found else { return Ok(()) };
                    bounded(
                        &format!("delete {}/{} on {}", a.address, a.prefix, a.interface),
                        nl.handle.address().del(m).execute(),
                    )
                    .await
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
    use rtnetlink::packet_route::address::AddressHeader;
    use rtnetlink::packet_route::link::LinkHeader;

    fn link(index: u32, name: &str) -> LinkMessage {
        let mut l = LinkMessage::default();
        l.header = LinkHeader {
            index,
            ..LinkHeader::default()
        };
        l.attributes.push(LinkAttribute::IfName(name.into()));
        l
    }

    fn addr(index: u32, prefix: u8, attrs: Vec<AddressAttribute>) -> AddressMessage {
        let mut m = AddressMessage::default();
        m.header = AddressHeader {
            index,
            prefix_len: prefix,
            ..AddressHeader::default()
        };
        m.attributes = attrs;
        m
    }

    #[test]
    fn addresses_from_netlink_messages() {
        let links = link_names(&[link(1, "lo"), link(2, "fe0"), link(7, "tun0")]);
        let v4: IpAddr = "10.50.0.11".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let peer: IpAddr = "10.9.9.9".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let local: IpAddr = "10.9.9.1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let v6: IpAddr = "fe80::1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let msgs = vec![
            addr(
                2,
                24,
                vec![AddressAttribute::Address(v4), AddressAttribute::Local(v4)],
            ),
            addr(2, 64, vec![AddressAttribute::Address(v6)]),
            // Point-to-point: IFA_ADDRESS is the peer, IFA_LOCAL ours.
            addr(
                7,
                32,
                vec![
                    AddressAttribute::Address(peer),
                    AddressAttribute::Local(local),
                ],
            ),
            // An interface gone between the two dumps is skipped.
            addr(9, 24, vec![AddressAttribute::Local(v4)]),
        ];
        let set = addresses(&links, &msgs);
        assert_eq!(set.len(), 3, "{set:?}");
        assert!(set.contains(&IfAddr {
            interface: "fe0".into(),
            address: v4,
            prefix: 24
        }));
        assert!(set.contains(&IfAddr {
            interface: "fe0".into(),
            address: v6,
            prefix: 64
        }));
        assert!(set.contains(&IfAddr {
            interface: "tun0".into(),
            address: local,
            prefix: 32
        }));
    }
}

/// The real kernel, in a network namespace of the test's own:
/// `unshare -n cargo test -p duplex-targets -- --ignored netlink`.
#[cfg(test)]
mod kernel {
    use super::*;

    #[tokio::test]
    #[ignore = "needs root in a private network namespace (unshare -n)"]
    async fn netlink_add_observe_delete_on_lo() {
        let nb = NetBackend::linux().expect("backend");
        let a = IfAddr {
            interface: "lo".into(),
            address: IpAddr::from([10, 99, 0, 1]),
            prefix: 24,
        };
        nb.apply(&NetStep::Up(a.clone())).await.expect("add");
        assert!(nb.observe().await.expect("observe").contains(&a));
        nb.apply(&NetStep::Down(a.clone())).await.expect("delete");
        assert!(!nb.observe().await.expect("observe").contains(&a));
        // Deleting what is gone is done already.
        nb.apply(&NetStep::Down(a)).await.expect("delete again");
        let missing = IfAddr {
            interface: "nosuch0".into(),
            address: IpAddr::from([10, 99, 0, 2]),
            prefix: 24,
        };
        assert!(matches!(
            nb.apply(&NetStep::Up(missing)).await,
            Err(NetError::NoInterface(_))
        ));
    }
}
