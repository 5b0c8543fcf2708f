//! duplex-pool-manager
fn main() {}
