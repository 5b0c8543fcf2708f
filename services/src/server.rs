//! The answering side of a connection, shared by services and the router:
//! reads frames, refuses bad input with a JSON-RPC error while continuing to
//! serve, limits requests in flight per connection, and runs each request in
//! its own task so a slow call never blocks the next.

use crate::conn::write_frame;
use crate::frame::{Frame, Framer};
use crate::rpc::{
    head_id, parse_message, to_frame, ErrorCode, Message, Request, Response, RpcError,
};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::{mpsc, Semaphore};

/// Limits applied to one connection.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest message read, in bytes.
    pub max_frame: usize,
    /// Largest reply sent, in bytes: a larger one is replaced by a
    /// `too_large` error, so the caller learns at once instead of waiting
    /// out its timeout for a reply its reader would drop.
    pub max_reply: usize,
    /// Requests in flight before further ones are refused.
    pub max_inflight: usize,
}

/// Room the router needs on top of a client's message when it forwards it
/// (`caller`, `action_id`): services read up to the router's limit plus
/// this, and answer at most the limit minus this.
pub fn router_headroom(max_message_bytes: usize) -> usize {
    (max_message_bytes / 8).min(4096)
}

/// The reply queue of one connection is bounded in bytes: this many of the
/// connection's largest message (replies and events wait beyond it, which
/// is the back-pressure on a peer that does not read).
pub const QUEUE_FRAMES_OF_BYTES: usize = 4;

/// The queue closed: the connection is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the connection is closed")]
pub struct QueueClosed;

/// Frames waiting to be written to one connection, bounded in bytes (not
/// in frames: a slow reader of large replies must not grow memory).
#[derive(Debug, Clone)]
pub struct OutQueue {
    tx: mpsc::UnboundedSender<(Vec<u8>, tokio::sync::OwnedSemaphorePermit)>,
    budget: Arc<Semaphore>,
    max: u32,
}

impl OutQueue {
    /// A queue of at most `bytes` bytes and its receiving end.
    pub fn new(bytes: usize) -> (OutQueue, OutReceiver) {
        let max = u32::try_from(bytes.max(1)).unwrap_or(u32::MAX);
        let budget = Arc::new(Semaphore::new(usize::try_from(max).unwrap_or(usize::MAX)));
        let (tx, rx) = mpsc::unbounded_channel();
        (
            OutQueue {
                tx,
                budget: Arc::clone(&budget),
                max,
            },
            OutReceiver { rx, budget },
        )
    }

    /// Queues a frame, waiting while the queue holds its byte budget.
    pub async fn send(&self, frame: Vec<u8>) -> Result<(), QueueClosed> {
        // A frame larger than the whole budget takes all of it.
        let n = u32::try_from(frame.len())
            .unwrap_or(u32::MAX)
            .clamp(1, self.max);
        let permit = Arc::clone(&self.budget)
            .acquire_many_owned(n)
            .await
            .map_err(|_| QueueClosed)?;
        self.tx.send((frame, permit)).map_err(|_| QueueClosed)
    }
}

/// The writing end of an [`OutQueue`].
#[derive(Debug)]
pub struct OutReceiver {
    rx: mpsc::UnboundedReceiver<(Vec<u8>, tokio::sync::OwnedSemaphorePermit)>,
    budget: Arc<Semaphore>,
}

impl OutReceiver {
    /// The next frame; its bytes return to the budget when the returned
    /// permit is dropped (after writing).
    pub async fn recv(&mut self) -> Option<(Vec<u8>, tokio::sync::OwnedSemaphorePermit)> {
        self.rx.recv().await
    }

    fn try_recv(&mut self) -> Option<(Vec<u8>, tokio::sync::OwnedSemaphorePermit)> {
        self.rx.try_recv().ok()
    }
}

impl Drop for OutReceiver {
    fn drop(&mut self) {
        // Senders waiting for budget learn at once that no one writes.
        self.budget.close();
    }
}

/// One accepted connection, as seen by a dispatcher.
#[derive(Debug)]
pub struct ConnCtx {
    /// Unique per process.
    pub id: u64,
    /// Who is on the other end (`pid=123` for Unix sockets, the address for TCP).
    pub peer: String,
    /// The peer's process id from `SO_PEERCRED` (Unix sockets only): the
    /// kernel's word, unlike anything the peer writes.
    pub pid: Option<u32>,
    /// Frames to send to this connection (replies are sent for you; use this
    /// for notifications such as events).
    pub out: OutQueue,
}

