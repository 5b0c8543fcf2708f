//! The endpoint's certificate: `cert.pem` and `key.pem` in the state
//! directory, made self-signed at first start (the key file is 0600 from
//! its creation on). An admin replaces both files to install a real
//! certificate; the endpoint reads them at start.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
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
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert)
        .map_err(|e| TlsError::Pem {
            path: cert.clone(),
            reason: e.to_string(),
        })?
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem {
            path: cert.clone(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: cert,
            reason: "no certificate in the file".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(&key).map_err(|e| TlsError::Pem {
        path: key.clone(),
        reason: e.to_string(),
    })?;
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
    Ok(Arc::new(cfg))
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
    fn a_broken_key_is_reported_with_its_file() {
        let d = tempfile::tempdir().unwrap();
        ensure_certificate(d.path(), vec!["localhost".into()]).unwrap();
        std::fs::write(key_path(d.path()), "nonsense").unwrap();
        let e = server_config(d.path()).unwrap_err().to_string();
        assert!(e.contains("key.pem"), "{e}");
    }
}
