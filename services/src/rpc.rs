//! JSON-RPC 2.0 wire types as Duplex speaks them, and the one table of
//! application error codes.
//!
//! Duplex adds three optional members to JSON-RPC 2.0 requests and
//! notifications, and one to responses:
//!
//! | member       | in                     | meaning                                              |
//! |--------------|------------------------|------------------------------------------------------|
//! | `action_id`  | requests, notifications, responses | the admin action or failover this message belongs to; the router assigns one when missing |
//! | `controller` | requests               | run the call on this controller (`"A"`/`"B"`); absent or the local id means here |
//! | `caller`     | requests               | set by the router: who sent the call (a service name, `client:pid`, `peer:B/...`) |
//! | `user`       | requests               | the management user the call is made for (`{"name", "role"}`), set by the management endpoint (duplex-mgmt) after login; absent for local callers |
//!
//! # Application error codes
//!
//! Every error carries `data.kind` (the name below) and, where one object or
//! field is concerned, `data.field`.
//!
//! | code   | kind             | meaning                                                            |
//! |--------|------------------|--------------------------------------------------------------------|
//! | -32700 | `parse_error`    | the message is not JSON                                            |
//! | -32600 | `invalid_request`| JSON, but not a JSON-RPC 2.0 request (wrong member types...)       |
//! | -32601 | `method_not_found` | no service owns the namespace, or the service has no such method |
//! | -32602 | `invalid_params` | a parameter is missing, of the wrong type or out of range (`field`)|
//! | -32603 | `internal`       | a bug: the service failed in a way it did not expect               |
//! | -32001 | `unauthorized`   | the caller may not do this (peer secret, session, role)            |
//! | -32002 | `not_found`      | the named object does not exist (`field` names the key)            |
//! | -32003 | `conflict`       | the object exists already or is in a state that forbids the call   |
//! | -32004 | `config_locked`  | configuration is locked (partner suspected); `data.reason` says why |
//! | -32005 | `not_owner`      | this controller does not own the object (the partner does)         |
//! | -32006 | `backend_failed` | the system below (LVM, configfs, netlink, disk) failed             |
//! | -32007 | `unavailable`    | the service, the partner or the router cannot take the call now (down, overloaded, timed out) |
//! | -32008 | `too_large`      | the message exceeds the size limit                                 |

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::fmt;

/// The JSON-RPC version string every message carries.
pub const JSONRPC: &str = "2.0";

/// Application error kinds; see the module table for codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The message is not JSON.
    ParseError,
    /// JSON, but not a valid JSON-RPC request.
    InvalidRequest,
    /// No such namespace or method.
    MethodNotFound,
    /// A parameter is missing, mistyped or out of range.
    InvalidParams,
    /// An unexpected failure inside a service.
    Internal,
    /// The caller is not allowed.
    Unauthorized,
    /// The named object does not exist.
    NotFound,
    /// The object exists or is in a state that forbids the call.
    Conflict,
    /// Configuration is locked.
    ConfigLocked,
    /// The partner owns the object.
    NotOwner,
    /// The backend (LVM, configfs, netlink, disk) failed.
    BackendFailed,
    /// The callee cannot take the call now.
    Unavailable,
    /// The message exceeds the size limit.
    TooLarge,
}

impl ErrorCode {
    /// Every code, for tables and tests.
    pub const ALL: [ErrorCode; 13] = [
        ErrorCode::ParseError,
        ErrorCode::InvalidRequest,
        ErrorCode::MethodNotFound,
        ErrorCode::InvalidParams,
        ErrorCode::Internal,
        ErrorCode::Unauthorized,
        ErrorCode::NotFound,
        ErrorCode::Conflict,
        ErrorCode::ConfigLocked,
        ErrorCode::NotOwner,
        ErrorCode::BackendFailed,
        ErrorCode::Unavailable,
        ErrorCode::TooLarge,
    ];

    /// The numeric JSON-RPC code.
    pub fn code(self) -> i64 {
        match self {
            ErrorCode::ParseError => -32700,
            ErrorCode::InvalidRequest => -32600,
            ErrorCode::MethodNotFound => -32601,
            ErrorCode::InvalidParams => -32602,
            ErrorCode::Internal => -32603,
            ErrorCode::Unauthorized => -32001,
            ErrorCode::NotFound => -32002,
            ErrorCode::Conflict => -32003,
            ErrorCode::ConfigLocked => -32004,
            ErrorCode::NotOwner => -32005,
            ErrorCode::BackendFailed => -32006,
            ErrorCode::Unavailable => -32007,
            ErrorCode::TooLarge => -32008,
        }
    }

