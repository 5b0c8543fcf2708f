//! The peer link to the partner's router over the interconnect.
//!
//! Each router dials the partner for its own outgoing calls (tries every
//! configured address in turn, reconnecting with backoff) and accepts the
//! partner's dial for incoming calls: two TCP connections, each carrying
//! requests one way.
//!
//! Authentication is a mutual HMAC-SHA256 challenge-response on the shared
//! cluster secret before any JSON-RPC frame is accepted. The dialer proves
//! first: the listener answers anyone who connects, so it shows its proof
//! only to a dialer that has shown it knows the secret (otherwise any
//! process on the interconnect could collect proofs and test guessed
//! secrets offline):
//!
//! ```text
//! dialer   -> listener  {"duplex_peer":2,"controller":"A","nonce":nA}
//! listener -> dialer    {"controller":"B","nonce":nB}
//! dialer   -> listener  {"proof":H(secret,"init"|nB|A|B)}
//! listener -> dialer    {"ok":true,"proof":H(secret,"resp"|nA|B|A)}   (or a JSON-RPC error, then close)
//! ```
//!
//! Fresh random nonces on both sides make a recorded exchange useless for
//! replay. The exchange runs inside mutual TLS ([`crate::peer_tls`]), which
//! also encrypts and authenticates every frame after it; it stays for the
//! controller ids and the catalogue check. Incoming connections are
//! admitted to the handshake within caps ([`Admission`]) and refusals are
//! logged at a bounded rate ([`RefusalLog`]).

use duplex_api::catalogue::{Version, VERSION as CATALOGUE};
use duplex_services::rpc::{to_frame, ErrorCode, Response, RpcError};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

/// How long a handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// The handshake this build speaks (1: the listener proved first).
pub const PROTOCOL: u32 = 2;

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The stream failed or closed.
    #[error("peer link I/O")]
    Io(#[from] std::io::Error),
    /// The other side sent something that is not a handshake message.
    #[error("unexpected handshake message: {0}")]
    Protocol(String),
    /// The other side does not know the secret, or is not the expected controller.
    #[error("peer authentication failed: {0}")]
    Unauthorized(String),
    /// The handshake took too long.
    #[error("peer handshake timed out")]
    Timeout,
    /// The partner runs a method catalogue this controller cannot work with.
    #[error("{0}")]
    Incompatible(String),
}

