//! The method catalogue: every method that exists, with its one-line doc,
//! the error kinds it can return and three marks the management plane
//! enforces (read or write, audience, job).
//!
//! A service can only serve methods listed here (the service runtime
//! refuses to start with a handler the catalogue lacks) and the router
//! refuses a registration that names one. The catalogue's version travels
//! in every registration and in the peer handshake: two controllers whose
//! catalogues have different major versions refuse to link.

use serde::{Deserialize, Serialize};

/// Does a method change state?
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// Reads only; safe for the `read_only` role.
    Read,
    /// Changes state (desired state, kernel state, the cluster).
    Write,
}

impl Access {
    /// The wire name (as serialized): what the CLI and OpenRPC show.
    pub const fn as_str(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
        }
    }
}

/// Who may call a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Audience {
    /// An administrator (CLI, web UI, API) may call it.
    External,
    /// Services on this controller only (orchestration steps, reconcile
    /// triggers): never reachable from the management endpoint.
    Internal,
    /// Only the partner's router, over the authenticated peer link.
    Peer,
}

impl Audience {
    /// The wire name (as serialized): what the CLI and OpenRPC show.
    pub const fn as_str(self) -> &'static str {
        match self {
            Audience::External => "external",
            Audience::Internal => "internal",
            Audience::Peer => "peer",
        }
    }
}

/// One method of the catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Method {
    /// `namespace.verb_object`.
    pub name: &'static str,
    /// One line: what it does.
    pub doc: &'static str,
    /// Read or write.
    pub access: Access,
    /// Who may call it.
    pub audience: Audience,
    /// May run long (pool creation, a takeover, a rebuild): the management
    /// plane runs it as a job with progress.
    pub job: bool,
    /// The error kinds (`data.kind` on the wire) it can return besides the
    /// transport's own (`invalid_request`, `method_not_found`,
    /// `unavailable`, `too_large`).
    pub errors: &'static [&'static str],
}

/// The catalogue's version: a different major refuses registration and
/// the peer link; a minor adds methods compatibly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Version {
    /// Incompatible changes (a method removed or its meaning changed).
    pub major: u32,
    /// Compatible additions.
    pub minor: u32,
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl Version {
    /// Why `other` (the partner's or a service's) cannot work with this
    /// one, or `Ok` when it can.
    pub fn check_compatible(self, other: Version) -> Result<(), String> {
        if self.major == other.major {
            Ok(())
        } else {
            Err(format!(
                "method catalogue {other} is incompatible with this controller's {self} \
                 (major versions differ; update both controllers to the same release)"
            ))
        }
    }
}

/// This build's catalogue version.
pub const VERSION: Version = Version { major: 1, minor: 5 };

/// The namespaces of the catalogue.
pub const NAMESPACES: &[&str] = &[
    "router", "event", "job", "config", "disk", "pool", "volume", "target", "host", "net",
    "cluster", "auth", "rpc",
];

/// The namespace of a method name (`pool` for `pool.create`).
pub fn namespace_of(method: &str) -> &str {
    method.split_once('.').map_or(method, |(ns, _)| ns)
}

/// The catalogue entry of `name`, if it exists.
pub fn lookup(name: &str) -> Option<&'static Method> {
    METHODS.iter().find(|m| m.name == name)
}

/// Every method of one namespace, in catalogue order.
pub fn in_namespace(ns: &str) -> impl Iterator<Item = &'static Method> + '_ {
    METHODS.iter().filter(move |m| namespace_of(m.name) == ns)
}

use Access::{Read, Write};
use Audience::{External, Internal, Peer};

const E_PARAMS: &[&str] = &["invalid_params"];
const E_GET: &[&str] = &["invalid_params", "not_found"];
const E_CONFIG: &[&str] = &[
    "invalid_params",
    "conflict",
    "not_owner",
    "config_locked",
    "internal",
];
const E_STORAGE: &[&str] = &[
    "invalid_params",
    "not_found",
    "conflict",
    "not_owner",
    "config_locked",
    "backend_failed",
];
const E_TARGET: &[&str] = &["invalid_params", "not_found", "conflict", "backend_failed"];
const E_PEER: &[&str] = &["invalid_params", "unauthorized", "conflict", "internal"];
const E_CLUSTER: &[&str] = &[
    "invalid_params",
    "not_found",
    "conflict",
    "config_locked",
    "backend_failed",
];

