//! The endpoint: the JSON-RPC module (one entry per `external` catalogue
//! method), the HTTP layer in front of it (Origin check, session token from
//! the cookie or the `Authorization` header, the login cookie) and the TLS
//! listener.
//!
//! The session travels in the request's extensions as a [`Caller`]. Over
//! HTTP each request gets its own; over WebSocket the upgrade request's is
//! shared by every call on the connection, so `auth.login` on a WebSocket
//! authenticates the rest of that connection. Either way every call checks
//! the session again: a logged-out or expired token stops working at once.

use crate::core::authz::{self, Refusal};
use crate::core::backoff::Backoff;
use crate::core::metrics as metrics_core;
use crate::core::openrpc;
use crate::core::session::{Principal, Sessions};
use crate::metrics::Scrape;
use crate::users::{self, LoginError};
use duplex_api::methods::auth::{LoginParams, LoginResult, LogoutResult, WhoamiResult};
use duplex_api::redact::redact;
use duplex_services::action;
use duplex_services::rpc::{CallUser, ErrorCode, Id, Request, RpcError};
use duplex_services::RouterClient;
use jsonrpsee::server::{
    BatchRequestConfig, HttpBody, HttpRequest, HttpResponse, ServerConfig, StopHandle,
};
use jsonrpsee::types::{ErrorObjectOwned, Params};
use jsonrpsee::{Extensions, PendingSubscriptionSink, RpcModule};
use serde_json::Value;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;

/// The session cookie's name.
pub const COOKIE: &str = "duplex_session";
/// Largest request body, bytes.
pub const MAX_REQUEST_BYTES: u32 = 1 << 20;
/// A TLS handshake must finish within this.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings of the endpoint.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long a session lasts.
    pub session_ttl: Duration,
    /// Origins allowed besides `https://<Host>`.
    pub allowed_origins: Vec<String>,
    /// Calls per second per client address.
    pub calls_per_s: NonZeroU32,
    /// Calls at once above that rate.
    pub calls_burst: NonZeroU32,
}

/// Client addresses the rate limiter tracks before it forgets idle ones.
pub const MAX_LIMITED_ADDRESSES: usize = 4096;

/// The endpoint's shared state.
pub struct Endpoint {
    router: RouterClient,
    settings: Settings,
    sessions: Arc<Mutex<Sessions>>,
    backoff: Mutex<Backoff>,
    limiter: governor::DefaultKeyedRateLimiter<IpAddr>,
}

/// Who is calling: the peer address and the session slot of one HTTP
/// request or one WebSocket connection.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The client's address.
    pub addr: SocketAddr,
    /// The session token presented (or obtained by `auth.login`).
    pub token: Arc<Mutex<Option<String>>>,
    /// A `Set-Cookie` value for the HTTP response (login and logout).
    pub set_cookie: Arc<Mutex<Option<String>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these leaves consistent data (each
    // update is a single map operation), so carry on.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn to_wire(e: RpcError) -> ErrorObjectOwned {
    let code = i32::try_from(e.code).unwrap_or(jsonrpsee::types::error::INTERNAL_ERROR_CODE);
    ErrorObjectOwned::owned(code, e.message, e.data)
}

fn refusal(r: Refusal) -> RpcError {
    match &r {
        Refusal::NotFound(_) => {
            RpcError::new(ErrorCode::MethodNotFound, r.to_string()).with_field("method")
        }
        Refusal::NoSession => RpcError::new(ErrorCode::Unauthorized, r.to_string())
            .with_data("reason", "session".into()),
        Refusal::Role { .. } => {
            RpcError::new(ErrorCode::Unauthorized, r.to_string()).with_data("reason", "role".into())
        }
    }
}

fn params_value(p: &Params<'_>) -> Result<Value, RpcError> {
    match p.as_str() {
        None => Ok(Value::Null),
        Some(s) => serde_json::from_str(s)
            .map_err(|e| RpcError::invalid_params("params", format!("not JSON: {e}"))),
    }
}

