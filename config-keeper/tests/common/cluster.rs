//! Two controllers on loopback: for each, a `duplex-router` process and a
//! `duplex-config-keeper` process in a temp directory, peered over TCP.
#![allow(clippy::disallowed_methods)] // tests spawn the daemons under test (and cargo) directly

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use duplex_services::{CallError, RouterClient};
use serde_json::{json, Value};

/// The workspace's target/<profile> directory (next to the test binary).
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_path_buf()
}

/// The router binary; built on demand, since `cargo test -p
/// duplex-config-keeper` builds only this package's binaries.
pub fn router_bin() -> PathBuf {
    let p = bin_dir().join("duplex-router");
    if !p.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "duplex-router", "--bin", "duplex-router"]);
        if bin_dir().file_name().and_then(|n| n.to_str()) == Some("release") {
            cmd.arg("--release");
        }
        let st = cmd.status().unwrap();
        assert!(st.success(), "building duplex-router failed");
    }
    p
}

/// The keeper binary of this package.
pub fn keeper_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_duplex-config-keeper"))
}

/// A free TCP port on loopback.
pub fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// One controller.
pub struct Node {
    pub id: String,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub router: Option<Child>,
    pub keeper: Option<Child>,
    pub log_level: &'static str,
    /// Extra arguments for the keeper.
    pub keeper_args: Vec<String>,
}

impl Node {
    fn new(id: &str, partner: &str, listen: SocketAddr, dial: SocketAddr) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        let state = dir.path().join("state");
        std::fs::create_dir_all(&run).unwrap();
        std::fs::create_dir_all(&state).unwrap();
        let toml = format!(
            "controller_id = \"{id}\"\nsocket_dir = \"{}\"\nstate_dir = \"{}\"\n[router]\ncall_timeout_ms = 3000\n\
             [peer]\ncontroller_id = \"{partner}\"\nlisten = [\"{listen}\"]\naddresses = [\"{dial}\"]\n\
             secret = \"0123456789abcdef0123456789abcdef\"\n",
            run.display(),
            state.display()
        );
        let config = dir.path().join("duplex.toml");
        std::fs::write(&config, toml).unwrap();
        Node {
            id: id.into(),
            dir,
            config,
            router: None,
            keeper: None,
            log_level: "info",
            keeper_args: Vec::new(),
        }
    }

    fn spawn(&self, label: &str, program: &Path, args: &[String]) -> Child {
        let log = self.dir.path().join(format!("{label}.log"));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        Command::new(program)
            .args(args)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("DUPLEX_CONFIG", &self.config)
            .env("DUPLEX_LOG", self.log_level)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap()
    }

    /// Database file of the keeper.
    pub fn db(&self) -> PathBuf {
        self.dir.path().join("state").join("config.db")
    }

    /// A client of this node's router.
    pub fn client(&self) -> RouterClient {
        RouterClient::with_timeout(
            self.dir.path().join("run").join("router.sock"),
            Duration::from_secs(10),
        )
    }

    /// Starts the router (no wait).
    pub fn start_router(&mut self) {
        let c = self.spawn("router", &router_bin(), &[]);
        self.router = Some(c);
    }

    /// Starts the keeper (no wait).
    pub fn start_keeper(&mut self) {
        let c = self.spawn("keeper", &keeper_bin(), &self.keeper_args);
        self.keeper = Some(c);
    }

    /// SIGKILL the router.
    pub fn kill_router(&mut self) {
        if let Some(mut c) = self.router.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGKILL the keeper.
    pub fn kill_keeper(&mut self) {
        if let Some(mut c) = self.keeper.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Calls `method` on this node's keeper.
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, CallError> {
        self.client().call(method, params).await
    }

    /// Waits until the keeper answers through the router.
    pub async fn wait_keeper(&self) {
        wait_until(
            &format!("keeper {} answers", self.id),
            Duration::from_secs(30),
            || async { self.call("config.status", json!({})).await.is_ok() },
        )
        .await;
    }

    /// The keeper's log.
    pub fn keeper_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("keeper.log")).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill_keeper();
        self.kill_router();
    }
}

/// Two peered controllers "a" and "b", everything started.
pub async fn pair() -> (Node, Node) {
    pair_with(&[]).await
}

/// Like [`pair`], with extra keeper arguments.
pub async fn pair_with(keeper_args: &[&str]) -> (Node, Node) {
    let (pa, pb) = (free_addr(), free_addr());
    let mut a = Node::new("a", "b", pa, pb);
    let mut b = Node::new("b", "a", pb, pa);
    for n in [&mut a, &mut b] {
        n.keeper_args = keeper_args.iter().map(|s| s.to_string()).collect();
    }
    for n in [&mut a, &mut b] {
        n.start_router();
    }
    for n in [&mut a, &mut b] {
        n.start_keeper();
    }
    a.wait_keeper().await;
    b.wait_keeper().await;
    (a, b)
}

/// Polls `f` until true; panics naming `what` after `limit`.
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

/// Waits until both keepers have merged each other's whole section and
/// report the same digest; returns it.
pub async fn converged(a: &Node, b: &Node, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let (sa, sb) = (
            a.call("config.status", json!({})).await,
            b.call("config.status", json!({})).await,
        );
        if let (Ok(sa), Ok(sb)) = (&sa, &sb) {
            if sa["section_version"] == sb["partner_applied"]
                && sb["section_version"] == sa["partner_applied"]
                && sa["digest"] == sb["digest"]
            {
                return sa["digest"].as_str().unwrap().to_string();
            }
        }
        if Instant::now() > deadline {
            panic!(
                "keepers did not converge:\nA {sa:?}\nB {sb:?}\n--- A log tail:\n{}\n--- B log tail:\n{}",
                tail(&a.keeper_log()),
                tail(&b.keeper_log())
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
