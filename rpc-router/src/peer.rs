//! The peer link to the partner's router over the interconnect.
//!
//! Each router dials the partner for its own outgoing calls (tries every
//! configured address in turn, reconnecting with backoff) and accepts the
//! partner's dial for incoming calls: two TCP connections, each carrying
//! requests one way.
//!
//! Authentication is a mutual HMAC-SHA256 challenge-response on the shared
//! cluster secret before any JSON-RPC frame is accepted:
//!
//! ```text
//! dialer   -> listener  {"duplex_peer":1,"controller":"A","nonce":nA}
//! listener -> dialer    {"controller":"B","nonce":nB,"proof":H(secret,"resp"|nA|B|A)}
//! dialer   -> listener  {"proof":H(secret,"init"|nB|A|B)}
//! listener -> dialer    {"ok":true}            (or a JSON-RPC error, then close)
//! ```
//!
//! Fresh random nonces on both sides make a recorded exchange useless for
//! replay. Frames after the handshake are not individually authenticated;
//! the interconnect is a direct cable between the two controllers.

use duplex_api::catalogue::{Version, VERSION as CATALOGUE};
use duplex_services::rpc::{to_frame, ErrorCode, Response, RpcError};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

/// How long a handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

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
    proof: String,
    /// The listener's method catalogue.
    #[serde(default)]
    catalogue: Option<Version>,
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
                duplex_peer: 1,
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
        if !verify(secret, "resp", &n_me, partner, me, &ch.proof) {
            return Err(HandshakeError::Unauthorized(
                "the partner does not know the cluster secret".into(),
            ));
        }
        check_catalogue(ch.catalogue)?;
        write_json(
            w,
            &Proof {
                proof: proof(secret, "init", &ch.nonce, me, partner),
            },
        )
        .await?;
        let v: serde_json::Value = read_json(r).await?;
        if v.get("ok") == Some(&serde_json::Value::Bool(true)) {
            Ok(())
        } else {
            Err(HandshakeError::Unauthorized(format!(
                "refused by the partner: {v}"
            )))
        }
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
        if hello.duplex_peer != 1 || hello.controller != partner {
            return Err(HandshakeError::Unauthorized(format!(
                "hello from controller {:?}, expected {partner:?}",
                hello.controller
            )));
        }
        let n_me = nonce();
        if n_me.is_empty() {
            return Err(HandshakeError::Protocol("no randomness for a nonce".into()));
        }
        let p = proof(secret, "resp", &hello.nonce, me, partner);
        write_json(
            w,
            &Challenge {
                controller: me.into(),
                nonce: n_me.clone(),
                proof: p,
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
        write_json(w, &serde_json::json!({"ok": true})).await?;
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
        let secret: &[u8] = b"0123456789abcdef";
        let (a, b) = tokio::io::duplex(4096);
        let (ar, mut aw) = tokio::io::split(a);
        let (br, mut bw) = tokio::io::split(b);
        let acc = tokio::spawn(async move {
            let mut br = BufReader::new(br);
            accept_handshake(&mut br, &mut bw, secret, "B", "A").await
        });
        let mut ar = BufReader::new(ar);
        let newer = Version {
            major: CATALOGUE.major + 1,
            minor: 0,
        };
        let hello = Hello {
            duplex_peer: 1,
            controller: "A".into(),
            nonce: "n-a".into(),
            catalogue: Some(newer),
        };
        write_json(&mut aw, &hello).await.unwrap();
        let ch: Challenge = read_json(&mut ar).await.unwrap();
        let p = Proof {
            proof: proof(secret, "init", &ch.nonce, "A", "B"),
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

    #[test]
    fn proofs_are_bound_to_role_and_ids() {
        let s = b"0123456789abcdef";
        let p = proof(s, "init", "n", "A", "B");
        assert!(verify(s, "init", "n", "A", "B", &p));
        assert!(!verify(s, "resp", "n", "A", "B", &p));
        assert!(!verify(s, "init", "n", "B", "A", &p));
        assert!(!verify(s, "init", "m", "A", "B", &p));
    }
}
