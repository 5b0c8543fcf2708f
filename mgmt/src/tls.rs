//! The endpoint's certificate: `cert.pem` and `key.pem` in the state
//! directory, made self-signed at first start (the key file is 0600 from
//! its creation on). An admin installs another pair with `duplexctl cert
//! install` ([`install`]: checked first, a bad pair never replaces a good
//! one); the endpoint loads it at its next connection ([`Reloading`]).

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why the certificate could not be made or loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{path}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Generating the self-signed certificate failed.
    #[error("cannot generate the self-signed certificate")]
    Generate(#[from] rcgen::Error),
    /// A PEM file holds no usable certificate or key.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the certificate and key.
    #[error("the certificate and key do not make a TLS configuration")]
    Config(#[from] rustls::Error),
}

/// The certificate file in `dir`.
pub fn cert_path(dir: &Path) -> PathBuf {
    dir.join("cert.pem")
}

/// The key file in `dir`.
pub fn key_path(dir: &Path) -> PathBuf {
    dir.join("key.pem")
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `data` to `path` through a temp file created with `mode`, so the
/// file never exists with looser permissions or half written.
/// Writes a new file (through a temporary one, synced, renamed) with `mode`.
pub(crate) fn write_new(path: &Path, data: &[u8], mode: u32) -> Result<(), TlsError> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(data).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// Makes `cert.pem` and `key.pem` in `dir` unless both exist; `names` are
/// the certificate's subject alternative names. Returns whether it made them.
pub fn ensure_certificate(dir: &Path, names: Vec<String>) -> Result<bool, TlsError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
    let (cert, key) = (cert_path(dir), key_path(dir));
    if cert.exists() && key.exists() {
        return Ok(false);
    }
    let made = rcgen::generate_simple_self_signed(names)?;
    // The key first: a certificate without its key would be kept next time.
    write_new(&key, made.signing_key.serialize_pem().as_bytes(), 0o600)?;
    write_new(&cert, made.cert.pem().as_bytes(), 0o644)?;
    Ok(true)
}

/// The TLS server configuration from the files in `dir` (HTTP/1.1 only:
/// the WebSocket upgrade needs it, and browsers and scripts speak it).
pub fn server_config(dir: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let (cert, key) = (cert_path(dir), key_path(dir));
    let cert_pem = std::fs::read(&cert).map_err(io(&cert))?;
    let key_pem = std::fs::read(&key).map_err(io(&key))?;
    config_from(&cert_pem, &cert, &key_pem, &key).map(|(c, _)| c)
}

/// The configuration from PEM text (`cert_file`, `key_file` name it in
/// errors), and the first certificate's fingerprint.
fn config_from(
    cert_pem: &[u8],
    cert_file: &Path,
    key_pem: &[u8],
    key_file: &Path,
) -> Result<(Arc<rustls::ServerConfig>, String), TlsError> {
    let pem = |path: &Path, e: &dyn std::fmt::Display| TlsError::Pem {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| pem(cert_file, &e))?;
    let Some(first) = certs.first() else {
        return Err(pem(cert_file, &"no certificate in the file"));
    };
    let print = fingerprint(first);
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| pem(key_file, &e))?;
    // ring rather than aws-lc-rs: no C/cmake build on the controller image.
    // rustls 0.23.48 deprecates it for lacking post-quantum key exchange,
    // which this admin-network endpoint does without.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((Arc::new(cfg), print))
}

/// A certificate's SHA-256 as `SHA256:<hex>` (what `duplexctl login` pins).
pub fn fingerprint(der: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let hex: String = Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("SHA256:{hex}")
}

/// The fingerprint of the certificate installed in `dir`.
pub fn installed_fingerprint(dir: &Path) -> Result<String, TlsError> {
    let cert = cert_path(dir);
    let first = CertificateDer::pem_file_iter(&cert)
        .map_err(|e| TlsError::Pem {
            path: cert.clone(),
            reason: e.to_string(),
        })?
        .next()
        .ok_or_else(|| TlsError::Pem {
            path: cert.clone(),
            reason: "no certificate in the file".into(),
        })?
        .map_err(|e| TlsError::Pem {
            path: cert.clone(),
            reason: e.to_string(),
        })?;
    Ok(fingerprint(&first))
}

