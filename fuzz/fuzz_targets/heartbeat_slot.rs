//! Fuzz the heartbeat area parser: arbitrary blocks read from a shared disk
//! (torn, foreign, corrupt) must decode to a typed error, never a panic,
//! and whatever decodes must encode back to the same bytes.
//! Run: `cargo fuzz run heartbeat_slot` (see fuzz/README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    duplex_heartbeat::core::slot::check_decode_property(data);
});
