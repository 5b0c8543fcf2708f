//! The registration table: which service owns which namespace, and whether
//! it is up. Pure bookkeeping; the connections live in the router.

use duplex_api::catalogue;
use duplex_services::rpc::{namespace_of, ErrorCode, RpcError};
use duplex_services::service::Registration;
use serde::Serialize;
use std::collections::BTreeMap;

/// Whether a registered service can take calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Registered and its registration connection is open.
    Up,
    /// Was registered; its registration connection closed (crash or exit).
    Down,
}

/// One service in the table.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// What the service registered.
    #[serde(flatten)]
    pub reg: Registration,
    /// Up or down.
    pub state: State,
    /// When the state last changed (ms since the epoch).
    pub since_ms: u64,
    /// The router connection that registered it (its lifetime is the
    /// registration's).
    #[serde(skip)]
    pub conn_id: u64,
}

/// The registration table.
#[derive(Debug, Default)]
pub struct Registry {
    services: BTreeMap<String, Entry>,
    /// Namespaces outside the catalogue that may still register (tests).
    test_namespaces: Vec<String>,
}

/// Namespaces the router itself answers.
pub const ROUTER_NAMESPACES: [&str; 3] = ["router", "event", "job"];

impl Registry {
    /// A registry that also accepts the uncatalogued `test_namespaces`.
    pub fn with_test_namespaces(test_namespaces: Vec<String>) -> Registry {
        Registry {
            services: BTreeMap::new(),
            test_namespaces,
        }
    }

