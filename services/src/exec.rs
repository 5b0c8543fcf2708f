//! The one place that runs external tools: absolute paths only, a cleared
//! environment with `LC_ALL=C`, an argument vector (never a shell), a
//! timeout, and errors that carry the command, status and output.

use serde::de::DeserializeOwned;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// A command to run.
#[derive(Debug, Clone)]
pub struct Cmd {
    program: PathBuf,
    args: Vec<OsString>,
    timeout: Duration,
    env: Vec<(OsString, OsString)>,
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The program path is not absolute (a `PATH` lookup could run anything).
    #[error("{program}: not an absolute path")]
    NotAbsolute {
        /// The program as given.
        program: PathBuf,
    },
    /// The program could not be started.
    #[error("cannot start {command}")]
    Spawn {
        /// The command line, for the log.
        command: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The program ran past its timeout and was killed.
    #[error("{command} did not finish within {after:?}")]
    Timeout {
        /// The command line.
        command: String,
        /// The timeout.
        after: Duration,
    },
    /// The program exited unsuccessfully.
    #[error("{command} failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// The exit status.
        status: String,
        /// Its standard output.
        stdout: String,
        /// Its standard error (trimmed).
        stderr: String,
    },
    /// The output was not the expected JSON.
    #[error("{command}: unexpected output")]
    Parse {
        /// The command line.
        command: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
}

/// What a successful command printed.
#[derive(Debug, Clone)]
pub struct Output {
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Cmd {
    /// A command for `program` (an absolute path) with a 60 s timeout.
    pub fn new(program: impl AsRef<Path>) -> Self {
        Cmd {
            program: program.as_ref().to_path_buf(),
            args: Vec::new(),
            timeout: Duration::from_secs(60),
            env: Vec::new(),
        }
    }

    /// Appends one argument.
    pub fn arg(mut self, a: impl Into<OsString>) -> Self {
        self.args.push(a.into());
        self
    }

    /// Appends arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets the timeout.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// Adds an environment variable (the rest of the environment is cleared).
    pub fn env(mut self, k: impl Into<OsString>, v: impl Into<OsString>) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    /// The command line, for logs and errors.
    pub fn display(&self) -> String {
        let mut s = self.program.display().to_string();
        for a in &self.args {
            s.push(' ');
            s.push_str(&a.to_string_lossy());
        }
        s
    }

    /// Runs the command; succeeds only on exit status 0.
    pub async fn run(&self) -> Result<Output, ExecError> {
        if !self.program.is_absolute() {
            return Err(ExecError::NotAbsolute {
                program: self.program.clone(),
            });
        }
        let command = self.display();
        #[allow(clippy::disallowed_methods)] // this is the one executor
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args(&self.args)
            .env_clear()
            .env("LC_ALL", "C")
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = cmd.spawn().map_err(|source| ExecError::Spawn {
            command: command.clone(),
            source,
        })?;
        tracing::debug!(%command, "running");
        let out = match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
            Ok(r) => r.map_err(|source| ExecError::Spawn {
                command: command.clone(),
                source,
            })?,
            Err(_) => {
                return Err(ExecError::Timeout {
                    command,
                    after: self.timeout,
                })
            }
        };
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if !out.status.success() {
            return Err(ExecError::Failed {
                command,
                status: out.status.to_string(),
                stdout,
                stderr: stderr.trim().to_string(),
            });
        }
        Ok(Output { stdout, stderr })
    }

    /// Runs the command and parses its standard output as JSON into `T`.
    pub async fn run_json<T: DeserializeOwned>(&self) -> Result<T, ExecError> {
        let out = self.run().await?;
        serde_json::from_str(&out.stdout).map_err(|source| ExecError::Parse {
            command: self.display(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_with_a_clean_environment() {
        std::env::set_var("DUPLEX_EXEC_TEST_LEAK", "1");
        let out = Cmd::new("/usr/bin/env").run().await.unwrap();
        assert!(out.stdout.contains("LC_ALL=C"));
        assert!(!out.stdout.contains("DUPLEX_EXEC_TEST_LEAK"));
    }

    #[tokio::test]
    async fn refuses_relative_paths_and_reports_failures() {
        assert!(matches!(
            Cmd::new("env").run().await,
            Err(ExecError::NotAbsolute { .. })
        ));
        let e = Cmd::new("/bin/ls")
            .arg("/nonexistent-duplex")
            .run()
            .await
            .unwrap_err();
        let ExecError::Failed {
            command, stderr, ..
        } = e
        else {
            panic!("{e}")
        };
        assert!(command.ends_with("/nonexistent-duplex"));
        assert!(!stderr.is_empty());
    }

    #[tokio::test]
    async fn times_out() {
        let e = Cmd::new("/bin/sleep")
            .arg("5")
            .timeout(Duration::from_millis(100))
            .run()
            .await
            .unwrap_err();
        assert!(matches!(e, ExecError::Timeout { .. }));
    }

    #[tokio::test]
    async fn parses_json_output() {
        #[derive(serde::Deserialize)]
        struct V {
            a: u32,
        }
        let v: V = Cmd::new("/bin/echo")
            .arg("{\"a\": 3}")
            .run_json()
            .await
            .unwrap();
        assert_eq!(v.a, 3);
    }
}