#[derive(Debug, Serialize, Deserialize)]
struct Hello {
    duplex_peer: u32,
    controller: String,
    nonce: String,
    /// The sender's method catalogue; absent from a release before it.
    #[serde(default)]
    catalogue: Option<Version>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Challenge {
    controller: String,
    nonce: String,
    /// The listener's method catalogue.
    #[serde(default)]
    catalogue: Option<Version>,
}

/// The listener's last word: its proof, once the dialer proved itself.
#[derive(Debug, Serialize, Deserialize)]
struct Accepted {
    ok: bool,
    proof: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Proof {
    proof: String,
}

/// Refuses a partner whose method catalogue is absent or incompatible.
fn check_catalogue(theirs: Option<Version>) -> Result<(), HandshakeError> {
    match theirs {
        None => Err(HandshakeError::Incompatible(
            "the partner did not state its method catalogue version (an older release)".into(),
        )),
        Some(v) => CATALOGUE
            .check_compatible(v)
            .map_err(HandshakeError::Incompatible),
    }
}

fn nonce() -> String {
    let mut b = [0u8; 16];
    // Without OS randomness the handshake must not proceed on a weak nonce.
    if getrandom::getrandom(&mut b).is_err() {
        return String::new();
    }
    hex(&b)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The proof a side sends: HMAC over the role, the other side's nonce and
/// both ids, so a proof cannot be reflected back or reused.
pub fn proof(secret: &[u8], role: &str, their_nonce: &str, me: &str, them: &str) -> String {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable_hmac());
    for part in ["duplex-peer-v1", role, their_nonce, me, them] {
        mac.update(part.as_bytes());
        mac.update(b"|");
    }
    hex(&mac.finalize().into_bytes())
}

// HMAC accepts keys of any length; this cannot happen.
fn unreachable_hmac() -> Hmac<Sha256> {
    <Hmac<Sha256> as Mac>::new_from_slice(b"k").unwrap_or_else(|_| unreachable_hmac())
}

/// Constant-time check of a received proof.
pub fn verify(
    secret: &[u8],
    role: &str,
    their_nonce: &str,
    me: &str,
    them: &str,
    got: &str,
) -> bool {
    let want = proof(secret, role, their_nonce, me, them);
    want.len() == got.len()
        && want
            .bytes()
            .zip(got.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

async fn read_json<R: AsyncRead + Unpin, T: for<'de> Deserialize<'de>>(
    r: &mut BufReader<R>,
) -> Result<T, HandshakeError> {
    let mut line = Vec::new();
    // Bounded: a handshake line is small; refuse anything huge.
    let mut limited = (&mut *r).take(4096);
    limited.read_until(b'\n', &mut line).await?;
    if line.is_empty() {
        return Err(HandshakeError::Io(std::io::ErrorKind::UnexpectedEof.into()));
    }
    serde_json::from_slice(&line).map_err(|_| {
        HandshakeError::Protocol(String::from_utf8_lossy(&line).chars().take(80).collect())
    })
}

use tokio::io::AsyncReadExt;

async fn write_json<W: AsyncWrite + Unpin, T: Serialize>(w: &mut W, v: &T) -> std::io::Result<()> {
    let mut f = to_frame(v);
    f.push(b'\n');
    w.write_all(&f).await?;
    w.flush().await
}

/// Dialer side. On success the stream is ready for JSON-RPC.
pub async fn dial_handshake<R, W>(
    r: &mut BufReader<R>,
    w: &mut W,
    secret: &[u8],
    me: &str,
    partner: &str,
) -> Result<(), HandshakeError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        let n_me = nonce();
        if n_me.is_empty() {
            return Err(HandshakeError::Protocol("no randomness for a nonce".into()));
        }
        write_json(
            w,
            &Hello {
                duplex_peer: PROTOCOL,
                controller: me.into(),
                nonce: n_me.clone(),
                catalogue: Some(CATALOGUE),
            },
        )
        .await?;
        let ch: Challenge = read_json(r).await?;
        if ch.controller != partner {
            return Err(HandshakeError::Unauthorized(format!(
                "answered as controller {:?}, expected {partner:?}",
                ch.controller
            )));
        }
        write_json(
            w,
            &Proof {
                proof: proof(secret, "init", &ch.nonce, me, partner),
            },
        )
        .await?;
        let v: serde_json::Value = read_json(r).await?;
        let Ok(acc) = serde_json::from_value::<Accepted>(v.clone()) else {
            return Err(HandshakeError::Unauthorized(format!(
                "refused by the partner: {v}"
            )));
        };
        if !acc.ok || !verify(secret, "resp", &n_me, partner, me, &acc.proof) {
            return Err(HandshakeError::Unauthorized(
                "the partner does not know the cluster secret".into(),
            ));
        }
        check_catalogue(ch.catalogue)
    })
    .await
    .map_err(|_| HandshakeError::Timeout)?
}

/// Listener side. On failure a JSON-RPC `unauthorized` error is sent before
/// the caller closes the stream, so a client without the secret learns why.
pub async fn accept_handshake<R, W>(
    r: &mut BufReader<R>,
    w: &mut W,
    secret: &[u8],
    me: &str,
    partner: &str,
) -> Result<(), HandshakeError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let res = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        let hello: Hello = read_json(r).await?;
        if hello.duplex_peer != PROTOCOL {
            return Err(HandshakeError::Incompatible(format!(
                "peer handshake version {} is not this controller's {PROTOCOL} (update both controllers to the same release)",
                hello.duplex_peer
            )));
        }
        if hello.controller != partner {
            return Err(HandshakeError::Unauthorized(format!(
                "hello from controller {:?}, expected {partner:?}",
                hello.controller
            )));
        }
        let n_me = nonce();
        if n_me.is_empty() {
            return Err(HandshakeError::Protocol("no randomness for a nonce".into()));
        }
        // No proof of ours yet: the dialer has proved nothing.
        write_json(
            w,
            &Challenge {
                controller: me.into(),
                nonce: n_me.clone(),
                catalogue: Some(CATALOGUE),
            },
        )
        .await?;
        let got: Proof = read_json(r).await?;
        if !verify(secret, "init", &n_me, partner, me, &got.proof) {
            return Err(HandshakeError::Unauthorized("wrong cluster secret".into()));
        }
        // Checked after the proof, so only an authenticated partner learns
        // our catalogue version is the reason.
        check_catalogue(hello.catalogue)?;
        let answer = Accepted {
            ok: true,
            proof: proof(secret, "resp", &hello.nonce, me, partner),
        };
        write_json(w, &answer).await?;
        Ok(())
    })
    .await
    .map_err(|_| HandshakeError::Timeout)
    .and_then(|r| r);
    if let Err(e) = &res {
        let err = RpcError::new(ErrorCode::Unauthorized, format!("peer link: {e}"));
        let _ = write_json(w, &Response::err(None, err)).await;
    }
    res
}

