//! The router: accepts local connections, routes calls by namespace to the
//! registered services or over the peer link, fans out events, and keeps the
//! recent-actions log.

use crate::actions::{ActionLog, ActionRecord};
use crate::audit;
use crate::jobs::{self, Jobs};
use crate::peer;
use crate::peer_tls::PeerTls;
use crate::registry::{Registry, State};
use crate::topics;
use duplex_api::catalogue::{self, Audience};
use duplex_api::methods::config::{AuditAppendParams, AuditRecord};
use duplex_api::methods::event::{
    PublishParams, Published, SubscribeParams, Subscribed, Unsubscribed,
};
use duplex_api::methods::job::{
    GetParams, JobState, ListResult as JobList, StartParams, Started, WaitParams,
};
use duplex_api::methods::router::{
    ActionsParams, ActionsResult, MethodCalls, PeerLink, Pong, Registered, ServicesResult,
    StatusResult,
};
use duplex_services::action;
use duplex_services::client::{Event, EVENT_NOTIFY};
use duplex_services::config::Config;
use duplex_services::conn::{ConnError, RpcConn};
use duplex_services::rpc::{to_frame, ErrorCode, Request, Response, RpcError};
use duplex_services::server::{self, ConnCtx, Dispatch, Limits};
use duplex_services::service::{params, Registration};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::BufReader;
use tokio::sync::mpsc;
use tracing::Instrument;