/// What a server does with requests.
pub trait Dispatch: Send + Sync + 'static {
    /// Handles one request; returns the reply (`None` for notifications).
    fn dispatch(
        self: Arc<Self>,
        conn: Arc<ConnCtx>,
        req: Request,
    ) -> impl Future<Output = Option<Response>> + Send + 'static;

    /// Called once when the connection ends.
    fn closed(&self, _conn: &ConnCtx) {}
}

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// Serves one connection until it ends.
pub async fn serve<R, W, D>(reader: R, writer: W, peer: String, limits: Limits, dispatch: Arc<D>)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
    D: Dispatch,
{
    serve_with_pid(reader, writer, peer, None, limits, dispatch).await;
}

/// Like [`serve`], for a peer whose process id the kernel told us.
pub async fn serve_with_pid<R, W, D>(
    reader: R,
    writer: W,
    peer: String,
    pid: Option<u32>,
    limits: Limits,
    dispatch: Arc<D>,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
    D: Dispatch,
{
    let (out, out_rx) = OutQueue::new(limits.max_frame.saturating_mul(QUEUE_FRAMES_OF_BYTES));
    let ctx = Arc::new(ConnCtx {
        id: NEXT_CONN.fetch_add(1, Ordering::Relaxed),
        peer,
        pid,
        out,
    });
    let writer_task = tokio::spawn(write_loop(writer, out_rx));
    read_loop(reader, limits, Arc::clone(&ctx), Arc::clone(&dispatch)).await;
    dispatch.closed(&ctx);
    drop(ctx);
    // The writer ends when every sender (ours and in-flight handlers') is gone.
    let _ = writer_task.await;
}

async fn write_loop<W: AsyncWrite + Unpin>(writer: W, mut rx: OutReceiver) {
    let mut w = BufWriter::with_capacity(64 * 1024, writer);
    while let Some((frame, permit)) = rx.recv().await {
        if write_frame(&mut w, &frame).await.is_err() {
            return;
        }
        drop(permit);
        while let Some((f, permit)) = rx.try_recv() {
            if write_frame(&mut w, &f).await.is_err() {
                return;
            }
            drop(permit);
        }
        if w.flush().await.is_err() {
            return;
        }
    }
    let _ = w.shutdown().await;
}

async fn read_loop<R: AsyncRead + Unpin, D: Dispatch>(
    mut reader: R,
    limits: Limits,
    ctx: Arc<ConnCtx>,
    dispatch: Arc<D>,
) {
    let inflight = Arc::new(Semaphore::new(limits.max_inflight));
    let mut framer = Framer::new(limits.max_frame);
    let mut buf = vec![0u8; 64 * 1024];
    let mut frames = Vec::new();
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        framer.push(&buf[..n], &mut frames);
        for frame in frames.drain(..) {
            let reply = match frame {
                Frame::Oversize { seen, head } => {
                    tracing::warn!(peer = %ctx.peer, seen, limit = limits.max_frame, "refused an oversize message");
                    // With its id, so the caller's pending call ends now
                    // rather than at its timeout.
                    Some(Response::err(
                        head_id(&head),
                        RpcError::new(
                            ErrorCode::TooLarge,
                            format!("message exceeds the limit of {} bytes", limits.max_frame),
                        )
                        .with_data("limit", limits.max_frame.into()),
                    ))
                }
                Frame::Line(line) => match parse_message(&line) {
                    Err(bad) => {
                        tracing::debug!(peer = %ctx.peer, error = %bad.error, "refused a bad message");
                        Some(Response::err(bad.id, bad.error))
                    }
                    // A reply on the answering side has no call to match.
                    Ok(Message::Response(_)) => None,
                    Ok(Message::Request(req)) => match Arc::clone(&inflight).try_acquire_owned() {
                        Ok(permit) => {
                            let d = Arc::clone(&dispatch);
                            let c = Arc::clone(&ctx);
                            tokio::spawn(async move {
                                let out = c.out.clone();
                                // Boxed: the handler's future is large, and a
                                // spawned task's future is copied when it is
                                // stored and again when its stage changes.
                                let fut = Box::pin(d.dispatch(c, req));
                                if let Some(resp) = fut.await {
                                    let _ = out.send(reply_frame(&resp, limits.max_reply)).await;
                                }
                                drop(permit);
                            });
                            None
                        }
                        Err(_) if req.id.is_none() => None,
                        Err(_) => {
                            tracing::warn!(peer = %ctx.peer, limit = limits.max_inflight, "refused a request: too many in flight");
                            Some(
                                Response::err(
                                    req.id,
                                    RpcError::unavailable(format!(
                                        "too many requests in flight on this connection (limit {})",
                                        limits.max_inflight
                                    ))
                                    .with_data("reason", "overloaded".into()),
                                )
                                .with_action(req.action_id),
                            )
                        }
                    },
                },
            };
            if let Some(resp) = reply {
                // Waiting here is the back-pressure on a client that floods
                // without reading its replies; other connections are unaffected.
                if ctx.out.send(to_frame(&resp)).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// The frame of a reply, or of a `too_large` error in its place when it
/// exceeds `max` bytes.
fn reply_frame(resp: &Response, max: usize) -> Vec<u8> {
    let frame = to_frame(resp);
    if frame.len() <= max {
        return frame;
    }
    tracing::warn!(
        bytes = frame.len(),
        limit = max,
        "a reply exceeds the message limit"
    );
    to_frame(
        &Response::err(
            resp.id.clone(),
            RpcError::new(
                ErrorCode::TooLarge,
                format!(
                    "the reply ({} bytes) exceeds the message limit of {max} bytes",
                    frame.len()
                ),
            )
            .with_data("limit", max.into()),
        )
        .with_action(resp.action_id.clone()),
    )
}

/// Removes a stale socket file and binds a Unix listener with `mode`.
pub fn bind_unix(path: &std::path::Path, mode: u32) -> std::io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(listener)
}

/// The id of group `name` from `/etc/group` (where systemd-sysusers puts
/// the product's groups), or `None` when there is no such group.
pub fn group_id(name: &str) -> Option<u32> {
    let text = std::fs::read_to_string("/etc/group").ok()?;
    group_id_in(&text, name)
}

/// [`group_id`] over the text of a group file.
pub fn group_id_in(text: &str, name: &str) -> Option<u32> {
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == name).then_some(())?;
        f.nth(1)?.trim().parse().ok()
    })
}

