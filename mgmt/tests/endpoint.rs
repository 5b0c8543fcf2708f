//! The management endpoint against the real router and config-keeper on
//! loopback: login, sessions, roles, Origin, back-off, and that only
//! `external` methods are reachable.
//!
//! Needs the router and config-keeper binaries (`cargo build --workspace
//! --bins`, as test.sh does); duplex-mgmt itself comes from Cargo.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use duplex_test_kit::{free_addr, tail, wait_until, Node, Proc};
use serde_json::{json, Value};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::TlsConnector;
use tokio_util::compat::TokioAsyncReadCompatExt;

const ADMIN_PW: &str = "admin password 1";
const RO_PW: &str = "viewer password 1";
const UI_PAGE: &str = "<!doctype html><title>duplex test page</title>";

struct Lab {
    node: Node,
    _router: Proc,
    _keeper: Proc,
    mgmt: Proc,
    addr: SocketAddr,
    tls: TlsConnector,
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn kind(v: &Value) -> Option<&str> {
    v["error"]["data"]["kind"].as_str()
}

async fn start(ttl_s: u64) -> Lab {
    start_with(ttl_s, "").await
}

/// [`start`] with extra `[mgmt]` lines.
async fn start_with(ttl_s: u64, mgmt_toml: &str) -> Lab {
    let node = Node::new("A", None, "");
    let addr = free_addr();
    let mut toml = std::fs::read_to_string(&node.config).unwrap();
    let ui = node.dir.path().join("ui");
    std::fs::create_dir_all(&ui).unwrap();
    std::fs::write(ui.join("index.html"), UI_PAGE).unwrap();
    toml.push_str(&format!(
        "[mgmt]\nlisten = [\"127.0.0.1\"]\nport = {}\nsession_ttl_s = {ttl_s}\nui_dir = \"{}\"\n{mgmt_toml}",
        addr.port(),
        ui.display()
    ));
    std::fs::write(&node.config, toml).unwrap();
    let router = node.start_router().await;
    let keeper = node
        .start_daemon("duplex-config-keeper", "config-keeper", &[])
        .await;
    let r = node
        .client()
        .call(
            "config.apply",
            json!({"changes": [
                {"op": "upsert", "kind": "user", "object": {"name": "admin", "password": ADMIN_PW, "role": "admin"}},
                {"op": "upsert", "kind": "user", "object": {"name": "viewer", "password": RO_PW, "role": "read_only"}},
            ]}),
        )
        .await;
    assert!(r.is_ok(), "users: {r:?}");
    let mgmt = node.spawn(
        "mgmt",
        PathBuf::from(env!("CARGO_BIN_EXE_duplex-mgmt")),
        &[],
    );
    let cert = node.state_dir().join("mgmt").join("cert.pem");
    wait_until("duplex-mgmt listens", Duration::from_secs(15), || async {
        cert.exists() && tokio::net::TcpStream::connect(addr).await.is_ok()
    })
    .await;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&cert).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Lab {
        node,
        _router: router,
        _keeper: keeper,
        mgmt,
        addr,
        tls: TlsConnector::from(Arc::new(cfg)),
    }
}

impl Lab {
    async fn connect(
        &self,
        from: Option<IpAddr>,
    ) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        if let Some(ip) = from {
            sock.bind(SocketAddr::new(ip, 0)).unwrap();
        }
        let tcp = sock.connect(self.addr).await.unwrap();
        // The certificate made at first start names localhost: checked,
        // not skipped.
        self.tls
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap()
    }

    /// One raw HTTP/1.1 request; returns status, headers and body.
    async fn http(&self, from: Option<IpAddr>, head: &str, body: &str) -> Reply {
        let mut s = self.connect(from).await;
        let req = format!(
            "{head}\r\nHost: localhost:{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr.port(),
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut raw)).await;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        let chunked = headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
        let body = if chunked {
            dechunk(rest)
        } else {
            rest.to_string()
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    /// A JSON-RPC call over HTTPS with extra header lines.
    async fn call_from(
        &self,
        from: Option<IpAddr>,
        headers: &str,
        method: &str,
        params: Value,
    ) -> Reply {
        let body =
            json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
        let head = format!("POST / HTTP/1.1\r\nContent-Type: application/json{headers}");
        self.http(from, &head, &body).await
    }

    async fn call(&self, token: Option<&str>, method: &str, params: Value) -> Value {
        let h = token.map_or(String::new(), |t| format!("\r\nAuthorization: Bearer {t}"));
        let r = self.call_from(None, &h, method, params).await;
        assert_eq!(r.status, 200, "{method}: {}", r.body);
        r.json()
    }

    async fn login(&self, user: &str, pw: &str) -> String {
        let v = self
            .call(None, "auth.login", json!({"user": user, "password": pw}))
            .await;
        v["result"]["token"]
            .as_str()
            .unwrap_or_else(|| panic!("login {user}: {v}\n{}", tail(&self.mgmt.log_text(), 30)))
            .to_string()
    }

    /// The admin's login over plain HTTP with `headers` added, as sent.
    async fn admin_login_with(&self, headers: &str) -> Reply {
        let creds = json!({"user": "admin", "password": ADMIN_PW});
        self.call_from(None, headers, "auth.login", creds).await
    }

    /// Sets a `read_only` user's password through `config.apply` as the
    /// admin session `admin` (a change, so config.changed follows).
    async fn upsert_viewer(&self, admin: &str, name: &str, password: &str) {
        let v = self
            .call(
                Some(admin),
                "config.apply",
                json!({"changes": [{"op": "upsert", "kind": "user",
                    "object": {"name": name, "password": password, "role": "read_only"}}]}),
            )
            .await;
        assert_eq!(v["result"]["changed"], true, "{v}");
    }
}