/// Unauthenticated handshakes held at once, in all.
pub const MAX_HANDSHAKES: usize = 8;
/// Unauthenticated handshakes held at once from one source address: a
/// flood from one address cannot take every slot.
pub const MAX_HANDSHAKES_PER_ADDRESS: usize = 2;
/// Authenticated incoming connections kept; a newer one displaces the
/// oldest (the partner reconnecting after a link flap leaves old ones
/// behind until their sockets notice).
pub const MAX_PEER_CONNECTIONS: usize = 4;
/// A refused peer connection is logged at most once per this window; the
/// next line says how many more were refused.
pub const REFUSAL_LOG_WINDOW: Duration = Duration::from_secs(10);

/// Why an incoming connection was closed before its handshake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Every handshake slot is taken.
    #[error("{0} peer handshakes in progress (the limit)")]
    Busy(usize),
    /// This source address holds its share of the slots.
    #[error("{count} peer handshakes in progress from {addr} (the limit per address)")]
    BusyFrom {
        /// The source address.
        addr: IpAddr,
        /// Its handshakes in progress.
        count: usize,
    },
}

/// Admission of incoming peer connections to the handshake: counts in all
/// and per source address, in bytes of nothing but two integers each.
#[derive(Debug, Default)]
pub struct Admission {
    held: Mutex<HashMap<IpAddr, usize>>,
}

/// One admitted handshake; its slot is freed when it is dropped.
#[derive(Debug)]
pub struct Slot {
    adm: Arc<Admission>,
    addr: IpAddr,
}

impl Admission {
    /// Takes a handshake slot for a connection from `addr`, or says why not.
    pub fn enter(self: &Arc<Self>, addr: IpAddr) -> Result<Slot, Refusal> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let total: usize = held.values().sum();
        if total >= MAX_HANDSHAKES {
            return Err(Refusal::Busy(total));
        }
        let mine = held.entry(addr).or_insert(0);
        if *mine >= MAX_HANDSHAKES_PER_ADDRESS {
            return Err(Refusal::BusyFrom { addr, count: *mine });
        }
        *mine += 1;
        Ok(Slot {
            adm: Arc::clone(self),
            addr,
        })
    }

    /// Handshakes in progress.
    pub fn held(&self) -> usize {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .sum()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.adm.held.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = held.get_mut(&self.addr) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.remove(&self.addr);
            }
        }
    }
}

/// Rate limit of the "refused a peer connection" warning: a flood must not
/// fill the journal.
#[derive(Debug)]
pub struct RefusalLog {
    window: Duration,
    last: Option<Instant>,
    unlogged: u64,
}

