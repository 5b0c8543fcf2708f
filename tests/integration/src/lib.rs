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