fn random_token() -> Result<String, RpcError> {
    let mut buf = [0u8; 32];
    getrandom::getrandom(&mut buf)
        .map_err(|e| RpcError::internal(format!("no randomness for a session token: {e}")))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

impl Endpoint {
    /// The endpoint over the router client `router`.
    pub fn new(router: RouterClient, settings: Settings) -> Endpoint {
        let ttl_ms = u64::try_from(settings.session_ttl.as_millis()).unwrap_or(u64::MAX);
        let quota =
            governor::Quota::per_second(settings.calls_per_s).allow_burst(settings.calls_burst);
        Endpoint {
            router,
            settings,
            sessions: Arc::new(Mutex::new(Sessions::new(ttl_ms))),
            backoff: Mutex::new(Backoff::new()),
            limiter: governor::RateLimiter::keyed(quota),
        }
    }

    /// The session table, for [`revoke_on_user_changes`].
    pub fn sessions(&self) -> Arc<Mutex<Sessions>> {
        Arc::clone(&self.sessions)
    }

    /// The caller's valid session, if any (checked now).
    fn session(&self, caller: Option<&Caller>) -> Option<Principal> {
        let token = lock(&caller?.token).clone()?;
        lock(&self.sessions).check(&token, now_ms())
    }

    /// The per-address call rate: past it a call fails at once, saying
    /// when to retry (every call passes here, HTTP and WebSocket alike).
    fn rate(&self, caller: Option<&Caller>) -> Result<(), RpcError> {
        let Some(c) = caller else {
            return Ok(());
        };
        let ip = c.addr.ip();
        if self.limiter.len() > MAX_LIMITED_ADDRESSES {
            self.limiter.retain_recent();
        }
        self.limiter.check_key(&ip).map_err(|not_until| {
            use governor::clock::Clock;
            let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
            let ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1);
            tracing::warn!(%ip, retry_after_ms = ms, "call rate limit reached");
            RpcError::new(
                ErrorCode::Unavailable,
                format!(
                    "too many calls from {ip} (over {} per second): retry in {ms} ms",
                    self.settings.calls_per_s
                ),
            )
            .with_data("reason", "rate_limited".into())
            .with_data("retry_after_ms", ms.into())
        })
    }

    /// The one authorization gate every call passes.
    fn authorize(&self, method: &str, ext: &Extensions) -> Result<Option<Principal>, RpcError> {
        self.rate(ext.get::<Caller>())?;
        let p = self.session(ext.get::<Caller>());
        authz::decide(method, p.as_ref().map(|p| p.role)).map_err(refusal)?;
        Ok(p)
    }

    fn cookie(&self, token: &str) -> String {
        format!(
            "{COOKIE}={token}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={}",
            self.settings.session_ttl.as_secs()
        )
    }

    async fn login(&self, params: Value, ext: &Extensions) -> Result<Value, RpcError> {
        self.authorize(authz::LOGIN, ext)?;
        let p: LoginParams =
            serde_json::from_value(params).map_err(|e| RpcError::invalid_params("params", e))?;
        let Some(caller) = ext.get::<Caller>() else {
            return Err(RpcError::internal("no caller context"));
        };
        let ip = caller.addr.ip();
        if let Err(wait) = lock(&self.backoff).check(&p.user, ip, now_ms()) {
            return Err(RpcError::new(
                ErrorCode::Unauthorized,
                format!(
                    "too many failed logins for {:?} from {ip}: retry in {} s",
                    p.user,
                    wait.div_ceil(1000)
                ),
            )
            .with_data("reason", "backoff".into())
            .with_data("retry_after_ms", wait.into()));
        }
        match users::check(&self.router, &p.user, &p.password).await {
            Ok((role, stamp)) => {
                lock(&self.backoff).succeeded(&p.user, ip);
                let token = random_token()?;
                let s = lock(&self.sessions).open(&token, &p.user, role, &stamp, now_ms());
                *lock(&caller.token) = Some(token.clone());
                *lock(&caller.set_cookie) = Some(self.cookie(&token));
                tracing::info!(user = %p.user, role = authz::role_name(role), %ip, "login");
                let r = LoginResult {
                    token,
                    user: s.user,
                    role: s.role,
                    expires_ms: s.expires_ms,
                };
                serde_json::to_value(r).map_err(|e| RpcError::internal(e.to_string()))
            }
            Err(LoginError::Denied) => {
                let wait = lock(&self.backoff).failed(&p.user, ip, now_ms());
                tracing::warn!(user = %p.user, %ip, wait_ms = wait, "failed login");
                Err(
                    RpcError::new(ErrorCode::Unauthorized, LoginError::Denied.to_string())
                        .with_data("reason", "credentials".into()),
                )
            }
            Err(e @ LoginError::Unavailable(_)) => Err(RpcError::unavailable(e.to_string())),
        }
    }

    fn logout(&self, ext: &Extensions) -> Result<Value, RpcError> {
        self.authorize("auth.logout", ext)?;
        let Some(caller) = ext.get::<Caller>() else {
            return Err(RpcError::internal("no caller context"));
        };
        let token = lock(&caller.token).take();
        let closed = token.is_some_and(|t| lock(&self.sessions).close(&t));
        *lock(&caller.set_cookie) = Some(format!(
            "{COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0"
        ));
        serde_json::to_value(LogoutResult { logged_out: closed })
            .map_err(|e| RpcError::internal(e.to_string()))
    }

    fn whoami(&self, ext: &Extensions) -> Result<Value, RpcError> {
        let Some(p) = self.authorize("auth.whoami", ext)? else {
            return Err(refusal(Refusal::NoSession));
        };
        serde_json::to_value(WhoamiResult {
            user: p.user,
            role: p.role,
            expires_ms: p.expires_ms,
        })
        .map_err(|e| RpcError::internal(e.to_string()))
    }

    async fn forward(
        &self,
        method: &str,
        params: Value,
        ext: &Extensions,
    ) -> Result<Value, RpcError> {
        let p = self.authorize(method, ext)?;
        let Some(p) = p else {
            return Err(refusal(Refusal::NoSession));
        };
        let action_id = action::new_id();
        let span = tracing::info_span!("call", action_id = %action_id, %method, user = %p.user);
        async {
            let mut req = Request::call(Id::Num(0), method, params);
            req.action_id = Some(action_id.clone());
            req.user = Some(CallUser {
                name: p.user.clone(),
                role: p.role,
                address: ext.get::<Caller>().map(|c| c.addr.ip().to_string()),
            });
            let resp = self
                .router
                .send_request(req)
                .await
                .map_err(|e| e.into_rpc())?;
            let mut v = resp.into_result()?;
            redact(&mut v, p.role);
            Ok(v)
        }
        .instrument(span)
        .await
    }
}

