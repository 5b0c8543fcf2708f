//! Mutual TLS under the peer link.
//!
//! Each controller's TLS key is an Ed25519 key derived from the cluster
//! secret and its controller id (HKDF-SHA-256), so the two certificates
//! exist as soon as the cluster's secret does, with nothing to copy
//! between the controllers: each side derives the partner's public key and
//! accepts exactly that key (a pin), and proves its own by the TLS
//! handshake's signature. TLS 1.3 only; both sides present a certificate.
//!
//! What this adds to the HMAC challenge that still runs inside
//! ([`crate::peer`]): every frame after the handshake is encrypted and
//! authenticated (injected or altered bytes end the connection), and a
//! process that takes over the partner's address cannot complete TLS, so
//! the dialer never sends it a hello, let alone a proof.
//!
//! The secret stays the root of trust: whoever holds it can derive either
//! key, exactly as it could compute either HMAC proof before.

use hkdf::Hkdf;
use sha2::Sha256;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::rustls::{
    self,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime},
    server::danger::{ClientCertVerified, ClientCertVerifier},
    DigitallySignedStruct, DistinguishedName, SignatureScheme,
};

/// HKDF salt of the peer link's TLS keys (a domain separator: the
/// heartbeat derives its datagram key from the same secret).
const SALT: &[u8] = b"duplex peer link tls v1";
/// The name the dialer asks for; the pin, not the name, is what is checked.
const SERVER_NAME: &str = "duplex-peer";

/// Why the peer link's TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum PeerTlsError {
    /// A key or certificate could not be made from the secret.
    #[error("peer link TLS key for controller {controller}: {reason}")]
    Key {
        /// The controller whose key it is.
        controller: String,
        /// What failed.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("peer link TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// One controller's derived TLS identity.
struct Identity {
    cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
    /// Its SubjectPublicKeyInfo, DER: what the partner pins.
    spki: Vec<u8>,
}

/// The Ed25519 seed of `controller`'s key.
fn seed(secret: &[u8], controller: &str) -> Result<[u8; 32], PeerTlsError> {
    let mut out = [0u8; 32];
    Hkdf::<Sha256>::new(Some(SALT), secret)
        .expand(
            format!("ed25519 key of controller {controller}").as_bytes(),
            &mut out,
        )
        .map_err(|e| PeerTlsError::Key {
            controller: controller.into(),
            reason: e.to_string(),
        })?;
    Ok(out)
}

/// The PKCS#8 v1 document of an Ed25519 key (RFC 8410): a fixed prefix
/// and the seed.
fn pkcs8(seed: &[u8; 32]) -> Vec<u8> {
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(seed);
    der
}

/// The SubjectPublicKeyInfo of a raw Ed25519 public key (RFC 8410).
fn ed25519_spki(raw: &[u8]) -> Vec<u8> {
    let mut der = vec![
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    der.extend_from_slice(raw);
    der
}

fn identity(secret: &[u8], controller: &str) -> Result<Identity, PeerTlsError> {
    let key_err = |reason: String| PeerTlsError::Key {
        controller: controller.into(),
        reason,
    };
    let der = pkcs8(&seed(secret, controller)?);
    let key = PrivatePkcs8KeyDer::from(der);
    let pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&key, &rcgen::PKCS_ED25519)
        .map_err(|e| key_err(e.to_string()))?;
    let params = rcgen::CertificateParams::new(vec![format!("duplex-controller-{controller}")])
        .map_err(|e| key_err(e.to_string()))?;
    let cert = params
        .self_signed(&pair)
        .map_err(|e| key_err(e.to_string()))?;
    Ok(Identity {
        cert: cert.der().clone(),
        key,
        spki: ed25519_spki(pair.public_key_raw()),
    })
}

/// One DER element at the start of `der`: (tag, content, the whole element).
fn der_element(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *der.first()?;
    let first = *der.get(1)?;
    let (len, head) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 3 {
            return None;
        }
        let bytes = der.get(2..2 + n)?;
        let len = bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, 2 + n)
    };
    let whole = der.get(..head.checked_add(len)?)?;
    Some((tag, &whole[head..], whole))
}