impl Default for RefusalLog {
    fn default() -> Self {
        RefusalLog::new(REFUSAL_LOG_WINDOW)
    }
}

impl RefusalLog {
    /// At most one line per `window`.
    pub fn new(window: Duration) -> RefusalLog {
        RefusalLog {
            window,
            last: None,
            unlogged: 0,
        }
    }

    /// Notes a refusal at `now`: `Some(n)` when it is to be logged, `n`
    /// being the refusals left unlogged since the last line; `None` when
    /// it is only counted.
    pub fn note(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(t) if now.saturating_duration_since(t) < self.window => {
                self.unlogged += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.unlogged))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn run(
        secret_a: &'static [u8],
        secret_b: &'static [u8],
    ) -> (Result<(), HandshakeError>, Result<(), HandshakeError>) {
        let (a, b) = tokio::io::duplex(4096);
        let (ar, mut aw) = tokio::io::split(a);
        let (br, mut bw) = tokio::io::split(b);
        let dial = tokio::spawn(async move {
            let mut ar = BufReader::new(ar);
            dial_handshake(&mut ar, &mut aw, secret_a, "A", "B").await
        });
        let acc = tokio::spawn(async move {
            let mut br = BufReader::new(br);
            accept_handshake(&mut br, &mut bw, secret_b, "B", "A").await
        });
        (dial.await.unwrap(), acc.await.unwrap())
    }

    const SECRET: &[u8] = b"0123456789abcdef";

    type Half = tokio::io::WriteHalf<tokio::io::DuplexStream>;
    type Reader = BufReader<tokio::io::ReadHalf<tokio::io::DuplexStream>>;

    /// B listening on one end of a pipe with [`SECRET`]; the other end,
    /// for a test that plays A by hand, and B's outcome.
    fn listener_b() -> (
        Reader,
        Half,
        tokio::task::JoinHandle<Result<(), HandshakeError>>,
    ) {
        let (a, b) = tokio::io::duplex(4096);
        let (ar, aw) = tokio::io::split(a);
        let (br, mut bw) = tokio::io::split(b);
        let acc = tokio::spawn(async move {
            let mut br = BufReader::new(br);
            accept_handshake(&mut br, &mut bw, SECRET, "B", "A").await
        });
        (BufReader::new(ar), aw, acc)
    }

    /// A's hello in handshake version `v` with catalogue `catalogue`.
    fn hello_from_a(v: u32, catalogue: Version) -> Hello {
        Hello {
            duplex_peer: v,
            controller: "A".into(),
            nonce: "n-a".into(),
            catalogue: Some(catalogue),
        }
    }

    #[tokio::test]
    async fn same_secret_authenticates_both_ways() {
        let (d, a) = run(b"0123456789abcdef", b"0123456789abcdef").await;
        d.unwrap();
        a.unwrap();
    }

    #[tokio::test]
    async fn wrong_secret_is_refused_on_both_sides() {
        let (d, a) = run(b"0123456789abcdef", b"fedcba9876543210").await;
        assert!(matches!(d, Err(HandshakeError::Unauthorized(_))), "{d:?}");
        assert!(a.is_err());
    }