    /// The code for a numeric value, if it is one of ours.
    pub fn from_code(code: i64) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.code() == code)
    }

    /// The snake_case name carried in `data.kind`.
    pub fn kind(self) -> &'static str {
        match self {
            ErrorCode::ParseError => "parse_error",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::MethodNotFound => "method_not_found",
            ErrorCode::InvalidParams => "invalid_params",
            ErrorCode::Internal => "internal",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::ConfigLocked => "config_locked",
            ErrorCode::NotOwner => "not_owner",
            ErrorCode::BackendFailed => "backend_failed",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::TooLarge => "too_large",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind())
    }
}

/// A JSON-RPC error object as sent on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RpcError {
    /// Numeric code (see the module table).
    pub code: i64,
    /// Human-readable message.
    pub message: String,
    /// Structured detail: `kind`, optionally `field`, `reason` and more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl RpcError {
    /// An error of `code` with a message; `data.kind` is filled in.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        let mut data = Map::new();
        data.insert("kind".into(), Value::String(code.kind().into()));
        RpcError {
            code: code.code(),
            message: message.into(),
            data: Some(Value::Object(data)),
        }
    }

    /// Adds `data.field`: the parameter or object the error is about.
    pub fn with_field(self, field: impl Into<String>) -> Self {
        self.with_data("field", Value::String(field.into()))
    }

    /// Adds one member to `data`.
    pub fn with_data(mut self, key: &str, value: Value) -> Self {
        match &mut self.data {
            Some(Value::Object(map)) => {
                map.insert(key.into(), value);
            }
            _ => {
                let mut map = Map::new();
                map.insert(key.into(), value);
                self.data = Some(Value::Object(map));
            }
        }
        self
    }

    /// The error kind, when the code is one of ours.
    pub fn kind(&self) -> Option<ErrorCode> {
        ErrorCode::from_code(self.code)
    }

    /// `data.field`, if present.
    pub fn field(&self) -> Option<&str> {
        self.data.as_ref()?.get("field")?.as_str()
    }

    /// Shorthand for an `invalid_params` error about `field`.
    pub fn invalid_params(field: impl Into<String>, reason: impl fmt::Display) -> Self {
        let field = field.into();
        RpcError::new(ErrorCode::InvalidParams, format!("{field}: {reason}")).with_field(field)
    }

    /// Shorthand for an `unavailable` error.
    pub fn unavailable(message: impl Into<String>) -> Self {
        RpcError::new(ErrorCode::Unavailable, message)
    }

    /// Shorthand for an `internal` error.
    pub fn internal(message: impl Into<String>) -> Self {
        RpcError::new(ErrorCode::Internal, message)
    }
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind() {
            Some(k) => write!(f, "{k}: {}", self.message),
            None => write!(f, "error {}: {}", self.code, self.message),
        }
    }
}

impl std::error::Error for RpcError {}

/// A JSON-RPC request id: a number or a string (`null` only in error replies).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Id {
    /// A numeric id.
    Num(i64),
    /// A string id.
    Str(String),
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Id::Num(n) => write!(f, "{n}"),
            Id::Str(s) => write!(f, "{s:?}"),
        }
    }
}

/// A request (with `id`) or a notification (without).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// Always `"2.0"`.
    pub jsonrpc: String,
    /// Present for calls, absent for notifications.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Id>,
    /// `namespace.verb_object`.
    pub method: String,
    /// Parameters: an object, an array, or absent.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub params: Value,
    /// The action this message belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_id: Option<String>,
    /// Target controller; absent means the local one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<String>,
    /// Who sent the call; set by the router.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<String>,
    /// The logged-in management user the call is made for; set by the
    /// management endpoint, so services can redact for `read_only`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<CallUser>,
}

/// The management user behind a call (the `user` request member).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallUser {
    /// The login name.
    pub name: String,
    /// The user's role.
    pub role: duplex_api::model::Role,
    /// The client's network address (for the audit log).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

impl Request {
    /// A call with the given id.
    pub fn call(id: Id, method: impl Into<String>, params: Value) -> Self {
        Request {
            jsonrpc: JSONRPC.into(),
            id: Some(id),
            method: method.into(),
            params,
            action_id: None,
            controller: None,
            caller: None,
            user: None,
        }
    }

