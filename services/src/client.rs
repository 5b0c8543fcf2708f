//! The router client: call methods anywhere in the cluster, publish and
//! subscribe to events. It connects lazily and reconnects after the router
//! restarts; calls made inside a handler carry the handler's action_id.

use crate::action;
use crate::conn::{ConnError, RpcConn};
use crate::rpc::{to_frame, ErrorCode, Id, Request, Response, RpcError};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Mutex};

/// Why a call through the router failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The callee (or the router) answered with an error.
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// The router's socket could not be reached.
    #[error("cannot connect to the router at {path}")]
    Connect {
        /// The socket.
        path: PathBuf,
        /// The connect error.
        #[source]
        source: std::io::Error,
    },
    /// The connection failed (or timed out) before a reply arrived.
    #[error("router connection failed: {0}")]
    Conn(#[from] ConnError),
}

impl CallError {
    /// The error as a JSON-RPC error to pass on to our own caller.
    pub fn into_rpc(self) -> RpcError {
        match self {
            CallError::Rpc(e) => e,
            other => RpcError::new(ErrorCode::Unavailable, other.to_string()),
        }
    }

    /// The error kind (`unavailable` for transport failures).
    pub fn kind(&self) -> Option<ErrorCode> {
        match self {
            CallError::Rpc(e) => e.kind(),
            _ => Some(ErrorCode::Unavailable),
        }
    }
}

impl From<CallError> for RpcError {
    fn from(e: CallError) -> Self {
        e.into_rpc()
    }
}

/// An event as delivered to subscribers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Topic, e.g. `cluster.state`, `pool.created`, `alert`.
    pub topic: String,
    /// The payload.
    #[serde(default)]
    pub data: Value,
    /// The action the event belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_id: Option<String>,
    /// The controller the event was published on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<String>,
    /// The publisher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Milliseconds since the Unix epoch when published.
    #[serde(default)]
    pub time_ms: u64,
}

/// The method name the router uses to push events to subscribers.
pub const EVENT_NOTIFY: &str = "event.notify";

/// Default timeout for a call through the router.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A handle to the local router. Cheap to clone; clones share one connection.
#[derive(Clone)]
pub struct RouterClient {
    inner: Arc<Inner>,
}

struct Inner {
    socket: PathBuf,
    max_frame: usize,
    timeout: Duration,
    conn: Mutex<Option<Arc<RpcConn>>>,
}