/// A description of a Unix-socket peer for logs and the actions log.
pub fn unix_peer(stream: &tokio::net::UnixStream) -> String {
    match stream.peer_cred() {
        Ok(c) => match c.pid() {
            Some(pid) => format!("pid={pid}"),
            None => format!("uid={}", c.uid()),
        },
        Err(_) => "unknown".into(),
    }
}

/// The process id of a Unix-socket peer, from `SO_PEERCRED`.
pub fn unix_peer_pid(stream: &tokio::net::UnixStream) -> Option<u32> {
    stream
        .peer_cred()
        .ok()
        .and_then(|c| c.pid())
        .and_then(|p| u32::try_from(p).ok())
}

/// Who may connect to a listener.
#[derive(Debug, Clone)]
pub enum Admit {
    /// Anyone who can open the socket (the router's own socket).
    Anyone,
    /// Only the process whose id is in the watch (0: nobody). A service
    /// admits only its router: the pid it found on the registration
    /// connection, so a local process that opens the service socket
    /// cannot speak for the router (or for the partner through it).
    OnlyPid(tokio::sync::watch::Receiver<u32>),
}

impl Admit {
    fn allows(&self, pid: Option<u32>) -> bool {
        match self {
            Admit::Anyone => true,
            Admit::OnlyPid(rx) => {
                let want = *rx.borrow();
                want != 0 && pid == Some(want)
            }
        }
    }
}

/// Accepts connections on `listener` and serves each with `dispatch`, at most
/// `max_conns` at once (further ones wait in the kernel backlog).
pub async fn accept_loop<D: Dispatch>(
    listener: tokio::net::UnixListener,
    limits: Limits,
    max_conns: usize,
    dispatch: Arc<D>,
) {
    accept_loop_admitting(listener, limits, max_conns, dispatch, Admit::Anyone).await;
}