fn dechunk(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

#[tokio::test]
async fn sessions_roles_and_reachability() {
    let lab = start(3600).await;

    // Unauthenticated: only auth.login answers.
    for m in ["router.ping", "config.get", "rpc.discover", "auth.logout"] {
        let v = lab.call(None, m, json!({})).await;
        assert_eq!(kind(&v), Some("unauthorized"), "{m}: {v}");
    }
    let v = lab
        .call(Some("not-a-token"), "router.ping", json!({}))
        .await;
    assert_eq!(kind(&v), Some("unauthorized"), "{v}");
    // A wrong password and an unknown user get the same answer (which
    // one it was is never said).
    for (user, password) in [("admin", "wrong"), ("nobody", "x")] {
        let v = lab
            .call(
                None,
                "auth.login",
                json!({"user": user, "password": password}),
            )
            .await;
        assert_eq!(kind(&v), Some("unauthorized"), "{user}: {v}");
        assert_eq!(
            v["error"]["message"], "wrong user name or password",
            "{user}: {v}"
        );
    }

    // Browsers: the login sets an HttpOnly, SameSite=Strict, Secure cookie
    // that authenticates later calls.
    let r = lab.admin_login_with("").await;
    let cookie = r.header("set-cookie").expect("set-cookie").to_string();
    for attr in ["HttpOnly", "SameSite=Strict", "Secure", "duplex_session="] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    let pair = cookie.split(';').next().unwrap();
    let r = lab
        .call_from(
            None,
            &format!("\r\nCookie: {pair}"),
            "router.ping",
            json!({}),
        )
        .await;
    assert_eq!(r.json()["result"]["controller"], "A", "{}", r.body);

    let admin = lab.login("admin", ADMIN_PW).await;
    // Through the real router to config-keeper; hashes never leave.
    let v = lab
        .call(Some(&admin), "config.get", json!({"kind": "user"}))
        .await;
    assert_eq!(
        v["result"]["config"]["user"][0]["password_hash"], "(redacted)",
        "{v}"
    );
    assert!(!v.to_string().contains("argon2"), "{v}");

    // internal and peer methods do not exist here, even for the admin.
    for m in [
        "config.record_event",
        "config.repl_push",
        "pool.takeover",
        "router.register",
        "event.publish",
    ] {
        let v = lab.call(Some(&admin), m, json!({})).await;
        assert_eq!(v["error"]["code"], -32601, "{m}: {v}");
    }

    // read_only reads but never changes anything.
    let ro = lab.login("viewer", RO_PW).await;
    let v = lab.call(Some(&ro), "config.status", json!({})).await;
    assert!(v["result"]["version"].is_u64(), "{v}");
    let before = v["result"]["version"].clone();
    for (m, p) in [
        ("config.lock", json!({"reason": "mine"})),
        (
            "config.apply",
            json!({"changes": [{"op": "delete", "kind": "user", "name": "admin"}]}),
        ),
        ("cluster.failover", json!({})),
    ] {
        let v = lab.call(Some(&ro), m, p).await;
        assert_eq!(kind(&v), Some("unauthorized"), "{m}: {v}");
        assert_eq!(v["error"]["data"]["reason"], "role", "{m}: {v}");
    }
    let v = lab.call(Some(&admin), "config.status", json!({})).await;
    assert_eq!(v["result"]["version"], before, "nothing changed");
    assert_eq!(v["result"]["locked"], false);
    // The admin may.
    let v = lab
        .call(Some(&admin), "config.lock", json!({"reason": "test"}))
        .await;
    assert_eq!(v["result"]["locked"], true, "{v}");

    // The OpenRPC document, for any logged-in user.
    let v = lab.call(Some(&ro), "rpc.discover", json!({})).await;
    assert_eq!(v["result"], duplex_mgmt::core::openrpc::document());

    let v = lab
        .call(Some(&admin), "config.unlock", json!({"reason": "test"}))
        .await;
    assert_eq!(v["result"]["locked"], false, "{v}");

    // A new password for the user ends its open sessions (config.changed).
    let ro2 = lab.login("viewer", RO_PW).await;
    lab.upsert_viewer(&admin, "viewer", "another password")
        .await;
    wait_until(
        "the changed user's session ends",
        Duration::from_secs(10),
        || async {
            kind(&lab.call(Some(&ro2), "config.status", json!({})).await) == Some("unauthorized")
        },
    )
    .await;
    let v = lab.call(Some(&admin), "config.status", json!({})).await;
    assert!(v["result"].is_object(), "other users keep theirs: {v}");

    // Logout ends the session at once.
    let ro = lab.login("viewer", "another password").await;
    let v = lab.call(Some(&ro), "auth.logout", json!({})).await;
    assert_eq!(v["result"]["logged_out"], true, "{v}");
    let v = lab.call(Some(&ro), "config.status", json!({})).await;
    assert_eq!(kind(&v), Some("unauthorized"), "{v}");
    drop(lab.node);
}

#[tokio::test]
async fn sessions_expire() {
    let lab = start(2).await;
    let t = lab.login("admin", ADMIN_PW).await;
    let v = lab.call(Some(&t), "router.ping", json!({})).await;
    assert_eq!(v["result"]["pong"], true, "{v}");
    tokio::time::sleep(Duration::from_millis(2300)).await;
    let v = lab.call(Some(&t), "router.ping", json!({})).await;
    assert_eq!(kind(&v), Some("unauthorized"), "{v}");
    assert_eq!(v["error"]["data"]["reason"], "session", "{v}");
}

#[tokio::test]
async fn backoff_slows_one_address_but_not_the_admin_elsewhere() {
    let lab = start(3600).await;
    let attacker: IpAddr = "127.0.0.1".parse().unwrap();
    let admin_ip: IpAddr = "127.0.0.2".parse().unwrap();
    let guess = json!({"user": "admin", "password": "guess"});
    for _ in 0..3 {
        let v = lab
            .call_from(Some(attacker), "", "auth.login", guess.clone())
            .await
            .json();
        assert_eq!(v["error"]["data"]["reason"], "credentials", "{v}");
    }
    // Now even the right password waits, from that address.
    let right = json!({"user": "admin", "password": ADMIN_PW});
    let v = lab
        .call_from(Some(attacker), "", "auth.login", right.clone())
        .await
        .json();
    assert_eq!(v["error"]["data"]["reason"], "backoff", "{v}");
    assert!(
        v["error"]["data"]["retry_after_ms"].as_u64().unwrap() > 0,
        "{v}"
    );
    // The admin at another address is not locked out.
    let v = lab
        .call_from(Some(admin_ip), "", "auth.login", right.clone())
        .await
        .json();
    assert!(v["result"]["token"].is_string(), "{v}");
    // And the wait ends.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let v = lab
        .call_from(Some(attacker), "", "auth.login", right)
        .await
        .json();
    assert!(v["result"]["token"].is_string(), "{v}");
}

async fn ws_handshake(
    lab: &Lab,
    headers: &[soketto::handshake::client::Header<'_>],
) -> Result<
    (
        soketto::Sender<
            tokio_util::compat::Compat<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
        >,
        soketto::Receiver<
            tokio_util::compat::Compat<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
        >,
    ),
    u16,
> {
    let s = lab.connect(None).await.compat();
    let host = format!("localhost:{}", lab.addr.port());
    let mut c = soketto::handshake::Client::new(s, &host, "/");
    c.set_headers(headers);
    match c.handshake().await.unwrap() {
        soketto::handshake::ServerResponse::Accepted { .. } => Ok(c.into_builder().finish()),
        soketto::handshake::ServerResponse::Rejected { status_code } => Err(status_code),
        soketto::handshake::ServerResponse::Redirect { status_code, .. } => Err(status_code),
    }
}

async fn ws_call<T>(
    tx: &mut soketto::Sender<T>,
    rx: &mut soketto::Receiver<T>,
    method: &str,
    params: Value,
) -> Value
where
    T: futures_util::AsyncRead + futures_util::AsyncWrite + Unpin,
{
    let req = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
    tx.send_text(req).await.unwrap();
    tx.flush().await.unwrap();
    let mut data = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), rx.receive_data(&mut data))
        .await
        .unwrap()
        .unwrap();
    serde_json::from_slice(&data).unwrap()
}

