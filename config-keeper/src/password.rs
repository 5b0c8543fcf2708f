//! Turns a clear `password` in a user change into an Argon2id hash before
//! validation, so the clear text never reaches the database, the log or the
//! partner.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Argon2, PasswordHash};
use serde_json::Value;

use duplex_api::change::Violation;
use duplex_api::model::Config;

/// Hashes a password with Argon2id (default parameters) and a random salt.
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// True when `password` matches the PHC `hash`.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Rewrites every `{"kind": "user", "object": {"password": ...}}` in the
/// `changes` array to carry `password_hash` instead. When the user exists and
/// the password still matches its hash, the stored hash is reused so that a
/// repeated apply stays a no-op (a new salt would make it a change).
pub fn hash_passwords_in(changes: &mut Value, current: &Config) -> Result<(), Violation> {
    let Some(items) = changes.as_array_mut() else {
        return Ok(());
    };
    for (i, item) in items.iter_mut().enumerate() {
        if item.get("kind").and_then(Value::as_str) != Some("user") {
            continue;
        }
        let Some(obj) = item.get_mut("object").and_then(Value::as_object_mut) else {
            continue;
        };
        let Some(pw) = obj.remove("password") else {
            continue;
        };
        let at = format!("changes[{i}].object.password");
        let Some(pw) = pw.as_str() else {
            return Err(Violation::invalid(at, "must be a string"));
        };
        if pw.len() < 8 {
            return Err(Violation::invalid(at, "must be at least 8 characters"));
        }
        if obj.contains_key("password_hash") {
            return Err(Violation::invalid(
                at,
                "give either password or password_hash, not both",
            ));
        }
        let name = obj.get("name").and_then(Value::as_str).unwrap_or_default();
        let hash = match current.users.get(name) {
            Some(u) if verify_password(pw, &u.password_hash) => u.password_hash.clone(),
            _ => hash_password(pw)
                .map_err(|e| Violation::invalid(at, format!("cannot hash: {e}")))?,
        };
        obj.insert("password_hash".into(), Value::String(hash));
    }
    Ok(())
}
