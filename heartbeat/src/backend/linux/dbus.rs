//! The little of the D-Bus wire format heartbeat needs to ask systemd
//! about units over its private socket: method calls whose arguments are
//! strings, and replies whose body is an object path or a variant holding
//! a string or a `u32` (pure; the socket is in `systemd`).
//!
//! Why not zbus: on `/run/systemd/private` systemd sends every message with
//! the Sender field set to its well-known name `org.freedesktop.systemd1`
//! (a direct connection has no bus to give it a unique one), and sends
//! every unit's `PropertiesChanged` signal unasked. zbus 5.19 and 6.2 take
//! the Sender field for a unique name and panic in their reader task on
//! the first such message (measured in the lab: "Invalid field
//! reconstruction: InvalidName"), so no call ever gets its reply. The
//! format is small and stable; only little-endian messages are read.

/// The largest message read, bytes: systemd's replies here are far
/// smaller; a larger frame is refused rather than buffered.
pub const MAX_MESSAGE: usize = 1 << 20;

/// Message type: method call.
pub const METHOD_CALL: u8 = 1;
/// Message type: method return.
pub const METHOD_RETURN: u8 = 2;
/// Message type: error.
pub const ERROR: u8 = 3;
/// Message type: signal.
pub const SIGNAL: u8 = 4;

/// A message that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Not a little-endian D-Bus 1 message.
    #[error("not a little-endian D-Bus message")]
    Endian,
    /// Past [`MAX_MESSAGE`].
    #[error("a message of {0} bytes is past the {MAX_MESSAGE}-byte limit")]
    TooLarge(usize),
    /// Shorter than it says.
    #[error("the message ends early")]
    Short,
    /// A header field or a body of a type this reader does not know.
    #[error("unexpected type {0:?}")]
    Type(String),
    /// A string that is not UTF-8.
    #[error("a string is not UTF-8")]
    Utf8,
}

fn pad_to(v: &mut Vec<u8>, n: usize) {
    while v.len() % n != 0 {
        v.push(0);
    }
}

fn put_str(v: &mut Vec<u8>, s: &str) {
    pad_to(v, 4);
    v.extend_from_slice(&u32::try_from(s.len()).unwrap_or(u32::MAX).to_le_bytes());
    v.extend_from_slice(s.as_bytes());
    v.push(0);
}

fn put_sig(v: &mut Vec<u8>, s: &str) {
    v.push(u8::try_from(s.len()).unwrap_or(u8::MAX));
    v.extend_from_slice(s.as_bytes());
    v.push(0);
}

/// A method call to `destination` whose arguments are all strings.
pub fn method_call(
    serial: u32,
    destination: &str,
    path: &str,
    interface: &str,
    member: &str,
    args: &[&str],
) -> Vec<u8> {
    let mut body = Vec::new();
    for a in args {
        put_str(&mut body, a);
    }
    let mut m = vec![b'l', METHOD_CALL, 0, 1];
    m.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_le_bytes());
    m.extend_from_slice(&serial.to_le_bytes());
    m.extend_from_slice(&[0; 4]); // the fields' length, set below
    let sig = "s".repeat(args.len());
    let mut fields: Vec<(u8, &str, &str)> = vec![
        (1, "o", path),
        (2, "s", interface),
        (3, "s", member),
        (6, "s", destination),
    ];
    if !sig.is_empty() {
        fields.push((8, "g", &sig));
    }
    for (code, t, value) in fields {
        pad_to(&mut m, 8);
        m.push(code);
        put_sig(&mut m, t);
        if t == "g" {
            put_sig(&mut m, value);
        } else {
            put_str(&mut m, value);
        }
    }
    let len = u32::try_from(m.len() - 16).unwrap_or(u32::MAX);
    m[12..16].copy_from_slice(&len.to_le_bytes());
    pad_to(&mut m, 8);
    m.extend_from_slice(&body);
    m
}

/// The whole length of the message whose first 16 bytes are `fixed`.
pub fn frame_len(fixed: &[u8; 16]) -> Result<usize, WireError> {
    if fixed[0] != b'l' || fixed[3] != 1 {
        return Err(WireError::Endian);
    }
    let u = |i: usize| u32::from_le_bytes([fixed[i], fixed[i + 1], fixed[i + 2], fixed[i + 3]]);
    let body = usize::try_from(u(4)).map_err(|_| WireError::TooLarge(usize::MAX))?;
    let fields = usize::try_from(u(12)).map_err(|_| WireError::TooLarge(usize::MAX))?;
    let total = 16usize
        .saturating_add(fields.saturating_add(7) / 8 * 8)
        .saturating_add(body);
    if total > MAX_MESSAGE {
        return Err(WireError::TooLarge(total));
    }
    Ok(total)
}