#[tokio::test]
async fn websocket_checks_origin_and_every_call() {
    use soketto::handshake::client::Header;
    let lab = start(3600).await;
    let own = format!("https://localhost:{}", lab.addr.port());

    // Cross-origin upgrades are refused before any call.
    let evil = [Header {
        name: "Origin",
        value: b"https://evil.example",
    }];
    assert_eq!(ws_handshake(&lab, &evil).await.err(), Some(403));

    // Same origin, not logged in: the socket opens but calls are refused;
    // auth.login on it authenticates the rest of the connection.
    let same = [Header {
        name: "Origin",
        value: own.as_bytes(),
    }];
    let (mut tx, mut rx) = ws_handshake(&lab, &same).await.unwrap();
    let v = ws_call(&mut tx, &mut rx, "router.ping", json!({})).await;
    assert_eq!(kind(&v), Some("unauthorized"), "{v}");
    let v = ws_call(
        &mut tx,
        &mut rx,
        "auth.login",
        json!({"user": "viewer", "password": RO_PW}),
    )
    .await;
    assert!(v["result"]["token"].is_string(), "{v}");
    let v = ws_call(&mut tx, &mut rx, "router.ping", json!({})).await;
    assert_eq!(v["result"]["pong"], true, "{v}");
    let v = ws_call(&mut tx, &mut rx, "config.lock", json!({"reason": "x"})).await;
    assert_eq!(v["error"]["data"]["reason"], "role", "{v}");

    // Events: a subscription on the WebSocket gets the router's events.
    let v = ws_call(
        &mut tx,
        &mut rx,
        "event.subscribe",
        json!({"topics": ["config.*"]}),
    )
    .await;
    assert!(!v["result"].is_null(), "a subscription id: {v}");
    let admin = lab.login("admin", ADMIN_PW).await;
    lab.upsert_viewer(&admin, "extra", "extra password").await;
    let mut data = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), rx.receive_data(&mut data))
        .await
        .expect("an event within 10 s")
        .unwrap();
    let ev: Value = serde_json::from_slice(&data).unwrap();
    assert_eq!(ev["method"], "event.notify", "{ev}");
    assert_eq!(ev["params"]["result"]["topic"], "config.changed", "{ev}");
    // Not over plain HTTP, and not without a session.
    let v = lab
        .call(Some(&admin), "event.subscribe", json!({"topics": ["*"]}))
        .await;
    assert!(v["error"].is_object(), "{v}");
    let (mut tx2, mut rx2) = ws_handshake(&lab, &same).await.unwrap();
    let v = ws_call(
        &mut tx2,
        &mut rx2,
        "event.subscribe",
        json!({"topics": ["*"]}),
    )
    .await;
    assert_eq!(kind(&v), Some("unauthorized"), "{v}");

    // A token presented at the upgrade; logging it out elsewhere stops the
    // open socket at its next call.
    let t = lab.login("admin", ADMIN_PW).await;
    let auth = format!("Bearer {t}");
    let hdrs = [Header {
        name: "Authorization",
        value: auth.as_bytes(),
    }];
    let (mut tx, mut rx) = ws_handshake(&lab, &hdrs).await.unwrap();
    let v = ws_call(&mut tx, &mut rx, "config.status", json!({})).await;
    assert!(v["result"]["version"].is_u64(), "{v}");
    let v = lab.call(Some(&t), "auth.logout", json!({})).await;
    assert_eq!(v["result"]["logged_out"], true);
    let v = ws_call(&mut tx, &mut rx, "config.status", json!({})).await;
    assert_eq!(kind(&v), Some("unauthorized"), "{v}");

    // Cross-origin plain HTTP is refused too.
    let r = lab
        .admin_login_with("\r\nOrigin: https://evil.example")
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
}

