//! The pure part: the configfs model, the desired tree built from the
//! configuration, and the planner. No I/O, no tokio.
//!
//! Architecture invariant: nothing here touches the outside world, so every
//! decision is a unit test on plain values.

pub mod desired;
pub mod flip;
pub mod model;
pub mod net;
pub mod plan;
pub mod pr;

pub use desired::{build, Desired, Local, Scope};
pub use model::{AccessState, AluaState, AnaState, Tree};
pub use plan::{plan, Step};
