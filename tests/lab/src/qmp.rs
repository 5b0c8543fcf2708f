//! A minimal QMP client: the lab's "BMC" (power, reset, pause, links).

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Why a QMP exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    /// The monitor socket could not be reached.
    #[error("cannot connect to QMP socket {path}")]
    Connect {
        /// Socket path.
        path: String,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Socket I/O failed (including read timeouts).
    #[error("QMP I/O")]
    Io(#[from] std::io::Error),
    /// A line was not JSON.
    #[error("QMP sent invalid JSON")]
    Json(#[from] serde_json::Error),
    /// QEMU closed the connection.
    #[error("QMP connection closed")]
    Closed,
    /// QEMU answered with an error object.
    #[error("QMP command {command} failed: {desc}")]
    Command {
        /// The command that failed.
        command: String,
        /// QEMU's description.
        desc: String,
    },
}

/// An open, negotiated QMP session.
pub struct Qmp {
    stream: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Qmp {
    /// Connects, reads the greeting and leaves capabilities negotiation mode.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Self, QmpError> {
        let stream = UnixStream::connect(path).map_err(|source| QmpError::Connect {
            path: path.display().to_string(),
            source,
        })?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        let reader = BufReader::new(stream.try_clone()?);
        let mut q = Self { stream, reader };
        let _greeting = q.read_msg()?;
        q.execute("qmp_capabilities", None)?;
        Ok(q)
    }

    fn read_msg(&mut self) -> Result<Value, QmpError> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(QmpError::Closed);
        }
        Ok(serde_json::from_str(line.trim())?)
    }

    /// Waits for the next message (an event, on a session that sends no
    /// commands): `Ok(None)` when the read timeout passed first.
    pub fn next_message(&mut self) -> Result<Option<Value>, QmpError> {
        match self.read_msg() {
            Ok(v) => Ok(Some(v)),
            Err(QmpError::Io(e))
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Runs one command and returns its `return` value; events are skipped.
    pub fn execute(&mut self, command: &str, args: Option<Value>) -> Result<Value, QmpError> {
        let mut msg = json!({ "execute": command });
        if let Some(a) = args {
            msg["arguments"] = a;
        }
        let mut line = serde_json::to_vec(&msg)?;
        line.push(b'\n');
        self.stream.write_all(&line)?;
        loop {
            let v = self.read_msg()?;
            if let Some(r) = v.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = v.get("error") {
                return Err(QmpError::Command {
                    command: command.to_string(),
                    desc: e
                        .get("desc")
                        .and_then(Value::as_str)
                        .unwrap_or("unknown")
                        .to_string(),
                });
            }
            // Anything else is an asynchronous event: skip it.
        }
    }
}

/// Connects to `path` and runs a single command.
pub fn one(path: &Path, command: &str, args: Option<Value>) -> Result<Value, QmpError> {
    let mut q = Qmp::connect(path, Duration::from_secs(10))?;
    q.execute(command, args)
}