impl RouterClient {
    /// A client for the router listening on `socket`; connects on first use.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        RouterClient {
            inner: Arc::new(Inner {
                socket: socket.into(),
                max_frame: 1 << 20,
                timeout: DEFAULT_TIMEOUT,
                conn: Mutex::new(None),
            }),
        }
    }

    /// The same client with another call timeout.
    pub fn with_timeout(socket: impl Into<PathBuf>, timeout: Duration) -> Self {
        let c = RouterClient::new(socket);
        RouterClient {
            inner: Arc::new(Inner {
                socket: c.inner.socket.clone(),
                max_frame: c.inner.max_frame,
                timeout,
                conn: Mutex::new(None),
            }),
        }
    }

    /// The router socket this client uses.
    pub fn socket(&self) -> &Path {
        &self.inner.socket
    }

    async fn conn(&self) -> Result<Arc<RpcConn>, CallError> {
        let mut guard = self.inner.conn.lock().await;
        if let Some(c) = guard.as_ref() {
            if !c.is_closed() {
                return Ok(Arc::clone(c));
            }
        }
        let c = connect(&self.inner.socket, self.inner.max_frame, None).await?;
        *guard = Some(Arc::clone(&c));
        Ok(c)
    }

    /// The whole desired state (or one `kind`) from `config.get`, read
    /// page by page so that no reply passes the message limit: the same
    /// answer as an unpaged `config.get`, whatever the state's size.
    pub async fn config_get_all(&self, kind: Option<&str>) -> Result<Value, RpcError> {
        use duplex_api::methods::config::{get_all, GetAllError};
        match get_all(kind, |p| self.call("config.get", p)).await {
            Ok(r) => Ok(serde_json::to_value(r).unwrap_or_default()),
            Err(GetAllError::Call(e)) => Err(e.into_rpc()),
            Err(e @ GetAllError::Unsettled(_)) => {
                Err(RpcError::new(ErrorCode::Unavailable, e.to_string()))
            }
            Err(e @ GetAllError::Unreadable(_)) => Err(RpcError::internal(e.to_string())),
        }
    }

    /// Calls `method` on this controller.
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, CallError> {
        self.call_at(None, method, params).await
    }

    /// Calls `method` on the controller `controller` (the partner's id
    /// reaches it over the peer link).
    pub async fn call_on(
        &self,
        controller: &str,
        method: &str,
        params: Value,
    ) -> Result<Value, CallError> {
        self.call_at(Some(controller), method, params).await
    }

    /// Calls `method`, optionally on another controller.
    pub async fn call_at(
        &self,
        controller: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, CallError> {
        self.call_at_within(controller, method, params, self.inner.timeout)
            .await
    }

    /// As [`Self::call_at`], waiting up to `timeout` for the reply instead
    /// of the client's own timeout: for methods the callee registered a
    /// longer limit for with the router (the router answers with a timeout
    /// error at that limit; this is the backstop).
    pub async fn call_at_within(
        &self,
        controller: Option<&str>,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, CallError> {
        let req = Request::call_at(controller, method, params);
        Ok(self.send_within(req, timeout).await?.into_result()?)
    }

    /// Sends a full request and returns the full reply (with its action_id).
    /// The current action_id is filled in when the request has none.
    pub async fn send_request(&self, req: Request) -> Result<Response, CallError> {
        self.send_within(req, self.inner.timeout).await
    }

    async fn send_within(
        &self,
        mut req: Request,
        timeout: Duration,
    ) -> Result<Response, CallError> {
        if req.action_id.is_none() {
            req.action_id = action::current();
        }
        let conn = self.conn().await?;
        Ok(conn.call(req, timeout).await?)
    }

    /// Sends a notification (no reply).
    pub async fn notify(&self, method: &str, params: Value) -> Result<(), CallError> {
        let mut req = Request::notification(method, params);
        req.action_id = action::current();
        let conn = self.conn().await?;
        Ok(conn.send(to_frame(&req)).await?)
    }

    /// Publishes an event on `topic` to local subscribers (and the partner's
    /// when `to_partner`).
    pub async fn publish(
        &self,
        topic: &str,
        data: Value,
        to_partner: bool,
    ) -> Result<(), CallError> {
        self.call(
            "event.publish",
            json!({"topic": topic, "data": data, "partner": to_partner}),
        )
        .await
        .map(|_| ())
    }

    /// Subscribes to `topics` (exact names, `prefix.*`, or `*`) on a
    /// dedicated connection. The subscription reconnects and subscribes again
    /// after a router restart.
    pub async fn subscribe(&self, topics: &[&str]) -> Result<Subscription, CallError> {
        let topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
        let (conn, rx) =
            open_subscription(&self.inner.socket, self.inner.max_frame, &topics).await?;
        Ok(Subscription {
            socket: self.inner.socket.clone(),
            max_frame: self.inner.max_frame,
            topics,
            conn,
            rx,
        })
    }
}

async fn connect(
    socket: &Path,
    max_frame: usize,
    incoming: Option<mpsc::Sender<Request>>,
) -> Result<Arc<RpcConn>, CallError> {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|source| CallError::Connect {
            path: socket.to_path_buf(),
            source,
        })?;
    let (r, w) = stream.into_split();
    Ok(RpcConn::spawn(r, w, max_frame, incoming))
}

