//! The Duplex lab: two controllers (A, B) sharing a disk shelf and a
//! multipath host (H), as QEMU guests in a private network namespace.
//!
//! Architecture invariant: every host command goes through [`cmd`] (argument
//! vector, timeout); every wait is bounded; guests are reached only through
//! their QMP socket ([`qmp`]) and the guest agent ([`agent`]).

pub mod agent;
pub mod appliance;
pub mod bmc;
pub mod checks;
pub mod cmd;
pub mod demo;
pub mod events;
pub mod failover;
pub mod fault;
pub mod forward;
pub mod framework;
pub mod lab;
pub mod monitor;
pub mod prdisk;
pub mod qmp;
pub mod scenario;
pub mod verify;
pub mod writers;
