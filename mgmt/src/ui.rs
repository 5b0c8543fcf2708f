//! The web UI's static files: `GET` of `/` answers `index.html`, other
//! paths the file of that name in `[mgmt] ui_dir`. Names are checked
//! before the file system is touched, so nothing outside the directory is
//! ever read; no listing, no symlink is followed out of it.

use jsonrpsee::server::{HttpBody, HttpResponse};
use std::path::{Path, PathBuf};

/// Largest file served, bytes (the bundle is a few hundred KiB).
pub const MAX_FILE_BYTES: u64 = 8 << 20;

/// The page's Content-Security-Policy: everything from the endpoint
/// itself, no inline script, no other origin.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
frame-ancestors 'none'; form-action 'self'";

/// The relative file and its content type for a request path, or `None`
/// for a name the UI never has (the answer is then 404).
pub fn resolve(path: &str) -> Option<(PathBuf, &'static str)> {
    let rel = path.strip_prefix('/')?;
    let rel = if rel.is_empty() { "index.html" } else { rel };
    let mut out = PathBuf::new();
    for part in rel.split('/') {
        let ok = !part.is_empty()
            && !part.starts_with('.')
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_');
        if !ok {
            return None;
        }
        out.push(part);
    }
    let ext = out.extension().and_then(|e| e.to_str()).unwrap_or("");
    let ty = match ext {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "map" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        _ => return None,
    };
    Some((out, ty))
}

fn answer(status: http::StatusCode, body: Vec<u8>, ty: &'static str) -> HttpResponse {
    let mut r = HttpResponse::new(HttpBody::from(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(ty),
    );
    h.insert(
        http::header::CONTENT_SECURITY_POLICY,
        http::HeaderValue::from_static(CSP),
    );
    h.insert(
        http::header::X_FRAME_OPTIONS,
        http::HeaderValue::from_static("DENY"),
    );
    h.insert(
        http::header::REFERRER_POLICY,
        http::HeaderValue::from_static("no-referrer"),
    );
    r
}

fn not_found() -> HttpResponse {
    answer(
        http::StatusCode::NOT_FOUND,
        b"not found\n".to_vec(),
        "text/plain; charset=utf-8",
    )
}

/// Answers a `GET` of `path` from `dir` (`head`: headers only).
pub async fn serve(dir: &Path, path: &str, head: bool) -> HttpResponse {
    let Some((rel, ty)) = resolve(path) else {
        return not_found();
    };
    let file = dir.join(rel);
    // A symlink inside the directory could point anywhere: refuse it.
    match tokio::fs::symlink_metadata(&file).await {
        Ok(m) if m.is_file() && m.len() <= MAX_FILE_BYTES => {}
        Ok(m) if m.is_file() => {
            tracing::warn!(file = %file.display(), bytes = m.len(), "UI file too large to serve");
            return answer(
                http::StatusCode::INTERNAL_SERVER_ERROR,
                b"file too large\n".to_vec(),
                "text/plain; charset=utf-8",
            );
        }
        Ok(_) => return not_found(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if path == "/" {
                return answer(
                    http::StatusCode::NOT_FOUND,
                    format!(
                        "the web UI is not installed here ({} has no index.html); duplexctl and the JSON-RPC endpoint work without it\n",
                        dir.display()
                    )
                    .into_bytes(),
                    "text/plain; charset=utf-8",
                );
            }
            return not_found();
        }
        Err(e) => {
            tracing::warn!(file = %file.display(), error = %e, "cannot read a UI file");
            return not_found();
        }
    }
    if head {
        return answer(http::StatusCode::OK, Vec::new(), ty);
    }
    match tokio::fs::read(&file).await {
        Ok(body) => answer(http::StatusCode::OK, body, ty),
        Err(e) => {
            tracing::warn!(file = %file.display(), error = %e, "cannot read a UI file");
            not_found()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_inside_the_directory_or_nowhere() {
        assert_eq!(
            resolve("/"),
            Some((PathBuf::from("index.html"), "text/html; charset=utf-8"))
        );
        assert_eq!(
            resolve("/app.js").map(|r| r.1),
            Some("text/javascript; charset=utf-8")
        );
        assert_eq!(
            resolve("/assets/logo.svg").map(|r| r.0),
            Some(PathBuf::from("assets/logo.svg"))
        );
        for bad in [
            "/../etc/passwd",
            "/a/../../x.js",
            "/.hidden.js",
            "//app.js",
            "/app.js/",
            "/app%2e.js",
            "/app.exe",
            "/noext",
            "relative.js",
            "/a\\b.js",
        ] {
            assert_eq!(resolve(bad), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn serves_files_with_the_policy_and_refuses_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.html"), "<!doctype html>").unwrap();
        std::os::unix::fs::symlink("/etc/hostname", dir.path().join("x.txt")).unwrap();
        let r = serve(dir.path(), "/", false).await;
        assert_eq!(r.status(), http::StatusCode::OK);
        assert_eq!(r.headers()[http::header::CONTENT_SECURITY_POLICY], CSP);
        assert_eq!(serve(dir.path(), "/x.txt", false).await.status(), 404);
        assert_eq!(serve(dir.path(), "/nope.js", false).await.status(), 404);
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(serve(empty.path(), "/", false).await.status(), 404);
    }
}
