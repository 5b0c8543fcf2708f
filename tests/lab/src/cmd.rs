//! The one place the lab runs programs: argument vector, bounded wait,
//! captured output. Never a shell.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Why running a program failed.
#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    /// The program could not be started.
    #[error("cannot start {program}")]
    Spawn {
        /// Program name.
        program: String,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Waiting for the program failed.
    #[error("waiting for {program}")]
    Wait {
        /// Program name.
        program: String,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The program ran past its deadline and was killed.
    #[error("{program} timed out after {timeout:?}")]
    Timeout {
        /// Program name.
        program: String,
        /// The deadline it missed.
        timeout: Duration,
    },
    /// The program exited unsuccessfully.
    #[error("{argv:?} exited with {status}: {stderr}")]
    Failed {
        /// Full argument vector.
        argv: Vec<String>,
        /// Exit status.
        status: String,
        /// Its standard error (trimmed).
        stderr: String,
    },
    /// An empty argument vector was given.
    #[error("empty command")]
    Empty,
}

/// What a finished program produced.
#[derive(Debug, Clone)]
pub struct Output {
    /// Exit code; `None` when killed by a signal.
    pub code: Option<i32>,
    /// Standard output, lossily decoded.
    pub stdout: String,
    /// Standard error, lossily decoded.
    pub stderr: String,
}

impl Output {
    /// True when the program exited with status 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Builds a `Command` from an argument vector. The one allowed constructor:
/// the workspace steers spawning to a single executor, and this crate is a
/// test driver that cannot use the daemons' async executor in guests.
#[allow(clippy::disallowed_methods)]
pub fn command(argv: &[String]) -> Result<Command, CmdError> {
    let (program, args) = argv.split_first().ok_or(CmdError::Empty)?;
    let mut c = Command::new(program);
    c.args(args);
    Ok(c)
}

/// Spawns a reader thread for a pipe, so a chatty child never blocks on a
/// full pipe while we wait for it.
fn reader<R: Read + Send + 'static>(pipe: Option<R>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            // A read error just ends the capture; the exit status tells the story.
            let _ = p.read_to_end(&mut buf);
        }
        buf
    })
}

/// Waits for `child` until `deadline`, killing it when the deadline passes.
/// Returns `None` on timeout.
pub fn wait_bounded(
    child: &mut Child,
    program: &str,
    timeout: Duration,
) -> Result<Option<ExitStatus>, CmdError> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return Ok(Some(st)),
            Ok(None) => {}
            Err(source) => {
                return Err(CmdError::Wait {
                    program: program.to_string(),
                    source,
                })
            }
        }
        if Instant::now() >= deadline {
            // Best effort: it may have exited between the checks.
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Joins a reader thread, giving up after `grace` (a grandchild may still
/// hold the pipe open; its output is then lost rather than hanging us).
fn join_reader(h: thread::JoinHandle<Vec<u8>>, grace: Duration) -> Vec<u8> {
    let deadline = Instant::now() + grace;
    while !h.is_finished() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    if h.is_finished() {
        h.join().unwrap_or_default()
    } else {
        Vec::new()
    }
}

/// Runs `argv` with a timeout and returns its output whatever the exit code.
pub fn run_any(argv: &[String], timeout: Duration) -> Result<Output, CmdError> {
    let program = argv.first().cloned().unwrap_or_default();
    let mut c = command(argv)?;
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().map_err(|source| CmdError::Spawn {
        program: program.clone(),
        source,
    })?;
    let out = reader(child.stdout.take());
    let err = reader(child.stderr.take());
    let status = wait_bounded(&mut child, &program, timeout)?;
    let grace = Duration::from_secs(1);
    let stdout = String::from_utf8_lossy(&join_reader(out, grace)).into_owned();
    let stderr = String::from_utf8_lossy(&join_reader(err, grace)).into_owned();
    match status {
        None => Err(CmdError::Timeout { program, timeout }),
        Some(st) => Ok(Output {
            code: st.code(),
            stdout,
            stderr,
        }),
    }
}

/// Runs `argv` with a timeout and requires exit status 0.
pub fn run(argv: &[String], timeout: Duration) -> Result<Output, CmdError> {
    let o = run_any(argv, timeout)?;
    if o.success() {
        Ok(o)
    } else {
        Err(CmdError::Failed {
            argv: argv.to_vec(),
            status: o
                .code
                .map_or_else(|| "a signal".to_string(), |c| c.to_string()),
            stderr: o.stderr.trim().to_string(),
        })
    }
}

/// Turns a list of string slices into an owned argument vector.
pub fn argv(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| (*s).to_string()).collect()
}
