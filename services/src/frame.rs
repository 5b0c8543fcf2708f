//! Framing: one JSON message per line (`\n`-terminated).
//!
//! Compact JSON never contains a raw newline, so a newline always ends a
//! message. A line longer than the limit is not buffered: the framer reports
//! it once as [`Frame::Oversize`] and skips to the next newline, so one bad
//! client can neither exhaust memory nor desynchronise the stream.

/// One unit produced by the [`Framer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A complete line, without the newline (a trailing `\r` is removed).
    Line(Vec<u8>),
    /// A line that exceeded the limit; `seen` is how many bytes were skipped
    /// (at least the limit plus one).
    Oversize {
        /// Bytes of the oversize line seen so far when it was reported.
        seen: usize,
        /// Its first bytes (at most [`HEAD_BYTES`]), enough to find the
        /// message's `id` so its call can be answered or failed at once.
        head: Vec<u8>,
    },
}

/// How much of an oversize line is kept for [`Frame::Oversize::head`].
pub const HEAD_BYTES: usize = 256;

/// Incremental line framer with a size limit.
#[derive(Debug)]
pub struct Framer {
    limit: usize,
    buf: Vec<u8>,
    /// True while skipping the rest of an oversize line.
    discarding: bool,
}

impl Framer {
    /// A framer that accepts lines of at most `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Framer {
            limit: limit.max(1),
            buf: Vec::new(),
            discarding: false,
        }
    }

    /// The size limit in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Feeds bytes; appends every completed frame to `out`.
    pub fn push(&mut self, mut data: &[u8], out: &mut Vec<Frame>) {
        while !data.is_empty() {
            let nl = data.iter().position(|&b| b == b'\n');
            let (chunk, rest, complete) = match nl {
                Some(i) => (&data[..i], &data[i + 1..], true),
                None => (data, &data[data.len()..], false),
            };
            data = rest;
            if self.discarding {
                if complete {
                    self.discarding = false;
                }
                continue;
            }
            if self.buf.len() + chunk.len() > self.limit {
                let seen = self.buf.len() + chunk.len();
                let mut head = std::mem::take(&mut self.buf);
                head.truncate(HEAD_BYTES);
                let more = HEAD_BYTES.saturating_sub(head.len()).min(chunk.len());
                head.extend_from_slice(&chunk[..more]);
                out.push(Frame::Oversize { seen, head });
                self.buf.clear();
                self.discarding = !complete;
                continue;
            }
            self.buf.extend_from_slice(chunk);
            if complete {
                let mut line = std::mem::take(&mut self.buf);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                // Blank lines are keep-alives from hand-typed sessions; skip.
                if !line.iter().all(u8::is_ascii_whitespace) {
                    out.push(Frame::Line(line));
                }
            }
        }
    }

    /// Bytes buffered for an incomplete line.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

