//! `/etc/duplex/duplex.toml`: the controller's identity, paths, limits and
//! the peer link, with environment overrides for tests and the local demo.
//!
//! Overrides (applied after the file): `DUPLEX_CONFIG` (the file),
//! `DUPLEX_CONTROLLER_ID`, `DUPLEX_SOCKET_DIR`, `DUPLEX_STATE_DIR`.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the configuration file lives on the appliance.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/duplex/duplex.toml";

/// Errors loading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("{path} is invalid")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's error (names the key).
        #[source]
        source: toml::de::Error,
    },
    /// A value is present but unusable.
    #[error("{field}: {reason}")]
    Invalid {
        /// The key, e.g. `peer.secret_file`.
        field: &'static str,
        /// Why it is unusable.
        reason: String,
    },
}

/// The whole configuration of one controller.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This controller's id (`A` or `B`); may come from `DUPLEX_CONTROLLER_ID`.
    #[serde(default)]
    pub controller_id: String,
    /// Directory of the local Unix sockets.
    #[serde(default = "default_socket_dir")]
    pub socket_dir: PathBuf,
    /// Directory of persistent state (config.db...).
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// Router limits.
    #[serde(default)]
    pub router: RouterSettings,
    /// The link to the partner controller's router; absent on a lone controller.
    #[serde(default)]
    pub peer: Option<PeerSettings>,
    /// Failure detection and fencing; absent: the heartbeat service only
    /// answers `cluster.status` (not configured).
    #[serde(default)]
    pub heartbeat: Option<HeartbeatSettings>,
    /// The management endpoint (duplex-mgmt).
    #[serde(default)]
    pub mgmt: MgmtSettings,
}

/// `[mgmt]`: the HTTPS/WebSocket management endpoint. It listens only on
/// the addresses named here (the management network), never on every
/// interface, so no other network reaches it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MgmtSettings {
    /// The management addresses to listen on (each controller's own).
    pub listen: Vec<std::net::IpAddr>,
    /// The HTTPS port.
    pub port: u16,
    /// Certificate, key and endpoint state; default `<state_dir>/mgmt`.
    pub state_dir: Option<PathBuf>,
    /// How long a session lasts after login, seconds.
    pub session_ttl_s: u64,
    /// Web origins (`https://name:port`) allowed besides the endpoint's
    /// own, for the WebSocket upgrade and browser calls.
    pub allowed_origins: Vec<String>,
    /// The web UI's static files (`index.html`, the bundle).
    pub ui_dir: PathBuf,
    /// Calls per second one client address may make (HTTP and WebSocket
    /// alike); more fail at once with `unavailable`, reason `rate_limited`.
    pub calls_per_s: u32,
    /// Calls one address may make at once above that rate (a page load).
    pub calls_burst: u32,
}

impl Default for MgmtSettings {
    fn default() -> Self {
        MgmtSettings {
            // Loopback until the management address is configured: an
            // unconfigured controller is not reachable off the box.
            listen: vec![std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)],
            port: 443,
            state_dir: None,
            session_ttl_s: 8 * 3600,
            allowed_origins: Vec::new(),
            ui_dir: PathBuf::from("/usr/share/duplex/ui"),
            calls_per_s: 50,
            calls_burst: 200,
        }
    }
}

impl MgmtSettings {
    /// Checks values the types cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, reason: &str| {
            Err(ConfigError::Invalid {
                field,
                reason: reason.into(),
            })
        };
        if self.listen.is_empty() {
            return bad("mgmt.listen", "give at least one management address");
        }
        if self.listen.iter().any(|a| a.is_unspecified()) {
            return bad(
                "mgmt.listen",
                "name the management address; 0.0.0.0 and :: would expose the endpoint on every network",
            );
        }
        // No lower floor beyond 1 s: the expiry tests use short sessions.
        if self.session_ttl_s == 0 || self.session_ttl_s > 7 * 24 * 3600 {
            return bad("mgmt.session_ttl_s", "must be 1 s to 7 days");
        }
        if self.calls_per_s == 0 || self.calls_burst == 0 {
            return bad(
                "mgmt.calls_per_s",
                "calls_per_s and calls_burst must be at least 1",
            );
        }
        if self
            .allowed_origins
            .iter()
            .any(|o| !o.starts_with("https://") || o.ends_with('/'))
        {
            return bad(
                "mgmt.allowed_origins",
                "each origin is https://host[:port] without a path",
            );
        }
        Ok(())
    }
}

