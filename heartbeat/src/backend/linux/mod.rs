//! The Linux implementations of the backend traits: heartbeat disks read and
//! written with O_DIRECT, the watchdog device, fence agents that run the
//! stock tools (`ipmitool`, `sg_persist`) through the one executor, and the
//! authenticated UDP interconnect, the front-end links' carrier and the
//! shelf's disks read past the cache.

pub mod disk;
pub mod frontend;
pub mod interconnect;
pub mod ipmi;
pub mod scsi_pr;
pub mod shelf;
pub mod watchdog;
