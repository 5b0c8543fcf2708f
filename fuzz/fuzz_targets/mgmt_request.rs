//! Fuzz the management endpoint's handling of what a client sends: the
//! method name against the roles, the params through the endpoint's own
//! types and the redaction, the session token from the headers, the
//! Origin check, the web UI's file names. Nothing may panic and each
//! answer keeps its promise (`duplex_mgmt::core::fuzz`).
//! Run: `cargo fuzz run mgmt_request` (see fuzz/README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    duplex_mgmt::core::fuzz::check_request_property(data);
});
