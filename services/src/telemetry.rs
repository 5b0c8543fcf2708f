//! Logging setup: journald when running under systemd, readable text on a
//! terminal. Filter with `DUPLEX_LOG` (or `RUST_LOG`), default `info`.
//!
//! Under journald every field is a journal field: `journalctl ACTION_ID=<id>`
//! lists one action's lines from every service on this controller.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber for a daemon or tool named `name`.
/// Safe to call twice (the second call does nothing).
pub fn init(name: &str) {
    let filter = std::env::var("DUPLEX_LOG")
        .ok()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    // systemd sets JOURNAL_STREAM when stdout/stderr go to the journal.
    let under_journal = std::env::var_os("JOURNAL_STREAM").is_some();
    if under_journal {
        if let Ok(layer) = tracing_journald::layer() {
            // No field prefix: span fields become plain journal fields, so
            // `journalctl ACTION_ID=<id>` follows one action across services.
            let layer = layer
                .with_syslog_identifier(name.to_string())
                .with_field_prefix(None);
            let _ = tracing_subscriber::registry()
                .with(filter)
                .with(layer)
                .try_init();
            return;
        }
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}
