//! Where duplexctl's calls go: the local router's socket, or a
//! controller's management endpoint over HTTPS (`--remote`, after
//! `duplexctl login`).

use crate::remote::{self, Remote, RemoteError};
use duplex_services::client::{CallError, Event, RouterClient, Subscription};
use duplex_services::rpc::{ErrorCode, Request, Response, RpcError};
use serde_json::{json, Value};

/// The way to the appliance.
pub enum Conn {
    /// The router's Unix socket on this controller.
    Local(RouterClient),
    /// A management endpoint over HTTPS with a session.
    Remote(Remote),
}

/// Why a call has no result.
#[derive(Debug, thiserror::Error)]
pub enum Failed {
    /// The method (or the router, or the endpoint) answered with an error.
    #[error(transparent)]
    Rpc(RpcError),
    /// The router could not be reached.
    #[error(transparent)]
    Local(CallError),
    /// The endpoint could not be reached, or refused the transport.
    #[error(transparent)]
    Remote(#[from] RemoteError),
}

impl From<CallError> for Failed {
    fn from(e: CallError) -> Failed {
        match e {
            CallError::Rpc(r) => Failed::Rpc(r),
            other => Failed::Local(other),
        }
    }
}

/// The endpoint answers for its own controller only.
const NO_CONTROLLER: &str =
    "-c/--controller does not work over --remote: log in to that controller's own management address";

impl Conn {
    /// Calls `method` on `controller` (`None`: this one). A `config.get`
    /// of a whole kind (or everything) reads every page, so lists of any
    /// size work.
    pub async fn call_at(
        &self,
        controller: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, Failed> {
        if method == "config.get" && params.get("name").is_none() && params.get("page").is_none() {
            use duplex_api::methods::config::{get_all, GetAllError};
            let kind = params.get("kind").and_then(Value::as_str);
            return match get_all(kind, |p| self.call_raw(controller, method, p)).await {
                Ok(r) => Ok(serde_json::to_value(r).unwrap_or_default()),
                Err(GetAllError::Call(e)) => Err(e),
                Err(e) => Err(Failed::Rpc(RpcError::new(
                    ErrorCode::Unavailable,
                    e.to_string(),
                ))),
            };
        }
        self.call_raw(controller, method, params).await
    }

    async fn call_raw(
        &self,
        controller: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, Failed> {
        match self {
            Conn::Local(c) => Ok(c.call_at(controller, method, params).await?),
            Conn::Remote(r) => {
                if controller.is_some() {
                    return Err(RemoteError::Unsupported(NO_CONTROLLER).into());
                }
                r.call(method, params).await?.map_err(Failed::Rpc)
            }
        }
    }

    /// Calls `method` here.
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, Failed> {
        self.call_at(None, method, params).await
    }

    /// Calls `method` on `controller`.
    pub async fn call_on(
        &self,
        controller: &str,
        method: &str,
        params: Value,
    ) -> Result<Value, Failed> {
        self.call_at(Some(controller), method, params).await
    }

    /// Sends a whole request; the response with its error, if any.
    pub async fn send_request(&self, req: Request) -> Result<Response, Failed> {
        match self {
            Conn::Local(c) => Ok(c.send_request(req).await?),
            Conn::Remote(r) => {
                if req.controller.is_some() {
                    return Err(RemoteError::Unsupported(NO_CONTROLLER).into());
                }
                if req.action_id.is_some() {
                    return Err(RemoteError::Unsupported(
                        "--action-id does not work over --remote: the endpoint gives each call its own",
                    )
                    .into());
                }
                let v =
                    json!({"jsonrpc": "2.0", "id": 1, "method": req.method, "params": req.params});
                Ok(r.send(&v).await?)
            }
        }
    }

    /// Subscribes to router topics: through the local router, or over the
    /// endpoint's WebSocket.
    pub async fn subscribe(&self, topics: &[&str]) -> Result<Events, Failed> {
        match self {
            Conn::Local(c) => Ok(Events::Local(c.subscribe(topics).await?)),
            Conn::Remote(r) => match r.subscribe(topics).await {
                Ok(e) => Ok(Events::Remote(e)),
                Err(RemoteError::Refused(e)) => Err(Failed::Rpc(e)),
                Err(e) => Err(e.into()),
            },
        }
    }
}

/// A stream of events, from either way to the appliance.
pub enum Events {
    /// The router's subscription (reconnects after a router restart).
    Local(Subscription),
    /// The endpoint's WebSocket (ends with the session).
    Remote(remote::Events),
}

impl Events {
    /// The next event.
    pub async fn next(&mut self) -> Result<Event, Failed> {
        match self {
            Events::Local(s) => Ok(s.next().await),
            Events::Remote(r) => Ok(r.next().await?),
        }
    }
}
