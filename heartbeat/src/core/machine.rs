//! The partner state machine.