    /// A partner with the right secret but another major catalogue
    /// version is refused, and told why.
    #[tokio::test]
    async fn incompatible_catalogue_is_refused_with_its_reason() {
        let (mut ar, mut aw, acc) = listener_b();
        let newer = Version {
            major: CATALOGUE.major + 1,
            minor: 0,
        };
        write_json(&mut aw, &hello_from_a(PROTOCOL, newer))
            .await
            .unwrap();
        let ch: Challenge = read_json(&mut ar).await.unwrap();
        let p = Proof {
            proof: proof(SECRET, "init", &ch.nonce, "A", "B"),
        };
        write_json(&mut aw, &p).await.unwrap();
        let answer: serde_json::Value = read_json(&mut ar).await.unwrap();
        let res = acc.await.unwrap();
        assert!(
            matches!(res, Err(HandshakeError::Incompatible(_))),
            "{res:?}"
        );
        let msg = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains("incompatible"), "{answer}");
    }

    /// A dialer without the secret learns nothing it could test guesses
    /// against: no proof before its own, none after a wrong one.
    #[tokio::test]
    async fn the_listener_shows_no_proof_to_a_dialer_that_proved_nothing() {
        let (mut ar, mut aw, acc) = listener_b();
        write_json(&mut aw, &hello_from_a(PROTOCOL, CATALOGUE))
            .await
            .unwrap();
        let ch: serde_json::Value = read_json(&mut ar).await.unwrap();
        assert!(ch.get("proof").is_none(), "{ch}");
        assert!(ch["nonce"].is_string(), "{ch}");
        let guess = Proof {
            proof: proof(
                b"a guessed secret",
                "init",
                ch["nonce"].as_str().unwrap(),
                "A",
                "B",
            ),
        };
        write_json(&mut aw, &guess).await.unwrap();
        let answer: serde_json::Value = read_json(&mut ar).await.unwrap();
        assert!(answer.get("proof").is_none(), "{answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("wrong cluster secret")),
            "{answer}"
        );
        assert!(matches!(
            acc.await.unwrap(),
            Err(HandshakeError::Unauthorized(_))
        ));
    }

    /// A partner speaking the older handshake (listener proves first) is
    /// refused with the reason.
    #[tokio::test]
    async fn an_older_handshake_is_refused_with_its_reason() {
        let (mut ar, mut aw, acc) = listener_b();
        write_json(&mut aw, &hello_from_a(1, CATALOGUE))
            .await
            .unwrap();
        let answer: serde_json::Value = read_json(&mut ar).await.unwrap();
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("handshake version 1")),
            "{answer}"
        );
        assert!(matches!(
            acc.await.unwrap(),
            Err(HandshakeError::Incompatible(_))
        ));
    }

    #[test]
    fn proofs_are_bound_to_role_and_ids() {
        let s = b"0123456789abcdef";
        let p = proof(s, "init", "n", "A", "B");
        assert!(verify(s, "init", "n", "A", "B", &p));
        assert!(!verify(s, "resp", "n", "A", "B", &p));
        assert!(!verify(s, "init", "n", "B", "A", &p));
        assert!(!verify(s, "init", "m", "A", "B", &p));
    }

    #[test]
    fn handshakes_are_capped_in_all_and_per_address() {
        let adm = Arc::new(Admission::default());
        let ip = |n: u8| IpAddr::from([10, 51, 0, n]);
        let a1 = adm.enter(ip(1)).unwrap();
        let _a2 = adm.enter(ip(1)).unwrap();
        assert_eq!(
            adm.enter(ip(1)).unwrap_err(),
            Refusal::BusyFrom {
                addr: ip(1),
                count: 2
            }
        );
        // Others still get in, up to the total.
        let mut others: Vec<Slot> = (2..=7).map(|n| adm.enter(ip(n)).unwrap()).collect();
        assert_eq!(adm.held(), MAX_HANDSHAKES);
        assert_eq!(adm.enter(ip(9)).unwrap_err(), Refusal::Busy(MAX_HANDSHAKES));
        // A finished handshake frees its slot.
        drop(a1);
        assert!(adm.enter(ip(1)).is_ok());
        others.clear();
        assert_eq!(adm.held(), 1);
    }

    #[test]
    fn refusals_are_logged_once_per_window_with_a_count() {
        let mut log = RefusalLog::new(Duration::from_secs(10));
        let t = Instant::now();
        assert_eq!(log.note(t), Some(0));
        for i in 1..=199 {
            assert_eq!(log.note(t + Duration::from_millis(i * 10)), None);
        }
        assert_eq!(log.note(t + Duration::from_secs(10)), Some(199));
        assert_eq!(log.note(t + Duration::from_secs(11)), None);
    }
}
