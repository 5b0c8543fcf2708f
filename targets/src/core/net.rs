//! Floating IP addresses: which of the configuration's floating addresses
//! must be on this controller's interfaces, and the steps to get there.
//!
//! Only addresses named by a floating IP are ever touched: the
//! controller's own addresses (front-end portals, interconnect,
//! management) are not ours.

use duplex_api::model::Config;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// An address on an interface.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct IfAddr {
    /// Interface name.
    pub interface: String,
    /// Address.
    pub address: IpAddr,
    /// Prefix length.
    pub prefix: u8,
}

/// One change to the interfaces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum NetStep {
    /// Add the address, then announce it (gratuitous ARP for IPv4; for
    /// IPv6 the kernel sends the unsolicited neighbour advertisement).
    Up(IfAddr),
    /// Remove the address.
    Down(IfAddr),
}

/// A floating IP parsed from the configuration, or why it cannot be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Floating {
    /// Its name.
    pub name: String,
    /// Where it goes.
    pub addr: IfAddr,
    /// The controller that should hold it.
    pub owner: String,
}

/// The floating IPs of the configuration.
pub fn floating(cfg: &Config) -> Vec<Floating> {
    cfg.floating_ips
        .values()
        .map(|f| Floating {
            name: f.name.clone(),
            addr: IfAddr {
                interface: f.interface.clone(),
                address: f.address.addr,
                prefix: f.address.prefix,
            },
            owner: f.owner.clone(),
        })
        .collect()
}

/// Steps that put on this controller exactly the floating addresses it
/// should hold: those it owns, or forced up by `net.up`, minus those forced
/// down by `net.down`. `observed` is every address on every interface.
pub fn plan_net(
    floating: &[Floating],
    me: &str,
    forced: &BTreeMap<String, bool>,
    observed: &BTreeSet<IfAddr>,
) -> Vec<NetStep> {
    let mut steps = Vec::new();
    let mut want: BTreeSet<&IfAddr> = BTreeSet::new();
    for f in floating {
        let up = forced.get(&f.name).copied().unwrap_or(f.owner == me);
        if up {
            want.insert(&f.addr);
        }
    }
    // Down first: an address moving between interfaces must leave first.
    for f in floating {
        let held = observed
            .iter()
            .filter(|o| o.address == f.addr.address)
            .filter(|o| !want.contains(o));
        for o in held {
            steps.push(NetStep::Down(o.clone()));
        }
    }
    for a in want {
        if !observed.contains(a) {
            steps.push(NetStep::Up(a.clone()));
        }
    }
    steps.dedup();
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fl(name: &str, addr: &str, owner: &str) -> Floating {
        let a: duplex_api::syntax::IfAddr = addr.parse().unwrap_or_else(|e| panic!("{e}"));
        let (address, prefix) = (a.addr, a.prefix);
        Floating {
            name: name.into(),
            addr: IfAddr {
                interface: "fe0".into(),
                address,
                prefix,
            },
            owner: owner.into(),
        }
    }

    #[test]
    fn owned_addresses_go_up_others_come_down_own_addresses_stay() {
        let f = vec![
            fl("fa", "10.50.0.100/24", "A"),
            fl("fb", "10.50.0.101/24", "B"),
        ];
        let mut observed: BTreeSet<IfAddr> = BTreeSet::new();
        observed.insert(f[1].addr.clone());
        observed.insert(IfAddr {
            interface: "fe0".into(),
            address: "10.50.0.11".parse().unwrap_or(IpAddr::from([0, 0, 0, 0])),
            prefix: 24,
        });
        let steps = plan_net(&f, "A", &BTreeMap::new(), &observed);
        assert_eq!(
            steps,
            vec![
                NetStep::Down(f[1].addr.clone()),
                NetStep::Up(f[0].addr.clone())
            ]
        );
        observed.remove(&f[1].addr);
        observed.insert(f[0].addr.clone());
        assert!(plan_net(&f, "A", &BTreeMap::new(), &observed).is_empty());
    }

    #[test]
    fn forced_states_win_over_ownership() {
        let f = vec![fl("fb", "fd00::101/64", "B")];
        let forced = BTreeMap::from([("fb".to_string(), true)]);
        let steps = plan_net(&f, "A", &forced, &BTreeSet::new());
        assert_eq!(steps, vec![NetStep::Up(f[0].addr.clone())]);
    }

    #[test]
    fn floating_addresses_come_from_the_configuration() {
        let mut cfg = Config::default();
        for (name, addr, owner) in [("fb", "fd00::101/64", "B"), ("fa", "10.50.0.100/24", "A")] {
            let body = serde_json::json!({"name": name, "address": addr, "interface": "fe0",
                                          "home": owner, "owner": owner, "epoch": 1});
            match duplex_api::model::Object::from_json(duplex_api::model::Kind::FloatingIp, &body) {
                Ok(o) => cfg.put(o),
                Err(e) => panic!("{e:?}"),
            }
        }
        assert_eq!(
            floating(&cfg),
            vec![
                fl("fa", "10.50.0.100/24", "A"),
                fl("fb", "fd00::101/64", "B")
            ]
        );
    }
}
