//! What the endpoint does with what a client sends, checked on arbitrary
//! input (`fuzz/fuzz_targets/mgmt_request.rs`, and generated inputs in the
//! plain test suite): the method name against the roles, the params as
//! JSON through the endpoint's own parameter types and the redaction, the
//! session token from the headers, the Origin check and the UI's file
//! names. Nothing may panic, and each answer keeps its promise.

use super::authz::{self, Refusal};
use super::session::token_from;
use crate::ui;
use duplex_api::catalogue::{self, Access, Audience};
use duplex_api::methods::auth::LoginParams;
use duplex_api::methods::event::SubscribeParams;
use duplex_api::model::Role;
use duplex_api::redact::redact;
use serde_json::Value;
use std::path::Component;

/// Splits `data` into the request's parts at 0xff bytes: method, params,
/// Authorization, Cookie, Origin, path (missing parts are empty).
fn parts(data: &[u8]) -> Vec<String> {
    let mut out: Vec<String> = data
        .split(|b| *b == 0xff)
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    out.resize(6, String::new());
    out
}

/// The property: see the module.
pub fn check_request_property(data: &[u8]) {
    let p = parts(data);
    let (method, params, authorization, cookie, origin, path) =
        (&p[0], &p[1], &p[2], &p[3], &p[4], &p[5]);

    // Roles: whatever the name, a read_only caller reaches only external
    // read methods, and nobody without a session reaches more than login.
    match authz::decide(method, Some(Role::ReadOnly)) {
        Ok(()) => {
            let m = catalogue::lookup(method).expect("allowed methods are catalogued");
            assert_eq!(m.audience, Audience::External, "{method}");
            assert!(
                m.access == Access::Read || method == authz::LOGIN,
                "{method}"
            );
        }
        Err(Refusal::NotFound(_) | Refusal::Role { .. }) => {}
        Err(Refusal::NoSession) => panic!("a session was given: {method}"),
    }
    if authz::decide(method, None).is_ok() {
        assert_eq!(method, authz::LOGIN);
    }

    // Params: JSON or refused; the endpoint's own types never panic, and
    // redaction leaves no secret to a read_only caller.
    if let Ok(mut v) = serde_json::from_str::<Value>(params) {
        let _ = serde_json::from_value::<LoginParams>(v.clone());
        let _ = serde_json::from_value::<SubscribeParams>(v.clone());
        redact(&mut v, Role::ReadOnly);
        let once = v.clone();
        redact(&mut v, Role::ReadOnly);
        assert_eq!(v, once, "redaction is idempotent");
        assert!(!leaks(&v), "a secret survived redaction: {v}");
    }

    // The token: from the header or the cookie, never spanning cookies.
    let auth = (!authorization.is_empty()).then_some(authorization.as_str());
    if let Some(t) = token_from(auth, &[cookie.as_str()], "duplex_session") {
        let from_header = auth.is_some_and(|a| a.starts_with("Bearer "));
        assert!(from_header || !t.contains(';'), "{t:?}");
    }

    // Origin: a non-browser (none) passes; a browser passes only as itself.
    let o = (!origin.is_empty()).then_some(origin.as_str());
    let own = "https://127.0.0.1:443";
    if crate::endpoint::origin_allowed(o, Some(own), &[]) {
        assert!(o.is_none_or(|o| o == own), "{o:?}");
    }

    // The UI's files: a name inside the directory, or nothing.
    if let Some((rel, _)) = ui::resolve(path) {
        assert!(rel.is_relative(), "{rel:?}");
        assert!(
            rel.components().all(
                |c| matches!(c, Component::Normal(n) if !n.to_string_lossy().starts_with('.'))
            ),
            "{rel:?}"
        );
    }
}

/// Whether a key naming a secret still holds a value.
fn leaks(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.iter().any(|(k, x)| {
            let secret = k.contains("secret") || k.contains("password");
            (secret && !x.is_null() && *x != Value::String(duplex_api::redact::REDACTED.into()))
                || leaks(x)
        }),
        Value::Array(a) => a.iter().any(leaks),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arbitrary_requests_keep_the_property() {
        // A deterministic stand-in for the fuzzer in the plain suite:
        // crafted requests, then pseudo-random bytes around them.
        let crafted: &[&[u8]] = &[
            b"config.apply\xff{\"changes\":[{\"object\":{\"password\":\"x\",\"secret\":{\"a\":1}}}]}\xffBearer t\xffduplex_session=a; x=b\xffhttps://evil\xff/../../etc/passwd",
            b"auth.login\xff{\"user\":\"a\",\"password\":\"b\"}\xff\xffduplex_session=\xff\xff/",
            b"config.repl_apply\xff[1,2]\xffBearer \xff;;;=\xffhttps://127.0.0.1:443\xff/app.js",
            b"rpc.discover\xffnull\xff\xff\xff\xff/.git/config",
            b"\xff\xff\xff\xff\xff",
        ];
        for c in crafted {
            check_request_property(c);
        }
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for n in 0..2000 {
            let base = crafted[n % crafted.len()];
            let mut b = base.to_vec();
            for _ in 0..4 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let at = usize::try_from(x % (b.len() as u64 + 1)).unwrap_or(0);
                let byte = x.to_le_bytes()[1];
                if at < b.len() && x & 1 == 0 {
                    b[at] = byte;
                } else {
                    b.insert(at.min(b.len()), byte);
                }
            }
            check_request_property(&b);
        }
    }
}
