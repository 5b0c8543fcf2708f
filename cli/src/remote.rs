//! duplexctl over HTTPS to a controller's management endpoint: a login
//! whose session token is kept in the user's configuration directory
//! (mode 0600), and the endpoint's certificate pinned on first use, as
//! ssh pins host keys: a later certificate that differs is refused until
//! the admin removes the old pin on purpose.

use duplex_services::client::{Event, EVENT_NOTIFY};
use duplex_services::rpc::{Response, RpcError};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_rustls::rustls::{
    self,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::CryptoProvider,
    pki_types::{CertificateDer, ServerName, UnixTime},
    DigitallySignedStruct, SignatureScheme,
};
use tokio_util::compat::TokioAsyncReadCompatExt;

/// Largest answer read from the endpoint, bytes.
pub const MAX_ANSWER_BYTES: usize = 16 << 20;

/// Why a remote call failed before any answer of the method.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// Not `https://HOST[:PORT]`.
    #[error("{0:?} is not an https://HOST[:PORT] address")]
    BadUrl(String),
    /// TCP connect failed.
    #[error("cannot reach {addr}: {source}")]
    Connect {
        /// host:port.
        addr: String,
        /// The error.
        source: std::io::Error,
    },
    /// The TLS handshake failed (for another reason than the pin).
    #[error("TLS with {addr}: {source}")]
    Tls {
        /// host:port.
        addr: String,
        /// The error.
        source: std::io::Error,
    },
    /// The endpoint presented another certificate than the pinned one.
    #[error(
        "the certificate of {addr} is not the pinned one (pinned {pinned}, presented {presented}); \
         if it was replaced on purpose, delete the line of {addr} in {file} and log in again"
    )]
    PinMismatch {
        /// host:port.
        addr: String,
        /// The pinned fingerprint.
        pinned: String,
        /// The presented fingerprint.
        presented: String,
        /// The pin file.
        file: PathBuf,
    },
    /// No pin yet: only `login` pins.
    #[error("{addr} has no pinned certificate yet: `duplexctl login {url}` first")]
    NotPinned {
        /// host:port.
        addr: String,
        /// The URL.
        url: String,
    },
    /// No session for this endpoint.
    #[error("not logged in to {0}: `duplexctl login {0}` (the password on standard input)")]
    NoSession(String),
    /// HTTP framing failed.
    #[error("HTTP with {addr}: {message}")]
    Http {
        /// host:port.
        addr: String,
        /// What failed.
        message: String,
    },
    /// The endpoint answered something else than JSON-RPC.
    #[error("{addr} answered HTTP {status}: {body}")]
    Status {
        /// host:port.
        addr: String,
        /// HTTP status.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// No answer in time.
    #[error("no answer from {addr} within {secs} s")]
    Timeout {
        /// host:port.
        addr: String,
        /// The limit.
        secs: u64,
    },
    /// A file of the CLI's configuration directory.
    #[error("{what} {path}: {source}")]
    File {
        /// What was done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Something the endpoint does not offer.
    #[error("{0}")]
    Unsupported(&'static str),
    /// The endpoint refused the request (the method's error).
    #[error(transparent)]
    Refused(RpcError),
}

/// An endpoint address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl Target {
    /// Parses `https://HOST[:PORT][/]` (IPv6 in brackets).
    pub fn parse(url: &str) -> Result<Target, RemoteError> {
        let bad = || RemoteError::BadUrl(url.to_string());
        let rest = url.strip_prefix("https://").ok_or_else(bad)?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() || rest.contains('/') || rest.contains('@') {
            return Err(bad());
        }
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(bad)?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| bad())?,
                None if after.is_empty() => 443,
                None => return Err(bad()),
            };
            (h.to_string(), port)
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p.parse().map_err(|_| bad())?),
                None => (rest.to_string(), 443),
            }
        };
        if host.is_empty() || port == 0 {
            return Err(bad());
        }
        Ok(Target { host, port })
    }

    /// `host:port` as pins and messages name it.
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The canonical URL.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr())
    }
}

/// The CLI's configuration directory: `$DUPLEX_CLI_DIR`, else
/// `$XDG_CONFIG_HOME/duplex`, else `~/.config/duplex`.
pub fn config_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("DUPLEX_CLI_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CONFIG_HOME") {
        return PathBuf::from(d).join("duplex");
    }
    std::env::var_os("HOME")
        .map_or_else(|| PathBuf::from("."), PathBuf::from)
        .join(".config")
        .join("duplex")
}

fn file_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> RemoteError {
    let path = path.to_path_buf();
    move |source| RemoteError::File { what, path, source }
}

/// The SHA-256 of a certificate, as `SHA256:<hex>` (as `duplexctl cert
/// show` prints it on the controller).
pub fn fingerprint(cert: &[u8]) -> String {
    duplex_mgmt::tls::fingerprint(cert)
}

