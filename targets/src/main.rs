//! duplex-targets
fn main() {}
