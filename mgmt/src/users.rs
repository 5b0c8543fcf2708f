//! Password checks against the users config-keeper holds (Argon2id PHC
//! hashes). The hash is fetched through the router for each login and
//! checked here, on a blocking thread, so the endpoint's calls are not
//! held up by the deliberately slow hash.

use argon2::{Argon2, PasswordHash, PasswordVerifier};
use duplex_api::model::{Role, User};
use duplex_services::rpc::ErrorCode;
use duplex_services::RouterClient;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// Why a login failed.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Unknown user or wrong password (never said which).
    #[error("wrong user name or password")]
    Denied,
    /// config-keeper could not be asked.
    #[error("the user database is unavailable: {0}")]
    Unavailable(String),
}

/// An Argon2id hash of a password nobody has, checked for unknown users
/// so that they take as long as known ones.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$GcqtCsCk7AsMvPHDfVH0e7YqVbYpYLOsM2sL4JtP1oM";

fn verify(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// The session stamp of a password hash: its SHA-256, so a session never
/// holds the hash itself.
pub fn stamp(password_hash: &str) -> String {
    Sha256::digest(password_hash.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Every user now: name to (stamp, role).
pub async fn current(router: &RouterClient) -> Result<HashMap<String, (String, Role)>, LoginError> {
    let v = router
        .call("config.get", json!({"kind": "user"}))
        .await
        .map_err(|e| LoginError::Unavailable(e.to_string()))?;
    let users: Vec<User> = serde_json::from_value(v["config"]["user"].clone())
        .map_err(|e| LoginError::Unavailable(format!("unreadable users: {e}")))?;
    Ok(users
        .into_iter()
        .map(|u| (u.name, (stamp(&u.password_hash), u.role)))
        .collect())
}

/// Checks `user`'s `password` and returns the user's role and stamp.
pub async fn check(
    router: &RouterClient,
    user: &str,
    password: &str,
) -> Result<(Role, String), LoginError> {
    let found = match router
        .call("config.get", json!({"kind": "user", "name": user}))
        .await
    {
        Ok(v) => serde_json::from_value::<User>(v["config"]["user"].clone()).ok(),
        Err(e) if e.kind() == Some(ErrorCode::NotFound) => None,
        Err(e) => return Err(LoginError::Unavailable(e.to_string())),
    };
    let (hash, role) = match &found {
        Some(u) => (u.password_hash.clone(), Some(u.role)),
        None => (DUMMY_HASH.to_string(), None),
    };
    let password = password.to_string();
    let h = hash.clone();
    let ok = tokio::task::spawn_blocking(move || verify(&password, &h))
        .await
        .map_err(|e| LoginError::Unavailable(format!("password check failed: {e}")))?;
    match (ok, role) {
        (true, Some(role)) => Ok((role, stamp(&hash))),
        _ => Err(LoginError::Denied),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHasher, SaltString};

    #[test]
    fn verifies_argon2id_hashes_and_refuses_garbage() {
        let salt = SaltString::from_b64("c29tZXNhbHRzb21lc2FsdA").unwrap();
        let h = Argon2::default()
            .hash_password(b"correct horse", &salt)
            .unwrap()
            .to_string();
        assert!(verify("correct horse", &h));
        assert!(!verify("wrong", &h));
        assert!(!verify("correct horse", "not a hash"));
        assert!(
            PasswordHash::new(DUMMY_HASH).is_ok(),
            "the dummy hash parses"
        );
    }
}