/// One interconnect link of the heartbeat: where this controller listens
/// and where the partner's end is.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatLink {
    /// Local UDP address.
    pub local: SocketAddr,
    /// The partner's UDP address on the same link.
    pub peer: SocketAddr,
}

/// `[heartbeat]`: disks, links, fencing and timings (`docs/heartbeat.md`
/// says why each default is safe).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatSettings {
    /// Heartbeat disks (1 to 3; majorities are of this list).
    pub disks: Vec<PathBuf>,
    /// Interconnect links (1 or 2).
    pub links: Vec<HeartbeatLink>,
    /// The watchdog device; absent: no watchdog.
    #[serde(default)]
    pub watchdog: Option<PathBuf>,
    /// Fence agents in the order tried (`ipmi`, `scsi_pr`); the poison pill
    /// is always written as well.
    #[serde(default = "default_fence")]
    pub fence: Vec<String>,
    /// The partner's BMC credentials (address, user, password, cipher
    /// suite), mode 0600; never logged.
    #[serde(default)]
    pub bmc_file: Option<PathBuf>,
    /// The pools' SCSI-3 PR capable shelf disks (stable names) the
    /// `scsi_pr` agent registers this controller's key on and preempts the
    /// partner's key from; at most 64.
    #[serde(default)]
    pub pr_disks: Vec<PathBuf>,
    /// Interval of interconnect beats.
    #[serde(default = "ms::<100>")]
    pub hb_interval_ms: u64,
    /// Every link silent this long: stage 2.
    #[serde(default = "ms::<1000>")]
    pub ic_timeout_ms: u64,
    /// Interval of slot writes and reads.
    #[serde(default = "ms::<200>")]
    pub disk_interval_ms: u64,
    /// Partner slot frozen this long on a majority: fence.
    #[serde(default = "ms::<1500>")]
    pub suspect_timeout_ms: u64,
    /// Wait where nothing confirms (`allow_unconfirmed`, partner never seen
    /// since boot); must exceed the watchdog timeout plus a margin.
    #[serde(default = "ms::<10_000>")]
    pub disk_timeout_ms: u64,
    /// Take over on an unconfirmed fence after `disk_timeout` (unsafe for
    /// controllers that can freeze and resume).
    #[serde(default)]
    pub allow_unconfirmed: bool,
    /// Give the partner's pools back on its own once it rejoined.
    #[serde(default)]
    pub auto_failback: bool,
    /// Extra fence delay of the tie-break loser.
    #[serde(default = "ms::<1000>")]
    pub tie_break_ms: u64,
    /// Wait before trying every fence agent again after all failed.
    #[serde(default = "ms::<5000>")]
    pub fence_retry_ms: u64,
    /// Timeout armed on the watchdog device (whole seconds are used); a
    /// controller that stops petting it is reset within this time, so it
    /// must end well before the partner's `disk_timeout_ms`.
    #[serde(default = "ms::<5000>")]
    pub watchdog_timeout_ms: u64,
    /// The front-end interfaces hosts reach this controller on (`fe0`);
    /// empty: front-end health is not watched.
    #[serde(default)]
    pub frontend: Vec<String>,
    /// Every front-end link down this long while the partner's are up:
    /// this controller's pools move to the partner.
    #[serde(default = "ms::<3000>")]
    pub frontend_grace_ms: u64,
    /// Move the pools when the front end is lost (hosts that reach only
    /// the partner get their data back without a person).
    #[serde(default = "yes")]
    pub move_on_frontend_loss: bool,
    /// The shelf's disks as this controller sees them (stable names, such
    /// as `/dev/disk/by-id/...`); empty: the shelf is not watched. At most
    /// 64.
    #[serde(default)]
    pub shelf: Vec<PathBuf>,
    /// No shelf disk readable here this long while the partner reads some:
    /// this controller stops and the partner fences it and takes its pools.
    #[serde(default = "ms::<2000>")]
    pub shelf_grace_ms: u64,
    /// Hand the pools over when this controller alone loses the shelf.
    #[serde(default = "yes")]
    pub move_on_shelf_loss: bool,
    /// targets not serving here this long (`target.status` unanswered) while
    /// the partner's serves: this controller stops and the partner fences
    /// it and takes its pools. Longer than a restart of the daemon.
    #[serde(default = "ms::<30_000>")]
    pub targets_grace_ms: u64,
    /// Hand the pools over when this controller's targets stops serving.
    #[serde(default = "yes")]
    pub move_on_targets_loss: bool,
}

