//! The service runtime: a daemon declares its methods, then [`ServiceBuilder::start`]
//! binds its own socket, registers with the router (and registers again
//! whenever the router comes back), tells systemd it is ready, and runs every
//! request inside a tracing span carrying the action_id.

use crate::action;
use crate::client::RouterClient;
use crate::config::Config;
use crate::conn::RpcConn;
use crate::rpc::{ErrorCode, Id, Request, Response, RpcError};
use crate::server::{self, ConnCtx, Dispatch, Limits};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tracing::Instrument;

/// What a handler gets besides its parameters.
#[derive(Clone)]
pub struct Ctx {
    /// The action this call belongs to.
    pub action_id: String,
    /// Who called (as the router reports it).
    pub caller: Option<String>,
    /// The management user the call is made for (calls through duplex-mgmt);
    /// `None` for local callers.
    pub user: Option<crate::rpc::CallUser>,
    /// The router client; calls made with it carry `action_id`.
    pub router: RouterClient,
}

impl Ctx {
    /// True when the call came from the partner controller over the peer
    /// link (the router marks such callers `peer:<id>/...`; the service
    /// socket admits only the router's pid, so no one else sets `caller`).
    pub fn from_peer(&self) -> bool {
        self.caller
            .as_deref()
            .is_some_and(|c| c.starts_with("peer:"))
    }

    /// Calls a method through the router as part of this action. Use this
    /// from tasks spawned by the handler, where the task-local id is absent.
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, RpcError> {
        self.call_at(None, method, params).await
    }

    /// Like [`Ctx::call`], on another controller.
    pub async fn call_at(
        &self,
        controller: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, RpcError> {
        let req = Request {
            action_id: Some(self.action_id.clone()),
            ..Request::call_at(controller, method, params)
        };
        self.router
            .send_request(req)
            .await
            .map_err(|e| e.into_rpc())?
            .into_result()
    }
}

/// Decodes handler parameters into `T`; on failure the error names the
/// offending field (`volumes[2].size`) and nothing has happened yet.
pub fn params<T: DeserializeOwned>(value: Value) -> Result<T, RpcError> {
    // Absent params mean "no parameters": decode from an empty object so
    // structs with all-default fields work.
    let value = if value.is_null() {
        Value::Object(Default::default())
    } else {
        value
    };
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // serde reports a missing member as "missing field `x`" at the parent.
        let field = match inner.split('`').nth(1) {
            Some(f) if inner.starts_with("missing field") => {
                if path == "." {
                    f.to_string()
                } else {
                    format!("{path}.{f}")
                }
            }
            _ if path == "." => "params".to_string(),
            _ => path,
        };
        RpcError::invalid_params(field, inner)
    })
}

type BoxFut = Pin<Box<dyn Future<Output = Result<Value, RpcError>> + Send>>;
type Handler = Arc<dyn Fn(Ctx, Value) -> BoxFut + Send + Sync>;

/// What a service tells the router when it registers (the params of
/// `router.register`, defined with the catalogue).
pub use duplex_api::methods::router::Registration;

/// Declares a service's methods, then starts it.
pub struct ServiceBuilder {
    cfg: Config,
    name: String,
    version: String,
    namespaces: Vec<String>,
    handlers: BTreeMap<String, Handler>,
    timeouts: BTreeMap<String, u64>,
}

impl ServiceBuilder {
    /// The largest reply the service's handlers may give, bytes (the
    /// router's message limit less the room the router adds).
    pub fn max_reply_bytes(&self) -> usize {
        let max = self.cfg.router.max_message_bytes;
        max.saturating_sub(server::router_headroom(max))
    }

    /// A service `name` owning `namespaces`.
    pub fn new(cfg: &Config, name: &str, version: &str, namespaces: &[&str]) -> Self {
        ServiceBuilder {
            cfg: cfg.clone(),
            name: name.into(),
            version: version.into(),
            namespaces: namespaces.iter().map(|s| s.to_string()).collect(),
            handlers: BTreeMap::new(),
            timeouts: BTreeMap::new(),
        }
    }

