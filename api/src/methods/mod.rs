//! Typed parameters and results of the catalogue's methods.
//!
//! A method type implements [`RpcMethod`]: its name (which must be in the
//! [catalogue](crate::catalogue)), its params struct and its result
//! struct. Services register handlers through the typed form, so what a
//! handler accepts and returns is what the schema says; the JSON Schemas
//! (draft-07, as OpenRPC embeds them) are derived from the same structs.
//!
//! Every catalogued method is typed (the management endpoint's own
//! `auth` and `rpc` namespaces too) except config-keeper's replication
//! protocol (`config.repl_*`: the partner keeper's own wire, never an
//! administrator's); [`untyped`] lists them and a test keeps that list
//! exact. Where a reply carries a structure owned by one service (an LVM
//! view, the configfs tree, the heartbeat state machine) the field is a
//! JSON value documented as that service's form.

/// Declares a method type: `method!(Type, "ns.verb", Params, Result)`.
macro_rules! method {
    ($t:ident, $name:literal, $p:ty, $r:ty) => {
        #[doc = concat!("`", $name, "`.")]
        pub struct $t;
        impl $crate::methods::RpcMethod for $t {
            const NAME: &'static str = $name;
            type Params = $p;
            type Result = $r;
        }
    };
}

pub mod auth;
pub mod cluster;
pub mod config;
pub mod disk;
pub mod event;
pub mod job;
pub mod net;
pub mod pool;
pub mod reservations;
pub mod router;
pub mod target;
pub mod volume;

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// One method with typed params and result.
pub trait RpcMethod {
    /// The catalogue name (`config.apply`).
    const NAME: &'static str;
    /// What the caller sends.
    type Params: DeserializeOwned + Serialize + JsonSchema + Send + 'static;
    /// What the method answers.
    type Result: DeserializeOwned + Serialize + JsonSchema + Send + 'static;
}

/// The draft-07 JSON Schemas of one method's params and result.
#[derive(Debug, Clone)]
pub struct MethodSchemas {
    /// Schema of the params object.
    pub params: Schema,
    /// Schema of the result.
    pub result: Schema,
}

/// No parameters (an empty object or none).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

/// What every service's `<namespace>.status` reports about the process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ServiceInfo {
    /// Service name (`targets`).
    pub service: String,
    /// Its version.
    pub version: String,
    /// This controller.
    pub controller: String,
    /// Its process id.
    pub pid: u32,
    /// Seconds since it started.
    pub uptime_s: u64,
}

/// Outcome of an idempotent operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Something was changed.
    Changed,
    /// It was already so; nothing changed.
    Unchanged,
}

fn schemas_of<M: RpcMethod>() -> MethodSchemas {
    let mut g = SchemaSettings::draft07().into_generator();
    MethodSchemas {
        params: g.root_schema_for::<M::Params>(),
        result: g.root_schema_for::<M::Result>(),
    }
}

/// Calls `f` with the name and schemas of every typed method.
macro_rules! typed_methods {
    ($($m:ty),* $(,)?) => {
        /// Names of every typed method.
        pub const TYPED: &[&str] = &[$(<$m as RpcMethod>::NAME),*];

        /// The schemas of `name`, if it is typed.
        pub fn schemas(name: &str) -> Option<MethodSchemas> {
            $(if name == <$m as RpcMethod>::NAME { return Some(schemas_of::<$m>()); })*
            None
        }
    };
}

typed_methods!(
    router::Register,
    router::Services,
    router::Actions,
    router::Status,
    router::Ping,
    event::Subscribe,
    event::Unsubscribe,
    event::Publish,
    config::Get,
    config::Apply,
    config::Watch,
    config::History,
    config::Digest,
    config::Lock,
    config::Unlock,
    config::Status,
    config::RebuildFromPartner,
    config::Events,
    config::RecordEvent,
    config::Audit,
    config::AuditAppend,
    job::Start,
    job::Get,
    job::Wait,
    job::List,
    disk::List,
    pool::Layouts,
    pool::Create,
    pool::Delete,
    pool::Export,
    pool::Import,
    pool::Takeover,
    pool::Status,
    pool::Repair,
    pool::Reconcile,
    pool::ActiveLocal,
    volume::Create,
    volume::Resize,
    volume::Delete,
    volume::Snapshot,
    volume::CloneVolume,
    volume::List,
    target::Status,
    target::Show,
    target::AccessStates,
    target::SetAccessState,
    target::Reconcile,
    net::Status,
    net::Up,
    net::Down,
    cluster::Status,
    cluster::Init,
    cluster::Failover,
    cluster::Giveback,
    cluster::Maintenance,
    cluster::FenceTest,
    cluster::Timeline,
    reservations::Reservations,
    reservations::ClearReservations,
    auth::Login,
    auth::Logout,
    auth::Whoami,
    auth::Discover,
);

/// Catalogued methods without typed params and results: the peer
/// protocol of config-keeper, which only the partner keeper speaks.
pub fn untyped() -> Vec<&'static str> {
    crate::catalogue::METHODS
        .iter()
        .map(|m| m.name)
        .filter(|n| !TYPED.contains(n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_typed_method_is_catalogued_and_has_draft07_schemas() {
        for name in TYPED {
            assert!(
                crate::catalogue::lookup(name).is_some(),
                "{name} not catalogued"
            );
            let s = schemas(name).expect("schemas");
            let p = serde_json::to_value(&s.params).expect("json");
            assert_eq!(
                p["$schema"], "http://json-schema.org/draft-07/schema#",
                "{name}"
            );
            assert!(serde_json::to_value(&s.result).is_ok());
        }
        assert!(schemas("pool.frobnicate").is_none());
    }

    #[test]
    fn the_untyped_list_is_exactly_what_remains() {
        // Only the keepers' replication protocol stays untyped; a method
        // added to the catalogue must be typed, or listed here on purpose.
        assert_eq!(
            untyped(),
            [
                "config.repl_audit",
                "config.repl_hello",
                "config.repl_push",
                "config.repl_snapshot"
            ]
        );
        assert_eq!(
            untyped().len() + TYPED.len(),
            crate::catalogue::METHODS.len()
        );
    }

    #[test]
    fn every_catalogued_method_has_params_and_result_schemas() {
        for m in crate::catalogue::METHODS {
            if untyped().contains(&m.name) {
                continue;
            }
            let s = schemas(m.name).unwrap_or_else(|| panic!("{}: no schemas", m.name));
            for (what, schema) in [("params", &s.params), ("result", &s.result)] {
                let v = serde_json::to_value(schema).expect("json");
                assert_eq!(
                    v["$schema"], "http://json-schema.org/draft-07/schema#",
                    "{} {what}",
                    m.name
                );
                assert!(
                    v.get("type").is_some() || v.get("anyOf").is_some() || v.get("oneOf").is_some(),
                    "{} {what}: the schema says nothing: {v}",
                    m.name
                );
            }
        }
    }

    #[test]
    fn typed_names_are_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for n in TYPED {
            assert!(seen.insert(n), "{n} typed twice");
        }
    }

    #[test]
    fn params_refuse_unknown_fields_and_name_the_bad_one() {
        let e = serde_json::from_value::<config::ApplyParams>(serde_json::json!({
            "changes": [], "snyc": true
        }))
        .unwrap_err();
        assert!(e.to_string().contains("snyc"), "{e}");
    }
}