/// The pins file: one `host:port SHA256:<hex>` per line.
pub fn pins_file(dir: &Path) -> PathBuf {
    dir.join("known_hosts")
}

/// The pinned fingerprint of `t`, if any.
pub fn pinned(dir: &Path, t: &Target) -> Result<Option<String>, RemoteError> {
    let path = pins_file(dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(file_err("reading", &path)(e)),
    };
    let addr = t.addr();
    Ok(text.lines().find_map(|l| {
        let (a, fp) = l.trim().split_once(' ')?;
        (a == addr).then(|| fp.trim().to_string())
    }))
}

fn ensure_dir(dir: &Path) -> Result<(), RemoteError> {
    std::fs::create_dir_all(dir).map_err(file_err("creating", dir))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(file_err("restricting", dir))
}

/// Pins `fp` for `t` (appends a line).
pub fn pin(dir: &Path, t: &Target, fp: &str) -> Result<(), RemoteError> {
    ensure_dir(dir)?;
    let path = pins_file(dir);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&path)
        .map_err(file_err("opening", &path))?;
    writeln!(f, "{} {fp}", t.addr()).map_err(file_err("writing", &path))
}

/// A logged-in session, kept in `session.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    /// The endpoint's URL.
    pub url: String,
    /// The user.
    pub user: String,
    /// The user's role.
    pub role: String,
    /// The session token (a secret: the file is 0600).
    pub token: String,
    /// When the session ends, ms since the Unix epoch.
    pub expires_ms: u64,
}

fn session_file(dir: &Path) -> PathBuf {
    dir.join("session.json")
}

/// The saved session for `t`, if any.
pub fn load_session(dir: &Path, t: &Target) -> Result<Option<Session>, RemoteError> {
    let path = session_file(dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(file_err("reading", &path)(e)),
    };
    // A damaged file is no session: logging in again rewrites it.
    let s: Option<Session> = serde_json::from_str(&text).ok();
    Ok(s.filter(|s| Target::parse(&s.url).is_ok_and(|u| u == *t)))
}

/// Saves the session (replacing any other).
pub fn save_session(dir: &Path, s: &Session) -> Result<(), RemoteError> {
    ensure_dir(dir)?;
    let path = session_file(dir);
    let tmp = dir.join("session.json.tmp");
    let text = serde_json::to_vec_pretty(s).unwrap_or_default();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(file_err("writing", &tmp))?;
    f.write_all(&text).map_err(file_err("writing", &tmp))?;
    std::fs::rename(&tmp, &path).map_err(file_err("renaming", &path))
}

/// Forgets the saved session.
pub fn forget_session(dir: &Path) -> Result<(), RemoteError> {
    let path = session_file(dir);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(file_err("removing", &path)(e)),
    }
}