/// The SubjectPublicKeyInfo of an X.509 certificate, DER (RFC 5280 4.1:
/// the seventh field of tbsCertificate, or the sixth without a version).
pub fn spki_of(cert: &[u8]) -> Option<&[u8]> {
    let (_, certificate, _) = der_element(cert)?;
    let (_, mut tbs, _) = der_element(certificate)?;
    let mut field = 0;
    loop {
        let (tag, _, whole) = der_element(tbs)?;
        tbs = &tbs[whole.len()..];
        // [0] EXPLICIT version is optional.
        if field == 0 && tag == 0xa0 {
            continue;
        }
        if field == 5 {
            return Some(whole);
        }
        field += 1;
    }
}

/// Accepts exactly the partner's derived key, on either side of the link.
#[derive(Debug)]
struct Pin {
    partner: String,
    spki: Vec<u8>,
    provider: Arc<CryptoProvider>,
}

impl Pin {
    fn check(&self, end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        match spki_of(end_entity.as_ref()) {
            Some(spki) if spki == self.spki.as_slice() => Ok(()),
            Some(_) => Err(rustls::Error::General(format!(
                "the certificate is not controller {}'s (another cluster secret?)",
                self.partner
            ))),
            None => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::BadEncoding,
            )),
        }
    }

    fn verify13(
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

    fn schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// TLS 1.3 only: a TLS 1.2 signature is never asked for.
fn no_tls12() -> rustls::Error {
    rustls::Error::PeerIncompatible(rustls::PeerIncompatible::Tls12NotOffered)
}

/// The signature checks both verifiers share: TLS 1.3 only, by the pin.
macro_rules! pinned_signatures {
    () => {
        fn verify_tls12_signature(
            &self,
            _message: &[u8],
            _cert: &CertificateDer<'_>,
            _dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Err(no_tls12())
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.0.verify13(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.schemes()
        }
    };
}

#[derive(Debug)]
struct ServerPin(Pin);

impl ServerCertVerifier for ServerPin {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.0.check(end_entity)?;
        Ok(ServerCertVerified::assertion())
    }

    pinned_signatures!();
}

#[derive(Debug)]
struct ClientPin(Pin);

impl ClientCertVerifier for ClientPin {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.0.check(end_entity)?;
        Ok(ClientCertVerified::assertion())
    }

    pinned_signatures!();
}

/// Both ends of the peer link's TLS for one controller.
#[derive(Clone)]
pub struct PeerTls {
    connector: tokio_rustls::TlsConnector,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerTls")
    }
}

impl PeerTls {
    /// The TLS of controller `me` talking to `partner`, both keys derived
    /// from `secret`.
    pub fn new(secret: &[u8], me: &str, partner: &str) -> Result<PeerTls, PeerTlsError> {
        // ring, as duplex-mgmt (no C build); deprecated in rustls 0.23.48
        // for lacking post-quantum key exchange only.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mine = identity(secret, me)?;
        let theirs = identity(secret, partner)?;
        let pin = || Pin {
            partner: partner.into(),
            spki: theirs.spki.clone(),
            provider: Arc::clone(&provider),
        };
        let mut client = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ServerPin(pin())))
            .with_client_auth_cert(
                vec![mine.cert.clone()],
                PrivateKeyDer::Pkcs8(mine.key.clone_key()),
            )?;
        let mut server = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(Arc::new(ClientPin(pin())))
            .with_single_cert(vec![mine.cert], PrivateKeyDer::Pkcs8(mine.key))?;
        // Every connection is a full handshake that checks the pin: no
        // resumption, so no session tickets to store or send.
        client.resumption = rustls::client::Resumption::disabled();
        server.send_tls13_tickets = 0;
        Ok(PeerTls {
            connector: tokio_rustls::TlsConnector::from(Arc::new(client)),
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
        })
    }

    /// Dials: the partner must show its derived key before anything is sent.
    pub async fn connect<IO>(&self, io: IO) -> std::io::Result<tokio_rustls::client::TlsStream<IO>>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let name =
            ServerName::try_from(SERVER_NAME).map_err(|e| std::io::Error::other(e.to_string()))?;
        self.connector.connect(name, io).await
    }

    /// Accepts: the dialer must show the partner's derived key.
    pub async fn accept<IO>(&self, io: IO) -> std::io::Result<tokio_rustls::server::TlsStream<IO>>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        self.acceptor.accept(io).await
    }
}

/// Bytes of a cluster secret made by [`write_new_secret`].
pub const SECRET_BYTES: usize = 32;

