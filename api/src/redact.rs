//! Secrets out of what is shown: password hashes are removed for
//! everyone, and for `read_only` users (and in the audit log, which every
//! user may read) every secret-looking member (CHAP secrets, passwords)
//! as well. The management endpoint redacts results with it; the router
//! redacts the parameters it audits.

use crate::model::Role;
use serde_json::Value;

/// What replaces a redacted value.
pub const REDACTED: &str = "(redacted)";

fn secret_for(key: &str, role: Role) -> bool {
    let k = key.to_ascii_lowercase();
    k == "password_hash"
        || (role == Role::ReadOnly && (k.contains("secret") || k.contains("password")))
}

/// Redacts `v` in place for a caller with `role`.
pub fn redact(v: &mut Value, role: Role) {
    match v {
        Value::Object(map) => {
            for (k, x) in map.iter_mut() {
                if secret_for(k, role) && !x.is_null() {
                    *x = Value::String(REDACTED.into());
                } else {
                    redact(x, role);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|x| redact(x, role)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hashes_go_for_everyone_and_secrets_for_read_only() {
        let orig = json!({"users": {"a": {"name": "a", "password_hash": "$argon2id$x"}},
                          "hosts": [{"chap": {"user": "u", "secret": "s3cr3t", "mutual_secret": null}}]});
        let mut admin = orig.clone();
        redact(&mut admin, Role::Admin);
        assert_eq!(admin["users"]["a"]["password_hash"], REDACTED);
        assert_eq!(admin["hosts"][0]["chap"]["secret"], "s3cr3t");
        let mut ro = orig;
        redact(&mut ro, Role::ReadOnly);
        assert_eq!(ro["hosts"][0]["chap"]["secret"], REDACTED);
        assert_eq!(ro["hosts"][0]["chap"]["mutual_secret"], Value::Null);
        assert_eq!(ro["hosts"][0]["chap"]["user"], "u");
    }
}