/// Installs a certificate chain and its key (PEM) in `dir` once they make
/// a TLS configuration together; the files get the directory's owner (the
/// endpoint's user). Returns the certificate's fingerprint.
pub fn install(
    dir: &Path,
    cert_pem: &[u8],
    cert_from: &Path,
    key_pem: &[u8],
    key_from: &Path,
) -> Result<String, TlsError> {
    let (_, print) = config_from(cert_pem, cert_from, key_pem, key_from)?;
    let meta = std::fs::metadata(dir).map_err(io(dir))?;
    let (cert, key) = (cert_path(dir), key_path(dir));
    // The key first, as at first start; the endpoint keeps the pair in
    // use while the two files disagree.
    for (path, data, mode) in [(&key, key_pem, 0o600), (&cert, cert_pem, 0o644)] {
        write_new(path, data, mode)?;
        std::os::unix::fs::chown(path, Some(meta.uid()), Some(meta.gid())).map_err(io(path))?;
    }
    Ok(print)
}

/// When the certificate and the key last changed (`None`: one is missing).
type Stamp = Option<(SystemTime, SystemTime)>;

/// When the pair in a directory last changed.
fn stamps(dir: &Path) -> Stamp {
    let at = |p: PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    Some((at(cert_path(dir))?, at(key_path(dir))?))
}

/// The endpoint's TLS configuration, loaded again when the files change
/// (checked at each new connection; a pair that does not load keeps the
/// one in use, with a warning).
pub struct Reloading {
    dir: PathBuf,
    state: Mutex<(Stamp, Arc<rustls::ServerConfig>)>,
}

impl Reloading {
    /// Loads the pair in `dir`.
    pub fn new(dir: &Path) -> Result<Reloading, TlsError> {
        let stamp = stamps(dir);
        let cfg = server_config(dir)?;
        Ok(Reloading {
            dir: dir.to_path_buf(),
            state: Mutex::new((stamp, cfg)),
        })
    }

    /// The configuration for a new connection.
    pub fn current(&self) -> Arc<rustls::ServerConfig> {
        let now = stamps(&self.dir);
        let mut st = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if now.is_some() && now != st.0 {
            st.0 = now;
            match server_config(&self.dir) {
                Ok(c) => {
                    st.1 = c;
                    tracing::info!(dir = %self.dir.display(), "certificate reloaded");
                }
                Err(e) => tracing::warn!(
                    error = %e,
                    "the changed certificate does not load; keeping the one in use"
                ),
            }
        }
        Arc::clone(&st.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_start_makes_a_usable_pair_with_a_private_key() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("mgmt");
        assert!(ensure_certificate(&dir, vec!["localhost".into()]).unwrap());
        let mode = std::fs::metadata(key_path(&dir))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(server_config(&dir).is_ok());
        // Kept on the next start.
        let before = std::fs::read(cert_path(&dir)).unwrap();
        assert!(!ensure_certificate(&dir, vec!["localhost".into()]).unwrap());
        assert_eq!(std::fs::read(cert_path(&dir)).unwrap(), before);
    }

    #[test]
    fn an_installed_pair_is_checked_first_and_picked_up_at_the_next_connection() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("mgmt");
        ensure_certificate(&dir, vec!["localhost".into()]).unwrap();
        let live = Reloading::new(&dir).unwrap();
        let old = installed_fingerprint(&dir).unwrap();
        let first = live.current();
        // Another pair, made elsewhere.
        let other = d.path().join("other");
        ensure_certificate(&other, vec!["nas.example.com".into()]).unwrap();
        let (cert, key) = (cert_path(&other), key_path(&other));
        let (c, k) = (std::fs::read(&cert).unwrap(), std::fs::read(&key).unwrap());
        // A key that is not the certificate's changes nothing.
        let mine = std::fs::read(key_path(&dir)).unwrap();
        assert!(install(&dir, &c, &cert, &mine, &key).is_err());
        assert_eq!(installed_fingerprint(&dir).unwrap(), old);
        let print = install(&dir, &c, &cert, &k, &key).unwrap();
        assert_ne!(print, old);
        assert_eq!(installed_fingerprint(&dir).unwrap(), print);
        assert!(!Arc::ptr_eq(&first, &live.current()), "reloaded");
        let mode = std::fs::metadata(key_path(&dir))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_broken_key_is_reported_with_its_file() {
        let d = tempfile::tempdir().unwrap();
        ensure_certificate(d.path(), vec!["localhost".into()]).unwrap();
        std::fs::write(key_path(d.path()), "nonsense").unwrap();
        let e = server_config(d.path()).unwrap_err().to_string();
        assert!(e.contains("key.pem"), "{e}");
    }
}
