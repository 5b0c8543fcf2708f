//! Golden files: replies pinned as pretty JSON under a crate's
//! `tests/golden/`, so a change of the wire shows as a test failure and is
//! made on purpose (`DUPLEX_BLESS_GOLDEN=1` captures the files again).

use serde_json::Value;
use std::path::Path;

/// Compares `got` with `<dir>/<name>.json` and describes the difference,
/// or writes the file instead when `DUPLEX_BLESS_GOLDEN` is set.
pub fn check(dir: impl AsRef<Path>, name: &str, got: &Value) -> Option<String> {
    let file = dir.as_ref().join(format!("{name}.json"));
    let text = serde_json::to_string_pretty(got).unwrap() + "\n";
    if std::env::var_os("DUPLEX_BLESS_GOLDEN").is_some() {
        std::fs::write(&file, text).unwrap();
        return None;
    }
    let want: Value = serde_json::from_str(
        &std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("{}: {e} (capture it first)", file.display())),
    )
    .unwrap();
    (*got != want).then(|| {
        format!(
            "{name} changed on the wire:\n--- golden\n{}\n--- now\n{text}",
            serde_json::to_string_pretty(&want).unwrap()
        )
    })
}
