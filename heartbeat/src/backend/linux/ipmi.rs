//! Power fencing through the partner's BMC with the stock `ipmitool -I
//! lanplus`.
//!
//! A fence is **confirmed** only when a `chassis power status` run after
//! the `power off` says the chassis is off: the BMC accepting the command
//! proves nothing, reading the state back does. The status is polled a
//! bounded number of times, then the fence fails (and the caller tries the
//! next agent; it never imports on a failed fence).
//!
//! The password reaches ipmitool only through its environment
//! (`IPMI_PASSWORD` with `-E`), never its argument vector, which any local
//! user can read in `/proc`. It is never logged and `Debug` hides it.
//!
//! Credentials live in a TOML file, by default [`CREDENTIALS_PATH`],
//! refused unless only its owner can read it:
//!
//! ```toml
//! address = "10.53.0.12"   # the partner's BMC
//! user = "fence"
//! password = "..."
//! cipher_suite = 17        # default; 3 for BMCs without SHA-256 (ipmi_sim)
//! port = 623               # default
//! ```

use crate::backend::{BoxFuture, FenceAgent, FenceOutcome};
use duplex_services::exec::{Cmd, ExecError};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the partner's BMC credentials are read from by default.
pub const CREDENTIALS_PATH: &str = "/etc/duplex/partner-bmc.toml";
/// The stock ipmitool.
pub const IPMITOOL: &str = "/usr/bin/ipmitool";

/// Why the credentials file was refused. Never carries the file's text: a
/// TOML error quotes the offending value, which may be the password.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The file could not be opened or read.
    #[error("cannot read the BMC credentials {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Group or others may read or write it.
    #[error(
        "{path} has mode {mode:o}; the BMC credentials must be readable by their owner only (0600)"
    )]
    Mode {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Not TOML of the expected keys.
    #[error("{path}: not valid BMC credentials (line {line})")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line of the error, 0 when unknown.
        line: usize,
    },
    /// A value that ipmitool would misread or that disables authentication.
    #[error("{path}: {key} is not acceptable: {why}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The key.
        key: &'static str,
        /// Why.
        why: &'static str,
    },
}

fn default_cipher_suite() -> u8 {
    17
}

fn default_port() -> u16 {
    623
}

/// The partner BMC's address and login. `Debug` never shows the password.
#[derive(Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BmcCredentials {
    /// BMC host name or address.
    pub address: String,
    /// IPMI user.
    pub user: String,
    password: String,
    /// RMCP+ cipher suite (17: HMAC-SHA256 and AES; 3: HMAC-SHA1 and AES).
    #[serde(default = "default_cipher_suite")]
    pub cipher_suite: u8,
    /// RMCP port.
    #[serde(default = "default_port")]
    pub port: u16,
}

impl std::fmt::Debug for BmcCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BmcCredentials")
            .field("address", &self.address)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("cipher_suite", &self.cipher_suite)
            .field("port", &self.port)
            .finish()
    }
}

impl BmcCredentials {
    /// Builds credentials in code (tests, other configuration sources).
    pub fn new(address: &str, user: &str, password: &str, cipher_suite: u8) -> Self {
        BmcCredentials {
            address: address.to_string(),
            user: user.to_string(),
            password: password.to_string(),
            cipher_suite,
            port: default_port(),
        }
    }

    /// Reads the credentials file; refused if group or others have any
    /// access to it. The mode is checked on the opened file, so the file
    /// read is the file checked.
    pub fn load(path: &Path) -> Result<Self, CredentialsError> {
        let read_err = |source| CredentialsError::Read {
            path: path.to_path_buf(),
            source,
        };
        let mut file = std::fs::File::open(path).map_err(read_err)?;
        let mode = file.metadata().map_err(read_err)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(CredentialsError::Mode {
                path: path.to_path_buf(),
                mode,
            });
        }
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(read_err)?;
        Self::parse(path, &text)
    }

    /// Parses and checks the file's text (`path` only names it in errors).
    pub fn parse(path: &Path, text: &str) -> Result<Self, CredentialsError> {
        let creds: BmcCredentials = toml::from_str(text).map_err(|e| CredentialsError::Parse {
            path: path.to_path_buf(),
            line: e
                .span()
                .map(|s| {
                    text.get(..s.start)
                        .map_or(0, |t| t.matches('\n').count() + 1)
                })
                .unwrap_or(0),
        })?;
        let invalid = |key, why| CredentialsError::Invalid {
            path: path.to_path_buf(),
            key,
            why,
        };
        // A value starting with '-' would be read by ipmitool as an option.
        for (key, v) in [("address", &creds.address), ("user", &creds.user)] {
            if v.is_empty() || v.starts_with('-') || v.chars().any(char::is_whitespace) {
                return Err(invalid(key, "empty, or starts with '-', or has spaces"));
            }
        }
        if creds.password.is_empty() {
            return Err(invalid("password", "empty"));
        }
        // Suite 0 is "no authentication": anyone could fence, or fake "off".
        if creds.cipher_suite == 0 || creds.cipher_suite > 17 {
            return Err(invalid("cipher_suite", "must be 1 to 17"));
        }
        Ok(creds)
    }
}

