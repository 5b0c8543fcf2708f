//! Typed parameters and results of the catalogue's methods.
//!
//! A method type implements [`RpcMethod`]: its name (which must be in the
//! [catalogue](crate::catalogue)), its params struct and its result
//! struct. Services register handlers through the typed form, so what a
//! handler accepts and returns is what the schema says; the JSON Schemas
//! (draft-07, as OpenRPC embeds them) are derived from the same structs.
//!
//! Typed so far: the `auth` and `rpc` namespaces (the management
//! endpoint's own) and the `config` namespace (its replication methods are the
//! peer protocol of config-keeper and stay with it). The others follow;
//! [`untyped`] lists them, and a test keeps that list honest.

pub mod auth;
pub mod config;

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema};
use serde::de::DeserializeOwned;
use serde::Serialize;

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
    config::Get,
    config::Apply,
    config::Watch,
    config::History,
    config::Digest,
    config::Lock,
    config::Unlock,
    config::Status,
    config::Events,
    config::RecordEvent,
    auth::Login,
    auth::Logout,
    auth::Discover,
);

/// Catalogued methods whose params and results are not typed yet.
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
        // Shrinks as namespaces are typed; a method typed or added must
        // be reflected here on purpose.
        let untyped = untyped();
        assert!(untyped.contains(&"config.repl_push"));
        assert!(!untyped.contains(&"config.apply"));
        assert_eq!(untyped.len() + TYPED.len(), crate::catalogue::METHODS.len());
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
