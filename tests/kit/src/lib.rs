//! The test kit: runs the real Duplex binaries as processes in a temp
//! directory per controller, with logs in files. Used by `tests/integration`
//! and by config-keeper's tests.
//!
//! The binaries come from the workspace target directory; `test.sh` builds
//! them first (`cargo build --workspace --bins`). The kit never builds
//! anything itself: a missing binary is a clear panic.

#![allow(clippy::disallowed_methods)] // tests spawn the daemons under test directly
#![allow(clippy::unwrap_used)] // a test harness: a failed setup step should panic the test

pub mod golden;

use duplex_services::client::{Event, RouterClient, Subscription};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The element of the array `v[list]` whose `field` is `want` (a test's
/// lookup in a reply); panics naming what is missing.
pub fn find_in<'a>(v: &'a Value, list: &str, field: &str, want: &str) -> &'a Value {
    v[list]
        .as_array()
        .and_then(|a| a.iter().find(|x| x[field] == want))
        .unwrap_or_else(|| panic!("no {list}[] with {field} {want:?} in {v}"))
}

/// The directory holding the workspace's binaries (next to the test binary).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test> -> target/<profile>
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps")
        .to_path_buf()
}

/// The path of a workspace binary; panics with a hint if it was not built.
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --workspace --bins` first (test.sh does)",
        p.display()
    );
    p
}

/// A child process that is killed when dropped.
pub struct Proc {
    /// The label it was started with.
    pub name: String,
    /// The process.
    pub child: Child,
    /// Its log file (stdout and stderr).
    pub log: PathBuf,
}

impl Proc {
    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and reap (bounded).
    pub fn term(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("/bin/kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill9();
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Peer-link settings for a node.
#[derive(Clone)]
pub struct PeerOpts {
    /// The partner's controller id.
    pub partner: String,
    /// Where this node's router listens for the partner.
    pub listen: Vec<SocketAddr>,
    /// Where it dials the partner.
    pub addresses: Vec<SocketAddr>,
    /// The shared HMAC secret.
    pub secret: String,
}

impl PeerOpts {
    /// Settings for a node that listens on `listen` and dials `dial`, with
    /// a fixed test secret.
    pub fn new(partner: &str, listen: SocketAddr, dial: SocketAddr) -> PeerOpts {
        PeerOpts {
            partner: partner.into(),
            listen: vec![listen],
            addresses: vec![dial],
            secret: "0123456789abcdef0123456789abcdef".into(),
        }
    }
}

/// One simulated controller: a directory with its config, sockets and logs.
pub struct Node {
    /// The controller id.
    pub controller: String,
    /// Its directory: `duplex.toml`, `run/` (sockets), `state/`, logs.
    pub dir: tempfile::TempDir,
    /// The configuration file.
    pub config: PathBuf,
}

impl Node {
    /// A node with optional peer settings and extra `[router]` TOML lines.
    pub fn new(controller: &str, peer: Option<PeerOpts>, router_toml: &str) -> Node {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("run");
        let state = dir.path().join("state");
        std::fs::create_dir_all(&sock).unwrap();
        std::fs::create_dir_all(&state).unwrap();
        let mut toml = format!(
            "controller_id = \"{controller}\"\nsocket_dir = \"{}\"\nstate_dir = \"{}\"\n[router]\n{router_toml}\n",
            sock.display(),
            state.display()
        );
        if let Some(p) = peer {
            let list = |v: &[SocketAddr]| {
                v.iter()
                    .map(|a| format!("\"{a}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            toml.push_str(&format!(
                "[peer]\ncontroller_id = \"{}\"\nlisten = [{}]\naddresses = [{}]\nsecret = \"{}\"\n",
                p.partner,
                list(&p.listen),
                list(&p.addresses),
                p.secret
            ));
        }
        let config = dir.path().join("duplex.toml");
        std::fs::write(&config, toml).unwrap();
        Node {
            controller: controller.into(),
            dir,
            config,
        }
    }

    /// The state directory.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// The log written by the process started as `label`.
    pub fn log(&self, label: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{label}.log"))).unwrap_or_default()
    }

    /// The socket directory.
    pub fn socket_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    /// The router's socket.
    pub fn router_socket(&self) -> PathBuf {
        self.socket_dir().join("router.sock")
    }

    /// Starts `program` (logging to `<label>.log`, appended across restarts)
    /// without waiting for anything.
    pub fn spawn(&self, label: &str, program: PathBuf, args: &[&str]) -> Proc {
        self.spawn_env(label, program, args, &[])
    }

    /// Starts a workspace binary with extra environment variables (they may
    /// override `DUPLEX_LOG`), without waiting for anything.
    pub fn spawn_env(
        &self,
        label: &str,
        program: PathBuf,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Proc {
        let log = self.dir.path().join(format!("{label}.log"));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = Command::new(&program)
            .args(args)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("DUPLEX_CONFIG", &self.config)
            .env("DUPLEX_LOG", "debug")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()));
        Proc {
            name: label.into(),
            child,
            log,
        }
    }

    /// Starts `duplex-router` and waits until it answers.
    pub async fn start_router(&self) -> Proc {
        let p = self.spawn("router", bin("duplex-router"), &[]);
        self.wait_router().await;
        p
    }

    /// Waits (bounded) until the router answers `router.ping`.
    pub async fn wait_router(&self) {
        let c = self.client();
        wait_until(
            "router answers router.ping",
            Duration::from_secs(10),
            || {
                let c = c.clone();
                async move { c.call("router.ping", json!({})).await.is_ok() }
            },
        )
        .await;
    }

    /// Starts a real Duplex daemon binary registering as `service`.
    pub async fn start_daemon(&self, binary: &str, service: &str, args: &[&str]) -> Proc {
        let p = self.spawn(service, bin(binary), args);
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.service_state(service).await.as_deref() != Some("up") {
            // The daemon's own words explain a start that never registers.
            assert!(
                Instant::now() < deadline,
                "timed out waiting for service {service} up on {}; its log ends:\n{}",
                self.controller,
                tail(&self.log(service), 30)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        p
    }

    /// A router client with a short timeout.
    pub fn client(&self) -> RouterClient {
        RouterClient::with_timeout(self.router_socket(), Duration::from_secs(10))
    }

    /// The state (`up`/`down`) of `service` in `router.services`, if listed.
    pub async fn service_state(&self, service: &str) -> Option<String> {
        let v = self
            .client()
            .call("router.services", json!({}))
            .await
            .ok()?;
        v["services"]
            .as_array()?
            .iter()
            .find(|s| s["name"] == service)
            .and_then(|s| s["state"].as_str().map(str::to_string))
    }

    /// Waits (bounded) until `service` is in `state`.
    pub async fn wait_service_state(&self, service: &str, state: &str) {
        let what = format!("service {service} {state} on {}", self.controller);
        wait_until(&what, Duration::from_secs(15), || async {
            self.service_state(service).await.as_deref() == Some(state)
        })
        .await;
    }

    /// Runs `duplexctl` against this node and returns (status, stdout, stderr).
    pub fn duplexctl(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(bin("duplexctl"))
            .args(args)
            .env_clear()
            .env("DUPLEX_CONFIG", &self.config)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

/// Polls `f` until it returns true; panics naming `what` after `limit`.
pub async fn wait_until<F, Fut>(what: &str, limit: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if f().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A free TCP port on loopback.
pub fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// The error kind name of a failed call.
pub fn kind_of(v: &Value) -> Option<&str> {
    v["error"]["data"]["kind"].as_str()
}

/// The last `n` lines of `s` (a log, for a failure message).
pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The next event of `sub`, waiting at most 5 s; panics naming `what`.
pub async fn next_event(sub: &mut Subscription, what: &str) -> Event {
    match sub.next_timeout(Duration::from_secs(5)).await {
        Some(ev) => ev,
        None => panic!("no {what} within 5 s"),
    }
}