    /// Lets routed calls of `method` run up to `limit` instead of the
    /// router's default call timeout (long pool or target operations).
    pub fn timeout(&mut self, method: &str, limit: Duration) -> &mut Self {
        let ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
        self.timeouts.insert(method.into(), ms);
        self
    }

    /// Adds a method handler.
    pub fn method<F, Fut>(&mut self, method: &str, f: F) -> &mut Self
    where
        F: Fn(Ctx, Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, RpcError>> + Send + 'static,
    {
        let h: Handler = Arc::new(move |ctx, p| Box::pin(f(ctx, p)));
        self.handlers.insert(method.into(), h);
        self
    }

    /// Adds a handler for a typed method of the catalogue: its params are
    /// decoded into `M::Params` (errors name the field, nothing has run)
    /// and its result is encoded from `M::Result`, so the handler answers
    /// exactly what the method's schema says.
    pub fn typed<M, F, Fut>(&mut self, f: F) -> &mut Self
    where
        M: duplex_api::methods::RpcMethod,
        F: Fn(Ctx, M::Params) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<M::Result, RpcError>> + Send + 'static,
    {
        let f = Arc::new(f);
        self.method(M::NAME, move |ctx, p| {
            let f = Arc::clone(&f);
            async move {
                let p: M::Params = params(p)?;
                let r = f(ctx, p).await?;
                serde_json::to_value(r).map_err(|e| {
                    RpcError::internal(format!("{}: cannot encode the result: {e}", M::NAME))
                })
            }
        })
    }

    /// Like [`typed`](Self::typed), for a handler that works on a shared
    /// `state` (a keeper, a manager): each call gets its own `Arc` of it,
    /// so the handler's future owns what it uses.
    pub fn typed_with<M, S, F, Fut>(&mut self, state: &Arc<S>, f: F) -> &mut Self
    where
        M: duplex_api::methods::RpcMethod,
        S: Send + Sync + 'static + ?Sized,
        F: Fn(Arc<S>, Ctx, M::Params) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<M::Result, RpcError>> + Send + 'static,
    {
        let state = Arc::clone(state);
        self.typed::<M, _, _>(move |ctx, p| f(Arc::clone(&state), ctx, p))
    }

    /// Adds the typed `<namespace>.status` method `M`: `f` builds its
    /// result from the process's [`ServiceInfo`] (name, version,
    /// controller, pid, uptime) at each call.
    ///
    /// [`ServiceInfo`]: duplex_api::methods::ServiceInfo
    pub fn status_method<M, F>(&mut self, f: F) -> &mut Self
    where
        M: duplex_api::methods::RpcMethod<Params = duplex_api::methods::NoParams>,
        F: Fn(duplex_api::methods::ServiceInfo) -> M::Result + Send + Sync + 'static,
    {
        let (service, version) = (self.name.clone(), self.version.clone());
        let controller = self.cfg.controller_id.clone();
        let started = Instant::now();
        let f = Arc::new(f);
        self.typed::<M, _, _>(move |_ctx, _p| {
            let info = duplex_api::methods::ServiceInfo {
                service: service.clone(),
                version: version.clone(),
                controller: controller.clone(),
                pid: std::process::id(),
                uptime_s: started.elapsed().as_secs(),
            };
            let r = f(info);
            async move { Ok(r) }
        })
    }

    /// Binds the service socket, starts serving and the registration loop.
    /// Returns once the socket is bound (registration continues in the
    /// background; see [`Service::wait_registered`]). Refuses to start when
    /// a handler is not in the method catalogue: a service serves only
    /// catalogued methods.
    pub async fn start(self) -> Result<Service, std::io::Error> {
        let uncatalogued: Vec<&str> = self
            .handlers
            .keys()
            .filter(|m| !self.cfg.router.method_allowed(m))
            .map(String::as_str)
            .collect();
        if !uncatalogued.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "{}: methods not in the method catalogue (duplex-api): {}",
                    self.name,
                    uncatalogued.join(", ")
                ),
            ));
        }
        let socket = self.cfg.service_socket(&self.name);
        let listener = server::bind_unix(&socket, 0o660)?;
        let router = RouterClient::new(self.cfg.router_socket());
        let registration = Registration {
            name: self.name.clone(),
            version: self.version.clone(),
            namespaces: self.namespaces.clone(),
            methods: self.handlers.keys().cloned().collect(),
            socket: socket.clone(),
            pid: std::process::id(),
            catalogue: Some(duplex_api::catalogue::VERSION),
            timeouts_ms: self.timeouts,
        };
        let dispatch = Arc::new(ServiceDispatch {
            handlers: self.handlers,
            router: router.clone(),
            service: self.name.clone(),
        });
        // Requests arrive with what the router adds (caller, action_id);
        // replies must leave it room on the way back.
        let max = self.cfg.router.max_message_bytes;
        let limits = Limits {
            max_frame: max.saturating_add(server::router_headroom(max)),
            max_reply: max.saturating_sub(server::router_headroom(max)),
            max_inflight: self.cfg.router.max_inflight_per_connection.max(256),
        };
        // Only the router we registered with may call us: its pid comes
        // from SO_PEERCRED on the registration connection (design: a
        // service trusts `caller` because only its router can set it).
        let (router_pid_tx, router_pid_rx) = watch::channel(0u32);
        tokio::spawn(server::accept_loop_admitting(
            listener,
            limits,
            self.cfg.router.max_connections,
            dispatch,
            server::Admit::OnlyPid(router_pid_rx),
        ));
        let (reg_tx, reg_rx) = watch::channel(false);
        tokio::spawn(register_loop(
            self.cfg.router_socket(),
            registration,
            reg_tx,
            router_pid_tx,
        ));
        tracing::info!(service = %self.name, socket = %socket.display(), "serving");
        Ok(Service {
            name: self.name,
            socket,
            router,
            registered: reg_rx,
        })
    }
}

