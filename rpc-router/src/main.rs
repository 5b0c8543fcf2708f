//! duplex-router
fn main() {}
