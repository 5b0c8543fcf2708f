//! duplex-heartbeat
fn main() {}
