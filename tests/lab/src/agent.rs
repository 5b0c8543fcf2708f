//! The guest agent's wire protocol (one JSON object per line over a
//! virtio-serial port) and the host-side client.

use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Name of the virtio-serial port the agent listens on.
pub const PORT_NAME: &str = "org.duplex.agent";

/// A command for the agent to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    /// Correlates the response; responses with another id are stale.
    pub id: u64,
    /// Program and arguments (no shell).
    pub argv: Vec<String>,
    /// The agent kills the command after this long.
    pub timeout_ms: u64,
}

/// What the agent reports for a finished command.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Response {
    /// The request's id.
    pub id: u64,
    /// Exit code; `None` when killed by a signal or not started.
    pub code: Option<i32>,
    /// Captured standard output.
    pub stdout: String,
    /// Captured standard error.
    pub stderr: String,
    /// True when the agent killed the command at its timeout.
    pub timed_out: bool,
    /// Set when the command could not be started.
    pub error: Option<String>,
}

/// Why talking to a guest agent failed.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The agent socket could not be reached.
    #[error("cannot connect to agent socket {path}")]
    Connect {
        /// Socket path.
        path: String,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Reading or writing the socket failed.
    #[error("agent I/O")]
    Io(#[from] std::io::Error),
    /// No matching response arrived in time.
    #[error("agent did not answer within {0:?}")]
    Timeout(Duration),
    /// The request could not be encoded.
    #[error("agent protocol")]
    Json(#[from] serde_json::Error),
}

static COUNTER: AtomicU64 = AtomicU64::new(1);

/// A request id unlikely to collide with a stale one from another process.
fn new_id() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let low = u64::try_from(nanos & u128::from(u64::MAX)).unwrap_or(0);
    low ^ (u64::from(std::process::id()) << 40) ^ COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// Runs `argv` in the guest behind `socket`; `timeout` bounds the command,
/// the client waits a little longer for the answer.
pub fn exec(socket: &Path, argv: &[String], timeout: Duration) -> Result<Response, AgentError> {
    let mut stream = UnixStream::connect(socket).map_err(|source| AgentError::Connect {
        path: socket.display().to_string(),
        source,
    })?;
    let req = Request {
        id: new_id(),
        argv: argv.to_vec(),
        timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
    };
    let mut line = serde_json::to_vec(&req)?;
    line.push(b'\n');
    stream.write_all(&line)?;
    let wait = timeout + Duration::from_secs(5);
    let deadline = Instant::now() + wait;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut buf = String::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(AgentError::Timeout(wait));
        }
        stream.set_read_timeout(Some(left.min(Duration::from_secs(1))))?;
        buf.clear();
        match reader.read_line(&mut buf) {
            Ok(0) => return Err(AgentError::Timeout(wait)),
            Ok(_) => {
                // Stale answers (from an earlier client) and line noise are skipped.
                if let Ok(resp) = serde_json::from_str::<Response>(buf.trim()) {
                    if resp.id == req.id {
                        return Ok(resp);
                    }
                }
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => return Err(AgentError::Io(e)),
        }
    }
}

/// Waits until the agent answers a trivial command, or `within` passes.
pub fn wait_ready(socket: &Path, within: Duration) -> Result<(), AgentError> {
    let deadline = Instant::now() + within;
    loop {
        let r = exec(socket, &["true".to_string()], Duration::from_secs(2));
        match r {
            Ok(resp) if resp.code == Some(0) => return Ok(()),
            _ if Instant::now() >= deadline => return Err(AgentError::Timeout(within)),
            _ => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}