/// Accepts exactly the pinned certificate (or, on first use, any one, and
/// remembers it); the handshake's signature is still checked, so only the
/// holder of that certificate's key passes.
#[derive(Debug)]
struct Pinned {
    expected: Option<String>,
    seen: Arc<Mutex<Option<String>>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let fp = fingerprint(end_entity);
        *self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(fp.clone());
        match &self.expected {
            Some(e) if *e != fp => Err(rustls::Error::General(
                "the certificate is not the pinned one".into(),
            )),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A connection setting to one endpoint.
pub struct Remote {
    target: Target,
    dir: PathBuf,
    expected: Option<String>,
    seen: Arc<Mutex<Option<String>>>,
    tls: tokio_rustls::TlsConnector,
    token: Option<String>,
    timeout: Duration,
}

impl Remote {
    /// An endpoint at `url`; `first_use`: accept (and report) a
    /// certificate when none is pinned yet (only `login` does).
    pub fn open(url: &str, timeout: Duration, first_use: bool) -> Result<Remote, RemoteError> {
        let target = Target::parse(url)?;
        let dir = config_dir();
        let expected = pinned(&dir, &target)?;
        if expected.is_none() && !first_use {
            return Err(RemoteError::NotPinned {
                addr: target.addr(),
                url: target.url(),
            });
        }
        // ring, as duplex-mgmt's server side (no C build); deprecated in
        // rustls 0.23.48 for lacking post-quantum key exchange only.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let seen = Arc::new(Mutex::new(None));
        let verifier = Pinned {
            expected: expected.clone(),
            seen: Arc::clone(&seen),
            provider: Arc::clone(&provider),
        };
        let cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| RemoteError::Tls {
                addr: target.addr(),
                source: std::io::Error::other(e),
            })?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        Ok(Remote {
            target,
            dir,
            expected,
            seen,
            tls: tokio_rustls::TlsConnector::from(Arc::new(cfg)),
            token: None,
            timeout,
        })
    }

    /// The endpoint with the saved session's token.
    pub fn with_session(url: &str, timeout: Duration) -> Result<Remote, RemoteError> {
        let mut r = Remote::open(url, timeout, false)?;
        let s = load_session(&r.dir, &r.target)?
            .ok_or_else(|| RemoteError::NoSession(r.target.url()))?;
        r.token = Some(s.token);
        Ok(r)
    }

    /// The endpoint's address.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The configuration directory (pins, session).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The fingerprint presented but not pinned yet (first use), to pin.
    pub fn unpinned(&self) -> Option<String> {
        if self.expected.is_some() {
            return None;
        }
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Uses `token` for the calls that follow.
    pub fn set_token(&mut self, token: String) {
        self.token = Some(token);
    }

    /// Sends one JSON-RPC request object; the endpoint's response.
    pub async fn send(&self, request: &Value) -> Result<Response, RemoteError> {
        self.within(self.exchange(request)).await
    }

    /// `f`, or [`RemoteError::Timeout`] past the connection's timeout.
    async fn within<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, RemoteError>>,
    ) -> Result<T, RemoteError> {
        tokio::time::timeout(self.timeout, f)
            .await
            .map_err(|_| RemoteError::Timeout {
                addr: self.target.addr(),
                secs: self.timeout.as_secs(),
            })?
    }

    /// Calls `method` with `params`: its result or the method's error.
    pub async fn call(
        &self,
        method: &str,
        params: Value,
    ) -> Result<Result<Value, RpcError>, RemoteError> {
        let req = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        Ok(self.send(&req).await?.into_result())
    }

    /// TCP and TLS to the endpoint, the certificate checked against the pin.
    async fn connect(&self) -> Result<TlsStream, RemoteError> {
        let addr = self.target.addr();
        let tcp = tokio::net::TcpStream::connect((self.target.host.as_str(), self.target.port))
            .await
            .map_err(|source| RemoteError::Connect {
                addr: addr.clone(),
                source,
            })?;
        let name = ServerName::try_from(self.target.host.clone())
            .map_err(|_| RemoteError::BadUrl(self.target.url()))?;
        match self.tls.connect(name, tcp).await {
            Ok(s) => Ok(s),
            Err(source) => {
                let presented = self
                    .seen
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone();
                Err(match (&self.expected, presented) {
                    (Some(p), Some(now)) if *p != now => RemoteError::PinMismatch {
                        addr,
                        pinned: p.clone(),
                        presented: now,
                        file: pins_file(&self.dir),
                    },
                    _ => RemoteError::Tls { addr, source },
                })
            }
        }
    }

    /// Subscribes to router topics over a WebSocket (the session's token
    /// on the upgrade request): the events as the endpoint pushes them.
    pub async fn subscribe(&self, topics: &[&str]) -> Result<Events, RemoteError> {
        self.within(self.open_events(topics)).await
    }

    async fn open_events(&self, topics: &[&str]) -> Result<Events, RemoteError> {
        let addr = self.target.addr();
        let ws = |message: String| RemoteError::Http {
            addr: addr.clone(),
            message,
        };
        let tls = self.connect().await?.compat();
        let mut hs = soketto::handshake::Client::new(tls, &addr, "/");
        let bearer = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let headers: Vec<soketto::handshake::client::Header<'_>> = bearer
            .iter()
            .map(|b| soketto::handshake::client::Header {
                name: "Authorization",
                value: b.as_bytes(),
            })
            .collect();
        hs.set_headers(&headers);
        match hs
            .handshake()
            .await
            .map_err(|e| ws(format!("WebSocket upgrade: {e}")))?
        {
            soketto::handshake::ServerResponse::Accepted { .. } => {}
            soketto::handshake::ServerResponse::Rejected { status_code }
            | soketto::handshake::ServerResponse::Redirect { status_code, .. } => {
                return Err(RemoteError::Status {
                    addr,
                    status: status_code,
                    body: "the WebSocket upgrade was refused".into(),
                })
            }
        }
        let mut builder = hs.into_builder();
        builder.set_max_message_size(MAX_EVENT_BYTES);
        let (mut tx, rx) = builder.finish();
        let req = json!({"jsonrpc": "2.0", "id": 1, "method": "event.subscribe",
            "params": {"topics": topics}});
        tx.send_text(req.to_string())
            .await
            .map_err(|e| ws(e.to_string()))?;
        tx.flush().await.map_err(|e| ws(e.to_string()))?;
        let mut events = Events {
            addr: addr.clone(),
            _tx: tx,
            rx,
        };
        // The answer (the subscription id or the refusal) comes first.
        let answer = events.frame().await?;
        let resp: Response = serde_json::from_value(answer).map_err(|e| RemoteError::Http {
            addr,
            message: format!("unreadable answer to event.subscribe: {e}"),
        })?;
        resp.into_result().map_err(RemoteError::Refused)?;
        Ok(events)
    }

    async fn exchange(&self, request: &Value) -> Result<Response, RemoteError> {
        let addr = self.target.addr();
        let http = |message: String| RemoteError::Http {
            addr: addr.clone(),
            message,
        };
        let tls = self.connect().await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .map_err(|e| http(e.to_string()))?;
        // The connection is driven beside the request; it ends with it.
        let driver = tokio::spawn(conn);
        let body = serde_json::to_vec(request).map_err(|e| http(e.to_string()))?;
        let mut req = http::Request::post("/")
            .header(http::header::HOST, &addr)
            .header(http::header::CONTENT_TYPE, "application/json");
        if let Some(t) = &self.token {
            req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| http(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| http(e.to_string()))?;
        let status = resp.status().as_u16();
        let bytes = Limited::new(resp.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| http(format!("reading the answer: {e}")))?
            .to_bytes();
        driver.abort();
        match serde_json::from_slice::<Response>(&bytes) {
            Ok(r) => Ok(r),
            Err(_) => Err(RemoteError::Status {
                addr,
                status,
                body: String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned(),
            }),
        }
    }
}

type TlsStream = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;
type Ws = tokio_util::compat::Compat<TlsStream>;

/// Largest event frame read from the endpoint, bytes.
pub const MAX_EVENT_BYTES: usize = 4 << 20;

/// The events of a subscription over the endpoint's WebSocket.
pub struct Events {
    addr: String,
    // Kept so the socket stays open (soketto answers pings through it).
    _tx: soketto::Sender<Ws>,
    rx: soketto::Receiver<Ws>,
}

impl Events {
    async fn frame(&mut self) -> Result<Value, RemoteError> {
        let mut data = Vec::new();
        self.rx
            .receive_data(&mut data)
            .await
            .map_err(|e| RemoteError::Http {
                addr: self.addr.clone(),
                message: match e {
                    soketto::connection::Error::Closed => {
                        "the endpoint closed the event stream (the session may have ended: log in again)"
                            .to_string()
                    }
                    other => format!("event stream: {other}"),
                },
            })?;
        serde_json::from_slice(&data).map_err(|e| RemoteError::Http {
            addr: self.addr.clone(),
            message: format!("unreadable event frame: {e}"),
        })
    }

    /// The next event.
    pub async fn next(&mut self) -> Result<Event, RemoteError> {
        loop {
            let v = self.frame().await?;
            if v["method"] != EVENT_NOTIFY {
                continue;
            }
            match serde_json::from_value::<Event>(v["params"]["result"].clone()) {
                Ok(ev) => return Ok(ev),
                Err(e) => tracing::warn!(error = %e, "unreadable event"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_to_host_and_port() {
        let t = Target::parse("https://10.53.0.1").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("10.53.0.1", 443));
        let t = Target::parse("https://ctl-a.example:8443/").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.addr()),
            ("ctl-a.example", 8443, "ctl-a.example:8443".to_string())
        );
        let t = Target::parse("https://[fd00::1]:9443").unwrap();
        assert_eq!(
            (t.host.as_str(), t.addr()),
            ("fd00::1", "[fd00::1]:9443".to_string())
        );
        for bad in [
            "http://a",
            "https://",
            "https://a:0",
            "https://a:x",
            "https://a/b",
            "https://u@a",
            "a:443",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pins_and_sessions_are_per_endpoint_and_private() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("duplex");
        let a = Target::parse("https://127.0.0.1:1443").unwrap();
        let b = Target::parse("https://127.0.0.1:2443").unwrap();
        assert_eq!(pinned(&dir, &a).unwrap(), None);
        pin(&dir, &a, "SHA256:aa").unwrap();
        pin(&dir, &b, "SHA256:bb").unwrap();
        assert_eq!(pinned(&dir, &a).unwrap().as_deref(), Some("SHA256:aa"));
        assert_eq!(pinned(&dir, &b).unwrap().as_deref(), Some("SHA256:bb"));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&pins_file(&dir)), 0o600);
        assert_eq!(mode(&dir), 0o700);
        let s = Session {
            url: a.url(),
            user: "admin".into(),
            role: "admin".into(),
            token: "t".into(),
            expires_ms: 1,
        };
        save_session(&dir, &s).unwrap();
        assert_eq!(mode(&session_file(&dir)), 0o600);
        assert_eq!(
            load_session(&dir, &a).unwrap().map(|s| s.token),
            Some("t".into())
        );
        assert!(load_session(&dir, &b).unwrap().is_none());
        forget_session(&dir).unwrap();
        assert!(load_session(&dir, &a).unwrap().is_none());
    }
}