impl Endpoint {
    async fn subscribe(
        &self,
        p: Params<'static>,
        pending: PendingSubscriptionSink,
        ext: Extensions,
    ) {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Topics {
            topics: Vec<String>,
        }
        let principal = match self.authorize("event.subscribe", &ext) {
            Ok(Some(p)) => p,
            Ok(None) => return pending.reject(to_wire(refusal(Refusal::NoSession))).await,
            Err(e) => return pending.reject(to_wire(e)).await,
        };
        let topics = match params_value(&p).and_then(|v| {
            serde_json::from_value::<Topics>(v).map_err(|e| RpcError::invalid_params("topics", e))
        }) {
            Ok(t) if !t.topics.is_empty() => t.topics,
            Ok(_) => {
                return pending
                    .reject(to_wire(RpcError::invalid_params(
                        "topics",
                        "give at least one topic",
                    )))
                    .await
            }
            Err(e) => return pending.reject(to_wire(e)).await,
        };
        let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
        let mut sub = match self.router.subscribe(&refs).await {
            Ok(s) => s,
            Err(e) => return pending.reject(to_wire(e.into_rpc())).await,
        };
        let Ok(sink) = pending.accept().await else {
            return;
        };
        tracing::info!(user = %principal.user, ?topics, "events subscribed");
        loop {
            let ev = tokio::select! {
                ev = sub.next() => ev,
                () = sink.closed() => return,
            };
            // The session is checked for every event, as for every call.
            let Some(now) = self.session(ext.get::<Caller>()) else {
                return;
            };
            let mut v = serde_json::to_value(&ev).unwrap_or_default();
            redact(&mut v, now.role);
            let Ok(raw) = serde_json::value::to_raw_value(&v) else {
                continue;
            };
            if sink.send(raw).await.is_err() {
                return;
            }
        }
    }
}