/// Most shelf disks the heartbeat watches (a beat carries the count in a
/// byte; a probe round reads each one).
pub const MAX_SHELF_DISKS: usize = 64;

/// A serde default of `true`.
const fn yes() -> bool {
    true
}

/// A serde default of `N` milliseconds, written next to its field.
const fn ms<const N: u64>() -> u64 {
    N
}

fn default_fence() -> Vec<String> {
    vec!["ipmi".into(), "scsi_pr".into()]
}

impl HeartbeatSettings {
    /// Checks what the types cannot: counts and the order of the timings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, reason: &str| {
            Err(ConfigError::Invalid {
                field,
                reason: reason.into(),
            })
        };
        if self.disks.is_empty() || self.disks.len() > 3 {
            return bad("heartbeat.disks", "give 1 to 3 heartbeat disks");
        }
        if self.links.is_empty() || self.links.len() > 2 {
            return bad("heartbeat.links", "give 1 or 2 interconnect links");
        }
        for agent in &self.fence {
            if !matches!(agent.as_str(), "ipmi" | "scsi_pr") {
                return bad("heartbeat.fence", "known agents: ipmi, scsi_pr");
            }
        }
        if self.fence.iter().any(|a| a == "ipmi") && self.bmc_file.is_none() {
            return bad(
                "heartbeat.bmc_file",
                "the ipmi agent needs the partner's BMC file",
            );
        }
        if self.fence.iter().any(|a| a == "scsi_pr") && self.pr_disks.is_empty() {
            return bad(
                "heartbeat.pr_disks",
                "the scsi_pr agent needs the pools' PR-capable disks (or drop scsi_pr from heartbeat.fence)",
            );
        }
        if self.pr_disks.len() > MAX_SHELF_DISKS {
            return bad("heartbeat.pr_disks", "at most 64 PR disks");
        }
        if self.hb_interval_ms == 0 || self.disk_interval_ms == 0 {
            return bad("heartbeat", "intervals must be greater than zero");
        }
        if self.ic_timeout_ms < 3 * self.hb_interval_ms {
            return bad(
                "heartbeat.ic_timeout_ms",
                "must be at least three hb_interval_ms",
            );
        }
        if self.suspect_timeout_ms < 3 * self.disk_interval_ms {
            return bad(
                "heartbeat.suspect_timeout_ms",
                "must be at least three disk_interval_ms",
            );
        }
        if self.disk_timeout_ms <= self.suspect_timeout_ms {
            return bad(
                "heartbeat.disk_timeout_ms",
                "must be longer than suspect_timeout_ms",
            );
        }
        for name in &self.frontend {
            // Linux interface names: 1 to 15 bytes, no '/', no whitespace.
            let ok = !name.is_empty()
                && name.len() < 16
                && name != "."
                && name != ".."
                && !name
                    .chars()
                    .any(|c| c == '/' || c == ':' || c.is_whitespace());
            if !ok {
                return bad(
                    "heartbeat.frontend",
                    "interface names are 1 to 15 characters without '/', ':' or spaces",
                );
            }
        }
        if self.frontend_grace_ms < self.hb_interval_ms {
            return bad(
                "heartbeat.frontend_grace_ms",
                "must be at least hb_interval_ms",
            );
        }
        if self.shelf.len() > MAX_SHELF_DISKS {
            return bad("heartbeat.shelf", "at most 64 shelf disks are watched");
        }
        if self.targets_grace_ms < 5000 {
            return bad(
                "heartbeat.targets_grace_ms",
                "must be at least 5000 (a restart of targets must not move pools)",
            );
        }
        if self.shelf_grace_ms < self.hb_interval_ms {
            return bad(
                "heartbeat.shelf_grace_ms",
                "must be at least hb_interval_ms",
            );
        }
        if self.watchdog_timeout_ms < 1000 {
            return bad(
                "heartbeat.watchdog_timeout_ms",
                "watchdog devices count whole seconds: at least 1000",
            );
        }
        // The partner's unconfirmed wait (disk_timeout) must outlast our
        // watchdog reset with a margin of two slot writes.
        if self.watchdog_timeout_ms + 2 * self.disk_interval_ms >= self.disk_timeout_ms {
            return bad(
                "heartbeat.watchdog_timeout_ms",
                "must end at least two disk_interval_ms before disk_timeout_ms",
            );
        }
        Ok(())
    }
}

