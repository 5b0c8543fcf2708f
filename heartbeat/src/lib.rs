//! Duplex heartbeat: failure detection, fencing, takeover and giveback.
//!
//! Layout, as in every service: `core` is pure (the partner state machine,
//! the on-disk slot format, the takeover and giveback plans); `backend`
//! holds the effects behind traits (heartbeat disks, the watchdog, fence
//! agents, the interconnect transport) with Linux and simulated
//! implementations.

pub mod backend;
pub mod core;
pub mod driver;
pub mod orchestrate;
pub mod rpc;
pub mod setup;