    /// Registers (or re-registers) a service over connection `conn_id`.
    /// A namespace may belong to one service only, and a name that is up on
    /// another live connection stays with it (no one takes over a running
    /// service's registration; a restarted service finds its old entry
    /// down, since its connection closed with the old process).
    pub fn register(
        &mut self,
        reg: Registration,
        conn_id: u64,
        now_ms: u64,
    ) -> Result<(), RpcError> {
        if reg.name.is_empty()
            || !reg
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(RpcError::invalid_params(
                "name",
                "must be lowercase letters, digits and '-'",
            ));
        }
        if let Some(e) = self.services.get(&reg.name) {
            if e.state == State::Up && e.conn_id != conn_id {
                return Err(RpcError::new(
                    ErrorCode::Conflict,
                    format!(
                        "service {} is up on another connection (pid {})",
                        reg.name, e.reg.pid
                    ),
                )
                .with_field("name"));
            }
        }
        if reg.namespaces.is_empty() {
            return Err(RpcError::invalid_params(
                "namespaces",
                "a service must own at least one namespace",
            ));
        }
        for ns in &reg.namespaces {
            if ROUTER_NAMESPACES.contains(&ns.as_str()) {
                return Err(RpcError::invalid_params(
                    "namespaces",
                    format!("namespace {ns} belongs to the router"),
                ));
            }
            if let Some(other) = self
                .services
                .values()
                .find(|e| e.reg.name != reg.name && e.reg.namespaces.contains(ns))
            {
                return Err(RpcError::new(
                    ErrorCode::Conflict,
                    format!("namespace {ns} is owned by {}", other.reg.name),
                )
                .with_field("namespaces"));
            }
        }
        match reg.catalogue {
            None => {
                return Err(RpcError::invalid_params(
                    "catalogue",
                    "the registration must state its method catalogue version",
                ))
            }
            Some(v) => catalogue::VERSION
                .check_compatible(v)
                .map_err(|reason| RpcError::invalid_params("catalogue", reason))?,
        }
        for m in &reg.methods {
            if !reg.namespaces.iter().any(|ns| ns == namespace_of(m)) {
                return Err(RpcError::invalid_params(
                    "methods",
                    format!("{m} is outside the service's namespaces"),
                ));
            }
            let test_ns = self.test_namespaces.iter().any(|ns| ns == namespace_of(m));
            if catalogue::lookup(m).is_none() && !test_ns {
                return Err(RpcError::invalid_params(
                    "methods",
                    format!("{m} is not in the method catalogue"),
                ));
            }
        }
        for (m, ms) in &reg.timeouts_ms {
            if !reg.methods.contains(m) {
                return Err(RpcError::invalid_params(
                    "timeouts_ms",
                    format!("{m} has a timeout but is not one of the service's methods"),
                ));
            }
            if *ms == 0 {
                return Err(RpcError::invalid_params(
                    "timeouts_ms",
                    format!("the timeout of {m} must be greater than zero"),
                ));
            }
        }
        self.services.insert(
            reg.name.clone(),
            Entry {
                reg,
                state: State::Up,
                since_ms: now_ms,
                conn_id,
            },
        );
        Ok(())
    }

    /// Marks every service registered over `conn_id` down; returns their names.
    pub fn connection_closed(&mut self, conn_id: u64, now_ms: u64) -> Vec<String> {
        let mut gone = Vec::new();
        for e in self.services.values_mut() {
            if e.conn_id == conn_id && e.state == State::Up {
                e.state = State::Down;
                e.since_ms = now_ms;
                gone.push(e.reg.name.clone());
            }
        }
        gone
    }

    /// The service that should answer `method`, or the error to return.
    pub fn route(&self, method: &str) -> Result<&Entry, RpcError> {
        let ns = namespace_of(method);
        let Some(entry) = self
            .services
            .values()
            .find(|e| e.reg.namespaces.iter().any(|n| n == ns))
        else {
            return Err(RpcError::new(
                ErrorCode::MethodNotFound,
                format!("no service owns namespace '{ns}' (method {method})"),
            )
            .with_field("method")
            .with_data("namespace", ns.into()));
        };
        if entry.state == State::Down {
            return Err(RpcError::unavailable(format!(
                "service {} (namespace '{ns}') is down",
                entry.reg.name
            ))
            .with_data("service", entry.reg.name.clone().into()));
        }
        if !entry.reg.methods.iter().any(|m| m == method) {
            return Err(RpcError::new(
                ErrorCode::MethodNotFound,
                format!(
                    "service {} (namespace '{ns}') has no method {method}",
                    entry.reg.name
                ),
            )
            .with_field("method")
            .with_data("namespace", ns.into()));
        }
        Ok(entry)
    }

    /// The service registered by process `pid`, for naming callers.
    pub fn name_of_pid(&self, pid: u32) -> Option<&str> {
        self.services
            .values()
            .find(|e| e.reg.pid == pid && e.state == State::Up)
            .map(|e| e.reg.name.as_str())
    }

    /// The up service registered by process `pid`.
    pub fn service_of_pid(&self, pid: u32) -> Option<&Entry> {
        self.services
            .values()
            .find(|e| e.reg.pid == pid && e.state == State::Up)
    }

    /// One service by name.
    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.services.get(name)
    }

    /// All services, by name.
    pub fn list(&self) -> Vec<Entry> {
        self.services.values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(name: &str, ns: &[&str], methods: &[&str]) -> Registration {
        Registration {
            name: name.into(),
            version: "1".into(),
            namespaces: ns.iter().map(|s| s.to_string()).collect(),
            methods: methods.iter().map(|s| s.to_string()).collect(),
            socket: "/tmp/x.sock".into(),
            pid: 42,
            catalogue: Some(catalogue::VERSION),
            timeouts_ms: BTreeMap::new(),
        }
    }

    #[test]
    fn method_timeouts_name_registered_methods() {
        let mut r = Registry::default();
        let mut g = reg("pool-manager", &["pool"], &["pool.takeover"]);
        g.timeouts_ms.insert("pool.create".into(), 1000);
        let e = r.register(g.clone(), 1, 0).unwrap_err();
        assert_eq!(e.field(), Some("timeouts_ms"));
        g.timeouts_ms.clear();
        g.timeouts_ms.insert("pool.takeover".into(), 0);
        assert!(r.register(g.clone(), 1, 0).is_err());
        g.timeouts_ms.insert("pool.takeover".into(), 600_000);
        r.register(g, 1, 0).unwrap();
        let e = r.route("pool.takeover").unwrap();
        assert_eq!(e.reg.timeouts_ms.get("pool.takeover"), Some(&600_000));
    }

    #[test]
    fn routes_by_namespace_and_method() {
        let mut r = Registry::default();
        r.register(
            reg(
                "pool-manager",
                &["pool", "disk"],
                &["pool.status", "disk.list"],
            ),
            1,
            0,
        )
        .unwrap();
        assert_eq!(r.route("disk.list").unwrap().reg.name, "pool-manager");
        let e = r.route("volume.create").unwrap_err();
        assert_eq!(e.kind(), Some(ErrorCode::MethodNotFound));
        assert!(e.message.contains("'volume'"), "{}", e.message);
        let e = r.route("pool.frobnicate").unwrap_err();
        assert_eq!(e.kind(), Some(ErrorCode::MethodNotFound));
    }

    #[test]
    fn a_live_registration_cannot_be_taken_over() {
        let mut r = Registry::default();
        r.register(reg("targets", &["target"], &["target.status"]), 7, 0)
            .unwrap();
        let e = r
            .register(reg("targets", &["target"], &["target.status"]), 8, 1)
            .unwrap_err();
        assert_eq!(e.kind(), Some(ErrorCode::Conflict));
        assert_eq!(r.get("targets").unwrap().conn_id, 7);
        // The same connection may register again (an updated registration).
        r.register(reg("targets", &["target"], &["target.status"]), 7, 2)
            .unwrap();
        // Once its connection is gone, a new process takes the name.
        r.connection_closed(7, 3);
        r.register(reg("targets", &["target"], &["target.status"]), 8, 4)
            .unwrap();
    }

    #[test]
    fn down_then_up_again() {
        let mut r = Registry::default();
        r.register(reg("targets", &["target"], &["target.status"]), 7, 0)
            .unwrap();
        assert_eq!(r.connection_closed(8, 1), Vec::<String>::new());
        assert_eq!(r.connection_closed(7, 1), vec!["targets".to_string()]);
        assert_eq!(
            r.route("target.status").unwrap_err().kind(),
            Some(ErrorCode::Unavailable)
        );
        r.register(reg("targets", &["target"], &["target.status"]), 9, 2)
            .unwrap();
        assert!(r.route("target.status").is_ok());
    }

    #[test]
    fn namespaces_are_exclusive_and_checked() {
        let mut r = Registry::default();
        r.register(reg("a", &["pool"], &[]), 1, 0).unwrap();
        assert_eq!(
            r.register(reg("b", &["pool"], &[]), 2, 0)
                .unwrap_err()
                .kind(),
            Some(ErrorCode::Conflict)
        );
        assert_eq!(
            r.register(reg("c", &["router"], &[]), 3, 0)
                .unwrap_err()
                .field(),
            Some("namespaces")
        );
        assert_eq!(
            r.register(reg("d", &["x"], &["y.z"]), 4, 0)
                .unwrap_err()
                .field(),
            Some("methods")
        );
        assert_eq!(
            r.register(reg("Bad Name", &["q"], &[]), 5, 0)
                .unwrap_err()
                .field(),
            Some("name")
        );
    }

    #[test]
    fn only_catalogued_methods_register() {
        let mut r = Registry::default();
        let e = r
            .register(
                reg("pm", &["pool"], &["pool.create", "pool.frobnicate"]),
                1,
                0,
            )
            .unwrap_err();
        assert_eq!(e.field(), Some("methods"));
        assert!(e.message.contains("pool.frobnicate"), "{e:?}");
        // A test namespace is allowed only where the router says so.
        assert!(r
            .register(reg("t", &["alpha"], &["alpha.echo"]), 2, 0)
            .is_err());
        let mut t = Registry::with_test_namespaces(vec!["alpha".into()]);
        t.register(reg("t", &["alpha"], &["alpha.echo"]), 2, 0)
            .unwrap();
    }

    #[test]
    fn the_catalogue_version_must_be_stated_and_compatible() {
        let mut r = Registry::default();
        let mut g = reg("pm", &["pool"], &["pool.create"]);
        g.catalogue = None;
        assert_eq!(
            r.register(g.clone(), 1, 0).unwrap_err().field(),
            Some("catalogue")
        );
        g.catalogue = Some(catalogue::Version {
            major: catalogue::VERSION.major + 1,
            minor: 0,
        });
        let e = r.register(g.clone(), 1, 0).unwrap_err();
        assert_eq!(e.field(), Some("catalogue"));
        assert!(e.message.contains("incompatible"), "{e:?}");
        g.catalogue = Some(catalogue::VERSION);
        r.register(g, 1, 0).unwrap();
    }
}