    /// A call on `controller` (here when `None`); the connection sets
    /// the id it sends under.
    pub fn call_at(controller: Option<&str>, method: impl Into<String>, params: Value) -> Self {
        Request {
            controller: controller.map(str::to_string),
            ..Request::call(Id::Num(0), method, params)
        }
    }

    /// A notification (no reply expected).
    pub fn notification(method: impl Into<String>, params: Value) -> Self {
        Request {
            id: None,
            ..Request::call(Id::Num(0), method, params)
        }
    }

    /// The namespace: the part of the method before the first dot.
    pub fn namespace(&self) -> &str {
        namespace_of(&self.method)
    }
}

pub use duplex_api::catalogue::namespace_of;

/// A response: exactly one of `result` and `error`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// Always `"2.0"`.
    pub jsonrpc: String,
    /// The request's id; `null` when the request could not be read.
    pub id: Option<Id>,
    /// The result on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// The error on failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RpcError>,
    /// The action the reply belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_id: Option<String>,
}

impl Response {
    /// A success reply.
    pub fn ok(id: Option<Id>, result: Value) -> Self {
        Response {
            jsonrpc: JSONRPC.into(),
            id,
            result: Some(result),
            error: None,
            action_id: None,
        }
    }

    /// An error reply.
    pub fn err(id: Option<Id>, error: RpcError) -> Self {
        Response {
            jsonrpc: JSONRPC.into(),
            id,
            result: None,
            error: Some(error),
            action_id: None,
        }
    }

    /// A reply from a handler's outcome.
    pub fn from_result(id: Option<Id>, r: Result<Value, RpcError>) -> Self {
        match r {
            Ok(v) => Response::ok(id, v),
            Err(e) => Response::err(id, e),
        }
    }

    /// Sets the action id.
    pub fn with_action(mut self, action_id: Option<String>) -> Self {
        self.action_id = action_id;
        self
    }

    /// The outcome as a `Result`.
    pub fn into_result(self) -> Result<Value, RpcError> {
        match (self.result, self.error) {
            (_, Some(e)) => Err(e),
            (Some(v), None) => Ok(v),
            (None, None) => Ok(Value::Null),
        }
    }
}

/// Any message read from a connection.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A call or notification.
    Request(Request),
    /// A reply to an earlier call.
    Response(Response),
}

/// Why a frame could not be turned into a [`Message`]; carries the id when
/// one could be recovered so the error reply can name it.
#[derive(Debug, Clone, PartialEq)]
pub struct BadMessage {
    /// The request id, if the frame had a readable one.
    pub id: Option<Id>,
    /// The error to send back.
    pub error: RpcError,
}

/// The envelope of any message, with every member left as raw JSON: parsing
/// into this borrows slices of the frame instead of building a value tree
/// (the router parses every message it routes).
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default, deserialize_with = "keep_null")]
    jsonrpc: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "keep_null")]
    id: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "keep_null")]
    method: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "keep_null")]
    params: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "keep_null")]
    action_id: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "keep_null")]
    controller: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "keep_null")]
    caller: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "keep_null")]
    user: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "keep_null")]
    result: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "keep_null")]
    error: Option<&'a RawValue>,
}