/// Like [`accept_loop`], serving only the peers `admit` allows; any other
/// gets one `unauthorized` error and is closed.
pub async fn accept_loop_admitting<D: Dispatch>(
    listener: tokio::net::UnixListener,
    limits: Limits,
    max_conns: usize,
    dispatch: Arc<D>,
    admit: Admit,
) {
    let slots = Arc::new(Semaphore::new(max_conns));
    loop {
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let peer = unix_peer(&stream);
        let pid = unix_peer_pid(&stream);
        if !admit.allows(pid) {
            tracing::warn!(%peer, "refused a connection: only the router may call this service");
            tokio::spawn(refuse(stream, permit));
            continue;
        }
        let d = Arc::clone(&dispatch);
        tokio::spawn(async move {
            let (r, w) = stream.into_split();
            serve_with_pid(r, w, peer, pid, limits, d).await;
            drop(permit);
        });
    }
}

/// Tells a refused peer why, then closes (bounded: a peer that does not
/// read cannot hold the task).
async fn refuse(mut stream: tokio::net::UnixStream, permit: tokio::sync::OwnedSemaphorePermit) {
    let resp = Response::err(
        None,
        RpcError::new(
            ErrorCode::Unauthorized,
            "this socket answers only its router; call through router.sock",
        ),
    );
    let mut frame = to_frame(&resp);
    frame.push(b'\n');
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
        let _ = stream.write_all(&frame).await;
        let _ = stream.shutdown().await;
    })
    .await;
    drop(permit);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_ids_come_from_the_group_file() {
        let text = "root:x:0:\nduplex:x:997:duplex-mgmt\nduplex-mgmt:x:996:\nbad line\n";
        assert_eq!(group_id_in(text, "duplex"), Some(997));
        assert_eq!(group_id_in(text, "duplex-mgmt"), Some(996));
        assert_eq!(group_id_in(text, "dup"), None);
        assert_eq!(group_id_in(text, "nobody"), None);
    }
    use crate::conn::RpcConn;
    use crate::frame::read_messages;
    use crate::rpc::Id;
    use serde_json::{json, Value};
    use std::time::Duration;

    /// The connection still serves: `t.ok` answers `params` back.
    async fn assert_echoes(conn: &RpcConn, params: Value) {
        let r = conn
            .call(
                Request::call(Id::Num(0), "t.ok", params.clone()),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        assert_eq!(r.result, Some(params));
    }

    struct Echo;
    impl Dispatch for Echo {
        async fn dispatch(self: Arc<Self>, _conn: Arc<ConnCtx>, req: Request) -> Option<Response> {
            if req.method == "t.slow" {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            req.id.clone().map(|id| Response::ok(Some(id), req.params))
        }
    }

    fn pair(limits: Limits) -> Arc<RpcConn> {
        pair_reading(limits, 1 << 20)
    }

    /// An echo server with `limits` and a caller whose reader takes
    /// messages up to `caller_max` bytes.
    fn pair_reading(limits: Limits, caller_max: usize) -> Arc<RpcConn> {
        let (a, b) = tokio::io::duplex(1 << 16);
        let (br, bw) = tokio::io::split(b);
        tokio::spawn(serve(br, bw, "test".into(), limits, Arc::new(Echo)));
        let (ar, aw) = tokio::io::split(a);
        RpcConn::spawn(ar, aw, caller_max, None)
    }

    #[tokio::test]
    async fn refuses_bad_input_and_keeps_serving() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let (br, bw) = tokio::io::split(b);
        let limits = Limits {
            max_frame: 64,
            max_reply: 64,
            max_inflight: 4,
        };
        tokio::spawn(serve(br, bw, "test".into(), limits, Arc::new(Echo)));
        let (mut ar, mut aw) = tokio::io::split(a);
        let long = format!("{{\"x\":\"{}\"}}\n", "y".repeat(100));
        aw.write_all(b"{bad\n").await.unwrap();
        aw.write_all(long.as_bytes()).await.unwrap();
        aw.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":7}\n")
            .await
            .unwrap();
        aw.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":10,\"method\":\"t.ok\",\"params\":[1]}\n")
            .await
            .unwrap();
        let mut got = Vec::new();
        for m in read_messages(&mut ar, 4).await {
            let Message::Response(r) = m else { panic!() };
            got.push(r);
        }
        let kinds: Vec<Option<ErrorCode>> = got
            .iter()
            .map(|r| r.error.as_ref().and_then(RpcError::kind))
            .collect();
        assert_eq!(
            kinds,
            vec![
                Some(ErrorCode::ParseError),
                Some(ErrorCode::TooLarge),
                Some(ErrorCode::InvalidRequest),
                None
            ]
        );
        assert_eq!(got[2].id, Some(Id::Num(9)));
        assert_eq!(got[3].result, Some(json!([1])));
    }

    #[tokio::test]
    async fn inflight_limit_refuses_excess_with_unavailable() {
        let conn = pair(Limits {
            max_frame: 1 << 20,
            max_reply: 1 << 20,
            max_inflight: 2,
        });
        let t = Duration::from_secs(5);
        let handles: Vec<_> = (0..5)
            .map(|_| {
                let c = Arc::clone(&conn);
                tokio::spawn(async move {
                    c.call(Request::call(Id::Num(0), "t.slow", Value::Null), t)
                        .await
                })
            })
            .collect();
        let mut refused = 0;
        for h in handles {
            let r = h.await.unwrap().unwrap();
            if r.error.as_ref().and_then(RpcError::kind) == Some(ErrorCode::Unavailable) {
                refused += 1;
            }
        }
        assert_eq!(refused, 3);
        // After the slow ones finish the connection serves again.
        assert_echoes(&conn, json!({"a":1})).await;
    }

    #[tokio::test]
    async fn the_reply_queue_is_bounded_in_bytes() {
        let (q, mut rx) = OutQueue::new(1000);
        q.send(vec![b'a'; 400]).await.unwrap();
        q.send(vec![b'b'; 400]).await.unwrap();
        // A third 400-byte frame would pass 1000 bytes: it waits...
        let third = tokio::time::timeout(Duration::from_millis(100), q.send(vec![b'c'; 400]));
        assert!(third.await.is_err(), "the queue took more than its bytes");
        // ...until the writer takes one out; a frame larger than the whole
        // budget waits for all of it rather than forever.
        let (_, permit) = rx.recv().await.unwrap();
        drop(permit);
        q.send(vec![b'c'; 400]).await.unwrap();
        let big = {
            let q = q.clone();
            tokio::spawn(async move { q.send(vec![b'd'; 5000]).await })
        };
        for _ in 0..2 {
            let (_, permit) = rx.recv().await.unwrap();
            drop(permit);
        }
        big.await.unwrap().unwrap();
        // No writer: senders fail at once.
        drop(rx);
        assert_eq!(q.send(vec![1]).await, Err(QueueClosed));
    }

    #[tokio::test]
    async fn an_oversize_reply_becomes_too_large_with_its_id() {
        let conn = pair(Limits {
            max_frame: 1 << 16,
            max_reply: 100,
            max_inflight: 4,
        });
        let t = Duration::from_secs(5);
        let r = conn
            .call(
                Request::call(Id::Num(0), "t.ok", json!({"p": "x".repeat(200)})),
                t,
            )
            .await
            .unwrap();
        assert_eq!(r.error.and_then(|e| e.kind()), Some(ErrorCode::TooLarge));
        assert_echoes(&conn, json!({"p": 1})).await;
    }

    #[tokio::test]
    async fn a_caller_learns_of_an_oversize_reply_at_once() {
        // The answering side has a larger limit than the caller's reader.
        let limits = Limits {
            max_frame: 1 << 20,
            max_reply: 1 << 20,
            max_inflight: 4,
        };
        let conn = pair_reading(limits, 1000);
        let start = std::time::Instant::now();
        let r = conn
            .call(
                Request::call(Id::Num(0), "t.ok", json!({"p": "x".repeat(5000)})),
                Duration::from_secs(20),
            )
            .await
            .unwrap();
        assert_eq!(r.error.and_then(|e| e.kind()), Some(ErrorCode::TooLarge));
        assert!(start.elapsed() < Duration::from_secs(5));
    }
}