/// A running service.
pub struct Service {
    name: String,
    socket: PathBuf,
    router: RouterClient,
    registered: watch::Receiver<bool>,
}

impl Service {
    /// A router client for calls made outside any handler.
    pub fn router(&self) -> RouterClient {
        self.router.clone()
    }

    /// The service's own socket.
    pub fn socket(&self) -> &std::path::Path {
        &self.socket
    }

    /// Waits until the service is registered with the router.
    pub async fn wait_registered(&self, timeout: Duration) -> bool {
        let mut rx = self.registered.clone();
        tokio::time::timeout(timeout, rx.wait_for(|r| *r))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Runs until SIGTERM or SIGINT: notifies systemd (READY once first
    /// registered, watchdog pings, STOPPING) and removes the socket on exit.
    pub async fn run_until_signal(self) -> std::io::Result<()> {
        let name = self.name.clone();
        self.run_until_signal_ready_when(
            async move { format!("{name}: registered with the router") },
        )
        .await
    }

    /// Like [`Service::run_until_signal`], but READY is sent only once the
    /// service is registered *and* `ready` has completed (for example, caught
    /// up with the partner); its output is the systemd status line.
    pub async fn run_until_signal_ready_when<F>(self, ready: F) -> std::io::Result<()>
    where
        F: Future<Output = String> + Send + 'static,
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut reg = self.registered.clone();
        tokio::spawn(async move {
            if reg.wait_for(|r| *r).await.is_ok() {
                let status = ready.await;
                crate::systemd::ready(&status);
            }
        });
        crate::systemd::spawn_watchdog(|| true);
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        crate::systemd::stopping();
        tracing::info!(service = %self.name, "stopping");
        let _ = std::fs::remove_file(&self.socket);
        Ok(())
    }
}

/// Registers, waits for the connection to drop, registers again, forever.
/// `router_pid` holds the pid of the router we are registered with (0
/// while none), the one process the service socket admits.
async fn register_loop(
    router_socket: PathBuf,
    reg: Registration,
    tx: watch::Sender<bool>,
    router_pid: watch::Sender<u32>,
) {
    let mut delay = Duration::from_millis(50);
    let params = match serde_json::to_value(&reg) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "cannot encode the registration");
            return;
        }
    };
    loop {
        match register_once(&router_socket, &params, &router_pid).await {
            Ok(conn) => {
                tracing::info!(service = %reg.name, "registered with the router");
                delay = Duration::from_millis(50);
                tx.send_replace(true);
                conn.closed().await;
                tx.send_replace(false);
                router_pid.send_replace(0);
                tracing::warn!(service = %reg.name, "lost the router; registering again");
            }
            Err(e) => {
                router_pid.send_replace(0);
                match e.kind() {
                    // Refused (name held by a live registration, or a check
                    // failed): say so; the loop keeps trying, so a service
                    // whose registration was displaced comes back by itself.
                    Some(ErrorCode::Unavailable) | None => {
                        tracing::debug!(error = %e, "router not reachable yet")
                    }
                    Some(_) => tracing::warn!(error = %e, "the router refused the registration"),
                }
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

async fn register_once(
    router_socket: &std::path::Path,
    params: &Value,
    router_pid: &watch::Sender<u32>,
) -> Result<Arc<RpcConn>, RpcError> {
    let stream = tokio::net::UnixStream::connect(router_socket)
        .await
        .map_err(|e| RpcError::unavailable(format!("connect: {e}")))?;
    let pid = server::unix_peer_pid(&stream)
        .ok_or_else(|| RpcError::unavailable("the router's pid is unknown (SO_PEERCRED)"))?;
    // Admit the router before asking to register: it dials our socket to
    // check that we are the process listening there.
    router_pid.send_replace(pid);
    let (r, w) = stream.into_split();
    let conn = RpcConn::spawn(r, w, 1 << 20, None);
    let req = Request::call(Id::Num(0), "router.register", params.clone());
    conn.call(req, Duration::from_secs(10))
        .await
        .map_err(|e| RpcError::unavailable(e.to_string()))?
        .into_result()?;
    // The registration lives as long as this connection: the router marks
    // the service down the moment it closes (crash, exit).
    Ok(conn)
}

struct ServiceDispatch {
    handlers: BTreeMap<String, Handler>,
    router: RouterClient,
    service: String,
}

impl Dispatch for ServiceDispatch {
    fn dispatch(
        self: Arc<Self>,
        _conn: Arc<ConnCtx>,
        req: Request,
    ) -> impl Future<Output = Option<Response>> + Send + 'static {
        let action_id = req.action_id.clone().unwrap_or_else(action::new_id);
        let span = tracing::info_span!("rpc", action_id = %action_id, method = %req.method);
        let this = Arc::clone(&self);
        async move {
            let start = Instant::now();
            let id = req.id.clone();
            let result = match this.handlers.get(&req.method) {
                Some(h) => {
                    let ctx = Ctx {
                        action_id: action_id.clone(),
                        caller: req.caller.clone(),
                        user: req.user.clone(),
                        router: this.router.clone(),
                    };
                    let fut = h(ctx, req.params);
                    action::scope(action_id.clone(), fut).await
                }
                None => Err(RpcError::new(
                    ErrorCode::MethodNotFound,
                    format!("service {} has no method {}", this.service, req.method),
                )
                .with_field("method")),
            };
            let us = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
            match &result {
                Ok(_) => tracing::debug!(caller = ?req.caller, us, "handled"),
                Err(e) => tracing::info!(caller = ?req.caller, us, error = %e, "failed"),
            }
            id.map(|id| Response::from_result(Some(id), result).with_action(Some(action_id)))
        }
        .instrument(span)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Vol {
        name: String,
        size: u64,
    }
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct P {
        pool: String,
        volumes: Vec<Vol>,
    }

    #[test]
    fn params_errors_name_the_field() {
        let e = params::<P>(serde_json::json!({"pool": "p", "volumes": [{"name":"a","size":1},{"name":"b","size":"x"}]}))
            .unwrap_err();
        assert_eq!(e.field(), Some("volumes[1].size"));
        let e = params::<P>(serde_json::json!({"volumes": []})).unwrap_err();
        assert_eq!(e.field(), Some("pool"));
        let e =
            params::<P>(serde_json::json!({"pool": "p", "volumes": [{"name":"a"}]})).unwrap_err();
        assert_eq!(e.field(), Some("volumes[0].size"));
        assert_eq!(e.kind(), Some(ErrorCode::InvalidParams));
    }
}
