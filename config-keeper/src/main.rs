//! duplex-config-keeper: the configuration database service.
fn main() {}