/// A message as far as heartbeat reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// [`METHOD_RETURN`], [`ERROR`], [`SIGNAL`]...
    pub kind: u8,
    /// The call it answers.
    pub reply_serial: Option<u32>,
    /// An error's name.
    pub error_name: Option<String>,
    /// The body's signature.
    pub signature: String,
    /// The body, from an 8-aligned offset of the message.
    pub body: Vec<u8>,
}

/// Reads values at offsets counted from an 8-aligned start.
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn align(&mut self, n: usize) {
        self.at = self.at.div_ceil(n) * n;
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self.at.checked_add(n).ok_or(WireError::Short)?;
        let s = self.b.get(self.at..end).ok_or(WireError::Short)?;
        self.at = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.bytes(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        self.align(4);
        let b = self.bytes(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn text(&mut self, len: usize) -> Result<String, WireError> {
        let s = std::str::from_utf8(self.bytes(len)?).map_err(|_| WireError::Utf8)?;
        self.bytes(1)?; // the terminating nul
        Ok(s.to_string())
    }

    fn string(&mut self) -> Result<String, WireError> {
        let n = usize::try_from(self.u32()?).map_err(|_| WireError::Short)?;
        self.text(n)
    }

    fn signature(&mut self) -> Result<String, WireError> {
        let n = usize::from(self.u8()?);
        self.text(n)
    }

    /// A value of the basic type `t`, as text (numbers in decimal).
    fn basic(&mut self, t: &str) -> Result<String, WireError> {
        match t {
            "s" | "o" => self.string(),
            "g" => self.signature(),
            "u" => Ok(self.u32()?.to_string()),
            other => Err(WireError::Type(other.to_string())),
        }
    }
}

/// Reads a whole message (as long as [`frame_len`] said).
pub fn parse(msg: &[u8]) -> Result<Incoming, WireError> {
    let fixed: &[u8; 16] = msg
        .get(..16)
        .and_then(|s| s.try_into().ok())
        .ok_or(WireError::Short)?;
    let total = frame_len(fixed)?;
    if msg.len() < total {
        return Err(WireError::Short);
    }
    let fields_len = usize::try_from(u32::from_le_bytes([msg[12], msg[13], msg[14], msg[15]]))
        .map_err(|_| WireError::Short)?;
    let mut r = Reader { b: msg, at: 16 };
    let end = 16 + fields_len;
    let mut out = Incoming {
        kind: msg[1],
        reply_serial: None,
        error_name: None,
        signature: String::new(),
        body: Vec::new(),
    };
    while r.at < end {
        r.align(8);
        let code = r.u8()?;
        let t = r.signature()?;
        let value = r.basic(&t)?;
        match code {
            4 => out.error_name = Some(value),
            5 => out.reply_serial = value.parse().ok(),
            8 => out.signature = value,
            _ => {}
        }
    }
    let body_at = end.div_ceil(8) * 8;
    out.body = msg.get(body_at..total).ok_or(WireError::Short)?.to_vec();
    Ok(out)
}

/// The body's first value when it is an object path (`GetUnit`'s reply).
pub fn object_path(m: &Incoming) -> Result<String, WireError> {
    if !m.signature.starts_with('o') {
        return Err(WireError::Type(m.signature.clone()));
    }
    Reader { b: &m.body, at: 0 }.string()
}

/// The body's variant (`Properties.Get`'s reply), as text: a string, or a
/// `u32` in decimal.
pub fn variant(m: &Incoming) -> Result<String, WireError> {
    if m.signature != "v" {
        return Err(WireError::Type(m.signature.clone()));
    }
    let mut r = Reader { b: &m.body, at: 0 };
    let t = r.signature()?;
    r.basic(&t)
}

/// The first string argument of an error (its message).
pub fn error_message(m: &Incoming) -> String {
    if m.signature.starts_with('s') {
        Reader { b: &m.body, at: 0 }.string().unwrap_or_default()
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reply built the way systemd builds one on its private socket:
    /// Sender set to its well-known name.
    fn reply(kind: u8, reply_to: u32, sig: &str, body: &[u8], error: Option<&str>) -> Vec<u8> {
        let mut m = vec![b'l', kind, 1, 1];
        m.extend_from_slice(&u32::try_from(body.len()).unwrap().to_le_bytes());
        m.extend_from_slice(&9u32.to_le_bytes());
        m.extend_from_slice(&[0; 4]);
        let serial = reply_to.to_string();
        let mut fields: Vec<(u8, &str, &str)> =
            vec![(5, "u", &serial), (7, "s", "org.freedesktop.systemd1")];
        if let Some(e) = error {
            fields.push((4, "s", e));
        }
        fields.push((8, "g", sig));
        for (code, t, v) in fields {
            pad_to(&mut m, 8);
            m.push(code);
            put_sig(&mut m, t);
            match t {
                "g" => put_sig(&mut m, v),
                "u" => {
                    pad_to(&mut m, 4);
                    m.extend_from_slice(&v.parse::<u32>().unwrap().to_le_bytes());
                }
                _ => put_str(&mut m, v),
            }
        }
        let len = u32::try_from(m.len() - 16).unwrap();
        m[12..16].copy_from_slice(&len.to_le_bytes());
        pad_to(&mut m, 8);
        m.extend_from_slice(body);
        m
    }

    #[test]
    fn a_call_is_framed_as_the_spec_says() {
        let m = method_call(
            7,
            "org.freedesktop.systemd1",
            "/org/freedesktop/systemd1",
            "org.freedesktop.systemd1.Manager",
            "GetUnit",
            &["duplex-router.service"],
        );
        let fixed: [u8; 16] = m[..16].try_into().unwrap();
        assert_eq!(frame_len(&fixed).unwrap(), m.len());
        assert_eq!(m[16..19], [1, 1, b'o']);
        // Header fields end 8-aligned; the body is the one string.
        let body = &m[m.len() - 26..];
        assert_eq!(body[..4], 21u32.to_le_bytes());
        assert_eq!(&body[4..25], b"duplex-router.service");
        assert_eq!(body[25], 0);
        // Our own reader reads our own call's fields back.
        let back = parse(&m).unwrap();
        assert_eq!((back.kind, back.signature.as_str()), (METHOD_CALL, "s"));
    }

    #[test]
    fn replies_with_systemds_sender_are_read() {
        let mut body = Vec::new();
        put_str(
            &mut body,
            "/org/freedesktop/systemd1/unit/duplex_2drouter_2eservice",
        );
        let m = reply(METHOD_RETURN, 7, "o", &body, None);
        let r = parse(&m).unwrap();
        assert_eq!(r.reply_serial, Some(7));
        assert_eq!(
            object_path(&r).unwrap(),
            "/org/freedesktop/systemd1/unit/duplex_2drouter_2eservice"
        );
        // A variant holding a string, and one holding a u32.
        let mut v = Vec::new();
        put_sig(&mut v, "s");
        put_str(&mut v, "active");
        assert_eq!(
            variant(&parse(&reply(METHOD_RETURN, 8, "v", &v, None)).unwrap()).unwrap(),
            "active"
        );
        let mut v = Vec::new();
        put_sig(&mut v, "u");
        pad_to(&mut v, 4);
        v.extend_from_slice(&3u32.to_le_bytes());
        assert_eq!(
            variant(&parse(&reply(METHOD_RETURN, 9, "v", &v, None)).unwrap()).unwrap(),
            "3"
        );
        // An error names itself.
        let mut e = Vec::new();
        put_str(&mut e, "Unit nope.service not loaded.");
        let r = parse(&reply(
            ERROR,
            10,
            "s",
            &e,
            Some("org.freedesktop.systemd1.NoSuchUnit"),
        ))
        .unwrap();
        assert_eq!(
            r.error_name.as_deref(),
            Some("org.freedesktop.systemd1.NoSuchUnit")
        );
        assert_eq!(error_message(&r), "Unit nope.service not loaded.");
    }

    #[test]
    fn bad_frames_are_refused_not_trusted() {
        let mut fixed = [0u8; 16];
        fixed[0] = b'B';
        fixed[3] = 1;
        assert_eq!(frame_len(&fixed), Err(WireError::Endian));
        fixed[0] = b'l';
        fixed[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(frame_len(&fixed), Err(WireError::TooLarge(_))));
        // A message cut short.
        let m = reply(METHOD_RETURN, 1, "o", &[0; 8], None);
        assert_eq!(parse(&m[..m.len() - 3]), Err(WireError::Short));
        // A string length past the end.
        let mut body = Vec::new();
        body.extend_from_slice(&1000u32.to_le_bytes());
        let r = parse(&reply(METHOD_RETURN, 1, "o", &body, None)).unwrap();
        assert_eq!(object_path(&r), Err(WireError::Short));
    }
}
