//! duplex-config-keeper
fn main() {}