/// `/metrics` wants the scrape token made at first start, and nothing else
/// opens it; a session token does not.
#[tokio::test]
async fn metrics_need_their_token_and_show_the_routers_calls() {
    let lab = start(600).await;
    let token_file = lab.node.state_dir().join("mgmt").join("metrics.token");
    let token = std::fs::read_to_string(&token_file).unwrap();
    let token = token.trim();
    let r = lab.http(None, "GET /metrics HTTP/1.1", "").await;
    assert_eq!(r.status, 401, "{}", r.body);
    let session = lab.login("admin", ADMIN_PW).await;
    let h = format!("GET /metrics HTTP/1.1\r\nAuthorization: Bearer {session}");
    assert_eq!(lab.http(None, &h, "").await.status, 401);
    let h = format!("GET /metrics HTTP/1.1\r\nAuthorization: Bearer {token}");
    let r = lab.http(None, &h, "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/openmetrics-text")),
        "{:?}",
        r.headers
    );
    // The router answered and has routed config.apply (the users made at
    // start); no heartbeat runs here, and the scrape says so.
    for line in [
        "duplex_source_up{source=\"router.status\"} 1",
        "duplex_source_up{source=\"cluster.status\"} 0",
    ] {
        assert!(r.body.lines().any(|l| l == line), "{line} in\n{}", r.body);
    }
    assert!(
        r.body
            .lines()
            .any(|l| l.starts_with("duplex_router_calls{method=\"config.apply\"} ")),
        "{}",
        r.body
    );
    assert!(r.body.contains("duplex_config_version "), "{}", r.body);
}

