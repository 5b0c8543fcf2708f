//! A multiplexed JSON-RPC connection (the calling side): many calls in
//! flight at once on one stream, matched to replies by id.
//!
//! Used by the router client, by the router to reach services, and by the
//! peer link. Requests and notifications that arrive from the other side are
//! handed to an optional channel (events, for subscribers).

use crate::frame::{Frame, Framer};
use crate::rpc::{
    head_id, parse_message, to_frame, ErrorCode, Id, Message, Request, Response, RpcError,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::{mpsc, oneshot, watch};

/// Why a call on a connection failed before a reply arrived.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// The connection closed (or was never usable).
    #[error("connection closed")]
    Closed,
    /// No reply within the timeout.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
}

/// Queue depth of outgoing frames per connection; a full queue makes
/// senders wait, which is the back-pressure towards a slow peer.
const OUT_QUEUE: usize = 1024;

/// The calling side of a connection.
pub struct RpcConn {
    out: mpsc::Sender<Vec<u8>>,
    pending: Mutex<HashMap<i64, oneshot::Sender<Response>>>,
    next_id: AtomicI64,
    closed_tx: watch::Sender<bool>,
}

impl RpcConn {
    /// Starts reader and writer tasks on a stream. `incoming` receives
    /// requests and notifications sent by the other side; without it they are
    /// dropped.
    pub fn spawn<R, W>(
        reader: R,
        writer: W,
        max_frame: usize,
        incoming: Option<mpsc::Sender<Request>>,
    ) -> Arc<RpcConn>
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (out, out_rx) = mpsc::channel(OUT_QUEUE);
        let (closed_tx, _) = watch::channel(false);
        let conn = Arc::new(RpcConn {
            out,
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicI64::new(1),
            closed_tx,
        });
        tokio::spawn(write_loop(writer, out_rx, Arc::downgrade(&conn)));
        tokio::spawn(read_loop(reader, max_frame, incoming, Arc::clone(&conn)));
        conn
    }

    /// Sends `req` as a call (its id is replaced) and waits for the reply.
    pub async fn call(&self, mut req: Request, timeout: Duration) -> Result<Response, ConnError> {
        if self.is_closed() {
            return Err(ConnError::Closed);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        req.id = Some(Id::Num(id));
        let (tx, rx) = oneshot::channel();
        self.lock_pending().insert(id, tx);
        if self.out.send(to_frame(&req)).await.is_err() {
            self.lock_pending().remove(&id);
            return Err(ConnError::Closed);
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(_)) => Err(ConnError::Closed),
            Err(_) => {
                self.lock_pending().remove(&id);
                Err(ConnError::Timeout(timeout))
            }
        }
    }

    /// Sends a frame that expects no reply (a notification).
    pub async fn send(&self, frame: Vec<u8>) -> Result<(), ConnError> {
        self.out.send(frame).await.map_err(|_| ConnError::Closed)
    }

    /// True once the stream has ended.
    pub fn is_closed(&self) -> bool {
        *self.closed_tx.borrow()
    }

    /// Waits until the stream ends.
    pub async fn closed(&self) {
        let mut rx = self.closed_tx.subscribe();
        // An error means the sender is gone, which only happens with the
        // connection itself: closed either way.
        let _ = rx.wait_for(|c| *c).await;
    }

    /// Closes the connection: pending calls fail with `Closed`.
    pub fn close(&self) {
        self.closed_tx.send_replace(true);
        self.lock_pending().clear();
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, HashMap<i64, oneshot::Sender<Response>>> {
        // A panic while holding this lock cannot leave the map inconsistent
        // (single insert/remove), so a poisoned lock is still usable.
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    writer: W,
    mut rx: mpsc::Receiver<Vec<u8>>,
    conn: std::sync::Weak<RpcConn>,
) {
    let mut w = BufWriter::with_capacity(64 * 1024, writer);
    let mut closed = match conn.upgrade() {
        Some(c) => c.closed_tx.subscribe(),
        None => return,
    };
    loop {
        let frame = tokio::select! {
            f = rx.recv() => f,
            _ = closed.wait_for(|c| *c) => None,
        };
        let Some(frame) = frame else { break };
        if write_frame(&mut w, &frame).await.is_err() {
            break;
        }
        // Batch whatever is already queued into one flush.
        let mut failed = false;
        while let Ok(f) = rx.try_recv() {
            if write_frame(&mut w, &f).await.is_err() {
                failed = true;
                break;
            }
        }
        if failed || w.flush().await.is_err() {
            break;
        }
    }
    let _ = w.shutdown().await;
    if let Some(c) = conn.upgrade() {
        c.close();
    }
}

/// Writes one frame and its newline.
pub(crate) async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    frame: &[u8],
) -> std::io::Result<()> {
    w.write_all(frame).await?;
    w.write_all(b"\n").await
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut reader: R,
    max_frame: usize,
    incoming: Option<mpsc::Sender<Request>>,
    conn: Arc<RpcConn>,
) {
    let mut framer = Framer::new(max_frame);
    let mut buf = vec![0u8; 64 * 1024];
    let mut frames = Vec::new();
    let mut closed = conn.closed_tx.subscribe();
    'outer: loop {
        let n = tokio::select! {
            r = reader.read(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
            _ = closed.wait_for(|c| *c) => break,
        };
        framer.push(&buf[..n], &mut frames);
        for frame in frames.drain(..) {
            let line = match frame {
                Frame::Line(line) => line,
                Frame::Oversize { seen, head } => {
                    tracing::warn!(
                        seen,
                        limit = max_frame,
                        "dropped an oversize message from the other side"
                    );
                    // A reply to one of our calls: fail that call now with
                    // the reason, rather than let it wait out its timeout.
                    if let Some(Id::Num(id)) = head_id(&head) {
                        if let Some(w) = conn.lock_pending().remove(&id) {
                            let _ = w.send(Response::err(
                                Some(Id::Num(id)),
                                RpcError::new(
                                    ErrorCode::TooLarge,
                                    format!(
                                        "the reply exceeds the message limit of {max_frame} bytes"
                                    ),
                                )
                                .with_data("limit", max_frame.into()),
                            ));
                        }
                    }
                    continue;
                }
            };
            match parse_message(&line) {
                Ok(Message::Response(resp)) => {
                    let waiter = match &resp.id {
                        Some(Id::Num(id)) => conn.lock_pending().remove(id),
                        _ => None,
                    };
                    if let Some(w) = waiter {
                        let _ = w.send(resp);
                    }
                }
                Ok(Message::Request(req)) => {
                    if let Some(tx) = &incoming {
                        if tx.send(req).await.is_err() {
                            break 'outer;
                        }
                    }
                }
                Err(bad) => {
                    tracing::warn!(error = %bad.error, "unreadable message from the other side");
                }
            }
        }
    }
    conn.close();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::read_messages;
    use serde_json::json;

    #[tokio::test]
    async fn calls_are_matched_by_id_out_of_order() {
        let (a, b) = tokio::io::duplex(4096);
        let (ar, aw) = tokio::io::split(a);
        let conn = RpcConn::spawn(ar, aw, 1 << 20, None);
        // A fake server that answers the second request first.
        let server = tokio::spawn(async move {
            let (mut br, mut bw) = tokio::io::split(b);
            let mut reqs: Vec<Request> = read_messages(&mut br, 2)
                .await
                .into_iter()
                .map(|m| match m {
                    Message::Request(r) => r,
                    Message::Response(_) => panic!(),
                })
                .collect();
            reqs.reverse();
            for r in reqs {
                let resp = Response::ok(r.id.clone(), json!(r.method));
                write_frame(&mut bw, &to_frame(&resp)).await.unwrap();
            }
            bw.flush().await.unwrap();
            bw
        });
        let t = Duration::from_secs(5);
        let c1 = conn.call(Request::call(Id::Num(0), "x.one", json!({})), t);
        let c2 = conn.call(Request::call(Id::Num(0), "x.two", json!({})), t);
        let (r1, r2) = tokio::join!(c1, c2);
        assert_eq!(r1.unwrap().result, Some(json!("x.one")));
        assert_eq!(r2.unwrap().result, Some(json!("x.two")));
        drop(server.await.unwrap());
        conn.closed().await;
        assert!(matches!(
            conn.call(Request::call(Id::Num(0), "x.three", json!({})), t)
                .await,
            Err(ConnError::Closed)
        ));
    }
}