/// Limits and sizes of the router.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouterSettings {
    /// Largest accepted message in bytes.
    pub max_message_bytes: usize,
    /// Entries kept in the recent-actions log.
    pub actions_log_size: usize,
    /// Requests one connection may have in flight; more are refused.
    pub max_inflight_per_connection: usize,
    /// Concurrent client connections.
    pub max_connections: usize,
    /// Events queued per subscriber before it is dropped as too slow.
    pub event_queue: usize,
    /// How long a routed call may take before it fails with `unavailable`.
    pub call_timeout_ms: u64,
    /// The most a service may ask for one method (`timeouts_ms` in its
    /// registration).
    pub max_call_timeout_ms: u64,
    /// Namespaces outside the method catalogue that a service may still
    /// register. Only the integration tests' test service uses them; an
    /// appliance leaves this empty, so only catalogued methods exist.
    pub test_namespaces: Vec<String>,
}

impl Default for RouterSettings {
    fn default() -> Self {
        RouterSettings {
            max_message_bytes: 1 << 20,
            actions_log_size: 4096,
            max_inflight_per_connection: 64,
            max_connections: 1024,
            event_queue: 1024,
            call_timeout_ms: 30_000,
            max_call_timeout_ms: 900_000,
            test_namespaces: Vec::new(),
        }
    }
}

impl RouterSettings {
    /// Whether a service may serve `method`: it is in the method catalogue,
    /// or in one of the test namespaces.
    pub fn method_allowed(&self, method: &str) -> bool {
        duplex_api::catalogue::lookup(method).is_some()
            || self
                .test_namespaces
                .iter()
                .any(|ns| ns == duplex_api::catalogue::namespace_of(method))
    }

    /// The call timeout as a duration.
    pub fn call_timeout(&self) -> Duration {
        Duration::from_millis(self.call_timeout_ms)
    }

    /// The timeout of one routed call: the service's own limit for the
    /// method if it registered one (capped), else the default.
    pub fn call_timeout_for(&self, method_limit_ms: Option<u64>) -> Duration {
        match method_limit_ms {
            Some(ms) => {
                Duration::from_millis(ms.min(self.max_call_timeout_ms.max(self.call_timeout_ms)))
            }
            None => self.call_timeout(),
        }
    }
}

/// The peer link over the interconnect.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerSettings {
    /// The partner's controller id.
    pub controller_id: String,
    /// Where this router accepts the partner (one address per interconnect link).
    #[serde(default)]
    pub listen: Vec<SocketAddr>,
    /// The partner's router addresses, tried in order.
    #[serde(default)]
    pub addresses: Vec<SocketAddr>,
    /// The cluster secret inline (tests); prefer `secret_file`.
    #[serde(default)]
    pub secret: Option<String>,
    /// A file holding the cluster secret (mode 0600).
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
}

impl std::fmt::Debug for PeerSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The inline secret never reaches a log line.
        f.debug_struct("PeerSettings")
            .field("controller_id", &self.controller_id)
            .field("listen", &self.listen)
            .field("addresses", &self.addresses)
            .field("secret", &self.secret.as_ref().map(|_| "(redacted)"))
            .field("secret_file", &self.secret_file)
            .finish()
    }
}