/// Parses one frame into a message, checking JSON-RPC 2.0 structure and the
/// types of every member so that no handler sees a malformed request.
pub fn parse_message(frame: &[u8]) -> Result<Message, BadMessage> {
    use serde_json::error::Category;
    // serde reads a struct from an array too (members by position): an
    // envelope must be an object, so refuse anything else first.
    match frame.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {}
        Some(b'[') => {
            return Err(BadMessage {
                id: None,
                error: RpcError::new(
                    ErrorCode::InvalidRequest,
                    "a message must be one JSON object: batches and positional (array) envelopes are not supported",
                ),
            })
        }
        _ if serde_json::from_slice::<serde::de::IgnoredAny>(frame).is_ok() => {
            return Err(BadMessage {
                id: None,
                error: RpcError::new(ErrorCode::InvalidRequest, "a message must be one JSON object"),
            })
        }
        _ => {}
    }
    let env: Envelope<'_> = serde_json::from_slice(frame).map_err(|e| match e.classify() {
        Category::Data => BadMessage {
            id: None,
            error: RpcError::new(
                ErrorCode::InvalidRequest,
                format!("a message must be one JSON object (batches are not supported): {e}"),
            ),
        },
        _ => BadMessage {
            id: None,
            error: RpcError::new(ErrorCode::ParseError, format!("not JSON: {e}")),
        },
    })?;
    let id = match present(env.id) {
        None => None,
        Some(raw) => match serde_json::from_str::<Id>(raw.get()) {
            Ok(id) => Some(id),
            Err(_) => return Err(bad(None, "id", "must be an integer or a string")),
        },
    };
    match present(env.jsonrpc).and_then(as_string) {
        Some(v) if v == JSONRPC => {}
        _ => return Err(bad(id, "jsonrpc", "must be \"2.0\"")),
    }
    let opt_str = |key: &str, raw: Option<&RawValue>| -> Result<Option<String>, BadMessage> {
        match present(raw) {
            None => Ok(None),
            Some(r) => as_string(r)
                .map(Some)
                .ok_or_else(|| bad(id.clone(), key, "must be a string")),
        }
    };
    if let Some(raw_method) = env.method {
        let method = match as_string(raw_method) {
            Some(m) if valid_method(&m) => m,
            _ => {
                return Err(bad(
                    id,
                    "method",
                    "must be a string of the form namespace.verb_object",
                ))
            }
        };
        let action_id = opt_str("action_id", env.action_id)?;
        if let Some(a) = &action_id {
            if !valid_action_id(a) {
                return Err(bad(
                    id,
                    "action_id",
                    "must be 1 to 64 characters of [A-Za-z0-9_-]",
                ));
            }
        }
        let controller = opt_str("controller", env.controller)?;
        let caller = opt_str("caller", env.caller)?;
        let user = match present(env.user) {
            None => None,
            Some(raw) => Some(serde_json::from_str::<CallUser>(raw.get()).map_err(|_| {
                bad(
                    id.clone(),
                    "user",
                    "must be {\"name\", \"role\", \"address\"?}",
                )
            })?),
        };
        let params = match env.params {
            None => Value::Null,
            Some(raw) => match raw.get().as_bytes().first() {
                Some(b'{' | b'[' | b'n') => serde_json::from_str::<Value>(raw.get())
                    .map_err(|_| bad(id.clone(), "params", "must be an object or an array"))?,
                _ => return Err(bad(id, "params", "must be an object or an array")),
            },
        };
        return Ok(Message::Request(Request {
            jsonrpc: JSONRPC.into(),
            id,
            method,
            params,
            action_id,
            controller,
            caller,
            user,
        }));
    }
    let action_id = opt_str("action_id", env.action_id)?;
    let result = match env.result {
        None => None,
        Some(raw) => Some(
            serde_json::from_str::<Value>(raw.get())
                .map_err(|_| bad(id.clone(), "result", "must be JSON"))?,
        ),
    };
    let error = match present(env.error) {
        None => None,
        Some(raw) => Some(
            serde_json::from_str::<RpcError>(raw.get())
                .map_err(|_| bad(id.clone(), "error", "must be a JSON-RPC error object"))?,
        ),
    };
    if result.is_none() && error.is_none() {
        return Err(bad(
            id,
            "method",
            "missing: neither a request nor a response",
        ));
    }
    Ok(Message::Response(Response {
        jsonrpc: JSONRPC.into(),
        id,
        result,
        error,
        action_id,
    }))
}

/// Keeps an explicit `null` as the raw text `null` (serde would make it
/// `None`): `"result": null` is a valid reply, unlike a missing result.
fn keep_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// A member that is present and not `null` (`null` counts as absent).
fn present(r: Option<&RawValue>) -> Option<&RawValue> {
    r.filter(|r| r.get() != "null")
}

/// A raw member as a string, if it is one.
fn as_string(raw: &RawValue) -> Option<String> {
    serde_json::from_str::<String>(raw.get()).ok()
}

fn bad(id: Option<Id>, field: &str, reason: &str) -> BadMessage {
    BadMessage {
        id,
        error: RpcError::new(ErrorCode::InvalidRequest, format!("{field}: {reason}"))
            .with_field(field),
    }
}

/// Method names: `namespace.rest`, lowercase ASCII letters, digits and `_`,
/// at most 128 bytes.
pub fn valid_method(m: &str) -> bool {
    let Some((ns, rest)) = m.split_once('.') else {
        return false;
    };
    m.len() <= 128
        && !ns.is_empty()
        && !rest.is_empty()
        && m.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.')
}