/// Reads from `r` until `n` lines have arrived and parses each as a
/// JSON-RPC message: the peer's side in tests of either end of a
/// connection. Panics on an oversize line or one that does not parse.
#[cfg(test)]
pub(crate) async fn read_messages<R>(r: &mut R, n: usize) -> Vec<crate::rpc::Message>
where
    R: tokio::io::AsyncRead + Unpin,
{
    use tokio::io::AsyncReadExt;
    let mut framer = Framer::new(1 << 20);
    let mut frames = Vec::new();
    let mut buf = vec![0u8; 4096];
    while frames.len() < n {
        let got = r.read(&mut buf).await.unwrap();
        assert!(got > 0, "closed after {} of {n} lines", frames.len());
        framer.push(&buf[..got], &mut frames);
    }
    frames
        .into_iter()
        .map(|f| match f {
            Frame::Line(l) => crate::rpc::parse_message(&l).unwrap(),
            Frame::Oversize { seen, .. } => panic!("an oversize line of {seen} bytes"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(f: &mut Framer, chunks: &[&[u8]]) -> Vec<Frame> {
        let mut out = Vec::new();
        for c in chunks {
            f.push(c, &mut out);
        }
        out
    }

    #[test]
    fn splits_lines_across_chunks() {
        let mut f = Framer::new(100);
        let out = feed(&mut f, &[b"{\"a\"", b":1}\n{\"b\":2}\r\n\n{\"c\""]);
        assert_eq!(
            out,
            vec![
                Frame::Line(b"{\"a\":1}".to_vec()),
                Frame::Line(b"{\"b\":2}".to_vec())
            ]
        );
        assert_eq!(f.pending(), 4);
    }

    /// An oversize line is reported once, with its length and head, and
    /// skipped; the line after it still comes through. Whether it arrives
    /// in pieces or in one chunk with the next line makes no difference.
    #[test]
    fn oversize_is_reported_once_and_skipped() {
        // (limit, chunks fed, length seen, head kept)
        type Case = (usize, &'static [&'static [u8]], usize, &'static [u8]);
        let cases: [Case; 2] = [
            (
                8,
                &[b"0123456", b"789abc", b"def\nxy\n"],
                13,
                b"0123456789abc",
            ),
            (3, &[b"abcdef\nxy\n"], 6, b"abcdef"),
        ];
        for (limit, chunks, seen, head) in cases {
            let mut f = Framer::new(limit);
            assert_eq!(
                feed(&mut f, chunks),
                vec![
                    Frame::Oversize {
                        seen,
                        head: head.to_vec()
                    },
                    Frame::Line(b"xy".to_vec())
                ],
                "limit {limit}"
            );
        }
    }

    #[test]
    fn exactly_the_limit_is_accepted() {
        let mut f = Framer::new(3);
        assert_eq!(
            feed(&mut f, &[b"abc\n"]),
            vec![Frame::Line(b"abc".to_vec())]
        );
    }
}

/// The property the fuzz target checks (`fuzz/fuzz_targets/frame_and_message.rs`):
/// for any bytes split at any points, the framer never yields a line over the
/// limit or containing a newline, and every message the parser accepts
/// survives a serialise/parse round trip unchanged. Panics on a violation.
pub fn check_framing_property(data: &[u8]) {
    use crate::rpc::{parse_message, to_frame, Message};
    let limit = 64 + usize::from(data.first().copied().unwrap_or(0));
    let mut framer = Framer::new(limit);
    let mut frames = Vec::new();
    // Split the input at points chosen by the input itself.
    let mut rest = data;
    let mut i = 0usize;
    while !rest.is_empty() {
        let step = 1 + usize::from(data[i % data.len()] % 17);
        let n = step.min(rest.len());
        framer.push(&rest[..n], &mut frames);
        rest = &rest[n..];
        i += 1;
    }
    assert!(framer.pending() <= limit, "buffered past the limit");
    for f in frames {
        let Frame::Line(line) = f else { continue };
        assert!(line.len() <= limit, "line over the limit");
        assert!(!line.contains(&b'\n'), "line contains a newline");
        if let Ok(msg) = parse_message(&line) {
            let again = match &msg {
                Message::Request(r) => to_frame(r),
                Message::Response(r) => to_frame(r),
            };
            let reparsed =
                parse_message(&again).unwrap_or_else(|e| panic!("round trip failed: {e:?}"));
            assert_eq!(reparsed, msg, "round trip changed the message");
        }
    }
}

#[cfg(test)]
mod property {
    use super::check_framing_property;

    #[test]
    fn framing_property_holds_on_generated_inputs() {
        // A fixed xorshift stream: deterministic, and varied enough to hit
        // splits, oversize lines and near-JSON.
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let pieces: [&[u8]; 8] = [
            br#"{"jsonrpc":"2.0","id":1,"method":"pool.create","params":{"a":[1,2]}}"#,
            b"\n",
            br#"{"jsonrpc":"2.0","id":"x","result":null}"#,
            br#"{"jsonrpc":"2.0","id":2,"error":{"code":-32002,"message":"m"}}"#,
            b"\r\n",
            b"{\"jsonrpc\":\"2.0\",\"method\":\"a.b\",\"action_id\":\"z\"}",
            b"garbage\xff\x00",
            b"{\"jsonrpc\":\"2.0\",\"id\":9007199254740993,\"method\":\"a.b\"}",
        ];
        for _ in 0..2000 {
            let mut data = Vec::new();
            for _ in 0..8 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let p = pieces[usize::try_from(x % 8).unwrap_or(0)];
                data.extend_from_slice(p);
                if x % 5 == 0 {
                    data.extend(std::iter::repeat_n(
                        b'q',
                        usize::try_from(x % 300).unwrap_or(0),
                    ));
                }
            }
            check_framing_property(&data);
        }
    }
}
