//! Pure heartbeat logic: no I/O, no tokio; time is an input.

pub mod latency;
pub mod machine;
pub mod slot;
pub mod types;