/// Action ids are short tokens that are safe in logs and file names.
pub fn valid_action_id(a: &str) -> bool {
    !a.is_empty()
        && a.len() <= 64
        && a.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The top-level `id` of a message from its first bytes (the head of an
/// oversize line): a number or a plain string right after the `"id"` key
/// of the outer object. None when the head ends first or has no id.
pub fn head_id(head: &[u8]) -> Option<Id> {
    let mut depth = 0usize;
    let mut i = 0usize;
    while i < head.len() {
        match head[i] {
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.saturating_sub(1),
            b'"' => {
                let start = i + 1;
                let end = string_end(head, start)?;
                i = end + 1;
                if depth == 1 && &head[start..end] == b"id" {
                    let rest = skip_ws(head, i);
                    if head.get(rest) == Some(&b':') {
                        return id_value(head, skip_ws(head, rest + 1));
                    }
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Index of the closing quote of a string starting at `start`.
fn string_end(b: &[u8], start: usize) -> Option<usize> {
    let mut j = start;
    while j < b.len() {
        match b[j] {
            b'\\' => j += 2,
            b'"' => return Some(j),
            _ => j += 1,
        }
    }
    None
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    i
}

fn id_value(b: &[u8], i: usize) -> Option<Id> {
    if b.get(i) == Some(&b'"') {
        let end = string_end(b, i + 1)?;
        let s = std::str::from_utf8(&b[i + 1..end]).ok()?;
        return (!s.contains('\\')).then(|| Id::Str(s.to_string()));
    }
    let end = (i..b.len())
        .find(|&j| !(b[j].is_ascii_digit() || (j == i && b[j] == b'-')))
        // A number cut off by the end of the head is not known whole.
        ?;
    std::str::from_utf8(&b[i..end])
        .ok()?
        .parse()
        .ok()
        .map(Id::Num)
}

/// Serialises a message as one frame (compact JSON, no newline).
pub fn to_frame<T: Serialize>(msg: &T) -> Vec<u8> {
    // Serialising our own types cannot fail: they contain no maps with
    // non-string keys and no failing Serialize impls.
    serde_json::to_vec(msg).unwrap_or_else(|_| b"{}".to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_round_trip() {
        for c in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_code(c.code()), Some(c));
        }
        let mut codes: Vec<i64> = ErrorCode::ALL.iter().map(|c| c.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), ErrorCode::ALL.len());
    }

    #[test]
    fn parses_a_request_with_extensions() {
        let m = parse_message(
            br#"{"jsonrpc":"2.0","id":7,"method":"pool.create","params":{"name":"p"},"action_id":"ab12","controller":"B"}"#,
        )
        .unwrap();
        let Message::Request(r) = m else { panic!() };
        assert_eq!(r.id, Some(Id::Num(7)));
        assert_eq!(r.namespace(), "pool");
        assert_eq!(r.action_id.as_deref(), Some("ab12"));
        assert_eq!(r.controller.as_deref(), Some("B"));
    }

    #[test]
    fn rejects_wrong_types_naming_the_member() {
        let cases: [(&[u8], &str); 6] = [
            (br#"{"jsonrpc":"2.0","id":1,"method":5}"#, "method"),
            (
                br#"{"jsonrpc":"2.0","id":1,"method":"a.b","params":"x"}"#,
                "params",
            ),
            (br#"{"jsonrpc":"2.0","id":[1],"method":"a.b"}"#, "id"),
            (br#"{"jsonrpc":"1.0","id":1,"method":"a.b"}"#, "jsonrpc"),
            (
                br#"{"jsonrpc":"2.0","id":1,"method":"a.b","action_id":"a b"}"#,
                "action_id",
            ),
            (br#"{"jsonrpc":"2.0","id":1,"method":"nodot"}"#, "method"),
        ];
        for (frame, field) in cases {
            let e = parse_message(frame).unwrap_err();
            assert_eq!(e.error.kind(), Some(ErrorCode::InvalidRequest));
            assert_eq!(
                e.error.field(),
                Some(field),
                "{}",
                String::from_utf8_lossy(frame)
            );
        }
    }

    #[test]
    fn carries_the_management_user_and_refuses_a_malformed_one() {
        let m = parse_message(
            br#"{"jsonrpc":"2.0","id":1,"method":"pool.status","user":{"name":"ann","role":"read_only"}}"#,
        )
        .unwrap();
        let Message::Request(r) = m else {
            panic!("not a request")
        };
        assert_eq!(
            r.user,
            Some(CallUser {
                name: "ann".into(),
                role: duplex_api::model::Role::ReadOnly,
                address: None,
            })
        );
        let back: Value = serde_json::from_slice(&to_frame(&r)).unwrap();
        assert_eq!(back["user"]["role"], "read_only");
        let e = parse_message(
            br#"{"jsonrpc":"2.0","id":1,"method":"pool.status","user":{"name":"ann","role":"root"}}"#,
        )
        .unwrap_err();
        assert_eq!(e.error.field(), Some("user"));
    }

    #[test]
    fn keeps_the_id_when_the_rest_is_bad() {
        let e = parse_message(br#"{"jsonrpc":"2.0","id":"x","method":5}"#).unwrap_err();
        assert_eq!(e.id, Some(Id::Str("x".into())));
    }

    #[test]
    fn parse_error_for_non_json() {
        let e = parse_message(b"{not json").unwrap_err();
        assert_eq!(e.error.kind(), Some(ErrorCode::ParseError));
        assert_eq!(e.id, None);
    }

    #[test]
    fn responses_parse() {
        let m = parse_message(br#"{"jsonrpc":"2.0","id":3,"result":{"ok":true}}"#).unwrap();
        assert!(matches!(m, Message::Response(_)));
        let m = parse_message(
            br#"{"jsonrpc":"2.0","id":3,"error":{"code":-32002,"message":"no pool","data":{"kind":"not_found","field":"name"}}}"#,
        )
        .unwrap();
        let Message::Response(r) = m else { panic!() };
        let e = r.into_result().unwrap_err();
        assert_eq!(e.kind(), Some(ErrorCode::NotFound));
        assert_eq!(e.field(), Some("name"));
    }

    #[test]
    fn a_null_result_is_a_reply_and_null_members_are_absent() {
        let m =
            parse_message(br#"{"jsonrpc":"2.0","id":4,"result":null,"action_id":null}"#).unwrap();
        let Message::Response(r) = m else { panic!() };
        assert_eq!(r.result, Some(Value::Null));
        assert_eq!(r.action_id, None);
        let m =
            parse_message(br#"{"jsonrpc":"2.0","id":null,"method":"a.b","params":null}"#).unwrap();
        let Message::Request(r) = m else { panic!() };
        assert_eq!((r.id, r.params), (None, Value::Null));
        let e = parse_message(br#"{"jsonrpc":"2.0","id":1,"method":"a.b","method":"c.d"}"#)
            .unwrap_err();
        assert_eq!(e.error.kind(), Some(ErrorCode::InvalidRequest));
    }

    #[test]
    fn serialises_without_absent_members() {
        let r = Request::notification("event.notify", Value::Null);
        let s = String::from_utf8(to_frame(&r)).unwrap();
        assert_eq!(s, r#"{"jsonrpc":"2.0","method":"event.notify"}"#);
    }

    #[test]
    fn head_id_finds_the_outer_id() {
        assert_eq!(
            head_id(br#"{"jsonrpc":"2.0","id":42,"result":{"#),
            Some(Id::Num(42))
        );
        assert_eq!(
            head_id(br#"{"params":{"id":7},"id":"x-1","method""#),
            Some(Id::Str("x-1".into()))
        );
        assert_eq!(head_id(br#"{"jsonrpc":"2.0","id":-3}"#), Some(Id::Num(-3)));
        // Cut off inside the number, or no id yet: unknown.
        assert_eq!(head_id(br#"{"jsonrpc":"2.0","id":12"#), None);
        assert_eq!(head_id(br#"{"params":{"id":7,"pad":"aaaa"#), None);
        assert_eq!(head_id(b"[1,2"), None);
    }

    /// Issue 16 point 7: `["2.0", 1, "a.b"]` was read as a request by
    /// position and executed.
    #[test]
    fn positional_envelopes_are_refused() {
        for frame in [
            &br#"["2.0",1,"a.b"]"#[..],
            br#" ["2.0",1,"a.b",{}]"#,
            br#"[{"jsonrpc":"2.0","id":1,"method":"a.b"}]"#,
            b"7",
            br#""x""#,
        ] {
            let e = parse_message(frame).unwrap_err();
            assert_eq!(e.error.kind(), Some(ErrorCode::InvalidRequest), "{frame:?}");
        }
        assert_eq!(
            parse_message(b"{nope").unwrap_err().error.kind(),
            Some(ErrorCode::ParseError)
        );
    }
}
