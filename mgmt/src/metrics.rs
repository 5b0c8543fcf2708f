//! `/metrics` (docs/mgmt.md, *Metrics*): the scrape token, made at first
//! start like the certificate, and one scrape: the calls of
//! [`core::metrics::SOURCES`](crate::core::metrics::SOURCES), then
//! [`render`](crate::core::metrics::render).

use crate::core::metrics::{self, Sources, SOURCES};
use crate::tls::TlsError;
use duplex_services::RouterClient;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// What the HTTP layer needs to answer a scrape.
#[derive(Clone)]
pub struct Scrape {
    /// A router client with a short timeout (a scrape must not hang).
    pub router: RouterClient,
    /// SHA-256 of the scrape token.
    pub token: [u8; 32],
}

/// The token file in `dir`.
pub fn token_path(dir: &Path) -> PathBuf {
    dir.join("metrics.token")
}

/// Makes the scrape token (random, mode 0600) unless it exists; returns
/// its hash. The token grants `/metrics` and nothing else.
pub fn ensure_token(dir: &Path) -> Result<[u8; 32], TlsError> {
    let path = token_path(dir);
    if !path.exists() {
        let mut buf = [0u8; 32];
        getrandom::getrandom(&mut buf).map_err(|e| TlsError::Io {
            path: path.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let token: String = buf.iter().map(|b| format!("{b:02x}")).collect();
        crate::tls::write_new(&path, format!("{token}\n").as_bytes(), 0o600)?;
    }
    let text = std::fs::read_to_string(&path).map_err(|source| TlsError::Io {
        path: path.clone(),
        source,
    })?;
    if text.trim().is_empty() {
        return Err(TlsError::Pem {
            path,
            reason: "the metrics token file is empty".into(),
        });
    }
    Ok(metrics::token_hash(&text))
}

/// One scrape's answers; a method that fails is left out (and shown as
/// `duplex_source_up 0`).
pub async fn gather(router: &RouterClient) -> Sources {
    let mut got: Vec<Option<Value>> = Vec::with_capacity(SOURCES.len());
    for m in SOURCES {
        got.push(router.call(m, json!({})).await.ok());
    }
    let mut it = got.into_iter();
    let mut next = || it.next().flatten();
    Sources {
        cluster: next(),
        timeline: next(),
        router: next(),
        config: next(),
        pools: next(),
        jobs: next(),
    }
}