const fn m(
    name: &'static str,
    doc: &'static str,
    access: Access,
    audience: Audience,
    job: bool,
    errors: &'static [&'static str],
) -> Method {
    Method {
        name,
        doc,
        access,
        audience,
        job,
        errors,
    }
}

/// Every method, grouped by namespace.
pub static METHODS: &[Method] = &[
    // router: answered by the router itself.
    m(
        "router.register",
        "Registers a service (name, namespaces, methods, socket) with its controller's router.",
        Write,
        Internal,
        false,
        &["invalid_params", "conflict", "unauthorized"],
    ),
    m(
        "router.services",
        "Lists the registered services, their methods and the peer link.",
        Read,
        External,
        false,
        &[],
    ),
    m(
        "router.actions",
        "The recent-actions log, optionally for one action_id.",
        Read,
        External,
        false,
        E_PARAMS,
    ),
    m(
        "router.status",
        "The router's version, limits, counters and peer link state.",
        Read,
        External,
        false,
        &[],
    ),
    m(
        "router.ping",
        "Answers at once with the controller's id.",
        Read,
        External,
        false,
        &[],
    ),
    // event: publish/subscribe through the router.
    m(
        "event.subscribe",
        "Subscribes this connection to topic patterns.",
        Read,
        External,
        false,
        E_PARAMS,
    ),
    m(
        "event.unsubscribe",
        "Drops this connection's subscriptions.",
        Read,
        External,
        false,
        &[],
    ),
    m(
        "event.publish",
        "Publishes an event on a topic, locally and optionally to the partner.",
        Write,
        Internal,
        false,
        &["invalid_params", "unauthorized"],
    ),
    // config: config-keeper.
    m(
        "job.start",
        "Runs a method marked job in the background; answers its job id at once.",
        Write,
        External,
        false,
        &["invalid_params", "unavailable"],
    ),
    m(
        "job.get",
        "One job: state, progress, result or error (a partner's job through the peer link).",
        Read,
        External,
        false,
        E_GET,
    ),
    m(
        "job.wait",
        "One job once it ends, or as it is after timeout_ms (at most 30 s).",
        Read,
        External,
        false,
        E_GET,
    ),
    m(
        "job.list",
        "This controller's recent jobs, newest first.",
        Read,
        External,
        false,
        &[],
    ),
    m(
        "config.get",
        "The desired state: everything, one kind, or one object.",
        Read,
        External,
        false,
        E_GET,
    ),
    m(
        "config.apply",
        "Applies a validated, ordered list of changes in one transaction.",
        Write,
        External,
        false,
        E_CONFIG,
    ),
    m(
        "config.watch",
        "The topic to follow for changes and the current version.",
        Read,
        External,
        false,
        &[],
    ),
    m(
        "config.history",
        "Committed transactions after a version.",
        Read,
        External,
        false,
        E_PARAMS,
    ),
    m(
        "config.digest",
        "The digest and version of the desired state.",
        Read,
        External,
        false,
        &[],
    ),
    m(
        "config.lock",
        "Locks configuration changes with a reason.",
        Write,
        External,
        false,
        &["invalid_params", "internal"],
    ),
    m(
        "config.unlock",
        "Lifts the configuration lock (its owner, or anyone with force).",
        Write,
        External,
        false,
        &["invalid_params", "unauthorized", "internal"],
    ),
    m(
        "config.status",
        "Versions, lock, replication and readiness.",
        Read,
        External,
        false,
        &[],
    ),
    m(
        "config.events",
        "The replicated event log after a sequence number.",
        Read,
        External,
        false,
        E_PARAMS,
    ),
    m(
        "config.record_event",
        "Appends an event to the log under the caller's action_id.",
        Write,
        Internal,
        false,
        &["invalid_params", "internal"],
    ),
    m(
        "config.audit",
        "The audit log: every write an administrator made on either controller, newest first.",
        Read,
        External,
        false,
        E_PARAMS,
    ),
    m(
        "config.audit_append",
        "The router's audit records of administrators' writes, numbered and stored.",
        Write,
        Internal,
        false,
        &["invalid_params", "unauthorized", "internal"],
    ),
    m(
        "config.repl_audit",
        "Replication: the partner's audit entries after the ones held here.",
        Write,
        Peer,
        false,
        E_PEER,
    ),
    m(
        "config.repl_hello",
        "Replication handshake: versions and the last acknowledged entry.",
        Write,
        Peer,
        false,
        E_PEER,
    ),
    m(
        "config.repl_push",
        "Replication: entries of the partner's section to merge.",
        Write,
        Peer,
        false,
        E_PEER,
    ),
    m(
        "config.repl_snapshot",
        "Replication: one page of the whole state, for a partner rebuilding its lost database.",
        Read,
        Peer,
        false,
        E_PEER,
    ),
    m(
        "config.rebuild_from_partner",
        "Rebuilds this controller's lost database (its own section and the replica) from the partner.",
        Write,
        External,
        false,
        &["conflict", "unavailable", "internal"],
    ),
    // disk, pool, volume: pool-manager.
    m(
        "disk.list",
        "Disks with their tier, sharing and whether they qualify for pools.",
        Read,
        External,
        false,
        E_PARAMS,
    ),
    m(
        "pool.layouts",
        "For a set of disks: each layout's capacity and fault tolerance.",
        Read,
        External,
        false,
        E_PARAMS,
    ),
    m(
        "pool.create",
        "Creates a pool on shared disks with a layout.",
        Write,
        External,
        true,
        E_STORAGE,
    ),
    m(
        "pool.delete",
        "Deletes a pool that has no volumes.",
        Write,
        External,
        true,
        E_STORAGE,
    ),
    m(
        "pool.export",
        "Deactivates a pool here and hands its system_id over.",
        Write,
        Internal,
        true,
        E_STORAGE,
    ),
    m(
        "pool.import",
        "Imports and activates a pool that is ours.",
        Write,
        Internal,
        true,
        E_STORAGE,
    ),
    m(
        "pool.takeover",
        "Imports the partner's pool under a newer cluster epoch.",
        Write,
        Internal,
        true,
        E_STORAGE,
    ),
    m(
        "pool.status",
        "Pools: desired and observed state, usage, RAID, progress, alerts.",
        Read,
        External,
        false,
        E_GET,
    ),
    m(
        "pool.repair",
        "Starts a RAID repair of a degraded pool.",
        Write,
        External,
        true,
        E_STORAGE,
    ),
    m(
        "pool.reconcile",
        "Reconciles pools and volumes with the desired state now.",
        Write,
        Internal,
        false,
        &["backend_failed"],
    ),
    m(
        "pool.active_local",
        "Pools with anything active on this controller.",
        Read,
        Internal,
        false,
        &["backend_failed"],
    ),
    m(
        "volume.create",
        "Creates a thin volume in a pool.",
        Write,
        External,
        true,
        E_STORAGE,
    ),
    m(
        "volume.resize",
        "Grows a volume.",
        Write,
        External,
        false,
        E_STORAGE,
    ),
    m(
        "volume.delete",
        "Deletes a volume that is not exported.",
        Write,
        External,
        false,
        E_STORAGE,
    ),
    m(
        "volume.snapshot",
        "Takes a snapshot of a volume (read-only by default).",
        Write,
        External,
        false,
        E_STORAGE,
    ),
    m(
        "volume.clone",
        "Makes a writable clone of a volume or snapshot.",
        Write,
        External,
        false,
        E_STORAGE,
    ),
    m(
        "volume.list",
        "Volumes and their snapshot tree.",
        Read,
        External,
        false,
        E_GET,
    ),
    // target, net: targets.
    m(
        "target.status",
        "The targets service: last reconcile, drift, access states.",
        Read,
        External,
        false,
        &[],
    ),
    m(
        "target.show",
        "The LIO and nvmet tree as applied.",
        Read,
        External,
        false,
        &[],
    ),
    m(
        "target.access_states",
        "Each pool's ALUA and ANA state on this controller.",
        Read,
        External,
        false,
        &[],
    ),
    m(
        "target.set_access_state",
        "Flips a pool's port groups to active or standby here.",
        Write,
        Internal,
        false,
        E_TARGET,
    ),
    m(
        "target.reservations",
        "SCSI-3 persistent reservations per LU in this controller's kernel: registrations, holder, generation.",
        Read,
        External,
        false,
        E_GET,
    ),
    m(
        "target.clear_reservations",
        "Drops every registration and the reservation of one volume here, and its saved APTPL state (audited).",
        Write,
        External,
        false,
        E_TARGET,
    ),
    m(
        "target.reconcile",
        "Reconciles LIO and nvmet with the desired state now.",
        Write,
        Internal,
        false,
        &["unavailable", "backend_failed"],
    ),
    m(
        "net.status",
        "Floating IP addresses and where they are up.",
        Read,
        External,
        false,
        &[],
    ),
    m(
        "net.up",
        "Raises a floating IP here, with gratuitous ARP.",
        Write,
        Internal,
        false,
        E_TARGET,
    ),
    m(
        "net.down",
        "Drops a floating IP here.",
        Write,
        Internal,
        false,
        E_TARGET,
    ),
    // cluster: heartbeat.
    m(
        "cluster.status",
        "Both controllers, links, disk heartbeats, fence agents, owners and the lock.",
        Read,
        External,
        false,
        &[],
    ),
    m(
        "cluster.init",
        "Writes the heartbeat area on the configured heartbeat disks.",
        Write,
        External,
        false,
        E_CLUSTER,
    ),
    m(
        "cluster.failover",
        "Planned move of one pool, or all, to the partner.",
        Write,
        External,
        true,
        E_CLUSTER,
    ),
    m(
        "cluster.giveback",
        "Moves pools back to their home controller.",
        Write,
        External,
        true,
        E_CLUSTER,
    ),
    m(
        "cluster.maintenance",
        "Holds, or releases, every automatic takeover.",
        Write,
        External,
        false,
        E_CLUSTER,
    ),
    m(
        "cluster.fence_test",
        "Checks each fence agent without fencing.",
        Read,
        External,
        false,
        E_CLUSTER,
    ),
    m(
        "cluster.timeline",
        "The last takeovers and givebacks, each step with its duration.",
        Read,
        External,
        false,
        E_PARAMS,
    ),
    // auth, rpc: answered by the management endpoint itself (duplex-mgmt),
    // never routed. Read: a session is not appliance state, and a
    // read_only user must be able to log in and out.
    m(
        "auth.login",
        "Checks a user's password and opens a session; the only method callable without one.",
        Read,
        External,
        false,
        &["invalid_params", "unauthorized", "unavailable"],
    ),
    m(
        "auth.logout",
        "Ends the caller's session.",
        Read,
        External,
        false,
        &[],
    ),
    m(
        "auth.whoami",
        "The caller's session: user, role and when it ends (a browser restores its session with it).",
        Read,
        External,
        false,
        &["unauthorized"],
    ),
    m(
        "rpc.discover",
        "The OpenRPC document of every external method.",
        Read,
        External,
        false,
        &[],
    ),
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn names_are_unique_and_in_known_namespaces() {
        let mut seen = BTreeSet::new();
        for m in METHODS {
            assert!(seen.insert(m.name), "{} listed twice", m.name);
            let (ns, verb) = m.name.split_once('.').expect("namespace.verb");
            assert!(NAMESPACES.contains(&ns), "{}: unknown namespace", m.name);
            assert!(
                !verb.is_empty() && verb.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{}: verb must be snake_case",
                m.name
            );
            assert!(
                !m.doc.is_empty() && m.doc.ends_with('.'),
                "{}: one-line doc",
                m.name
            );
        }
    }

    #[test]
    fn marks_are_consistent() {
        for m in METHODS {
            // A job changes something; a peer method is never external.
            if m.job {
                assert_eq!(m.access, Access::Write, "{}", m.name);
            }
            for e in m.errors {
                assert!(
                    [
                        "invalid_params",
                        "unauthorized",
                        "not_found",
                        "conflict",
                        "config_locked",
                        "not_owner",
                        "backend_failed",
                        "unavailable",
                        "internal",
                    ]
                    .contains(e),
                    "{}: unknown error kind {e}",
                    m.name
                );
            }
        }
        assert_eq!(
            lookup("config.repl_push").map(|m| m.audience),
            Some(Audience::Peer)
        );
        assert_eq!(
            lookup("pool.takeover").map(|m| m.audience),
            Some(Audience::Internal)
        );
        assert_eq!(lookup("pool.create").map(|m| m.job), Some(true));
        assert!(lookup("pool.frobnicate").is_none());
    }

    #[test]
    fn versions_differing_in_major_are_refused_with_a_reason() {
        let v = VERSION;
        assert!(v
            .check_compatible(Version {
                minor: v.minor + 3,
                ..v
            })
            .is_ok());
        let err = v
            .check_compatible(Version {
                major: v.major + 1,
                minor: 0,
            })
            .unwrap_err();
        assert!(err.contains("incompatible"), "{err}");
    }
}