impl PeerSettings {
    /// The cluster secret, from `secret` or `secret_file`.
    pub fn load_secret(&self) -> Result<Vec<u8>, ConfigError> {
        let raw = match (&self.secret, &self.secret_file) {
            (Some(s), _) => s.clone().into_bytes(),
            (None, Some(path)) => std::fs::read(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?,
            (None, None) => {
                return Err(ConfigError::Invalid {
                    field: "peer.secret_file",
                    reason: "the peer link needs a cluster secret".into(),
                })
            }
        };
        let trimmed = raw.trim_ascii().to_vec();
        if trimmed.len() < 16 {
            return Err(ConfigError::Invalid {
                field: "peer.secret",
                reason: "the cluster secret must be at least 16 bytes".into(),
            });
        }
        Ok(trimmed)
    }
}

fn default_socket_dir() -> PathBuf {
    PathBuf::from("/run/duplex")
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/duplex")
}

impl Config {
    /// Loads the file (`path`, else `$DUPLEX_CONFIG`, else the default path)
    /// and applies the environment overrides. When no file is named and the
    /// default does not exist, `DUPLEX_CONTROLLER_ID` alone is enough.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let env_path = std::env::var_os("DUPLEX_CONFIG").map(PathBuf::from);
        let explicit = path.map(Path::to_path_buf).or(env_path);
        let file = explicit
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH));
        let mut cfg = if explicit.is_some() || file.exists() {
            let text = std::fs::read_to_string(&file).map_err(|source| ConfigError::Read {
                path: file.clone(),
                source,
            })?;
            Self::parse(&text).map_err(|source| ConfigError::Parse { path: file, source })?
        } else {
            Config {
                controller_id: String::new(),
                socket_dir: default_socket_dir(),
                state_dir: default_state_dir(),
                router: RouterSettings::default(),
                peer: None,
                heartbeat: None,
                mgmt: MgmtSettings::default(),
            }
        };
        if let Ok(id) = std::env::var("DUPLEX_CONTROLLER_ID") {
            cfg.controller_id = id;
        }
        if let Some(d) = std::env::var_os("DUPLEX_SOCKET_DIR") {
            cfg.socket_dir = d.into();
        }
        if let Some(d) = std::env::var_os("DUPLEX_STATE_DIR") {
            cfg.state_dir = d.into();
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses TOML text (no overrides, no validation).
    pub fn parse(text: &str) -> Result<Config, toml::de::Error> {
        toml::from_str(text)
    }

    /// Checks values the types cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let id_ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 16
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        if !id_ok(&self.controller_id) {
            return Err(ConfigError::Invalid {
                field: "controller_id",
                reason: format!(
                    "{:?} must be 1-16 letters, digits or '-' (set it in the file or DUPLEX_CONTROLLER_ID)",
                    self.controller_id
                ),
            });
        }
        if let Some(p) = &self.peer {
            if !id_ok(&p.controller_id) || p.controller_id == self.controller_id {
                return Err(ConfigError::Invalid {
                    field: "peer.controller_id",
                    reason: "must be a valid id different from controller_id".into(),
                });
            }
        }
        if let Some(hb) = &self.heartbeat {
            if self.peer.is_none() {
                return Err(ConfigError::Invalid {
                    field: "heartbeat",
                    reason: "needs [peer] (the partner's id and the cluster secret)".into(),
                });
            }
            hb.validate()?;
        }
        self.mgmt.validate()?;
        if self.router.max_message_bytes < 1024 {
            return Err(ConfigError::Invalid {
                field: "router.max_message_bytes",
                reason: "must be at least 1024".into(),
            });
        }
        if self.router.max_inflight_per_connection == 0
            || self.router.event_queue == 0
            || self.router.max_connections == 0
        {
            return Err(ConfigError::Invalid {
                field: "router",
                reason: "limits must be greater than zero".into(),
            });
        }
        Ok(())
    }

    /// The router's socket.
    pub fn router_socket(&self) -> PathBuf {
        self.socket_dir.join("router.sock")
    }

    /// A service's own socket.
    pub fn service_socket(&self, service: &str) -> PathBuf {
        self.socket_dir.join(format!("{service}.sock"))
    }

    /// The management endpoint's state directory (certificate and key).
    pub fn mgmt_state_dir(&self) -> PathBuf {
        self.mgmt
            .state_dir
            .clone()
            .unwrap_or_else(|| self.state_dir.join("mgmt"))
    }

    /// The partner's id, if a peer is configured.
    pub fn partner_id(&self) -> Option<&str> {
        self.peer.as_ref().map(|p| p.controller_id.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_heartbeat_section_of_the_lab() {
        let cfg = Config::parse(
            r#"
controller_id = "A"
[peer]
controller_id = "B"
secret = "0123456789abcdef0123"
[heartbeat]
disks = ["/dev/disk/by-id/virtio-hb0", "/dev/disk/by-id/virtio-hb1", "/dev/disk/by-id/virtio-hb2"]
links = [{ local = "10.51.0.1:7790", peer = "10.51.0.2:7790" }, { local = "10.52.0.1:7790", peer = "10.52.0.2:7790" }]
watchdog = "/dev/watchdog"          # optional
fence = ["ipmi", "scsi_pr"]         # agent order; poison pill always written too
bmc_file = "/etc/duplex/partner-bmc.toml"
pr_disks = ["/dev/disk/by-id/scsi-SDUPLEXLB_PRSHELF0_prshelf0"]
hb_interval_ms = 100
ic_timeout_ms = 1000
disk_interval_ms = 200
suspect_timeout_ms = 1500
disk_timeout_ms = 10000
allow_unconfirmed = false
auto_failback = false
"#,
        )
        .unwrap();
        cfg.validate().unwrap();
        let hb = cfg.heartbeat.unwrap();
        assert_eq!(hb.disks.len(), 3);
        assert_eq!(hb.links[1].peer, "10.52.0.2:7790".parse().unwrap());
        assert_eq!(hb.tie_break_ms, 1000);

        // Defaults, and refusals.
        let minimal = |extra: &str| {
            Config::parse(&format!(
                "controller_id = \"A\"\n[peer]\ncontroller_id = \"B\"\nsecret = \"0123456789abcdef\"\n[heartbeat]\ndisks = [\"/d0\"]\nlinks = [{{ local = \"127.0.0.1:1\", peer = \"127.0.0.1:2\" }}]\nfence = []\n{extra}"
            ))
        };
        let cfg = minimal("").unwrap();
        cfg.validate().unwrap();
        let hb = cfg.heartbeat.as_ref().unwrap();
        assert_eq!(
            [
                hb.hb_interval_ms,
                hb.ic_timeout_ms,
                hb.disk_interval_ms,
                hb.suspect_timeout_ms,
                hb.disk_timeout_ms,
                hb.tie_break_ms,
                hb.fence_retry_ms,
                hb.watchdog_timeout_ms
            ],
            [100, 1000, 200, 1500, 10_000, 1000, 5000, 5000]
        );
        assert!(hb.frontend.is_empty() && hb.move_on_frontend_loss);
        assert_eq!(hb.frontend_grace_ms, 3000);
        assert!(hb.shelf.is_empty() && hb.move_on_shelf_loss);
        assert_eq!(hb.shelf_grace_ms, 2000);
        assert!(hb.move_on_targets_loss && hb.targets_grace_ms == 30_000);
        assert!(minimal("targets_grace_ms = 100")
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string()
            .contains("heartbeat.targets_grace_ms"));
        let fe = minimal("frontend = [\"fe0\", \"bond0.100\"]").unwrap();
        fe.validate().unwrap();
        for bad in ["\"\"", "\"a/b\"", "\"sixteen-chars-xx\"", "\"a b\""] {
            let e = minimal(&format!("frontend = [{bad}]"))
                .unwrap()
                .validate()
                .unwrap_err();
            assert!(e.to_string().contains("heartbeat.frontend"), "{bad}: {e}");
        }
        assert!(minimal("bogus = 1").is_err(), "unknown keys refused");
        assert!(minimal("disk_timeout_ms = 1000")
            .unwrap()
            .validate()
            .is_err());
        let no_bmc = minimal("").unwrap();
        let mut no_bmc_hb = no_bmc.heartbeat.clone().unwrap();
        no_bmc_hb.fence = vec!["ipmi".into()];
        assert!(no_bmc_hb.validate().is_err());
        let mut no_pr_hb = no_bmc.heartbeat.clone().unwrap();
        no_pr_hb.fence = vec!["scsi_pr".into()];
        let e = no_pr_hb.validate().unwrap_err();
        assert!(e.to_string().contains("heartbeat.pr_disks"), "{e}");
        no_pr_hb.pr_disks = vec!["/dev/disk/by-id/scsi-x".into()];
        no_pr_hb.validate().unwrap();
        // Without a section nothing changes.
        let cfg = Config::parse("controller_id = \"A\"").unwrap();
        assert!(cfg.heartbeat.is_none());
    }

    #[test]
    fn parses_the_documented_example() {
        let cfg = Config::parse(
            r#"
controller_id = "A"
socket_dir = "/run/duplex"
[router]
max_message_bytes = 2048
[peer]
controller_id = "B"
listen = ["10.99.0.1:7400"]
addresses = ["10.99.0.2:7400", "10.99.1.2:7400"]
secret_file = "/etc/duplex/cluster.secret"
"#,
        )
        .unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.router.max_message_bytes, 2048);
        assert_eq!(cfg.router.actions_log_size, 4096);
        assert_eq!(cfg.partner_id(), Some("B"));
        assert_eq!(cfg.peer.unwrap().addresses.len(), 2);
    }

    #[test]
    fn mgmt_defaults_to_loopback_and_refuses_every_interface() {
        let cfg = Config::parse("controller_id = \"A\"").unwrap();
        assert_eq!(
            cfg.mgmt.listen,
            vec!["127.0.0.1".parse::<std::net::IpAddr>().unwrap()]
        );
        assert_eq!(cfg.mgmt.port, 443);
        assert_eq!(cfg.mgmt_state_dir(), PathBuf::from("/var/lib/duplex/mgmt"));
        let cfg = Config::parse(
            "controller_id = \"A\"\n[mgmt]\nlisten = [\"10.0.0.5\"]\nport = 8443\nsession_ttl_s = 600\n",
        )
        .unwrap();
        assert!(cfg.validate().is_ok());
        assert_eq!(cfg.mgmt.port, 8443);
        let cfg = Config::parse("controller_id = \"A\"\n[mgmt]\nlisten = [\"0.0.0.0\"]\n").unwrap();
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.starts_with("mgmt.listen"), "{e}");
        let cfg = Config::parse("controller_id = \"A\"\n[mgmt]\nsession_ttl_s = 0\n").unwrap();
        assert!(cfg.validate().is_err());
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = Config::parse("controller_id = \"A\"\nsocket_dri = \"/x\"\n").unwrap_err();
        assert!(e.to_string().contains("socket_dri"), "{e}");
    }

    #[test]
    fn bad_ids_are_refused_with_the_field() {
        let mut cfg = Config::parse("controller_id = \"A B\"").unwrap();
        let e = cfg.validate().unwrap_err();
        assert!(e.to_string().starts_with("controller_id:"), "{e}");
        cfg.controller_id = "A".into();
        cfg.peer = Some(PeerSettings {
            controller_id: "A".into(),
            listen: vec![],
            addresses: vec![],
            secret: None,
            secret_file: None,
        });
        assert!(cfg
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("peer.controller_id"));
    }

    #[test]
    fn short_secrets_are_refused() {
        let p = PeerSettings {
            controller_id: "B".into(),
            listen: vec![],
            addresses: vec![],
            secret: Some("short".into()),
            secret_file: None,
        };
        assert!(p.load_secret().is_err());
    }

    #[test]
    fn debug_hides_the_inline_cluster_secret() {
        let p = PeerSettings {
            controller_id: "B".into(),
            listen: Vec::new(),
            addresses: Vec::new(),
            secret: Some("a-cluster-secret-of-enough-length".into()),
            secret_file: None,
        };
        let text = format!("{p:?}");
        assert!(!text.contains("a-cluster-secret"), "{text}");
        assert!(text.contains("redacted"), "{text}");
    }
}
