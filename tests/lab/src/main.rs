//! duplex-lab
fn main() {}
