//! Sessions: a random token (made by the caller) names one logged-in user
//! until it expires, is logged out, or the user is deleted or changed
//! (password or role). Only the token's SHA-256 is kept, so
//! a memory dump or a log of the table reveals no usable token.

use duplex_api::model::Role;
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// The most sessions held at once; the oldest is dropped beyond it, so a
/// script logging in in a loop cannot grow the table without bound.
pub const MAX_SESSIONS: usize = 4096;

/// A logged-in user as a call sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The login name.
    pub user: String,
    /// The role at login.
    pub role: Role,
    /// When the session ends, ms since the Unix epoch.
    pub expires_ms: u64,
    /// A fingerprint of the user's password hash at login: a new
    /// password ends the session.
    pub stamp: String,
}

#[derive(Debug, Clone)]
struct Entry {
    principal: Principal,
    created_ms: u64,
}

/// The session table.
#[derive(Debug)]
pub struct Sessions {
    ttl_ms: u64,
    by_hash: HashMap<[u8; 32], Entry>,
}

fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Sessions {
    /// An empty table whose sessions last `ttl_ms`.
    pub fn new(ttl_ms: u64) -> Sessions {
        Sessions {
            ttl_ms,
            by_hash: HashMap::new(),
        }
    }

    /// Opens a session for `user` under `token` at `now_ms`.
    pub fn open(
        &mut self,
        token: &str,
        user: &str,
        role: Role,
        stamp: &str,
        now_ms: u64,
    ) -> Principal {
        self.by_hash.retain(|_, e| e.principal.expires_ms > now_ms);
        if self.by_hash.len() >= MAX_SESSIONS {
            let oldest = self
                .by_hash
                .iter()
                .min_by_key(|(_, e)| e.created_ms)
                .map(|(k, _)| *k);
            if let Some(k) = oldest {
                self.by_hash.remove(&k);
            }
        }
        let principal = Principal {
            user: user.to_string(),
            role,
            expires_ms: now_ms.saturating_add(self.ttl_ms),
            stamp: stamp.to_string(),
        };
        self.by_hash.insert(
            hash(token),
            Entry {
                principal: principal.clone(),
                created_ms: now_ms,
            },
        );
        principal
    }

    /// The session of `token` if it is valid at `now_ms`; an expired one
    /// is dropped.
    pub fn check(&mut self, token: &str, now_ms: u64) -> Option<Principal> {
        let k = hash(token);
        match self.by_hash.get(&k) {
            Some(e) if e.principal.expires_ms > now_ms => Some(e.principal.clone()),
            Some(_) => {
                self.by_hash.remove(&k);
                None
            }
            None => None,
        }
    }

    /// Ends the session of `token`; true if there was one.
    pub fn close(&mut self, token: &str) -> bool {
        self.by_hash.remove(&hash(token)).is_some()
    }

    /// Ends every session of `user` (deleted, or its password changed).
    pub fn close_user(&mut self, user: &str) -> usize {
        let before = self.by_hash.len();
        self.by_hash.retain(|_, e| e.principal.user != user);
        before - self.by_hash.len()
    }

    /// Ends every session whose user no longer exists in `current`
    /// (user name to stamp and role) or whose stamp or role differ from
    /// it; returns how many ended.
    pub fn revoke_stale(&mut self, current: &HashMap<String, (String, Role)>) -> usize {
        let before = self.by_hash.len();
        self.by_hash.retain(|_, e| {
            current.get(&e.principal.user).is_some_and(|(stamp, role)| {
                *stamp == e.principal.stamp && *role == e.principal.role
            })
        });
        before - self.by_hash.len()
    }

    /// How many sessions are held.
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// True when no session is held.
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }
}

/// The session token a request presents: `Authorization: Bearer <t>`
/// first, else the `cookie` named cookie among the `Cookie` headers.
pub fn token_from(authorization: Option<&str>, cookies: &[&str], cookie: &str) -> Option<String> {
    if let Some(t) = authorization.and_then(|v| v.strip_prefix("Bearer ")) {
        return Some(t.trim().to_string());
    }
    cookies
        .iter()
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == cookie)
        .map(|(_, v)| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_lives_until_its_expiry_and_not_a_millisecond_longer() {
        let mut s = Sessions::new(1000);
        let p = s.open("tok", "alice", Role::Admin, "s", 5000);
        assert_eq!(p.expires_ms, 6000);
        assert_eq!(s.check("tok", 5999).map(|p| p.user), Some("alice".into()));
        assert_eq!(s.check("tok", 6000), None);
        // Dropped once seen expired.
        assert!(s.is_empty());
    }

    #[test]
    fn unknown_tokens_and_logged_out_sessions_are_refused() {
        let mut s = Sessions::new(1000);
        s.open("tok", "alice", Role::ReadOnly, "s", 0);
        assert_eq!(s.check("tok2", 1), None);
        assert!(s.close("tok"));
        assert!(!s.close("tok"));
        assert_eq!(s.check("tok", 1), None);
        s.open("a", "bob", Role::Admin, "s", 0);
        s.open("b", "bob", Role::Admin, "s", 0);
        s.open("c", "eve", Role::Admin, "s", 0);
        assert_eq!(s.close_user("bob"), 2);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn deleted_or_changed_users_lose_their_sessions() {
        let mut s = Sessions::new(1000);
        s.open("a", "ann", Role::Admin, "h1", 0);
        s.open("b", "bob", Role::Admin, "h2", 0);
        s.open("c", "cid", Role::Admin, "h3", 0);
        s.open("d", "dee", Role::ReadOnly, "h4", 0);
        let mut cur = HashMap::new();
        cur.insert("ann".to_string(), ("h1".to_string(), Role::Admin));
        cur.insert("bob".to_string(), ("new".to_string(), Role::Admin));
        cur.insert("dee".to_string(), ("h4".to_string(), Role::Admin));
        // bob: new password; cid: deleted; dee: role changed.
        assert_eq!(s.revoke_stale(&cur), 3);
        assert!(s.check("a", 1).is_some());
        assert!(s.check("b", 1).is_none() && s.check("c", 1).is_none());
        assert!(s.check("d", 1).is_none());
    }

    #[test]
    fn the_table_is_bounded() {
        let mut s = Sessions::new(u64::MAX / 2);
        let n = u64::try_from(MAX_SESSIONS).unwrap() + 10;
        for i in 0..n {
            s.open(&format!("t{i}"), "u", Role::Admin, "s", i);
        }
        assert_eq!(s.len(), MAX_SESSIONS);
        assert!(s.check("t0", 0).is_none(), "the oldest went first");
        assert!(s.check(&format!("t{}", n - 1), 0).is_some());
    }
}
