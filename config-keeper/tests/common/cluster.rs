//! Two controllers on loopback, on the test kit: for each, a `duplex-router`
//! process and a `duplex-config-keeper` process in a temp directory, peered
//! over TCP.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use duplex_services::{CallError, RouterClient};
use duplex_test_kit::{bin, free_addr, tail, Node, PeerOpts, Proc};
use serde_json::{json, Value};

pub use duplex_test_kit::wait_until;

/// One controller: its kit node and the two processes, when running.
pub struct Keeper {
    pub node: Node,
    pub router: Option<Proc>,
    pub keeper: Option<Proc>,
    /// Extra arguments for the keeper.
    pub keeper_args: Vec<String>,
}

impl Keeper {
    fn new(
        id: &str,
        partner: &str,
        listen: std::net::SocketAddr,
        dial: std::net::SocketAddr,
    ) -> Keeper {
        Keeper {
            node: Node::new(
                id,
                Some(PeerOpts::new(partner, listen, dial)),
                "call_timeout_ms = 3000",
            ),
            router: None,
            keeper: None,
            keeper_args: Vec::new(),
        }
    }

    /// Database file of the keeper.
    pub fn db(&self) -> PathBuf {
        self.node.state_dir().join("config.db")
    }

    /// A client of this node's router.
    pub fn client(&self) -> RouterClient {
        self.node.client()
    }

    /// Starts the router (no wait).
    pub fn start_router(&mut self) {
        self.router = Some(self.node.spawn_env(
            "router",
            bin("duplex-router"),
            &[],
            &[("DUPLEX_LOG", "info")],
        ));
    }

    /// Starts the keeper (no wait).
    pub fn start_keeper(&mut self) {
        let args: Vec<&str> = self.keeper_args.iter().map(String::as_str).collect();
        let keeper = PathBuf::from(env!("CARGO_BIN_EXE_duplex-config-keeper"));
        self.keeper = Some(
            self.node
                .spawn_env("keeper", keeper, &args, &[("DUPLEX_LOG", "info")]),
        );
    }

    /// SIGKILL the router.
    pub fn kill_router(&mut self) {
        self.router = None;
    }

    /// SIGKILL the keeper.
    pub fn kill_keeper(&mut self) {
        self.keeper = None;
    }

    /// Calls `method` on this node's keeper.
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, CallError> {
        self.client().call(method, params).await
    }

    /// Waits until the keeper answers through the router.
    pub async fn wait_keeper(&self) {
        wait_until(
            &format!("keeper {} answers", self.node.controller),
            Duration::from_secs(30),
            || async { self.call("config.status", json!({})).await.is_ok() },
        )
        .await;
    }

    /// The keeper's log.
    pub fn keeper_log(&self) -> String {
        self.node.log("keeper")
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        // The keeper first: it must not see its router go away and log noise.
        self.kill_keeper();
        self.kill_router();
    }
}

/// Two peered controllers "a" and "b", everything started.
pub async fn pair() -> (Keeper, Keeper) {
    pair_with(&[]).await
}

/// Like [`pair`], with extra keeper arguments.
pub async fn pair_with(keeper_args: &[&str]) -> (Keeper, Keeper) {
    let (pa, pb) = (free_addr(), free_addr());
    let mut a = Keeper::new("a", "b", pa, pb);
    let mut b = Keeper::new("b", "a", pb, pa);
    for n in [&mut a, &mut b] {
        n.keeper_args = keeper_args.iter().map(|s| s.to_string()).collect();
        n.start_router();
    }
    for n in [&mut a, &mut b] {
        n.start_keeper();
    }
    a.wait_keeper().await;
    b.wait_keeper().await;
    (a, b)
}

/// Waits until both keepers have merged each other's whole section and
/// report the same digest; returns it.
pub async fn converged(a: &Keeper, b: &Keeper, limit: Duration) -> String {
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
                tail(&a.keeper_log(), 30),
                tail(&b.keeper_log(), 30)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
