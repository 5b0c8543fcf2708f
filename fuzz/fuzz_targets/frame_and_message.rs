//! Fuzz the router's input path: framing of arbitrary byte streams split at
//! arbitrary points, then JSON-RPC message parsing and round trip.
//! Run: `cargo fuzz run frame_and_message` (see fuzz/README.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    duplex_services::frame::check_framing_property(data);
});
