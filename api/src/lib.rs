//! duplex-api: the one place where Duplex's shared types live.
//!
//! - [`model`], [`syntax`], [`change`], [`validate`]: the desired-state
//!   model (the wire form of `config.get`), name/size/IQN/NQN/address
//!   syntax, the change language of `config.apply` and the validation
//!   rules. config-keeper enforces them on every write; pool-manager's and
//!   targets' readers and fakes use the same code.
//! - [`catalogue`]: every method that exists, with its one-line doc and its
//!   marks (read or write, audience, job); the router refuses a
//!   registration that names a method it lacks.
//! - [`topics`]: event topic names.
//! - [`redact`]: secrets removed from results and audit records.
//!
//! Architecture invariant: pure. No tokio, no I/O, no SQLite, no clock;
//! it only describes and checks.

pub mod catalogue;
pub mod change;
pub mod methods;
pub mod model;
pub mod redact;
pub mod syntax;
pub mod topics;
pub mod validate;