/// Ends the sessions of users deleted or changed (password, role): on
/// every `config.changed` event and once a minute as a backstop (events
/// published while the router restarts are not replayed). Never returns.
pub async fn revoke_on_user_changes(router: RouterClient, sessions: Arc<Mutex<Sessions>>) {
    let r = router.clone();
    duplex_services::daemon::on_events_or_timer(
        router,
        &[duplex_api::topics::CONFIG_CHANGED],
        Some(Duration::from_secs(60)),
        "sessions",
        move |_| {
            let (r, sessions) = (r.clone(), Arc::clone(&sessions));
            async move {
                match users::current(&r).await {
                    Ok(cur) => {
                        let n = lock(&sessions).revoke_stale(&cur);
                        if n > 0 {
                            tracing::info!(ended = n, "sessions of deleted or changed users ended");
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot check users for stale sessions"),
                }
            }
        },
    )
    .await;
}

/// The JSON-RPC module: every `external` method of the catalogue, and
/// nothing else (so `internal` and `peer` methods are `method not found`).
pub fn module(ep: Endpoint) -> Result<RpcModule<Endpoint>, jsonrpsee::core::RegisterMethodError> {
    let mut m = RpcModule::new(ep);
    for method in authz::reachable() {
        let name = method.name;
        match name {
            "auth.login" => {
                m.register_async_method(name, |p, ep, ext| async move {
                    let v = params_value(&p).map_err(to_wire)?;
                    ep.login(v, &ext).await.map_err(to_wire)
                })?;
            }
            "auth.logout" => {
                m.register_method(name, |_p, ep, ext| ep.logout(ext).map_err(to_wire))?;
            }
            "auth.whoami" => {
                m.register_method(name, |_p, ep, ext| ep.whoami(ext).map_err(to_wire))?;
            }
            // Over WebSocket: a subscription of its own to the router's
            // topics, pushed as `event.notify`; over HTTP jsonrpsee
            // answers that subscriptions need a WebSocket.
            "event.subscribe" => {
                m.register_subscription(
                    name,
                    "event.notify",
                    "event.unsubscribe",
                    |p, pending, ep, ext| async move { ep.subscribe(p, pending, ext).await },
                )?;
            }
            "event.unsubscribe" => {}
            "rpc.discover" => {
                m.register_method(name, |_p, ep, ext| {
                    ep.authorize("rpc.discover", ext).map_err(to_wire)?;
                    Ok::<_, ErrorObjectOwned>(openrpc::document())
                })?;
            }
            _ => {
                m.register_async_method(name, move |p, ep, ext| async move {
                    let v = params_value(&p).map_err(to_wire)?;
                    ep.forward(name, v, &ext).await.map_err(to_wire)
                })?;
            }
        }
    }
    Ok(m)
}

/// The origin of the endpoint as the browser sees it, from `Host`.
fn own_origin<B>(req: &HttpRequest<B>) -> Option<String> {
    let host = req.headers().get(http::header::HOST)?.to_str().ok()?;
    Some(format!("https://{host}"))
}

/// Is the request's `Origin` (when a browser sent one) acceptable?
pub fn origin_allowed(origin: Option<&str>, own: Option<&str>, allowed: &[String]) -> bool {
    match origin {
        // Not a browser (duplexctl, scripts): no cross-site risk.
        None => true,
        Some(o) => Some(o) == own || allowed.iter().any(|a| a == o),
    }
}

fn token_of<B>(req: &HttpRequest<B>) -> Option<String> {
    let h = req.headers();
    let authorization = h
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let cookies: Vec<&str> = h
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    crate::core::session::token_from(authorization, &cookies, COOKIE)
}

fn refuse(status: http::StatusCode, why: &'static str) -> HttpResponse {
    let mut r = HttpResponse::new(HttpBody::from(why));
    *r.status_mut() = status;
    r
}

/// The HTTP layer: Origin check, the caller's context, cookies and
/// security headers around jsonrpsee's service.
#[derive(Clone)]
pub struct Gate<S> {
    inner: S,
    addr: SocketAddr,
    allowed_origins: Arc<Vec<String>>,
    metrics: Option<Arc<Scrape>>,
    ui_dir: Option<Arc<PathBuf>>,
}

/// Answers `GET /metrics`: the scrape token (Bearer) or 401, then the
/// text exposition. Not a session: Prometheus holds no login.
async fn scrape(m: Arc<Scrape>, presented: Option<String>, addr: SocketAddr) -> HttpResponse {
    if !presented
        .as_deref()
        .is_some_and(|t| metrics_core::token_matches(t, &m.token))
    {
        tracing::warn!(%addr, "metrics scrape refused: no or wrong token");
        return refuse(
            http::StatusCode::UNAUTHORIZED,
            "metrics need the scrape token: Authorization: Bearer <metrics.token>\n",
        );
    }
    let sources = crate::metrics::gather(&m.router).await;
    match metrics_core::render(&sources) {
        Ok(text) => {
            let mut r = HttpResponse::new(HttpBody::from(text));
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            r
        }
        Err(_) => refuse(
            http::StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode the metrics\n",
        ),
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<S, B> tower::Service<HttpRequest<B>> for Gate<S>
where
    S: tower::Service<HttpRequest<B>, Response = HttpResponse, Error = BoxError>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = HttpResponse;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: HttpRequest<B>) -> Self::Future {
        if req.uri().path() == "/metrics" {
            let Some(m) = self.metrics.clone() else {
                return Box::pin(async {
                    Ok(refuse(
                        http::StatusCode::NOT_FOUND,
                        "metrics are not enabled\n",
                    ))
                });
            };
            let presented = req
                .headers()
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(|t| t.trim().to_string());
            let addr = self.addr;
            return Box::pin(async move { Ok(scrape(m, presented, addr).await) });
        }
        // Plain GETs (not the WebSocket upgrade) are the web UI's files:
        // public, like a login page, and never the RPC.
        let get = req.method() == http::Method::GET || req.method() == http::Method::HEAD;
        if get && !req.headers().contains_key(http::header::UPGRADE) {
            let head = req.method() == http::Method::HEAD;
            let path = req.uri().path().to_string();
            let dir = self.ui_dir.clone();
            return Box::pin(async move {
                Ok(match dir {
                    Some(d) => crate::ui::serve(&d, &path, head).await,
                    None => refuse(http::StatusCode::NOT_FOUND, "no web UI here\n"),
                })
            });
        }
        let origin = req
            .headers()
            .get(http::header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let own = own_origin(&req);
        if !origin_allowed(origin.as_deref(), own.as_deref(), &self.allowed_origins) {
            tracing::warn!(addr = %self.addr, origin = ?origin, "cross-origin request refused");
            return Box::pin(async {
                Ok(refuse(
                    http::StatusCode::FORBIDDEN,
                    "cross-origin request refused\n",
                ))
            });
        }
        let caller = Caller {
            addr: self.addr,
            token: Arc::new(Mutex::new(token_of(&req))),
            set_cookie: Arc::new(Mutex::new(None)),
        };
        let cookie = Arc::clone(&caller.set_cookie);
        req.extensions_mut().insert(caller);
        let fut = self.inner.call(req);
        Box::pin(async move {
            let mut resp = fut.await?;
            let h = resp.headers_mut();
            if let Some(c) = lock(&cookie).take() {
                if let Ok(v) = http::HeaderValue::from_str(&c) {
                    h.append(http::header::SET_COOKIE, v);
                }
            }
            h.insert(
                http::header::CACHE_CONTROL,
                http::HeaderValue::from_static("no-store"),
            );
            h.insert(
                http::header::STRICT_TRANSPORT_SECURITY,
                http::HeaderValue::from_static("max-age=31536000"),
            );
            h.insert(
                http::header::X_CONTENT_TYPE_OPTIONS,
                http::HeaderValue::from_static("nosniff"),
            );
            Ok(resp)
        })
    }
}

/// What a listener serves besides the RPC.
#[derive(Clone, Default)]
pub struct Http {
    /// Origins allowed besides `https://<Host>`.
    pub allowed_origins: Vec<String>,
    /// `/metrics`, when enabled.
    pub metrics: Option<Arc<Scrape>>,
    /// The web UI's files, when installed.
    pub ui_dir: Option<PathBuf>,
}

/// Serves `methods` (the [`module`]; one for every listener, so sessions
/// are shared) over TLS on `listener` until `stop` is signalled.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<crate::tls::Reloading>,
    methods: jsonrpsee::Methods,
    http: Http,
    stop: StopHandle,
) {
    let cfg = ServerConfig::builder()
        .max_request_body_size(MAX_REQUEST_BYTES)
        .set_batch_request_config(BatchRequestConfig::Limit(32))
        .build();
    let builder = jsonrpsee::server::Server::builder()
        .set_config(cfg)
        .to_service_builder();
    let allowed = Arc::new(http.allowed_origins);
    let ui_dir = http.ui_dir.map(Arc::new);
    loop {
        let (tcp, addr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = stop.clone().shutdown() => return,
        };
        let svc = Gate {
            inner: builder.clone().build(methods.clone(), stop.clone()),
            addr,
            allowed_origins: Arc::clone(&allowed),
            metrics: http.metrics.clone(),
            ui_dir: ui_dir.clone(),
        };
        // A certificate installed since the last connection is used now.
        let acceptor = TlsAcceptor::from(tls.current());
        let stop = stop.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%addr, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%addr, "TLS handshake timed out");
                    return;
                }
            };
            if let Err(e) =
                jsonrpsee::server::serve_with_graceful_shutdown(tls, svc, stop.shutdown()).await
            {
                tracing::debug!(%addr, error = %e, "connection ended");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browsers_must_come_from_the_endpoint_itself_or_a_listed_origin() {
        let own = Some("https://10.0.0.5:8443");
        assert!(origin_allowed(None, own, &[]));
        assert!(origin_allowed(Some("https://10.0.0.5:8443"), own, &[]));
        assert!(!origin_allowed(Some("https://evil.example"), own, &[]));
        assert!(!origin_allowed(Some("http://10.0.0.5:8443"), own, &[]));
        assert!(origin_allowed(
            Some("https://nas.example"),
            own,
            &["https://nas.example".into()]
        ));
        assert!(!origin_allowed(Some("https://x"), None, &[]));
    }

    #[test]
    fn the_token_comes_from_the_bearer_header_or_the_cookie() {
        let r = http::Request::builder()
            .header("Cookie", "a=b; duplex_session=abc; c=d")
            .body(())
            .unwrap();
        assert_eq!(token_of(&r).as_deref(), Some("abc"));
        let r = http::Request::builder()
            .header("Authorization", "Bearer xyz")
            .body(())
            .unwrap();
        assert_eq!(token_of(&r).as_deref(), Some("xyz"));
        let r = http::Request::builder().body(()).unwrap();
        assert_eq!(token_of(&r), None);
    }
}