/// Writes a new cluster secret to `path`: [`SECRET_BYTES`] random bytes
/// from the OS, hex, mode 0600. Refuses to replace an existing file (the
/// partner would no longer be recognised).
pub fn write_new_secret(path: &std::path::Path) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut raw = [0u8; SECRET_BYTES];
    getrandom::getrandom(&mut raw).map_err(|e| std::io::Error::other(e.to_string()))?;
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(hex.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn keys_are_derived_per_controller_and_per_secret() {
        let a = identity(SECRET, "A").unwrap();
        let a2 = identity(SECRET, "A").unwrap();
        let b = identity(SECRET, "B").unwrap();
        let other = identity(b"another secret of 32 bytes......", "A").unwrap();
        assert_eq!(a.spki, a2.spki);
        assert_ne!(a.spki, b.spki);
        assert_ne!(a.spki, other.spki);
        // The pin is found in the certificate made from the key.
        assert_eq!(spki_of(a.cert.as_ref()), Some(a.spki.as_slice()));
        assert_eq!(spki_of(a2.cert.as_ref()), Some(a.spki.as_slice()));
    }

    #[test]
    fn a_new_secret_is_private_random_and_never_replaces_one() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.secret");
        let b = dir.path().join("b.secret");
        write_new_secret(&a).unwrap();
        write_new_secret(&b).unwrap();
        let ta = std::fs::read_to_string(&a).unwrap();
        assert_eq!(ta.trim().len(), 2 * SECRET_BYTES);
        assert_ne!(ta, std::fs::read_to_string(&b).unwrap());
        let mode = std::fs::metadata(&a).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = write_new_secret(&a).unwrap_err();
        assert_eq!(again.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read_to_string(&a).unwrap(), ta);
    }

    #[test]
    fn spki_parsing_refuses_truncated_input() {
        let a = identity(SECRET, "A").unwrap();
        let der = a.cert.as_ref();
        for cut in [0, 1, 2, 10, der.len() / 2, der.len() - 1] {
            assert_eq!(spki_of(&der[..cut]), None, "cut at {cut}");
        }
        assert_eq!(spki_of(&[0x30, 0x84, 0, 0, 0, 1]), None);
    }

    /// A dialing B over a pipe; each side's TLS, then one line A to B.
    async fn link(
        dialer: PeerTls,
        listener: PeerTls,
    ) -> (std::io::Result<String>, std::io::Result<()>) {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let acc = tokio::spawn(async move {
            let mut s = listener.accept(b).await?;
            let mut line = String::new();
            s.read_to_string(&mut line).await?;
            Ok::<_, std::io::Error>(line)
        });
        let dial = async move {
            let mut s = dialer.connect(a).await?;
            s.write_all(b"hello\n").await?;
            s.flush().await?;
            // The listener may drop its end first, once it has read all.
            let _ = s.shutdown().await;
            Ok(())
        };
        let d = dial.await;
        (acc.await.unwrap(), d)
    }

    #[tokio::test]
    async fn the_same_secret_connects_both_ways() {
        let a = PeerTls::new(SECRET, "A", "B").unwrap();
        let b = PeerTls::new(SECRET, "B", "A").unwrap();
        let (got, sent) = link(a, b).await;
        sent.unwrap();
        assert_eq!(got.unwrap(), "hello\n");
    }

    #[tokio::test]
    async fn another_secret_is_refused_before_any_data() {
        let a = PeerTls::new(SECRET, "A", "B").unwrap();
        let impostor = PeerTls::new(b"a guessed secret of 32 bytes....", "B", "A").unwrap();
        let (got, sent) = link(a, impostor).await;
        assert!(sent.is_err(), "the dialer must refuse the impostor");
        assert!(got.is_err(), "the impostor must get nothing: {got:?}");
    }

    #[tokio::test]
    async fn a_dialer_presenting_the_wrong_controller_is_refused() {
        // B's own key presented as A's: right secret, wrong identity.
        let b_as_a = PeerTls::new(SECRET, "B", "B").unwrap();
        let b = PeerTls::new(SECRET, "B", "A").unwrap();
        let (got, _) = link(b_as_a, b).await;
        assert!(got.is_err(), "{got:?}");
    }

    /// Bytes injected into an open connection (a forged frame on the
    /// interconnect) end it: they are never read as data.
    #[tokio::test]
    async fn injected_bytes_end_the_connection() {
        let a = PeerTls::new(SECRET, "A", "B").unwrap();
        let b = PeerTls::new(SECRET, "B", "A").unwrap();
        let (a_io, relay_a) = tokio::io::duplex(64 * 1024);
        let (relay_b, b_io) = tokio::io::duplex(64 * 1024);
        let (mut ra_r, mut ra_w) = tokio::io::split(relay_a);
        let (mut rb_r, mut rb_w) = tokio::io::split(relay_b);
        // The relay passes B's bytes to A untouched.
        tokio::spawn(async move { tokio::io::copy(&mut rb_r, &mut ra_w).await });
        let (inject_tx, mut inject_rx) = tokio::sync::oneshot::channel::<()>();
        // A's bytes to B, then, when told, a plaintext JSON-RPC frame.
        tokio::spawn(async move {
            let mut buf = vec![0u8; 16 * 1024];
            let mut injected = false;
            loop {
                tokio::select! {
                    n = ra_r.read(&mut buf) => {
                        let Ok(n) = n else { return };
                        if n == 0 { return; }
                        if rb_w.write_all(&buf[..n]).await.is_err() { return; }
                    }
                    _ = &mut inject_rx, if !injected => {
                        injected = true;
                        let forged = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"config.repl_push\"}\n";
                        let _ = rb_w.write_all(forged).await;
                    }
                }
            }
        });
        let server = tokio::spawn(async move {
            let mut s = b.accept(b_io).await.map_err(|e| (e, Vec::new()))?;
            let mut got = Vec::new();
            let mut buf = [0u8; 256];
            loop {
                match s.read(&mut buf).await {
                    Ok(0) => return Ok(got),
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) => return Err((e, got)),
                }
            }
        });
        let mut s = a.connect(a_io).await.unwrap();
        s.write_all(b"first\n").await.unwrap();
        s.flush().await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        inject_tx.send(()).unwrap();
        let res = tokio::time::timeout(std::time::Duration::from_secs(5), server)
            .await
            .expect("the server must notice the forgery")
            .unwrap();
        match res {
            Err((_, got)) => assert_eq!(got, b"first\n"),
            Ok(got) => panic!("the forged frame was not refused: {got:?}"),
        }
    }

    /// A recorded dialer's bytes replayed to the listener do not connect:
    /// the listener's fresh randomness makes the old handshake invalid.
    #[tokio::test]
    async fn a_replayed_handshake_is_refused() {
        let a = PeerTls::new(SECRET, "A", "B").unwrap();
        let b = PeerTls::new(SECRET, "B", "A").unwrap();
        // Record what A sends during a real connection.
        let (a_io, relay_a) = tokio::io::duplex(64 * 1024);
        let (relay_b, b_io) = tokio::io::duplex(64 * 1024);
        let (mut ra_r, mut ra_w) = tokio::io::split(relay_a);
        let (mut rb_r, mut rb_w) = tokio::io::split(relay_b);
        tokio::spawn(async move { tokio::io::copy(&mut rb_r, &mut ra_w).await });
        let recorder = tokio::spawn(async move {
            let mut rec = Vec::new();
            let mut buf = vec![0u8; 16 * 1024];
            while let Ok(n) = ra_r.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                rec.extend_from_slice(&buf[..n]);
                if rb_w.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
            rec
        });
        let b2 = b.clone();
        let server = tokio::spawn(async move {
            let mut s = b2.accept(b_io).await?;
            let mut line = String::new();
            s.read_to_string(&mut line).await?;
            Ok::<_, std::io::Error>(line)
        });
        let mut s = a.connect(a_io).await.unwrap();
        s.write_all(b"once\n").await.unwrap();
        s.shutdown().await.unwrap();
        drop(s);
        assert_eq!(server.await.unwrap().unwrap(), "once\n");
        let recorded = recorder.await.unwrap();
        assert!(!recorded.is_empty());
        // Replay it to a fresh accept.
        let (mut attacker, b_io) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(async move {
            let mut s = b.accept(b_io).await?;
            let mut line = String::new();
            s.read_to_string(&mut line).await?;
            Ok::<_, std::io::Error>(line)
        });
        attacker.write_all(&recorded).await.unwrap();
        let res = tokio::time::timeout(std::time::Duration::from_secs(5), server)
            .await
            .expect("the listener must decide")
            .unwrap();
        assert!(res.is_err(), "a replay connected: {res:?}");
    }
}
