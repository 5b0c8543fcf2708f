//! duplexctl
fn main() {}