/// The chassis power state the BMC reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerState {
    /// Powered on.
    On,
    /// Powered off.
    Off,
}

impl std::fmt::Display for PowerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PowerState::On => "on",
            PowerState::Off => "off",
        })
    }
}

/// What ipmitool printed on success, typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// `chassis power status`: "Chassis Power is on|off".
    PowerIs(PowerState),
    /// `chassis power on|off`: "Chassis Power Control: Up/On|Down/Off" (the
    /// BMC accepted the request; the state is not yet proven).
    ControlAccepted(PowerState),
}

/// Parses ipmitool's standard output for the `chassis power` commands.
pub fn parse_reply(stdout: &str) -> Option<Reply> {
    match stdout.trim() {
        "Chassis Power is on" => Some(Reply::PowerIs(PowerState::On)),
        "Chassis Power is off" => Some(Reply::PowerIs(PowerState::Off)),
        "Chassis Power Control: Up/On" => Some(Reply::ControlAccepted(PowerState::On)),
        "Chassis Power Control: Down/Off" => Some(Reply::ControlAccepted(PowerState::Off)),
        _ => None,
    }
}

/// Why ipmitool failed, from its standard error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The BMC refused the cipher suite ("invalid authentication
    /// algorithm"): set `cipher_suite` to one it supports.
    CipherSuite,
    /// No RMCP+ session: BMC unreachable, or wrong user or password
    /// (ipmitool does not tell them apart).
    NoSession,
    /// Anything else.
    Other,
}

/// Classifies ipmitool's standard error.
pub fn classify_failure(stderr: &str) -> Failure {
    if stderr.contains("invalid authentication algorithm") {
        Failure::CipherSuite
    } else if stderr.contains("Unable to establish IPMI v2 / RMCP+ session") {
        Failure::NoSession
    } else {
        Failure::Other
    }
}

/// Errors of one ipmitool run.
#[derive(Debug, thiserror::Error)]
pub enum IpmiError {
    /// ipmitool ran and failed.
    #[error("BMC {bmc}: ipmitool failed ({kind:?}): {stderr}")]
    Failed {
        /// The BMC address.
        bmc: String,
        /// The classified cause.
        kind: Failure,
        /// ipmitool's standard error.
        stderr: String,
    },
    /// ipmitool could not be run or timed out.
    #[error("BMC {bmc}: ipmitool did not complete")]
    Exec {
        /// The BMC address.
        bmc: String,
        /// The executor's error (command line only: no password on it).
        #[source]
        source: ExecError,
    },
    /// ipmitool succeeded but printed something unexpected.
    #[error("BMC {bmc}: unexpected ipmitool output {stdout:?}")]
    Unexpected {
        /// The BMC address.
        bmc: String,
        /// What it printed.
        stdout: String,
    },
}

/// [`FenceAgent`] that powers the partner off through its BMC.
#[derive(Debug, Clone)]
pub struct IpmiAgent {
    partner: String,
    creds: BmcCredentials,
    ipmitool: PathBuf,
    timeout: Duration,
    polls: u32,
    poll_interval: Duration,
    attempt_limit: Duration,
}

impl IpmiAgent {
    /// An agent for controller `partner` with its BMC's credentials; by
    /// default each ipmitool run is bounded to 10 s and the power state is
    /// polled up to 5 times, 1 s apart, after a `power off`; one fence
    /// attempt as a whole gives up after 15 s.
    pub fn new(partner: &str, creds: BmcCredentials) -> Self {
        IpmiAgent {
            partner: partner.to_string(),
            creds,
            ipmitool: PathBuf::from(IPMITOOL),
            timeout: Duration::from_secs(10),
            polls: 5,
            poll_interval: Duration::from_secs(1),
            attempt_limit: Duration::from_secs(15),
        }
    }

