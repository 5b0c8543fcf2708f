//! The authorization decision: the only place that maps a method's
//! catalogue marks and the caller's session to allowed or refused.

use duplex_api::catalogue::{self, Access, Audience};
use duplex_api::model::Role;

/// The method callable without a session.
pub const LOGIN: &str = "auth.login";

/// Why a call is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Not in the catalogue, or not `external` (internal and peer methods
    /// are answered as if they did not exist, so the endpoint reveals
    /// nothing about them).
    #[error("no method {0}")]
    NotFound(String),
    /// No valid session: log in first.
    #[error("log in first (auth.login): no valid session")]
    NoSession,
    /// The role may not call it.
    #[error("the {role} role may not call {method}: it changes state")]
    Role {
        /// The method.
        method: String,
        /// The caller's role name.
        role: &'static str,
    },
}

/// The role's name on the wire.
pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Admin => "admin",
        Role::ReadOnly => "read_only",
    }
}

/// May a caller with `role` (`None`: no valid session) call `method`?
pub fn decide(method: &str, role: Option<Role>) -> Result<(), Refusal> {
    let Some(m) = catalogue::lookup(method) else {
        return Err(Refusal::NotFound(method.to_string()));
    };
    if m.audience != Audience::External {
        return Err(Refusal::NotFound(method.to_string()));
    }
    if method == LOGIN {
        return Ok(());
    }
    let Some(role) = role else {
        return Err(Refusal::NoSession);
    };
    match (role, m.access) {
        (Role::Admin, _) | (Role::ReadOnly, Access::Read) => Ok(()),
        (Role::ReadOnly, Access::Write) => Err(Refusal::Role {
            method: method.to_string(),
            role: role_name(role),
        }),
    }
}

/// Every method the endpoint serves: the catalogue's `external` ones.
pub fn reachable() -> impl Iterator<Item = &'static catalogue::Method> {
    catalogue::METHODS
        .iter()
        .filter(|m| m.audience == Audience::External)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_login_is_open_without_a_session() {
        assert_eq!(decide("auth.login", None), Ok(()));
        for m in reachable().filter(|m| m.name != LOGIN) {
            assert_eq!(decide(m.name, None), Err(Refusal::NoSession), "{}", m.name);
        }
    }

    #[test]
    fn read_only_reads_and_admin_does_everything_external() {
        assert_eq!(decide("pool.status", Some(Role::ReadOnly)), Ok(()));
        assert_eq!(decide("auth.logout", Some(Role::ReadOnly)), Ok(()));
        assert!(matches!(
            decide("pool.create", Some(Role::ReadOnly)),
            Err(Refusal::Role { .. })
        ));
        for m in reachable() {
            assert_eq!(decide(m.name, Some(Role::Admin)), Ok(()), "{}", m.name);
            let ro = decide(m.name, Some(Role::ReadOnly));
            assert_eq!(ro.is_ok(), m.access == Access::Read, "{}", m.name);
        }
    }

    #[test]
    fn internal_peer_and_unknown_methods_do_not_exist_here() {
        for m in catalogue::METHODS
            .iter()
            .filter(|m| m.audience != Audience::External)
        {
            for role in [None, Some(Role::Admin)] {
                assert_eq!(
                    decide(m.name, role),
                    Err(Refusal::NotFound(m.name.into())),
                    "{}",
                    m.name
                );
            }
        }
        assert!(matches!(
            decide("pool.frobnicate", Some(Role::Admin)),
            Err(Refusal::NotFound(_))
        ));
        assert!(reachable().all(|m| m.audience == Audience::External));
        assert!(reachable().any(|m| m.name == "rpc.discover"));
    }
}