async fn open_subscription(
    socket: &Path,
    max_frame: usize,
    topics: &[String],
) -> Result<(Arc<RpcConn>, mpsc::Receiver<Request>), CallError> {
    let (tx, rx) = mpsc::channel(1024);
    let conn = connect(socket, max_frame, Some(tx)).await?;
    let req = Request::call(Id::Num(0), "event.subscribe", json!({ "topics": topics }));
    conn.call(req, DEFAULT_TIMEOUT).await?.into_result()?;
    Ok((conn, rx))
}

/// A stream of events.
pub struct Subscription {
    socket: PathBuf,
    max_frame: usize,
    topics: Vec<String>,
    conn: Arc<RpcConn>,
    rx: mpsc::Receiver<Request>,
}

impl Subscription {
    /// The next event. After a router restart it reconnects (retrying with
    /// backoff) and continues; events published meanwhile are not replayed.
    pub async fn next(&mut self) -> Event {
        loop {
            match self.rx.recv().await {
                Some(req) if req.method == EVENT_NOTIFY => {
                    match serde_json::from_value::<Event>(req.params) {
                        Ok(mut ev) => {
                            // The router carries the id in the envelope.
                            if ev.action_id.is_none() {
                                ev.action_id = req.action_id;
                            }
                            return ev;
                        }
                        Err(e) => tracing::warn!(error = %e, "unreadable event"),
                    }
                }
                Some(_) => {}
                None => self.reconnect().await,
            }
        }
    }

    /// The next event, or `None` if none arrives within `timeout`.
    pub async fn next_timeout(&mut self, timeout: Duration) -> Option<Event> {
        tokio::time::timeout(timeout, self.next()).await.ok()
    }

    async fn reconnect(&mut self) {
        let mut delay = Duration::from_millis(100);
        loop {
            tokio::time::sleep(delay).await;
            match open_subscription(&self.socket, self.max_frame, &self.topics).await {
                Ok((conn, rx)) => {
                    self.conn = conn;
                    self.rx = rx;
                    tracing::info!("event subscription restored");
                    return;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "event subscription: router not back yet");
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// True while the subscription's connection is open.
    pub fn is_connected(&self) -> bool {
        !self.conn.is_closed()
    }
}

impl Drop for Subscription {
    /// A dropped subscription closes its dedicated connection: its reader
    /// task holds the connection, so it would otherwise stay subscribed.
    fn drop(&mut self) {
        self.conn.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::write_frame;
    use crate::frame::read_messages;
    use crate::rpc::Message;
    use tokio::io::AsyncWriteExt;

    /// A router that answers each call (its method name) after `delay`.
    async fn slow_router(socket: PathBuf, delay: Duration) {
        let listener = tokio::net::UnixListener::bind(&socket).expect("bind");
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = stream.into_split();
                    loop {
                        let msgs = read_messages(&mut r, 1).await;
                        let Some(Message::Request(req)) = msgs.into_iter().next() else {
                            return;
                        };
                        tokio::time::sleep(delay).await;
                        let resp = Response::ok(req.id.clone(), json!(req.method));
                        if write_frame(&mut w, &to_frame(&resp)).await.is_err() {
                            return;
                        }
                        let _ = w.flush().await;
                    }
                });
            }
        });
    }

    #[tokio::test]
    async fn a_long_call_waits_past_the_clients_own_timeout() {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("router.sock");
        slow_router(socket.clone(), Duration::from_millis(300)).await;
        let client = RouterClient::with_timeout(&socket, Duration::from_millis(100));
        let cut = client.call_at(None, "pool.import", json!({})).await;
        let e = cut.expect_err("the client's own timeout ends the call");
        assert!(
            e.to_string().contains("no reply within"),
            "the reason is in the message: {e}"
        );
        let waited = client
            .call_at_within(None, "pool.import", json!({}), Duration::from_secs(5))
            .await
            .expect("a longer limit waits for the reply");
        assert_eq!(waited, json!("pool.import"));
    }
}
