//! What the integration tests add to the test kit (`duplex-test-kit`): the
//! test service and the router settings it needs.

#![allow(clippy::unwrap_used)] // a test harness: a failed setup step should panic the test

pub use duplex_test_kit::*;

/// The test service's namespaces, allowed outside the method catalogue.
const TEST_NAMESPACES: &str = "test_namespaces = [\"alpha\", \"beta\", \"gamma\"]";

/// A node whose router also accepts the test service's namespaces, with
/// optional peer settings and extra `[router]` TOML lines.
pub fn node(controller: &str, peer: Option<PeerOpts>, router_toml: &str) -> Node {
    Node::new(
        controller,
        peer,
        &format!("{TEST_NAMESPACES}\n{router_toml}"),
    )
}

/// Controller "A" with its router and the test services `alpha` and
/// `beta` (each owning its namespace), all up: (node, router, alpha, beta).
pub async fn alpha_beta() -> (Node, Proc, Proc, Proc) {
    let (node, router, alpha) = with_alpha("").await;
    let beta = node.start_test_service("beta", "beta").await;
    (node, router, alpha, beta)
}

/// Controller "A" (extra `[router]` lines `router_toml`) with its router
/// and the test service `alpha`, up: (node, router, alpha).
pub async fn with_alpha(router_toml: &str) -> (Node, Proc, Proc) {
    let node = node("A", None, router_toml);
    let router = node.start_router().await;
    let alpha = node.start_test_service("alpha", "alpha").await;
    (node, router, alpha)
}

/// Starting the test service on a [`Node`].
#[allow(async_fn_in_trait)] // used only by this workspace's tests
pub trait TestService {
    /// Starts the test service `name` owning `namespace` and waits for it to register.
    async fn start_test_service(&self, name: &str, namespace: &str) -> Proc;
}

impl TestService for Node {
    async fn start_test_service(&self, name: &str, namespace: &str) -> Proc {
        let p = self.spawn(
            name,
            bin("duplex-test-service"),
            &["--name", name, "--namespace", namespace],
        );
        self.wait_service_state(name, "up").await;
        p
    }
}
pub mod large;