    /// Bounds one fence attempt as a whole. An unreachable BMC makes every
    /// ipmitool run wait out its retries; without this bound the status,
    /// the power off and every poll would each wait, and the next agent,
    /// the alert and the retry would come a minute late.
    pub fn with_attempt_limit(mut self, limit: Duration) -> Self {
        self.attempt_limit = limit;
        self
    }

    /// Uses another ipmitool binary (an absolute path).
    pub fn with_ipmitool(mut self, path: &Path) -> Self {
        self.ipmitool = path.to_path_buf();
        self
    }

    /// Sets the per-run timeout and the status polling after a power change.
    pub fn with_timing(mut self, timeout: Duration, polls: u32, poll_interval: Duration) -> Self {
        self.timeout = timeout;
        self.polls = polls.max(1);
        self.poll_interval = poll_interval;
        self
    }

    async fn run(&self, action: &str) -> Result<Reply, IpmiError> {
        let bmc = self.creds.address.clone();
        // -N/-R bound ipmitool's own retries so our timeout is the real one.
        let cmd = Cmd::new(&self.ipmitool)
            .args(["-I", "lanplus", "-H", &self.creds.address])
            .args(["-p".to_string(), self.creds.port.to_string()])
            .args(["-U", &self.creds.user, "-E"])
            .args(["-C".to_string(), self.creds.cipher_suite.to_string()])
            .args(["-N", "1", "-R", "2", "chassis", "power", action])
            .env("IPMI_PASSWORD", &self.creds.password)
            .timeout(self.timeout);
        let out = match cmd.run().await {
            Ok(out) => out,
            Err(ExecError::Failed { stderr, .. }) => {
                return Err(IpmiError::Failed {
                    bmc,
                    kind: classify_failure(&stderr),
                    stderr,
                })
            }
            Err(source) => return Err(IpmiError::Exec { bmc, source }),
        };
        parse_reply(&out.stdout).ok_or(IpmiError::Unexpected {
            bmc,
            stdout: out.stdout,
        })
    }

    /// Reads the chassis power state.
    pub async fn power_status(&self) -> Result<PowerState, IpmiError> {
        match self.run("status").await? {
            Reply::PowerIs(s) => Ok(s),
            Reply::ControlAccepted(_) => Err(IpmiError::Unexpected {
                bmc: self.creds.address.clone(),
                stdout: "a power control reply to a status request".to_string(),
            }),
        }
    }

    /// Asks the BMC to power the chassis on or off (not proof it happened).
    pub async fn power(&self, to: PowerState) -> Result<(), IpmiError> {
        let action = match to {
            PowerState::On => "on",
            PowerState::Off => "off",
        };
        match self.run(action).await? {
            Reply::ControlAccepted(s) if s == to => Ok(()),
            other => Err(IpmiError::Unexpected {
                bmc: self.creds.address.clone(),
                stdout: format!("{other:?}"),
            }),
        }
    }

    /// Polls the power state until it is `want`, a bounded number of times;
    /// the error says what was last seen.
    async fn wait_for(&self, want: PowerState) -> Result<u32, String> {
        let mut last = String::new();
        for poll in 1..=self.polls {
            match self.power_status().await {
                Ok(s) if s == want => return Ok(poll),
                Ok(s) => last = format!("chassis power still {s}"),
                Err(e) => last = e.to_string(),
            }
            if poll < self.polls {
                tokio::time::sleep(self.poll_interval).await;
            }
        }
        Err(format!("after {} status polls: {last}", self.polls))
    }

    /// Powers the partner off and confirms it by reading the state back.
    async fn power_off(&self, target: &str) -> FenceOutcome {
        let bmc = &self.creds.address;
        if let Ok(PowerState::Off) = self.power_status().await {
            return FenceOutcome::Confirmed {
                detail: format!("BMC {bmc}: chassis power is already off"),
            };
        }
        // Even if the request errs, the chassis may have gone off (a
        // lost reply): the status poll decides.
        let request = self.power(PowerState::Off).await;
        match self.wait_for(PowerState::Off).await {
            Ok(polls) => FenceOutcome::Confirmed {
                detail: format!("BMC {bmc}: chassis power is off (status poll {polls})"),
            },
            Err(status) => {
                let reason = match request {
                    Ok(()) => format!("power off accepted but not confirmed: {status}"),
                    Err(e) => format!("power off failed: {e}; {status}"),
                };
                tracing::warn!(agent = "ipmi", target, %reason, "fence not confirmed");
                FenceOutcome::Failed { reason }
            }
        }
    }