/// Errors starting the router.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The local socket could not be bound.
    #[error("cannot bind {path}")]
    Bind {
        /// The socket path.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A peer listen address could not be bound.
    #[error("cannot listen for the partner on {addr}")]
    PeerListen {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The cluster secret could not be loaded.
    #[error(transparent)]
    Secret(#[from] duplex_services::config::ConfigError),
    /// The peer link's TLS keys could not be made from the secret.
    #[error(transparent)]
    PeerTls(#[from] crate::peer_tls::PeerTlsError),
}

/// The one topic every service may publish.
const ALERT_TOPIC: &str = duplex_api::topics::ALERT;
/// The group whose members may connect to the router's socket as clients
/// (duplex-mgmt runs with it; `systemd/duplex.sysusers` makes it).
pub const CLIENT_GROUP: &str = "duplex";

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

struct Subscriber {
    conn_id: u64,
    patterns: Vec<String>,
    tx: mpsc::Sender<Vec<u8>>,
    who: String,
}

/// Where a connection comes from: this controller or the partner's router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Local,
    Peer,
}

/// The peer link's state, for `router.services`.
#[derive(Debug, Clone, Default)]
struct PeerStatus {
    connected_via: Option<SocketAddr>,
    since_ms: u64,
    last_error: Option<String>,
}

/// The shared state of one router.
pub struct Router {
    cfg: Config,
    started: Instant,
    registry: Mutex<Registry>,
    service_conns: Mutex<HashMap<String, Arc<RpcConn>>>,
    actions: Mutex<ActionLog>,
    subscribers: Mutex<Vec<Subscriber>>,
    peer_out: Mutex<Option<Arc<RpcConn>>>,
    peer_status: Mutex<PeerStatus>,
    audit_tx: mpsc::Sender<AuditRecord>,
    audit_rx: Mutex<Option<mpsc::Receiver<AuditRecord>>>,
    audit_dropped: AtomicU64,
    jobs: Mutex<Jobs>,
    /// Per catalogue method (bounded by the catalogue: other names are
    /// not counted).
    calls: Mutex<BTreeMap<String, MethodCalls>>,
    /// Bumped whenever a job ends, for `job.wait`.
    jobs_ended: tokio::sync::watch::Sender<u64>,
}

/// What the peer listeners share: admission to the handshake, the rate
/// limit of the refusal warning, and the authenticated incoming
/// connections (oldest first) with a handle that can close each.
#[derive(Debug, Default)]
struct PeerIn {
    admission: Arc<peer::Admission>,
    refusals: Mutex<peer::RefusalLog>,
    conns: Mutex<VecDeque<(u64, std::net::TcpStream)>>,
    next_id: AtomicU64,
}

impl PeerIn {
    /// Logs a refused connection, at most once per window.
    fn refused(&self, addr: SocketAddr, why: &str) {
        if let Some(unlogged) = lock(&self.refusals).note(Instant::now()) {
            tracing::warn!(%addr, reason = %why, refused_since_last_line = unlogged, "refused a peer connection");
        }
    }

    /// Keeps an authenticated connection's closer; past the cap the
    /// oldest connection is shut down (its serve loop then ends by itself).
    fn admit(&self, closer: std::net::TcpStream) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut conns = lock(&self.conns);
        while conns.len() >= peer::MAX_PEER_CONNECTIONS {
            let Some((_, old)) = conns.pop_front() else {
                break;
            };
            tracing::warn!(
                limit = peer::MAX_PEER_CONNECTIONS,
                "closing the oldest incoming peer connection: a newer one came in"
            );
            let _ = old.shutdown(std::net::Shutdown::Both);
        }
        conns.push_back((id, closer));
        id
    }

    /// Drops the closer of a connection that ended.
    fn forget(&self, id: u64) {
        lock(&self.conns).retain(|(i, _)| *i != id);
    }
}

/// The stream again, and a second handle on its socket that can shut it
/// down from outside the task serving it.
fn with_closer(
    stream: tokio::net::TcpStream,
) -> std::io::Result<(tokio::net::TcpStream, std::net::TcpStream)> {
    let s = stream.into_std()?;
    let closer = s.try_clone()?;
    Ok((tokio::net::TcpStream::from_std(s)?, closer))
}

/// `ok`, or the error's kind (its code when it has no kind), for the
/// actions log.
fn outcome_of(result: &Result<Value, RpcError>) -> String {
    match result {
        Ok(_) => "ok".to_string(),
        Err(e) => e
            .kind()
            .map_or_else(|| e.code.to_string(), |k| k.kind().to_string()),
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here is a few map operations that cannot leave
    // the data half-changed, so a poisoned lock is still consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The dispatcher for one kind of connection.
struct Endpoint {
    router: Arc<Router>,
    origin: Origin,
}

impl Router {
    /// A router for `cfg` (not yet listening).
    pub fn new(cfg: Config) -> Arc<Router> {
        let log_size = cfg.router.actions_log_size;
        let registry = Registry::with_test_namespaces(cfg.router.test_namespaces.clone());
        let (audit_tx, audit_rx) = mpsc::channel(audit::QUEUE);
        Arc::new(Router {
            cfg,
            started: Instant::now(),
            registry: Mutex::new(registry),
            service_conns: Mutex::new(HashMap::new()),
            actions: Mutex::new(ActionLog::new(log_size)),
            subscribers: Mutex::new(Vec::new()),
            peer_out: Mutex::new(None),
            peer_status: Mutex::new(PeerStatus::default()),
            audit_tx,
            audit_rx: Mutex::new(Some(audit_rx)),
            audit_dropped: AtomicU64::new(0),
            jobs: Mutex::new(Jobs::default()),
            calls: Mutex::new(BTreeMap::new()),
            jobs_ended: tokio::sync::watch::channel(0).0,
        })
    }

    /// Lets group [`CLIENT_GROUP`] (duplex-mgmt's supplementary group)
    /// reach the router's socket: the socket and its directory get that
    /// group. The directory stays root's and 0750, so the group can connect
    /// but not create a socket there, which is what registration relies on;
    /// the services' own sockets stay root's. Without the group (tests, a
    /// bare machine) nothing changes.
    fn open_to_clients(&self, path: &std::path::Path) {
        let Some(gid) = server::group_id(CLIENT_GROUP) else {
            return;
        };
        for p in [Some(path), path.parent()].into_iter().flatten() {
            if let Err(e) = std::os::unix::fs::chown(p, None, Some(gid)) {
                tracing::warn!(path = %p.display(), error = %e, group = CLIENT_GROUP, "cannot give the router's socket to its client group");
            }
        }
    }

    /// Binds the local socket and the peer listeners and starts serving.
    pub async fn start(self: &Arc<Self>) -> Result<(), StartError> {
        let path = self.cfg.router_socket();
        let listener = server::bind_unix(&path, 0o660).map_err(|source| StartError::Bind {
            path: path.display().to_string(),
            source,
        })?;
        self.open_to_clients(&path);
        let limits = Limits {
            max_frame: self.cfg.router.max_message_bytes,
            max_reply: self.cfg.router.max_message_bytes,
            max_inflight: self.cfg.router.max_inflight_per_connection,
        };
        let local = Arc::new(Endpoint {
            router: Arc::clone(self),
            origin: Origin::Local,
        });
        tokio::spawn(server::accept_loop(
            listener,
            limits,
            self.cfg.router.max_connections,
            local,
        ));
        tracing::info!(socket = %path.display(), controller = %self.cfg.controller_id, "router listening");
        if let Some(rx) = lock(&self.audit_rx).take() {
            tokio::spawn(Arc::clone(self).audit_loop(rx));
        }
        if let Some(p) = self.cfg.peer.clone() {
            let secret: Arc<[u8]> = p.load_secret()?.into();
            let tls = Arc::new(PeerTls::new(
                &secret,
                &self.cfg.controller_id,
                &p.controller_id,
            )?);
            // One set of caps for every listen address.
            let incoming = Arc::new(PeerIn::default());
            for addr in &p.listen {
                let l = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|source| StartError::PeerListen {
                        addr: *addr,
                        source,
                    })?;
                tracing::info!(%addr, "listening for the partner");
                tokio::spawn(Arc::clone(self).peer_accept_loop(
                    l,
                    Arc::clone(&secret),
                    Arc::clone(&tls),
                    Arc::clone(&incoming),
                ));
            }
            tokio::spawn(Arc::clone(self).peer_dial_loop(p.addresses.clone(), secret, tls));
        }
        Ok(())
    }

    fn caller_name(&self, conn: &ConnCtx, origin: Origin, req: &Request) -> String {
        match origin {
            Origin::Peer => format!(
                "peer:{}/{}",
                self.cfg.partner_id().unwrap_or("?"),
                req.caller.as_deref().unwrap_or("?")
            ),
            Origin::Local => {
                let pid = conn
                    .peer
                    .strip_prefix("pid=")
                    .and_then(|p| p.parse::<u32>().ok());
                match pid.and_then(|p| lock(&self.registry).name_of_pid(p).map(str::to_string)) {
                    Some(name) => name,
                    None => format!("client({})", conn.peer),
                }
            }
        }
    }

    async fn handle(
        self: Arc<Self>,
        conn: Arc<ConnCtx>,
        origin: Origin,
        req: Request,
    ) -> Option<Response> {
        let action_id = req.action_id.clone().unwrap_or_else(action::new_id);
        let caller = self.caller_name(&conn, origin, &req);
        // Debug level: a span per routed call costs measurable CPU at info;
        // error lines below carry the ids themselves.
        let span = tracing::debug_span!("route", action_id = %action_id, method = %req.method, caller = %caller);
        let start = Instant::now();
        let time_ms = now_ms();
        let id = req.id.clone();
        let method = req.method.clone();
        let notification = id.is_none();
        let audit = (origin == Origin::Local && audit::audited(&method, &caller))
            .then(|| (req.params.clone(), req.user.clone()));
        let (callee, result) = self
            .route(conn, origin, req, action_id.clone(), caller.clone())
            .instrument(span.clone())
            .await;
        let duration_us = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
        let outcome = outcome_of(&result);
        if catalogue::lookup(&method).is_some() {
            let mut calls = lock(&self.calls);
            let c = calls.entry(method.clone()).or_default();
            c.calls += 1;
            c.errors += u64::from(result.is_err());
            c.total_us = c.total_us.saturating_add(duration_us);
        }
        match &result {
            Ok(_) => span.in_scope(|| tracing::debug!(%callee, duration_us, "routed")),
            Err(e) => {
                tracing::info!(%action_id, %method, %caller, %callee, duration_us, error = %e, "routed with error")
            }
        }
        if let Some((params, user)) = audit {
            let r = audit::record(
                now_ms(),
                &action_id,
                &method,
                &caller,
                user.as_ref(),
                params,
                &result,
            );
            if self.audit_tx.try_send(r).is_err()
                && self.audit_dropped.fetch_add(1, Ordering::Relaxed) == 0
            {
                tracing::warn!(queue = audit::QUEUE, "the audit queue is full: records are counted as dropped until config-keeper takes them");
            }
        }
        if method != "router.actions" {
            lock(&self.actions).push(ActionRecord {
                time_ms,
                controller: self.cfg.controller_id.clone(),
                action_id: action_id.clone(),
                method,
                caller,
                callee,
                duration_us,
                result: outcome,
            });
        }
        if notification {
            return None;
        }
        Some(Response::from_result(id, result).with_action(Some(action_id)))
    }

    async fn route(
        self: &Arc<Self>,
        conn: Arc<ConnCtx>,
        origin: Origin,
        req: Request,
        action_id: String,
        caller: String,
    ) -> (String, Result<Value, RpcError>) {
        if let Some(target) = req.controller.as_deref() {
            if target != self.cfg.controller_id {
                if origin == Origin::Peer {
                    return (
                        "router".into(),
                        Err(RpcError::invalid_params(
                            "controller",
                            "the partner may only address this controller",
                        )),
                    );
                }
                if Some(target) != self.cfg.partner_id() {
                    return (
                        "router".into(),
                        Err(RpcError::invalid_params(
                            "controller",
                            format!("unknown controller {target:?}"),
                        )),
                    );
                }
                let callee = format!("peer:{target}");
                return (callee, self.call_peer(req, action_id, caller).await);
            }
        }
        match req.method.as_str() {
            "router.register" => (
                "router".into(),
                self.register(&conn, origin, req.params).await,
            ),
            "router.services" => ("router".into(), Ok(self.services_view())),
            "router.actions" => ("router".into(), self.actions_view(req.params)),
            "router.status" => ("router".into(), Ok(self.status_view())),
            "router.ping" => (
                "router".into(),
                Ok(json!(Pong {
                    pong: true,
                    controller: self.cfg.controller_id.clone(),
                })),
            ),
            "event.subscribe" => ("router".into(), self.subscribe(&conn, req.params, &caller)),
            "event.unsubscribe" => {
                lock(&self.subscribers).retain(|s| s.conn_id != conn.id);
                (
                    "router".into(),
                    Ok(json!(Unsubscribed { subscribed: false })),
                )
            }
            "event.publish" => (
                "router".into(),
                match self.may_publish(&conn, origin, &req.params) {
                    Ok(()) => self.publish(origin, req.params, &action_id, &caller).await,
                    Err(e) => Err(e),
                },
            ),
            "job.start" => (
                "router".into(),
                self.job_start(req.params, action_id, caller, req.user),
            ),
            "job.get" => (
                "router".into(),
                match params::<GetParams>(req.params) {
                    Ok(p) => self.job_lookup(&p.job, origin).await,
                    Err(e) => Err(e),
                },
            ),
            "job.wait" => ("router".into(), self.job_wait(req.params, origin).await),
            "job.list" => (
                "router".into(),
                Ok(json!(JobList {
                    jobs: lock(&self.jobs).list()
                })),
            ),
            m if m.starts_with("router.") || m.starts_with("event.") || m.starts_with("job.") => (
                "router".into(),
                Err(RpcError::new(
                    ErrorCode::MethodNotFound,
                    format!("the router has no method {m}"),
                )
                .with_field("method")),
            ),
            _ => self.forward(req, action_id, caller).await,
        }
    }

    /// Registers a service, with proof: the registering process is the
    /// one it names (`pid` is the connection's SO_PEERCRED pid), its socket
    /// is `socket_dir/<name>.sock`, and that socket is listened on by that
    /// same process (SO_PEERCRED of our dial to it). The socket directory
    /// is root's, so a process that can pass these is the service itself.
    async fn register(&self, conn: &ConnCtx, origin: Origin, p: Value) -> Result<Value, RpcError> {
        if origin == Origin::Peer {
            return Err(RpcError::new(
                ErrorCode::Unauthorized,
                "services register with their own controller's router",
            ));
        }
        let reg: Registration = params(p)?;
        let name = reg.name.clone();
        if conn.pid != Some(reg.pid) {
            return Err(RpcError::new(
                ErrorCode::Unauthorized,
                format!(
                    "pid {} is not the registering process ({})",
                    reg.pid, conn.peer
                ),
            )
            .with_field("pid"));
        }
        let want = self.cfg.service_socket(&name);
        if reg.socket != want {
            return Err(RpcError::invalid_params(
                "socket",
                format!("a service {name} listens on {}", want.display()),
            ));
        }
        if let Some(e) = lock(&self.registry).get(&name) {
            if e.state == State::Up && e.conn_id != conn.id {
                return Err(RpcError::new(
                    ErrorCode::Conflict,
                    format!(
                        "service {name} is up on another connection (pid {})",
                        e.reg.pid
                    ),
                )
                .with_field("name"));
            }
        }
        let svc = self.dial_service(&name, &want).await?;
        if svc.1 != Some(reg.pid) {
            svc.0.close();
            return Err(RpcError::new(
                ErrorCode::Unauthorized,
                format!(
                    "{} is not listened on by pid {} (it is {:?})",
                    want.display(),
                    reg.pid,
                    svc.1
                ),
            )
            .with_field("socket"));
        }
        if let Err(e) = lock(&self.registry).register(reg, conn.id, now_ms()) {
            svc.0.close();
            return Err(e);
        }
        // A new registration means a new service process: the connection
        // we just checked replaces any to the old one.
        if let Some(old) = lock(&self.service_conns).insert(name.clone(), svc.0) {
            old.close();
        }
        tracing::info!(service = %name, "service registered");
        Ok(json!(Registered {
            registered: name,
            controller: self.cfg.controller_id.clone(),
        }))
    }

    /// Dials a service socket; returns the connection and the pid of the
    /// process listening there.
    async fn dial_service(
        &self,
        name: &str,
        socket: &std::path::Path,
    ) -> Result<(Arc<RpcConn>, Option<u32>), RpcError> {
        let stream = tokio::net::UnixStream::connect(socket).await.map_err(|e| {
            RpcError::unavailable(format!(
                "service {name} is not answering on {}: {e}",
                socket.display()
            ))
        })?;
        let pid = server::unix_peer_pid(&stream);
        let (r, w) = stream.into_split();
        Ok((
            RpcConn::spawn(r, w, self.cfg.router.max_message_bytes, None),
            pid,
        ))
    }

    async fn service_conn(
        &self,
        name: &str,
        socket: &std::path::Path,
        pid: u32,
    ) -> Result<Arc<RpcConn>, RpcError> {
        if let Some(c) = lock(&self.service_conns).get(name) {
            if !c.is_closed() {
                return Ok(Arc::clone(c));
            }
        }
        let (c, got) = self.dial_service(name, socket).await?;
        if got != Some(pid) {
            // Not the process that registered: do not hand it the call.
            c.close();
            return Err(RpcError::unavailable(format!(
                "service {name}'s socket is held by another process"
            ))
            .with_data("service", name.into()));
        }
        lock(&self.service_conns).insert(name.to_string(), Arc::clone(&c));
        Ok(c)
    }

    async fn forward(
        &self,
        req: Request,
        action_id: String,
        caller: String,
    ) -> (String, Result<Value, RpcError>) {
        let (name, socket, pid, limit) = {
            let reg = lock(&self.registry);
            match reg.route(&req.method) {
                Ok(e) => (
                    e.reg.name.clone(),
                    e.reg.socket.clone(),
                    e.reg.pid,
                    e.reg.timeouts_ms.get(&req.method).copied(),
                ),
                Err(e) => return ("router".into(), Err(e)),
            }
        };
        let timeout = self.cfg.router.call_timeout_for(limit);
        let conn = match self.service_conn(&name, &socket, pid).await {
            Ok(c) => c,
            Err(e) => return (name, Err(e)),
        };
        let fwd = Request {
            action_id: Some(action_id),
            caller: Some(caller),
            controller: None,
            ..req
        };
        let r = match conn.call(fwd, timeout).await {
            Ok(resp) => resp.into_result(),
            Err(ConnError::Closed) => Err(RpcError::unavailable(format!(
                "service {name} went away during the call"
            ))
            .with_data("service", name.clone().into())),
            Err(ConnError::Timeout(t)) => Err(RpcError::unavailable(format!(
                "service {name} did not answer within {t:?}"
            ))
            .with_data("service", name.clone().into())),
        };
        (name, r)
    }

    async fn call_peer(
        &self,
        req: Request,
        action_id: String,
        caller: String,
    ) -> Result<Value, RpcError> {
        let conn = lock(&self.peer_out).clone();
        let Some(conn) = conn.filter(|c| !c.is_closed()) else {
            return Err(RpcError::unavailable(format!(
                "the partner controller {} is not reachable over the interconnect",
                self.cfg.partner_id().unwrap_or("?")
            ))
            .with_data("reason", "peer_down".into()));
        };
        // Both controllers run the same services: the partner's router
        // gives the method the limit ours would, so wait that long (its
        // answer or the link's loss ends the wait sooner).
        let limit = lock(&self.registry)
            .route(&req.method)
            .ok()
            .and_then(|e| e.reg.timeouts_ms.get(&req.method).copied());
        let timeout = self.cfg.router.call_timeout_for(limit);
        let fwd = Request {
            action_id: Some(action_id),
            caller: Some(caller),
            ..req
        };
        match conn.call(fwd, timeout).await {
            Ok(resp) => resp.into_result(),
            Err(e) => Err(RpcError::unavailable(format!("peer link: {e}"))
                .with_data("reason", "peer_down".into())),
        }
    }

    fn subscribe(&self, conn: &Arc<ConnCtx>, p: Value, who: &str) -> Result<Value, RpcError> {
        let p: SubscribeParams = params(p)?;
        if p.topics.is_empty() {
            return Err(RpcError::invalid_params(
                "topics",
                "give at least one topic or pattern",
            ));
        }
        if let Some((i, bad)) = p
            .topics
            .iter()
            .enumerate()
            .find(|(_, t)| !topics::valid_pattern(t))
        {
            return Err(RpcError::invalid_params(
                format!("topics[{i}]"),
                format!("{bad:?} is not a topic pattern"),
            ));
        }
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(self.cfg.router.event_queue);
        let out = conn.out.clone();
        // The pump is the only place that waits on this subscriber's socket,
        // so a slow reader delays only itself.
        tokio::spawn(async move {
            while let Some(frame) = rx.recv().await {
                if out.send(frame).await.is_err() {
                    return;
                }
            }
        });
        let mut subs = lock(&self.subscribers);
        subs.retain(|s| s.conn_id != conn.id);
        subs.push(Subscriber {
            conn_id: conn.id,
            patterns: p.topics.clone(),
            tx,
            who: who.to_string(),
        });
        Ok(json!(Subscribed {
            subscribed: p.topics
        }))
    }

    /// Topics belong to their service: a local publisher must be a
    /// registered service (by its pid), publishing under one of its own
    /// namespaces or `alert`. The partner's router forwards its own
    /// services' events, checked there.
    fn may_publish(&self, conn: &ConnCtx, origin: Origin, p: &Value) -> Result<(), RpcError> {
        if origin == Origin::Peer {
            return Ok(());
        }
        let topic = p.get("topic").and_then(Value::as_str).unwrap_or("");
        let reg = lock(&self.registry);
        let Some(svc) = conn.pid.and_then(|pid| reg.service_of_pid(pid)) else {
            return Err(RpcError::new(
                ErrorCode::Unauthorized,
                "only a registered service may publish events",
            )
            .with_field("topic"));
        };
        let ns = topic.split('.').next().unwrap_or("");
        if topic == ALERT_TOPIC || svc.reg.namespaces.iter().any(|n| n == ns) {
            return Ok(());
        }
        Err(RpcError::new(
            ErrorCode::Unauthorized,
            format!(
                "service {} may publish only under its namespaces ({}) or {ALERT_TOPIC}",
                svc.reg.name,
                svc.reg.namespaces.join(", ")
            ),
        )
        .with_field("topic"))
    }

    async fn publish(
        &self,
        origin: Origin,
        p: Value,
        action_id: &str,
        caller: &str,
    ) -> Result<Value, RpcError> {
        let p: PublishParams = params(p)?;
        if p.topic.contains('*') || !topics::valid_pattern(&p.topic) {
            return Err(RpcError::invalid_params(
                "topic",
                "must be dotted lowercase words",
            ));
        }
        let ev = Event {
            topic: p.topic.clone(),
            data: p.data,
            action_id: Some(action_id.to_string()),
            controller: Some(match origin {
                Origin::Peer => p
                    .controller
                    .unwrap_or_else(|| self.cfg.partner_id().unwrap_or("?").to_string()),
                Origin::Local => self.cfg.controller_id.clone(),
            }),
            // The router names the source: a local publisher's own word
            // for it is ignored (only the partner's router forwards one).
            source: Some(match origin {
                Origin::Peer => p.source.unwrap_or_else(|| caller.to_string()),
                Origin::Local => caller.to_string(),
            }),
            time_ms: now_ms(),
        };
        if origin == Origin::Local {
            lock(&self.jobs).progress(
                &self.cfg.controller_id,
                action_id,
                &ev.topic,
                &ev.data,
                ev.time_ms,
            );
        }
        let delivered = self.deliver(&ev);
        let mut forwarded = false;
        if p.partner && origin == Origin::Local {
            let conn = lock(&self.peer_out).clone();
            if let Some(c) = conn.filter(|c| !c.is_closed()) {
                let mut fwd = Request::notification(
                    "event.publish",
                    json!({"topic": ev.topic, "data": ev.data, "controller": ev.controller, "source": ev.source}),
                );
                fwd.action_id = ev.action_id.clone();
                forwarded = c.send(to_frame(&fwd)).await.is_ok();
            }
        }
        Ok(json!(Published {
            delivered,
            partner: forwarded,
        }))
    }

    /// Delivers an event to every matching subscriber without waiting; a
    /// subscriber whose queue is full is dropped.
    fn deliver(&self, ev: &Event) -> usize {
        let mut frame_params = serde_json::to_value(ev).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut frame_params {
            m.remove("action_id");
        }
        let mut note = Request::notification(EVENT_NOTIFY, frame_params);
        note.action_id = ev.action_id.clone();
        let frame = to_frame(&note);
        let mut delivered = 0;
        let mut subs = lock(&self.subscribers);
        subs.retain(|s| {
            if !s.patterns.iter().any(|p| topics::matches(p, &ev.topic)) {
                return true;
            }
            match s.tx.try_send(frame.clone()) {
                Ok(()) => {
                    delivered += 1;
                    true
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::warn!(subscriber = %s.who, queue = self.cfg.router.event_queue, "dropping a slow event subscriber");
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
        delivered
    }

    fn services_view(&self) -> Value {
        let services = lock(&self.registry).list();
        let peer = self.cfg.peer.as_ref().map(|p| {
            let st = lock(&self.peer_status).clone();
            let up = lock(&self.peer_out)
                .as_ref()
                .is_some_and(|c| !c.is_closed());
            PeerLink {
                controller: p.controller_id.clone(),
                state: if up { "up" } else { "down" }.into(),
                via: st.connected_via.map(|a| a.to_string()),
                since_ms: st.since_ms,
                last_error: st.last_error,
            }
        });
        json!(ServicesResult {
            controller: self.cfg.controller_id.clone(),
            services: services.iter().map(|e| json!(e)).collect(),
            peer,
        })
    }

    fn actions_view(&self, p: Value) -> Result<Value, RpcError> {
        let p: ActionsParams = params(p)?;
        let records = lock(&self.actions).query(p.action_id.as_deref(), p.limit);
        Ok(json!(ActionsResult {
            controller: self.cfg.controller_id.clone(),
            actions: records.iter().map(|r| json!(r)).collect(),
        }))
    }

    /// `job.start`: checks the method is an administrator's job method,
    /// records the job and runs the call in the background under the same
    /// action (so `duplexctl trace` follows it); answers the job's id.
    fn job_start(
        self: &Arc<Self>,
        p: Value,
        action_id: String,
        caller: String,
        user: Option<duplex_services::rpc::CallUser>,
    ) -> Result<Value, RpcError> {
        let p: StartParams = params(p)?;
        let Some(m) = catalogue::lookup(&p.method) else {
            return Err(RpcError::invalid_params(
                "method",
                format!("no method {:?} in the catalogue", p.method),
            ));
        };
        // Only what an administrator may call, and only long methods: an
        // internal step (pool.takeover) never runs as a job from outside.
        if !m.job || m.audience != Audience::External {
            return Err(RpcError::invalid_params(
                "method",
                format!(
                    "{} is not a job an administrator runs (catalogue marks: job {}, audience {})",
                    m.name,
                    m.job,
                    m.audience.as_str()
                ),
            ));
        }
        let me = self.cfg.controller_id.clone();
        let id = jobs::job_id(&me, &action_id);
        lock(&self.jobs).start(id.clone(), &me, m.name, &caller, now_ms())?;
        self.job_event(&id, JobState::Running, m.name, &action_id);
        let router = Arc::clone(self);
        let mut inner = Request::call(duplex_services::rpc::Id::Num(0), m.name, p.params);
        inner.user = user;
        let method = m.name;
        let job = id.clone();
        tokio::spawn(async move {
            let (time_ms, start) = (now_ms(), Instant::now());
            let (callee, r) = router
                .forward(inner, action_id.clone(), caller.clone())
                .await;
            lock(&router.actions).push(ActionRecord {
                time_ms,
                controller: router.cfg.controller_id.clone(),
                action_id: action_id.clone(),
                method: method.to_string(),
                caller,
                callee,
                duration_us: u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX),
                result: outcome_of(&r),
            });
            let state = if r.is_ok() {
                JobState::Succeeded
            } else {
                JobState::Failed
            };
            lock(&router.jobs).finish(&job, r, now_ms());
            router.jobs_ended.send_modify(|n| *n = n.wrapping_add(1));
            router.job_event(&job, state, method, &action_id);
        });
        Ok(json!(Started { job: id }))
    }

    /// Tells local subscribers a job started or ended (`job.changed`).
    fn job_event(&self, job: &str, state: JobState, method: &str, action_id: &str) {
        let ev = Event {
            topic: duplex_api::topics::JOB_CHANGED.into(),
            data: json!({"job": job, "state": state, "method": method}),
            action_id: Some(action_id.to_string()),
            controller: Some(self.cfg.controller_id.clone()),
            source: Some("router".into()),
            time_ms: now_ms(),
        };
        self.deliver(&ev);
    }

    /// One job: ours from the table, the partner's through the peer link
    /// (failed, with the reason, when the partner does not answer).
    async fn job_lookup(&self, id: &str, origin: Origin) -> Result<Value, RpcError> {
        if let Some(j) = lock(&self.jobs).get(id).cloned() {
            return Ok(json!(j));
        }
        let me = self.cfg.controller_id.as_str();
        match (jobs::controller_of(id), self.cfg.partner_id()) {
            (Some(c), Some(partner)) if c == partner && origin == Origin::Local => {
                let req = Request::call(
                    duplex_services::rpc::Id::Num(0),
                    "job.get",
                    json!({"job": id}),
                );
                match self.call_peer(req, action::new_id(), "router".into()).await {
                    Err(e) if e.kind() == Some(ErrorCode::Unavailable) => {
                        Ok(json!(jobs::partner_gone(id, partner, &e.message)))
                    }
                    r => r,
                }
            }
            _ => Err(RpcError::new(
                ErrorCode::NotFound,
                format!(
                    "no job {id} on controller {me} (the router keeps the newest {} in memory; a restart forgets them)",
                    jobs::KEEP
                ),
            )
            .with_field("job")),
        }
    }

    /// `job.wait`: the job once it ends, or as it is at the deadline. A
    /// partner's job is waited for by the partner's router.
    async fn job_wait(&self, p: Value, origin: Origin) -> Result<Value, RpcError> {
        let p: WaitParams = params(p)?;
        let wait = p
            .timeout_ms
            .unwrap_or(jobs::MAX_WAIT_MS)
            .min(jobs::MAX_WAIT_MS);
        let deadline = Instant::now() + Duration::from_millis(wait);
        let mut ended = self.jobs_ended.subscribe();
        loop {
            let j = lock(&self.jobs).get(&p.job).cloned();
            let Some(j) = j else {
                return self.job_wait_elsewhere(&p.job, wait, origin).await;
            };
            let left = deadline.saturating_duration_since(Instant::now());
            if j.state != JobState::Running || left.is_zero() {
                return Ok(json!(j));
            }
            // Any job's end wakes the loop; it looks again.
            let _ = tokio::time::timeout(left, ended.changed()).await;
        }
    }

    async fn job_wait_elsewhere(
        &self,
        id: &str,
        wait: u64,
        origin: Origin,
    ) -> Result<Value, RpcError> {
        match (jobs::controller_of(id), self.cfg.partner_id()) {
            (Some(c), Some(partner)) if c == partner && origin == Origin::Local => {
                // Well inside the peer call's own timeout, so a long wait
                // there is never taken for a partner that is gone.
                let cap =
                    u64::try_from(self.cfg.router.call_timeout().as_millis() / 2).unwrap_or(0);
                let req = Request::call(
                    duplex_services::rpc::Id::Num(0),
                    "job.wait",
                    json!({"job": id, "timeout_ms": wait.min(cap)}),
                );
                match self.call_peer(req, action::new_id(), "router".into()).await {
                    Err(e) if e.kind() == Some(ErrorCode::Unavailable) => {
                        Ok(json!(jobs::partner_gone(id, partner, &e.message)))
                    }
                    r => r,
                }
            }
            _ => self.job_lookup(id, origin).await,
        }
    }

    /// Hands queued audit records to config-keeper in batches, retrying
    /// every second while it does not answer. Every record is in the spool
    /// (synced) as soon as this loop takes it off the queue, also while a
    /// batch is on its way or waits for a retry, so a router that dies
    /// loses at most what was still in the in-memory queue: records it
    /// took microseconds earlier. Never returns while the router runs.
    async fn audit_loop(self: Arc<Self>, mut rx: mpsc::Receiver<AuditRecord>) {
        let spool = audit::Spool::new(&self.cfg.state_dir);
        // What a previous run held when it stopped goes first.
        let mut held: std::collections::VecDeque<AuditRecord> = spool.load().into();
        if !held.is_empty() {
            tracing::info!(
                records = held.len(),
                "sending audit records held before a restart"
            );
        }
        let mut failing = false;
        loop {
            if held.is_empty() {
                match rx.recv().await {
                    Some(r) => self.hold(&spool, &mut held, vec![r]),
                    None => return,
                }
            }
            let mut more = Vec::new();
            while let Ok(r) = rx.try_recv() {
                more.push(r);
            }
            self.hold(&spool, &mut held, more);
            let take = held.len().min(audit::BATCH);
            let dropped = self.audit_dropped.swap(0, Ordering::Relaxed);
            let params = AuditAppendParams {
                records: held.iter().take(take).cloned().collect(),
                dropped,
            };
            let req = Request::call(
                duplex_services::rpc::Id::Num(0),
                "config.audit_append",
                json!(params),
            );
            let send = self.forward(req, action::new_id(), "router".into());
            tokio::pin!(send);
            // Records arriving while the batch is on its way are spooled.
            let r = loop {
                tokio::select! {
                    (_, r) = &mut send => break r,
                    Some(rec) = rx.recv() => self.hold(&spool, &mut held, vec![rec]),
                }
            };
            match r {
                Ok(_) => {
                    if failing {
                        tracing::info!("audit records reach config-keeper again");
                    }
                    failing = false;
                    held.drain(..take);
                    if let Err(e) = spool.replace(held.make_contiguous()) {
                        tracing::warn!(file = %spool.path().display(), error = %e, "cannot rewrite the audit spool");
                    }
                }
                Err(e) => {
                    self.audit_dropped.fetch_add(dropped, Ordering::Relaxed);
                    if !failing {
                        tracing::warn!(error = %e, held = held.len(), "config-keeper does not take audit records; holding them");
                    }
                    failing = true;
                    let pause = tokio::time::sleep(Duration::from_secs(1));
                    tokio::pin!(pause);
                    loop {
                        tokio::select! {
                            () = &mut pause => break,
                            Some(rec) = rx.recv() => self.hold(&spool, &mut held, vec![rec]),
                        }
                    }
                }
            }
        }
    }

    /// Adds `records` to the held ones and to the spool (synced); past
    /// [`audit::SPOOL_MAX`] they are counted as dropped.
    fn hold(
        &self,
        spool: &audit::Spool,
        held: &mut std::collections::VecDeque<AuditRecord>,
        mut records: Vec<AuditRecord>,
    ) {
        let room = audit::SPOOL_MAX.saturating_sub(held.len());
        if records.len() > room {
            let over = records.len() - room;
            records.truncate(room);
            if self.audit_dropped.fetch_add(over as u64, Ordering::Relaxed) == 0 {
                tracing::warn!(
                    limit = audit::SPOOL_MAX,
                    "the audit spool is full: records are counted as dropped until config-keeper takes them"
                );
            }
        }
        if records.is_empty() {
            return;
        }
        if let Err(e) = spool.append(&records) {
            tracing::warn!(file = %spool.path().display(), error = %e, "cannot spool audit records");
        }
        held.extend(records);
    }

    fn status_view(&self) -> Value {
        let reg = lock(&self.registry).list();
        json!(StatusResult {
            controller: self.cfg.controller_id.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            uptime_s: self.started.elapsed().as_secs(),
            services_up: reg.iter().filter(|e| e.state == State::Up).count(),
            services_down: reg.iter().filter(|e| e.state == State::Down).count(),
            subscribers: lock(&self.subscribers).len(),
            calls: lock(&self.calls).clone(),
        })
    }

    fn connection_closed(&self, conn: &ConnCtx) {
        let gone = lock(&self.registry).connection_closed(conn.id, now_ms());
        for name in gone {
            tracing::warn!(service = %name, "service is down (its registration connection closed)");
            if let Some(c) = lock(&self.service_conns).remove(&name) {
                c.close();
            }
        }
        lock(&self.subscribers).retain(|s| s.conn_id != conn.id);
    }

    async fn peer_accept_loop(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        secret: Arc<[u8]>,
        tls: Arc<PeerTls>,
        incoming: Arc<PeerIn>,
    ) {
        let Some(partner) = self.cfg.partner_id().map(str::to_string) else {
            return;
        };
        loop {
            let (stream, addr) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "peer accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            // Closed at once when the handshake slots are taken: a flood
            // holds no sockets and no tasks.
            let slot = match incoming.admission.enter(addr.ip()) {
                Ok(slot) => slot,
                Err(why) => {
                    incoming.refused(addr, &why.to_string());
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let router = Arc::clone(&self);
            let secret = Arc::clone(&secret);
            let tls = Arc::clone(&tls);
            let partner = partner.clone();
            let incoming = Arc::clone(&incoming);
            tokio::spawn(async move {
                let (stream, closer) = match with_closer(stream) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(%addr, error = %e, "peer connection: cannot keep a handle to close it");
                        return;
                    }
                };
                // TLS first: a dialer without the partner's key gets no
                // further than this.
                let stream =
                    match tokio::time::timeout(peer::HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            incoming.refused(addr, &format!("TLS: {e}"));
                            return;
                        }
                        Err(_) => {
                            incoming.refused(addr, "TLS handshake timed out");
                            return;
                        }
                    };
                let (r, mut w) = tokio::io::split(stream);
                let mut r = BufReader::new(r);
                let me = router.cfg.controller_id.clone();
                let shaken = peer::accept_handshake(&mut r, &mut w, &secret, &me, &partner).await;
                drop(slot);
                if let Err(e) = shaken {
                    incoming.refused(addr, &e.to_string());
                    return;
                }
                tracing::info!(%addr, "partner connected (incoming)");
                let id = incoming.admit(closer);
                // The partner's router adds caller and action_id to its
                // clients' messages, as ours does for services.
                let max = router.cfg.router.max_message_bytes;
                let limits = Limits {
                    max_frame: max.saturating_add(server::router_headroom(max)),
                    max_reply: max,
                    max_inflight: router
                        .cfg
                        .router
                        .max_inflight_per_connection
                        .saturating_mul(16),
                };
                let ep = Arc::new(Endpoint {
                    router: Arc::clone(&router),
                    origin: Origin::Peer,
                });
                server::serve(r, w, format!("peer {addr}"), limits, ep).await;
                incoming.forget(id);
                tracing::info!(%addr, "partner disconnected (incoming)");
            });
        }
    }

    async fn peer_dial_loop(
        self: Arc<Self>,
        addresses: Vec<SocketAddr>,
        secret: Arc<[u8]>,
        tls: Arc<PeerTls>,
    ) {
        let Some(partner) = self.cfg.partner_id().map(str::to_string) else {
            return;
        };
        if addresses.is_empty() {
            return;
        }
        let me = self.cfg.controller_id.clone();
        let mut delay = Duration::from_millis(100);
        let mut i = 0usize;
        loop {
            let addr = addresses[i % addresses.len()];
            i = i.wrapping_add(1);
            match self.dial_once(addr, &secret, &tls, &me, &partner).await {
                Ok(conn) => {
                    tracing::info!(%addr, "peer link up");
                    *lock(&self.peer_status) = PeerStatus {
                        connected_via: Some(addr),
                        since_ms: now_ms(),
                        last_error: None,
                    };
                    *lock(&self.peer_out) = Some(Arc::clone(&conn));
                    delay = Duration::from_millis(100);
                    conn.closed().await;
                    tracing::warn!(%addr, "peer link down");
                    let mut st = lock(&self.peer_status);
                    st.connected_via = None;
                    st.since_ms = now_ms();
                    // Try the other link at once: it may still be up.
                    continue;
                }
                Err(e) => {
                    tracing::debug!(%addr, error = %e, "peer dial failed");
                    lock(&self.peer_status).last_error = Some(format!("{addr}: {e}"));
                }
            }
            // Back off only after a full round over every address failed.
            if i % addresses.len() == 0 {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }

    async fn dial_once(
        &self,
        addr: SocketAddr,
        secret: &[u8],
        tls: &PeerTls,
        me: &str,
        partner: &str,
    ) -> Result<Arc<RpcConn>, String> {
        let stream =
            tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
                .await
                .map_err(|_| "connect timed out".to_string())?
                .map_err(|e| e.to_string())?;
        let _ = stream.set_nodelay(true);
        let stream = tokio::time::timeout(peer::HANDSHAKE_TIMEOUT, tls.connect(stream))
            .await
            .map_err(|_| "TLS handshake timed out".to_string())?
            .map_err(|e| format!("TLS: {e}"))?;
        let (r, mut w) = tokio::io::split(stream);
        let mut r = BufReader::new(r);
        peer::dial_handshake(&mut r, &mut w, secret, me, partner)
            .await
            .map_err(|e| e.to_string())?;
        Ok(RpcConn::spawn(
            r,
            w,
            self.cfg.router.max_message_bytes,
            None,
        ))
    }
}

impl Dispatch for Endpoint {
    fn dispatch(
        self: Arc<Self>,
        conn: Arc<ConnCtx>,
        req: Request,
    ) -> impl Future<Output = Option<Response>> + Send + 'static {
        let router = Arc::clone(&self.router);
        let origin = self.origin;
        router.handle(conn, origin, req)
    }

    fn closed(&self, conn: &ConnCtx) {
        if self.origin == Origin::Local {
            self.router.connection_closed(conn);
        }
    }
}