/// A write through the endpoint lands in the audit log with the user and
/// the address it came from.
#[tokio::test]
async fn writes_through_the_endpoint_are_audited_with_user_and_address() {
    let lab = start(600).await;
    let t = lab.login("admin", ADMIN_PW).await;
    let v = lab
        .call(Some(&t), "config.lock", json!({"reason": "audit test"}))
        .await;
    assert!(v.get("result").is_some(), "{v}");
    let mut found = Value::Null;
    for _ in 0..50 {
        let a = lab.call(Some(&t), "config.audit", json!({})).await;
        if let Some(e) = a["result"]["entries"]
            .as_array()
            .and_then(|es| es.iter().find(|e| e["method"] == "config.lock"))
        {
            found = e.clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(found["user"], "admin", "{found}");
    assert_eq!(found["address"], "127.0.0.1", "{found}");
    assert_eq!(found["result"], "ok", "{found}");
}

#[tokio::test]
async fn the_ui_is_served_with_its_policy_and_whoami_names_the_session() {
    let lab = start(3600).await;
    let r = lab.http(None, "GET / HTTP/1.1", "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, UI_PAGE);
    assert!(r
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/html")));
    let csp = r.header("content-security-policy").unwrap_or_default();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    // Nothing outside the UI's directory, nothing it never has.
    for path in ["/../duplex.toml", "/state/mgmt/key.pem", "/index.html.bak"] {
        let r = lab.http(None, &format!("GET {path} HTTP/1.1"), "").await;
        assert_eq!(r.status, 404, "{path}: {}", r.body);
    }

    // whoami: nobody without a session; the user and role with one, from
    // the cookie as a browser sends it.
    let v = lab.call(None, "auth.whoami", json!({})).await;
    assert_eq!(v["error"]["data"]["reason"], "session", "{v}");
    let ro = lab.login("viewer", RO_PW).await;
    let r = lab
        .call_from(
            None,
            &format!("\r\nCookie: duplex_session={ro}"),
            "auth.whoami",
            json!({}),
        )
        .await;
    let v = r.json();
    assert_eq!(v["result"]["user"], "viewer", "{v}");
    assert_eq!(v["result"]["role"], "read_only", "{v}");
    assert!(v["result"]["expires_ms"].as_u64().is_some_and(|t| t > 0));
}

#[tokio::test]
async fn past_the_call_rate_an_address_is_told_when_to_retry() {
    let lab = start_with(3600, "calls_per_s = 1\ncalls_burst = 5\n").await;
    let t = lab.login("admin", ADMIN_PW).await;
    let mut limited = None;
    for _ in 0..20 {
        let v = lab.call(Some(&t), "router.ping", json!({})).await;
        if v.get("error").is_some() {
            limited = Some(v);
            break;
        }
    }
    let v = limited.expect("20 calls at once from one address are limited");
    assert_eq!(v["error"]["data"]["reason"], "rate_limited", "{v}");
    assert!(
        v["error"]["data"]["retry_after_ms"]
            .as_u64()
            .is_some_and(|ms| ms > 0),
        "{v}"
    );
    // After the wait the address may call again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let v = lab.call(Some(&t), "router.ping", json!({})).await;
    assert!(v.get("result").is_some(), "{v}");
}