    fn wrong_target(&self, target: &str) -> Option<String> {
        (target != self.partner).then(|| {
            format!(
                "this IPMI agent fences {}'s BMC, not {target}",
                self.partner
            )
        })
    }
}

impl FenceAgent for IpmiAgent {
    fn name(&self) -> &str {
        "ipmi"
    }

    fn fence<'a>(&'a self, target: &'a str) -> BoxFuture<'a, FenceOutcome> {
        Box::pin(async move {
            if let Some(reason) = self.wrong_target(target) {
                return FenceOutcome::Failed { reason };
            }
            let bmc = &self.creds.address;
            tracing::info!(agent = "ipmi", target, %bmc, "powering the partner off");
            match tokio::time::timeout(self.attempt_limit, self.power_off(target)).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    let reason = format!(
                        "BMC {bmc} did not confirm power off within {} ms",
                        self.attempt_limit.as_millis()
                    );
                    tracing::warn!(agent = "ipmi", target, %reason, "fence not confirmed");
                    FenceOutcome::Failed { reason }
                }
            }
        })
    }

    fn test<'a>(&'a self, target: &'a str) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            if let Some(reason) = self.wrong_target(target) {
                return Err(reason);
            }
            let s = self.power_status().await.map_err(|e| e.to_string())?;
            Ok(format!(
                "BMC {} answers; chassis power is {s}",
                self.creds.address
            ))
        })
    }

    fn unfence<'a>(&'a self, target: &'a str) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            if let Some(reason) = self.wrong_target(target) {
                return Err(reason);
            }
            tracing::info!(agent = "ipmi", target, bmc = %self.creds.address, "powering the partner on");
            let request = self.power(PowerState::On).await;
            match (self.wait_for(PowerState::On).await, request) {
                (Ok(_), _) => Ok(format!("BMC {}: chassis power is on", self.creds.address)),
                (Err(status), Ok(())) => Err(format!("power on accepted: {status}")),
                (Err(status), Err(e)) => Err(format!("power on failed: {e}; {status}")),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::OpenOptionsExt;

    const STATUS_ON: &str = include_str!("../../../fixtures/ipmitool/status-on.stdout");
    const STATUS_OFF: &str = include_str!("../../../fixtures/ipmitool/status-off.stdout");
    const POWER_ON: &str = include_str!("../../../fixtures/ipmitool/power-on.stdout");
    const POWER_OFF: &str = include_str!("../../../fixtures/ipmitool/power-off.stdout");
    const NO_SESSION: &str = include_str!("../../../fixtures/ipmitool/unreachable.stderr");
    const WRONG_PASSWORD: &str = include_str!("../../../fixtures/ipmitool/wrong-password.stderr");
    const STATUS_FAILED: &str = include_str!("../../../fixtures/ipmitool/status-failed.stderr");
    const CIPHER_17: &str = include_str!("../../../fixtures/ipmitool/cipher-17-unsupported.stderr");

    #[test]
    fn parses_captured_ipmitool_output() {
        use PowerState::*;
        assert_eq!(parse_reply(STATUS_ON), Some(Reply::PowerIs(On)));
        assert_eq!(parse_reply(STATUS_OFF), Some(Reply::PowerIs(Off)));
        assert_eq!(parse_reply(POWER_ON), Some(Reply::ControlAccepted(On)));
        assert_eq!(parse_reply(POWER_OFF), Some(Reply::ControlAccepted(Off)));
        assert_eq!(parse_reply("Chassis Power is unknown\n"), None);
        assert_eq!(parse_reply(""), None);
        assert_eq!(classify_failure(NO_SESSION), Failure::NoSession);
        assert_eq!(classify_failure(WRONG_PASSWORD), Failure::NoSession);
        assert_eq!(classify_failure(CIPHER_17), Failure::CipherSuite);
        assert_eq!(classify_failure(STATUS_FAILED), Failure::Other);
    }

    /// A committed stand-in under `fixtures/ipmitool`.
    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/ipmitool")
            .join(name)
    }

    fn write_file(path: &Path, text: &str, mode: u32) {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)
            .unwrap();
        std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
    }

    #[test]
    fn credentials_need_mode_0600_and_never_show_the_password() {
        let dir = tempfile::tempdir().unwrap();
        let text = "address = \"10.53.0.12\"\nuser = \"fence\"\npassword = \"hunter2\"\n";
        let good = dir.path().join("good.toml");
        write_file(&good, text, 0o600);
        let c = BmcCredentials::load(&good).unwrap();
        assert_eq!((c.cipher_suite, c.port), (17, 623));
        assert_eq!(c.address, "10.53.0.12");
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(format!("{c:?}").contains("<redacted>"));

        let open = dir.path().join("open.toml");
        write_file(&open, text, 0o644);
        let e = BmcCredentials::load(&open).unwrap_err();
        assert!(
            matches!(e, CredentialsError::Mode { mode: 0o644, .. }),
            "{e}"
        );
        let e = BmcCredentials::load(&dir.path().join("absent.toml")).unwrap_err();
        assert!(matches!(e, CredentialsError::Read { .. }));
    }

    #[test]
    fn credential_errors_do_not_quote_the_file() {
        let p = Path::new("/etc/duplex/partner-bmc.toml");
        let e = BmcCredentials::parse(p, "address = \"b\"\nuser = \"u\"\npassword = 31337\n")
            .unwrap_err();
        assert!(matches!(e, CredentialsError::Parse { line: 3, .. }), "{e}");
        assert!(!format!("{e} {e:?}").contains("31337"));
        let e = BmcCredentials::parse(p, "address = \"-H\"\nuser = \"u\"\npassword = \"p\"\n")
            .unwrap_err();
        assert!(matches!(
            e,
            CredentialsError::Invalid { key: "address", .. }
        ));
        let e = BmcCredentials::parse(
            p,
            "address = \"b\"\nuser = \"u\"\npassword = \"p\"\ncipher_suite = 0\n",
        )
        .unwrap_err();
        assert!(matches!(
            e,
            CredentialsError::Invalid {
                key: "cipher_suite",
                ..
            }
        ));
        let e = BmcCredentials::parse(
            p,
            "address = \"b\"\nuser = \"u\"\npassword = \"p\"\nx = 1\n",
        )
        .unwrap_err();
        assert!(matches!(e, CredentialsError::Parse { line: 4, .. }), "{e}");
        let c = BmcCredentials::parse(
            p,
            "address = \"b\"\nuser = \"u\"\npassword = \"p\"\ncipher_suite = 3\nport = 9623\n",
        )
        .unwrap();
        assert_eq!((c.cipher_suite, c.port), (3, 9623));
    }

    /// A stand-in ipmitool: checks the password arrives by environment,
    /// prints the captured fixtures, keeps the power state in a file, and
    /// can lag (report "on" for a few polls after a power off).
    struct FakeBmc {
        dir: tempfile::TempDir,
    }

    impl FakeBmc {
        fn new(power: &str, lag: u32) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let d = dir.path();
            for (name, text) in [
                ("status-on", STATUS_ON),
                ("status-off", STATUS_OFF),
                ("power-on", POWER_ON),
                ("power-off", POWER_OFF),
                ("no-session", NO_SESSION),
            ] {
                std::fs::write(d.join(name), text).unwrap();
            }
            std::fs::write(d.join("power"), power).unwrap();
            std::fs::write(d.join("lag"), lag.to_string()).unwrap();
            std::os::unix::fs::symlink(fixture("fake-ipmitool"), d.join("ipmitool")).unwrap();
            FakeBmc { dir }
        }

        fn agent(&self, password: &str) -> IpmiAgent {
            let creds = BmcCredentials::new("10.53.0.12", "fence", password, 17);
            IpmiAgent::new("B", creds)
                .with_ipmitool(&self.dir.path().join("ipmitool"))
                .with_timing(Duration::from_secs(10), 3, Duration::from_millis(10))
        }

        fn read(&self, name: &str) -> String {
            std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
        }
    }

    #[tokio::test]
    async fn fence_is_confirmed_only_by_a_status_that_says_off() {
        // The first status (before the power off) and the first poll
        // after it still read "on".
        let bmc = FakeBmc::new("on", 2);
        let agent = bmc.agent("s3cret");
        let out = agent.fence("B").await;
        assert!(
            matches!(&out, FenceOutcome::Confirmed { detail } if detail.contains("status poll 2")),
            "{out:?}"
        );
        assert_eq!(bmc.read("power"), "off\n");
        let calls = bmc.read("calls");
        assert!(calls.contains("-I lanplus -H 10.53.0.12 -p 623 -U fence -E -C 17"));
        assert!(calls.contains("chassis power off"));
        // The password went by environment only.
        assert!(!calls.contains("s3cret"), "{calls}");
        assert!(bmc.read("env").contains("IPMI_PASSWORD=s3cret"));
        // Fencing again confirms at once, without another power off.
        let out = agent.fence("B").await;
        assert!(matches!(out, FenceOutcome::Confirmed { .. }), "{out:?}");
        assert_eq!(bmc.read("calls").matches("power off").count(), 1);
    }

    #[tokio::test]
    async fn fence_fails_when_the_state_never_reads_off() {
        // Accepts the power off but keeps saying "on" for longer than we poll.
        let bmc = FakeBmc::new("on", 10);
        let out = bmc.agent("s3cret").fence("B").await;
        let FenceOutcome::Failed { reason } = out else {
            panic!("{out:?}")
        };
        assert!(reason.contains("accepted but not confirmed"), "{reason}");
        assert!(reason.contains("still on"), "{reason}");
    }

    #[tokio::test]
    async fn unreachable_or_refused_bmc_fails_the_fence() {
        let bmc = FakeBmc::new("on", 0);
        let out = bmc.agent("wrong").fence("B").await;
        let FenceOutcome::Failed { reason } = out else {
            panic!("{out:?}")
        };
        assert!(reason.contains("NoSession"), "{reason}");
        assert!(!reason.contains("wrong"), "{reason}");
        let e = bmc.agent("wrong").test("B").await.unwrap_err();
        assert!(e.contains("RMCP+ session"), "{e}");
        // Another controller is not this agent's to fence.
        let out = bmc.agent("s3cret").fence("A").await;
        assert!(matches!(out, FenceOutcome::Failed { .. }));
        assert_eq!(bmc.read("power"), "on");
        // A missing ipmitool is a failure too, never a panic.
        let agent = bmc
            .agent("s3cret")
            .with_ipmitool(Path::new("/nonexistent/ipmitool"));
        assert!(matches!(
            agent.fence("B").await,
            FenceOutcome::Failed { .. }
        ));
    }

    #[tokio::test]
    async fn a_bmc_that_never_answers_fails_within_the_attempt_limit() {
        // Every ipmitool run hangs (a BMC behind a dead link): each is cut
        // at its 10 s timeout, the attempt as a whole at 300 ms.
        let bmc = FakeBmc::new("on", 0);
        let hang = fixture("hang");
        let agent = bmc
            .agent("s3cret")
            .with_ipmitool(&hang)
            .with_attempt_limit(Duration::from_millis(300));
        let t = std::time::Instant::now();
        let out = agent.fence("B").await;
        let FenceOutcome::Failed { reason } = out else {
            panic!("{out:?}")
        };
        assert!(
            reason.contains("did not confirm power off within 300 ms"),
            "{reason}"
        );
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    }

    #[tokio::test]
    async fn test_reads_the_state_and_unfence_powers_on() {
        let bmc = FakeBmc::new("off", 0);
        let agent = bmc.agent("s3cret");
        assert_eq!(
            agent.test("B").await.unwrap(),
            "BMC 10.53.0.12 answers; chassis power is off"
        );
        assert!(!bmc.read("calls").contains("power off"));
        let ok = agent.unfence("B").await.unwrap();
        assert!(ok.contains("is on"), "{ok}");
        assert_eq!(bmc.read("power"), "on\n");
    }

    /// Against a real BMC (the lab's ipmi_sim): set
    /// DUPLEX_TEST_BMC_CREDENTIALS to a 0600 credentials file. It powers
    /// that BMC's chassis off and on again.
    #[tokio::test]
    #[ignore = "needs a BMC: DUPLEX_TEST_BMC_CREDENTIALS"]
    async fn real_bmc_fence_and_unfence() {
        let path = std::env::var("DUPLEX_TEST_BMC_CREDENTIALS").unwrap();
        let creds = BmcCredentials::load(Path::new(&path)).unwrap();
        let agent = IpmiAgent::new("B", creds);
        println!("{}", agent.test("B").await.unwrap());
        let out = agent.fence("B").await;
        assert!(matches!(out, FenceOutcome::Confirmed { .. }), "{out:?}");
        println!("{out:?}");
        println!("{}", agent.unfence("B").await.unwrap());
    }
}
