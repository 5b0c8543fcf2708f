//! The interconnect heartbeat over UDP: one socket per link, every beat sent
//! on every link, every datagram authenticated before it counts.
//!
//! # Datagram (version 3, all integers big-endian, at most 102 bytes)
//!
//! | field              | size                         |
//! |--------------------|------------------------------|
//! | magic `DXHB`       | 4                            |
//! | version (3)        | 1                            |
//! | controller id      | 1 (length, 1..=8) + length   |
//! | incarnation        | 8                            |
//! | epoch counter      | 8                            |
//! | epoch controller   | 1 (length, 0..=8) + length   |
//! | sequence           | 8                            |
//! | state              | 1                            |
//! | shelf disks readable | 1 (version 2 on)           |
//! | echo present       | 1 (0 or 1; version 3 on)     |
//! | echo incarnation   | 8                            |
//! | echo sequence      | 8                            |
//! | echo hold (µs)     | 4                            |
//! | HMAC-SHA256        | 32, over every byte before it |
//!
//! **The echo** measures each link's round trip. A beat carries, per link,
//! the incarnation and sequence of the partner's last beat accepted on
//! that link and how long ago (the hold, by the sender's monotonic clock).
//! The partner, which noted when it sent that beat on that link, takes
//! `arrival - sent - hold` as one round trip: no clocks are compared
//! across controllers. Version 2 datagrams (no echo) are still accepted;
//! a version 2 sender refuses version 3 as malformed, so a cluster part
//! upgraded sees that link one way only (the disk heartbeat decides:
//! configuration locked, no takeover) until both run version 3.
//!
//! The HMAC key is HKDF-SHA256 of the cluster secret (salt
//! `duplex-heartbeat`, info `v1`), so the secret itself never keys a MAC and
//! a new format version can derive a new key.
//!
//! # What is dropped, and how it is counted
//! - `malformed`: not this layout (wrong magic or version, bad lengths,
//!   over [`MAX_DATAGRAM`] bytes), checked before the MAC.
//! - `forged`: the layout parses but the MAC does not verify (constant-time
//!   compare).
//! - `replayed`: authentic, but not newer than what this link already
//!   accepted from that sender, or carrying our own controller id (a
//!   reflection of our own beat, or a partner misconfigured with our id).
//!
//! The replay window is **per link and per sender**: the same beat arrives on
//! both links, and each link must see it to prove that link alive. Within
//! one incarnation only a sequence greater than the highest seen is
//! accepted. A new incarnation (the sender restarted) resets the window, but
//! only once the datagram is authentic, and an incarnation this link has
//! already left behind (the last [`RETIRED_INCARNATIONS`]) is never taken
//! back, so a captured datagram from an earlier boot cannot rewind it.

use crate::backend::{Arrival, BoxFuture, Interconnect, LinkCounters};
use crate::core::types::{Beat, Epoch};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

type HmacSha256 = Hmac<Sha256>;

/// The largest datagram accepted; anything longer is `malformed`.
pub const MAX_DATAGRAM: usize = 256;
/// The longest controller id, in bytes.
pub const MAX_ID: usize = 8;
/// How many earlier incarnations of a sender each link refuses to go back to.
pub const RETIRED_INCARNATIONS: usize = 8;

const MAGIC: [u8; 4] = *b"DXHB";
const VERSION: u8 = 3;
/// The previous version, accepted on receipt (no echo).
const VERSION_NO_ECHO: u8 = 2;
/// How many of its own beats per link a sender remembers for the echo.
const SENT_REMEMBERED: usize = 64;
/// Weight of a new round trip in the running average (1/8, as TCP's SRTT).
const RTT_WEIGHT: u64 = 8;
const MAC_LEN: usize = 32;
const HKDF_SALT: &[u8] = b"duplex-heartbeat";
const HKDF_INFO: &[u8] = b"v1";
/// Verified beats waiting for `recv`; beyond this the link tasks wait and
/// the kernel's socket buffer absorbs (then drops) the rest.
const QUEUE: usize = 64;
/// The longest one link's send may wait for buffer space.
const SEND_TIMEOUT: Duration = Duration::from_millis(20);
/// Pause after a socket error so a persistent one cannot spin a core.
const ERROR_BACKOFF: Duration = Duration::from_millis(10);

/// Errors setting up the interconnect.
#[derive(Debug, thiserror::Error)]
pub enum InterconnectError {
    /// An empty secret would make every MAC forgeable.
    #[error("the cluster secret is empty")]
    EmptySecret,
    /// HKDF refused the output length (cannot happen for 32 bytes).
    #[error("cannot derive the heartbeat key")]
    KeyDerivation,
    /// Called outside a tokio runtime: the receive tasks need one.
    #[error("the interconnect must be started inside a tokio runtime")]
    NoRuntime,
    /// No link was configured.
    #[error("no interconnect link is configured")]
    NoLinks,
    /// The controller id does not fit the datagram.
    #[error("controller id {id:?} is not 1 to 8 bytes")]
    BadId {
        /// The refused id.
        id: String,
    },
    /// A link's local address could not be bound.
    #[error("cannot bind interconnect link {link} to {addr}")]
    Bind {
        /// Link index.
        link: usize,
        /// The local address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// The partner's last beat accepted on a link, echoed back on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Echo {
    /// The echoed beat's incarnation (the receiver's own).
    pub incarnation: u64,
    /// The echoed beat's sequence.
    pub seq: u64,
    /// Microseconds between accepting that beat and sending this one.
    pub hold_us: u32,
}

/// Why a beat could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A controller id is empty (sender only) or longer than [`MAX_ID`].
    #[error("controller id {id:?} does not fit the datagram")]
    Id {
        /// The refused id.
        id: String,
    },
    /// The beat claims to come from another controller.
    #[error("beat from {beat:?} refused: this controller is {own:?}")]
    NotOurs {
        /// The id in the beat.
        beat: String,
        /// Our id.
        own: String,
    },
}

/// Why a received datagram was dropped before the replay window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Not a heartbeat datagram of this version.
    Malformed,
    /// Well formed, but the MAC does not verify.
    Forged,
}

/// The HMAC key derived from the cluster secret; never printed.
#[derive(Clone)]
pub struct BeatKey {
    mac: HmacSha256,
}

impl std::fmt::Debug for BeatKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BeatKey(..)")
    }
}

impl BeatKey {
    /// Derives the key from the cluster secret (HKDF-SHA256).
    pub fn derive(secret: &[u8]) -> Result<Self, InterconnectError> {
        if secret.is_empty() {
            return Err(InterconnectError::EmptySecret);
        }
        let mut okm = [0u8; 32];
        hkdf::Hkdf::<Sha256>::new(Some(HKDF_SALT), secret)
            .expand(HKDF_INFO, &mut okm)
            .map_err(|_| InterconnectError::KeyDerivation)?;
        let mac = HmacSha256::new_from_slice(&okm).map_err(|_| InterconnectError::KeyDerivation)?;
        Ok(BeatKey { mac })
    }
}

fn put_id(out: &mut Vec<u8>, id: &str, min: usize) -> Result<(), EncodeError> {
    let len = u8::try_from(id.len())
        .ok()
        .filter(|l| usize::from(*l) >= min && usize::from(*l) <= MAX_ID)
        .ok_or_else(|| EncodeError::Id { id: id.to_string() })?;
    out.push(len);
    out.extend_from_slice(id.as_bytes());
    Ok(())
}

/// Encodes and signs one beat, with the echo of the link it goes on.
pub fn encode(beat: &Beat, echo: Option<Echo>, key: &BeatKey) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(112);
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    put_id(&mut out, &beat.controller, 1)?;
    out.extend_from_slice(&beat.incarnation.to_be_bytes());
    out.extend_from_slice(&beat.epoch.counter.to_be_bytes());
    put_id(&mut out, &beat.epoch.controller, 0)?;
    out.extend_from_slice(&beat.seq.to_be_bytes());
    out.push(beat.state);
    out.push(beat.shelf);
    let e = echo.unwrap_or(Echo {
        incarnation: 0,
        seq: 0,
        hold_us: 0,
    });
    out.push(u8::from(echo.is_some()));
    out.extend_from_slice(&e.incarnation.to_be_bytes());
    out.extend_from_slice(&e.seq.to_be_bytes());
    out.extend_from_slice(&e.hold_us.to_be_bytes());
    let mut mac = key.mac.clone();
    mac.update(&out);
    out.extend_from_slice(&mac.finalize().into_bytes());
    Ok(out)
}

/// Reads fields off the front of a byte slice; every read is bounds-checked.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.rest.len() < n {
            return None;
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).and_then(|b| b.first().copied())
    }

    fn u32(&mut self) -> Option<u32> {
        let b: [u8; 4] = self.take(4)?.try_into().ok()?;
        Some(u32::from_be_bytes(b))
    }

    fn u64(&mut self) -> Option<u64> {
        let b: [u8; 8] = self.take(8)?.try_into().ok()?;
        Some(u64::from_be_bytes(b))
    }

    fn id(&mut self, min: usize) -> Option<String> {
        let len = usize::from(self.u8()?);
        if len < min || len > MAX_ID {
            return None;
        }
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes).ok().map(str::to_string)
    }
}

fn parse_body(body: &[u8]) -> Option<(Beat, Option<Echo>)> {
    let mut r = Reader { rest: body };
    if r.take(MAGIC.len())? != MAGIC {
        return None;
    }
    let version = r.u8()?;
    if version != VERSION && version != VERSION_NO_ECHO {
        return None;
    }
    let controller = r.id(1)?;
    let incarnation = r.u64()?;
    let counter = r.u64()?;
    let epoch_controller = r.id(0)?;
    let seq = r.u64()?;
    let state = r.u8()?;
    let shelf = r.u8()?;
    let echo = if version == VERSION {
        let present = r.u8()?;
        let e = Echo {
            incarnation: r.u64()?,
            seq: r.u64()?,
            hold_us: r.u32()?,
        };
        match present {
            0 => None,
            1 => Some(e),
            _ => return None,
        }
    } else {
        None
    };
    if !r.rest.is_empty() {
        return None;
    }
    let beat = Beat {
        controller,
        incarnation,
        epoch: Epoch {
            counter,
            controller: epoch_controller,
        },
        seq,
        state,
        shelf,
    };
    Some((beat, echo))
}

/// Parses and authenticates one datagram. The layout is checked first, so
/// garbage is `Malformed`; a well-formed datagram with a bad MAC is `Forged`.
pub fn decode(datagram: &[u8], key: &BeatKey) -> Result<(Beat, Option<Echo>), Rejection> {
    if datagram.len() > MAX_DATAGRAM || datagram.len() <= MAC_LEN {
        return Err(Rejection::Malformed);
    }
    let (body, tag) = datagram.split_at(datagram.len() - MAC_LEN);
    let parsed = parse_body(body).ok_or(Rejection::Malformed)?;
    let mut mac = key.mac.clone();
    mac.update(body);
    mac.verify_slice(tag).map_err(|_| Rejection::Forged)?;
    Ok(parsed)
}

/// What one link remembers for its round trips: the partner's last beat
/// accepted on it (to echo), and our own recent beats sent on it.
#[derive(Debug, Default)]
struct LinkEcho {
    /// The partner's last accepted beat: (incarnation, sequence, arrival).
    heard: Option<(u64, u64, Instant)>,
    /// Our beats sent on this link: (incarnation, sequence, sent at).
    sent: VecDeque<(u64, u64, Instant)>,
}

impl LinkEcho {
    /// The echo to put in a beat sent now.
    fn echo(&self, now: Instant) -> Option<Echo> {
        self.heard.map(|(incarnation, seq, at)| Echo {
            incarnation,
            seq,
            hold_us: u32::try_from(now.saturating_duration_since(at).as_micros())
                .unwrap_or(u32::MAX),
        })
    }

    /// Notes a beat of ours sent at `at`.
    fn sent(&mut self, beat: &Beat, at: Instant) {
        if self.sent.len() >= SENT_REMEMBERED {
            self.sent.pop_front();
        }
        self.sent.push_back((beat.incarnation, beat.seq, at));
    }

    /// The round trip an echo arriving at `at` proves, in µs: `None` for a
    /// beat we no longer remember (or never sent), or a hold longer than
    /// the whole trip (clocks of one machine cannot do that; ignored).
    fn round_trip(&self, echo: &Echo, at: Instant) -> Option<u64> {
        let (_, _, sent) = self
            .sent
            .iter()
            .find(|(inc, seq, _)| *inc == echo.incarnation && *seq == echo.seq)?;
        let trip = u64::try_from(at.checked_duration_since(*sent)?.as_micros()).ok()?;
        trip.checked_sub(u64::from(echo.hold_us))
    }
}

/// Folds one round trip into a link's counters (last and running average).
fn note_round_trip(c: &mut LinkCounters, rtt_us: u64) {
    c.rtt_last_us = Some(rtt_us);
    c.rtt_avg_us = Some(match c.rtt_avg_us {
        None => rtt_us,
        // avg += (x - avg) / 8, in integers and without overflow.
        Some(avg) => {
            if rtt_us >= avg {
                avg + (rtt_us - avg) / RTT_WEIGHT
            } else {
                avg - (avg - rtt_us) / RTT_WEIGHT
            }
        }
    });
}

/// One sender's window on one link.
#[derive(Debug)]
struct SenderWindow {
    incarnation: u64,
    highest: u64,
    retired: VecDeque<u64>,
}

/// The replay window of one link: per sender, the incarnation and the
/// highest sequence accepted. Fed only authentic beats.
#[derive(Debug, Default)]
pub struct ReplayWindow {
    senders: HashMap<String, SenderWindow>,
}

impl ReplayWindow {
    /// Accepts `beat` (and records it) when it is newer than anything this
    /// window saw from its sender; `false` means a replay.
    pub fn accept(&mut self, beat: &Beat) -> bool {
        let Some(w) = self.senders.get_mut(&beat.controller) else {
            self.senders.insert(
                beat.controller.clone(),
                SenderWindow {
                    incarnation: beat.incarnation,
                    highest: beat.seq,
                    retired: VecDeque::new(),
                },
            );
            return true;
        };
        if w.incarnation == beat.incarnation {
            if beat.seq > w.highest {
                w.highest = beat.seq;
                return true;
            }
            return false;
        }
        if w.retired.contains(&beat.incarnation) {
            return false;
        }
        w.retired.push_back(w.incarnation);
        if w.retired.len() > RETIRED_INCARNATIONS {
            w.retired.pop_front();
        }
        w.incarnation = beat.incarnation;
        w.highest = beat.seq;
        true
    }
}

/// The two ends of one interconnect link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkAddrs {
    /// Our address on the link, bound.
    pub local: SocketAddr,
    /// The partner's address on the link, where beats are sent.
    pub peer: SocketAddr,
}

struct Link {
    socket: Arc<UdpSocket>,
    peer: SocketAddr,
}

type Counters = Arc<Mutex<Vec<LinkCounters>>>;
type Echoes = Arc<Mutex<Vec<LinkEcho>>>;

fn with_echo<T>(echoes: &Echoes, link: usize, f: impl FnOnce(&mut LinkEcho) -> T) -> Option<T> {
    let mut all = echoes.lock().unwrap_or_else(PoisonError::into_inner);
    all.get_mut(link).map(f)
}

fn bump(counters: &Counters, link: usize, f: impl FnOnce(&mut LinkCounters)) {
    let mut all = counters.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(c) = all.get_mut(link) {
        f(c);
    }
}

/// [`Interconnect`] over UDP sockets, one per link.
pub struct UdpInterconnect {
    own: String,
    key: BeatKey,
    links: Vec<Link>,
    counters: Counters,
    echoes: Echoes,
    arrivals: tokio::sync::Mutex<mpsc::Receiver<Arrival>>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for UdpInterconnect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpInterconnect")
            .field("own", &self.own)
            .field(
                "links",
                &self.links.iter().map(|l| l.peer).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl UdpInterconnect {
    /// Binds every link's local address and starts receiving. `own` is this
    /// controller's id; `secret` the cluster secret (read by the caller).
    pub async fn bind(
        own: &str,
        secret: &[u8],
        links: &[LinkAddrs],
    ) -> Result<Self, InterconnectError> {
        let mut sockets = Vec::with_capacity(links.len());
        for (i, l) in links.iter().enumerate() {
            let socket = bind_free(l.local).map_err(|source| InterconnectError::Bind {
                link: i,
                addr: l.local,
                source,
            })?;
            sockets.push((socket, l.peer));
        }
        Self::from_sockets(own, secret, sockets)
    }

    /// Starts on sockets already bound (index = link number), each with its
    /// peer address; the receive tasks run on the current tokio runtime.
    pub fn from_sockets(
        own: &str,
        secret: &[u8],
        sockets: Vec<(UdpSocket, SocketAddr)>,
    ) -> Result<Self, InterconnectError> {
        if own.is_empty() || own.len() > MAX_ID {
            return Err(InterconnectError::BadId {
                id: own.to_string(),
            });
        }
        if sockets.is_empty() {
            return Err(InterconnectError::NoLinks);
        }
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| InterconnectError::NoRuntime)?;
        let key = BeatKey::derive(secret)?;
        let counters: Counters = Arc::new(Mutex::new(vec![LinkCounters::default(); sockets.len()]));
        let echoes: Echoes = Arc::new(Mutex::new(
            (0..sockets.len()).map(|_| LinkEcho::default()).collect(),
        ));
        let (tx, rx) = mpsc::channel(QUEUE);
        let mut links = Vec::with_capacity(sockets.len());
        let mut tasks = Vec::with_capacity(sockets.len());
        for (i, (socket, peer)) in sockets.into_iter().enumerate() {
            let socket = Arc::new(socket);
            tasks.push(runtime.spawn(receive(
                i,
                Arc::clone(&socket),
                own.to_string(),
                key.clone(),
                Arc::clone(&counters),
                Arc::clone(&echoes),
                tx.clone(),
            )));
            links.push(Link { socket, peer });
        }
        Ok(UdpInterconnect {
            own: own.to_string(),
            key,
            links,
            counters,
            echoes,
            arrivals: tokio::sync::Mutex::new(rx),
            tasks,
        })
    }

    /// The bound local address of each link (useful when bound to port 0).
    pub fn local_addrs(&self) -> Vec<std::io::Result<SocketAddr>> {
        self.links.iter().map(|l| l.socket.local_addr()).collect()
    }
}

impl Drop for UdpInterconnect {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// One link's receive loop: classify, count, and pass on accepted beats.
async fn receive(
    link: usize,
    socket: Arc<UdpSocket>,
    own: String,
    key: BeatKey,
    counters: Counters,
    echoes: Echoes,
    tx: mpsc::Sender<Arrival>,
) {
    let mut window = ReplayWindow::default();
    // The partner's last accepted (incarnation, sequence) on this link.
    let mut last: Option<(u64, u64)> = None;
    // One byte more than the limit: a longer datagram is truncated to it
    // and so recognised as too long.
    let mut buf = [0u8; MAX_DATAGRAM + 1];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(error) => {
                // ICMP errors from an earlier send surface here; the link
                // stays up and its counters tell the story.
                tracing::debug!(link, %error, "interconnect receive error");
                tokio::time::sleep(ERROR_BACKOFF).await;
                continue;
            }
        };
        let at = Instant::now();
        let datagram = buf.get(..n).unwrap_or(&[]);
        match decode(datagram, &key) {
            Err(Rejection::Malformed) => {
                tracing::debug!(link, %from, len = n, "malformed heartbeat datagram");
                bump(&counters, link, |c| c.malformed += 1);
            }
            Err(Rejection::Forged) => {
                tracing::debug!(link, %from, "heartbeat datagram with a bad MAC");
                bump(&counters, link, |c| c.forged += 1);
            }
            Ok((beat, _)) if beat.controller == own => {
                tracing::debug!(link, %from, "heartbeat datagram with our own id");
                bump(&counters, link, |c| c.replayed += 1);
            }
            Ok((beat, echo)) => {
                if !window.accept(&beat) {
                    bump(&counters, link, |c| c.replayed += 1);
                    continue;
                }
                let missed = lost_between(last, &beat);
                last = Some((beat.incarnation, beat.seq));
                let rtt = with_echo(&echoes, link, |e| {
                    e.heard = Some((beat.incarnation, beat.seq, at));
                    echo.and_then(|x| e.round_trip(&x, at))
                })
                .flatten();
                bump(&counters, link, |c| {
                    c.received += 1;
                    c.lost += missed;
                    if let Some(r) = rtt {
                        note_round_trip(c, r);
                    }
                });
                if tx.send(Arrival { link, beat, at }).await.is_err() {
                    // The interconnect was dropped.
                    return;
                }
            }
        }
    }
}

/// Beats longer apart than this are an outage of the link, not loss.
const OUTAGE_BEATS: u64 = 20;

/// Beats missing between the last one accepted on a link and `beat`: the
/// partner sends every beat on every link, one sequence number each.
fn lost_between(last: Option<(u64, u64)>, beat: &Beat) -> u64 {
    match last {
        Some((inc, seq)) if inc == beat.incarnation => {
            let gap = beat.seq.saturating_sub(seq).saturating_sub(1);
            if gap <= OUTAGE_BEATS {
                gap
            } else {
                0
            }
        }
        _ => 0,
    }
}

impl Interconnect for UdpInterconnect {
    fn send<'a>(&'a self, beat: &'a Beat) -> BoxFuture<'a, Vec<Result<(), String>>> {
        Box::pin(async move {
            let mut results = Vec::with_capacity(self.links.len());
            for (i, link) in self.links.iter().enumerate() {
                // Each link echoes what it heard itself.
                let now = Instant::now();
                let encoded = if beat.controller == self.own {
                    let echo = with_echo(&self.echoes, i, |e| e.echo(now)).flatten();
                    encode(beat, echo, &self.key)
                } else {
                    Err(EncodeError::NotOurs {
                        beat: beat.controller.clone(),
                        own: self.own.clone(),
                    })
                };
                let r = match &encoded {
                    Err(e) => Err(e.to_string()),
                    // Bounded: a link whose send buffer stays full must not
                    // hold back the beat on the other link.
                    Ok(bytes) => match tokio::time::timeout(
                        SEND_TIMEOUT,
                        link.socket.send_to(bytes, link.peer),
                    )
                    .await
                    {
                        Ok(Ok(n)) if n == bytes.len() => Ok(()),
                        Ok(Ok(n)) => Err(format!("short send to {}: {n} bytes", link.peer)),
                        Ok(Err(e)) => Err(format!("send to {}: {e}", link.peer)),
                        Err(_) => Err(format!(
                            "send to {}: send buffer full for {SEND_TIMEOUT:?}",
                            link.peer
                        )),
                    },
                };
                match &r {
                    Ok(()) => {
                        with_echo(&self.echoes, i, |e| e.sent(beat, now));
                        bump(&self.counters, i, |c| c.sent += 1);
                    }
                    Err(_) => bump(&self.counters, i, |c| c.send_errors += 1),
                }
                results.push(r);
            }
            results
        })
    }

    fn recv(&self) -> BoxFuture<'_, Arrival> {
        Box::pin(async move {
            let mut rx = self.arrivals.lock().await;
            match rx.recv().await {
                Some(a) => a,
                // Every receive task ended: nothing will ever arrive.
                None => std::future::pending().await,
            }
        })
    }

    fn counters(&self) -> Vec<LinkCounters> {
        self.counters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Binds a UDP socket to `addr` with `IP_FREEBIND`: a link whose address is
/// not configured yet (the network comes up after the service at boot, or a
/// cable is out) is a link that is down, counted and alerted on, never a
/// heartbeat that cannot start.
fn bind_free(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    use nix::sys::socket::{
        bind, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, SockaddrStorage,
    };
    use std::os::fd::AsRawFd;
    let family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket(
        family,
        SockType::Datagram,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    setsockopt(&fd, sockopt::IpFreebind, &true)?;
    bind(fd.as_raw_fd(), &SockaddrStorage::from(addr))?;
    UdpSocket::from_std(std::net::UdpSocket::from(fd))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"cluster secret for tests";

    fn beat(controller: &str, incarnation: u64, seq: u64) -> Beat {
        Beat {
            controller: controller.to_string(),
            incarnation,
            epoch: Epoch {
                counter: 7,
                controller: "A".to_string(),
            },
            seq,
            state: 3,
            shelf: 5,
        }
    }

    fn key() -> BeatKey {
        BeatKey::derive(SECRET).unwrap()
    }

    #[test]
    fn round_trips_and_stays_small() {
        let mut b = beat("ctrl-B12", u64::MAX, 42);
        b.epoch.controller = "ctrl-A12".to_string();
        let d = encode(&b, None, &key()).unwrap();
        assert_eq!(d.len(), 102);
        assert_eq!(decode(&d, &key()), Ok((b.clone(), None)));
        let e = Echo {
            incarnation: u64::MAX - 1,
            seq: 41,
            hold_us: 99_000,
        };
        let d = encode(&b, Some(e), &key()).unwrap();
        assert_eq!(d.len(), 102);
        assert_eq!(decode(&d, &key()), Ok((b.clone(), Some(e))));
        // A version 2 datagram (no echo fields) is still read.
        let mut v2 = d[..d.len() - MAC_LEN - 21].to_vec();
        v2[4] = 2;
        let mut mac = key().mac.clone();
        mac.update(&v2);
        v2.extend_from_slice(&mac.finalize().into_bytes());
        assert_eq!(v2.len(), 81);
        assert_eq!(decode(&v2, &key()), Ok((b, None)));
    }

    #[test]
    fn refuses_ids_that_do_not_fit() {
        assert!(matches!(
            encode(&beat("controller9", 1, 1), None, &key()),
            Err(EncodeError::Id { .. })
        ));
        assert!(matches!(
            encode(&beat("", 1, 1), None, &key()),
            Err(EncodeError::Id { .. })
        ));
        assert!(matches!(
            BeatKey::derive(b""),
            Err(InterconnectError::EmptySecret)
        ));
    }

    #[test]
    fn every_flipped_bit_is_caught() {
        let echo = Some(Echo {
            incarnation: 3,
            seq: 4,
            hold_us: 5,
        });
        let d = encode(&beat("B", 9, 1), echo, &key()).unwrap();
        for i in 0..d.len() {
            for bit in 0..8 {
                let mut t = d.clone();
                t[i] ^= 1 << bit;
                assert!(decode(&t, &key()).is_err(), "byte {i} bit {bit}");
            }
        }
        // A bit flipped in the MAC or a field keeps the layout: forged.
        let mut t = d.clone();
        let last = t.len() - 1;
        t[last] ^= 1;
        assert_eq!(decode(&t, &key()), Err(Rejection::Forged));
        let mut t = d;
        t[7] ^= 1; // inside the incarnation
        assert_eq!(decode(&t, &key()), Err(Rejection::Forged));
    }

    #[test]
    fn garbage_is_malformed_and_a_wrong_key_is_forged() {
        let d = encode(&beat("B", 9, 1), None, &key()).unwrap();
        assert_eq!(decode(b"hello", &key()), Err(Rejection::Malformed));
        assert_eq!(decode(&d[..d.len() - 1], &key()), Err(Rejection::Malformed));
        let mut long = d.clone();
        long.insert(20, 0);
        assert_eq!(decode(&long, &key()), Err(Rejection::Malformed));
        assert_eq!(decode(&[0u8; 300], &key()), Err(Rejection::Malformed));
        // Another version of the format (version 1 had no shelf count; 4
        // does not exist), and an echo flag that is neither 0 nor 1.
        let mut flag = d.clone();
        flag[d.len() - MAC_LEN - 21] = 2;
        assert_eq!(decode(&flag, &key()), Err(Rejection::Malformed));
        for version in [1, 4] {
            let mut other = d.clone();
            other[4] = version;
            assert_eq!(decode(&other, &key()), Err(Rejection::Malformed));
        }
        let other = BeatKey::derive(b"another secret").unwrap();
        assert_eq!(decode(&d, &other), Err(Rejection::Forged));
    }

    #[test]
    fn decode_never_panics_on_noise_or_mutations() {
        // Deterministic xorshift noise: random lengths, and valid datagrams
        // with random bytes overwritten, truncated or extended.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let valid = encode(&beat("B", 9, 1), None, &key()).unwrap();
        let (mut ok, mut forged, mut malformed) = (0, 0, 0);
        for round in 0..5_000 {
            let mut d = if round % 2 == 0 {
                let len = usize::try_from(next() % 300).unwrap();
                (0..len)
                    .map(|_| next().to_le_bytes()[0])
                    .collect::<Vec<u8>>()
            } else {
                valid.clone()
            };
            let edits = next() % 4;
            for _ in 0..edits {
                if d.is_empty() {
                    break;
                }
                let at = usize::try_from(next() % u64::try_from(d.len()).unwrap()).unwrap();
                match next() % 3 {
                    0 => d[at] = next().to_le_bytes()[0],
                    1 => d.truncate(at),
                    _ => d.insert(at, next().to_le_bytes()[0]),
                }
            }
            match decode(&d, &key()) {
                Ok((b, e)) => {
                    assert_eq!(d, valid, "only the untouched datagram verifies");
                    assert_eq!((b, e), (beat("B", 9, 1), None));
                    ok += 1;
                }
                Err(Rejection::Forged) => forged += 1,
                Err(Rejection::Malformed) => malformed += 1,
            }
        }
        assert!(
            ok > 0 && forged > 0 && malformed > 0,
            "{ok} {forged} {malformed}"
        );
    }

    #[test]
    fn a_round_trip_is_the_trip_less_the_partners_hold() {
        let t0 = Instant::now();
        let mut l = LinkEcho::default();
        assert_eq!(l.echo(t0), None, "nothing heard yet");
        l.sent(&beat("A", 7, 1), t0);
        let back = |seq, hold_us| Echo {
            incarnation: 7,
            seq,
            hold_us,
        };
        let at = t0 + Duration::from_millis(30);
        // Sent at t0, back 30 ms later after 20 ms held by the partner.
        assert_eq!(l.round_trip(&back(1, 20_000), at), Some(10_000));
        // A beat never sent, another incarnation's, a hold longer than the
        // trip: no sample.
        assert_eq!(l.round_trip(&back(2, 0), at), None);
        let other = Echo {
            incarnation: 8,
            seq: 1,
            hold_us: 0,
        };
        assert_eq!(l.round_trip(&other, at), None);
        assert_eq!(l.round_trip(&back(1, 40_000), at), None);
        // Only the last SENT_REMEMBERED beats are remembered.
        for seq in 2..=(SENT_REMEMBERED as u64 + 1) {
            l.sent(&beat("A", 7, seq), t0);
        }
        assert_eq!(l.round_trip(&back(1, 0), at), None);
        assert_eq!(l.round_trip(&back(2, 0), at), Some(30_000));
        // The echo carries how long ago the partner's beat arrived.
        l.heard = Some((9, 5, t0));
        assert_eq!(
            l.echo(t0 + Duration::from_millis(3)),
            Some(Echo {
                incarnation: 9,
                seq: 5,
                hold_us: 3_000
            })
        );
        // The running average moves an eighth of the way.
        let mut c = LinkCounters::default();
        note_round_trip(&mut c, 800);
        assert_eq!((c.rtt_last_us, c.rtt_avg_us), (Some(800), Some(800)));
        note_round_trip(&mut c, 1_600);
        assert_eq!((c.rtt_last_us, c.rtt_avg_us), (Some(1_600), Some(900)));
        note_round_trip(&mut c, 100);
        assert_eq!(c.rtt_avg_us, Some(800));
    }

    #[test]
    fn window_orders_sequences_and_never_rewinds_an_incarnation() {
        let mut w = ReplayWindow::default();
        assert!(w.accept(&beat("B", 1, 5)));
        assert!(!w.accept(&beat("B", 1, 5)));
        assert!(!w.accept(&beat("B", 1, 4)));
        assert!(w.accept(&beat("B", 1, 6)));
        // A restart: a new incarnation starts again from any sequence.
        assert!(w.accept(&beat("B", 2, 1)));
        assert!(w.accept(&beat("B", 2, 2)));
        // A captured datagram of the previous boot is not taken back.
        assert!(!w.accept(&beat("B", 1, 100)));
        // Senders are independent.
        assert!(w.accept(&beat("C", 1, 1)));
        // Only the last RETIRED_INCARNATIONS are remembered.
        for inc in 3..(3 + RETIRED_INCARNATIONS as u64) {
            assert!(w.accept(&beat("B", inc, 1)));
        }
        assert!(!w.accept(&beat("B", 2, 99)));
        assert!(w.accept(&beat("B", 1, 100)));
    }

    async fn socket() -> (UdpSocket, SocketAddr) {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let a = s.local_addr().unwrap();
        (s, a)
    }

    async fn next(ic: &UdpInterconnect) -> Arrival {
        tokio::time::timeout(Duration::from_secs(5), ic.recv())
            .await
            .expect("no beat arrived")
    }

    async fn eventually(ic: &UdpInterconnect, what: impl Fn(&[LinkCounters]) -> bool) {
        for _ in 0..500 {
            if what(&ic.counters()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("counters never matched: {:?}", ic.counters());
    }

    /// A and B on two loopback links.
    async fn pair() -> (UdpInterconnect, UdpInterconnect) {
        let (a0, a0a) = socket().await;
        let (a1, a1a) = socket().await;
        let (b0, b0a) = socket().await;
        let (b1, b1a) = socket().await;
        let a = UdpInterconnect::from_sockets("A", SECRET, vec![(a0, b0a), (a1, b1a)]).unwrap();
        let b = UdpInterconnect::from_sockets("B", SECRET, vec![(b0, a0a), (b1, a1a)]).unwrap();
        (a, b)
    }

    #[tokio::test]
    async fn a_link_binds_before_its_address_exists() {
        // 192.0.2.0/24 is TEST-NET-1: never an address of this host.
        let absent: SocketAddr = "192.0.2.77:0".parse().expect("addr");
        let s = bind_free(absent).expect("IP_FREEBIND lets the link start");
        assert_eq!(s.local_addr().expect("local").ip(), absent.ip());
        let links = [LinkAddrs {
            local: absent,
            peer: "192.0.2.78:9".parse().expect("addr"),
        }];
        assert!(UdpInterconnect::bind("A", SECRET, &links).await.is_ok());
    }

    #[test]
    fn gaps_in_the_sequence_are_lost_beats_and_long_ones_an_outage() {
        assert_eq!(lost_between(None, &beat("A", 1, 7)), 0);
        assert_eq!(lost_between(Some((1, 6)), &beat("A", 1, 7)), 0);
        assert_eq!(lost_between(Some((1, 6)), &beat("A", 1, 10)), 3);
        assert_eq!(lost_between(Some((1, 6)), &beat("A", 1, 27)), 20);
        assert_eq!(
            lost_between(Some((1, 6)), &beat("A", 1, 28)),
            0,
            "an outage"
        );
        assert_eq!(lost_between(Some((1, 6)), &beat("A", 2, 1)), 0, "a restart");
    }

    #[tokio::test]
    async fn beats_flow_both_ways_on_both_links() {
        let (a, b) = pair().await;
        for seq in 1..=3 {
            let r = a.send(&beat("A", 11, seq)).await;
            assert_eq!(r, vec![Ok(()), Ok(())]);
            let r = b.send(&beat("B", 22, seq)).await;
            assert_eq!(r, vec![Ok(()), Ok(())]);
        }
        let mut at_b = Vec::new();
        let mut at_a = Vec::new();
        for _ in 0..6 {
            let x = next(&b).await;
            at_b.push((x.link, x.beat.seq));
            assert_eq!(x.beat, beat("A", 11, x.beat.seq));
            let x = next(&a).await;
            at_a.push((x.link, x.beat.seq));
            assert_eq!(x.beat.controller, "B");
        }
        at_b.sort_unstable();
        at_a.sort_unstable();
        let want = vec![(0, 1), (0, 2), (0, 3), (1, 1), (1, 2), (1, 3)];
        assert_eq!(at_b, want);
        assert_eq!(at_a, want);
        for c in a.counters().iter().chain(b.counters().iter()) {
            assert_eq!((c.sent, c.received, c.send_errors), (3, 3, 0));
            assert_eq!((c.forged, c.replayed, c.malformed), (0, 0, 0));
        }
        // B heard A's beats, so its next beat echoes them on each link and A
        // measures each link's round trip (loopback: well under a second).
        assert_eq!(b.send(&beat("B", 22, 4)).await, vec![Ok(()), Ok(())]);
        for _ in 0..2 {
            next(&a).await;
        }
        for c in a.counters() {
            let rtt = c.rtt_last_us.expect("a round trip on every link");
            assert!(rtt < 1_000_000, "{rtt} µs");
            assert!(c.rtt_avg_us.is_some());
        }
        // A send the kernel refuses (port 0) is reported and counted.
        let (s, _) = socket().await;
        let bad: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let c = UdpInterconnect::from_sockets("A", SECRET, vec![(s, bad)]).unwrap();
        let r = c.send(&beat("A", 1, 1)).await;
        assert!(r[0].is_err(), "{r:?}");
        assert_eq!(c.counters()[0].send_errors, 1);
        // A beat claiming another sender is refused before any send.
        let r = a.send(&beat("B", 11, 9)).await;
        assert!(r.iter().all(Result::is_err));
        assert_eq!(a.counters()[0].send_errors, 1);
    }

    #[tokio::test]
    async fn forged_replayed_reflected_and_garbage_are_dropped_and_counted() {
        let (b0, b0a) = socket().await;
        // The "wire": a socket that captures what A sends on link 0.
        let (tap, tap_addr) = socket().await;
        let b = UdpInterconnect::from_sockets("B", SECRET, vec![(b0, tap_addr)]).unwrap();
        let (a0, _) = socket().await;
        let a = UdpInterconnect::from_sockets("A", SECRET, vec![(a0, tap_addr)]).unwrap();

        // A real beat from A, captured on the wire, delivered to B twice.
        assert_eq!(a.send(&beat("A", 5, 1)).await, vec![Ok(())]);
        let mut buf = [0u8; 512];
        let (n, _) = tap.recv_from(&mut buf).await.unwrap();
        let captured = buf[..n].to_vec();
        tap.send_to(&captured, b0a).await.unwrap();
        assert_eq!(next(&b).await.beat, beat("A", 5, 1));
        tap.send_to(&captured, b0a).await.unwrap();
        eventually(&b, |c| c[0].replayed == 1).await;

        // The same beat under another secret.
        let forged = encode(&beat("A", 5, 2), None, &BeatKey::derive(b"guess").unwrap()).unwrap();
        tap.send_to(&forged, b0a).await.unwrap();
        eventually(&b, |c| c[0].forged == 1).await;

        // Garbage, and an oversized datagram.
        tap.send_to(b"GET / HTTP/1.0\r\n\r\n", b0a).await.unwrap();
        tap.send_to(&[0x44; 300], b0a).await.unwrap();
        eventually(&b, |c| c[0].malformed == 2).await;

        // B's own beat reflected back at it.
        let own = encode(&beat("B", 8, 1), None, &key()).unwrap();
        tap.send_to(&own, b0a).await.unwrap();
        eventually(&b, |c| c[0].replayed == 2).await;

        // After all that, a genuine newer beat still gets through.
        let fresh = encode(&beat("A", 5, 2), None, &key()).unwrap();
        tap.send_to(&fresh, b0a).await.unwrap();
        assert_eq!(next(&b).await.beat, beat("A", 5, 2));
        assert_eq!(
            b.counters()[0],
            LinkCounters {
                sent: 0,
                send_errors: 0,
                received: 2,
                forged: 1,
                replayed: 2,
                malformed: 2,
                lost: 0,
                rtt_last_us: None,
                rtt_avg_us: None,
            }
        );
    }

    #[tokio::test]
    async fn one_closed_link_leaves_the_other_delivering() {
        // B's link-0 socket is gone: A's link-0 beats hit a closed port.
        let (dead, dead_addr) = socket().await;
        drop(dead);
        let (a0, _) = socket().await;
        let (a1, a1a) = socket().await;
        let (b1, b1a) = socket().await;
        let (b0, _) = socket().await;
        let a =
            UdpInterconnect::from_sockets("A", SECRET, vec![(a0, dead_addr), (a1, b1a)]).unwrap();
        let b =
            UdpInterconnect::from_sockets("B", SECRET, vec![(b0, dead_addr), (b1, a1a)]).unwrap();
        for seq in 1..=5 {
            let r = a.send(&beat("A", 1, seq)).await;
            assert!(r[1].is_ok());
            let x = next(&b).await;
            assert_eq!((x.link, x.beat.seq), (1, seq));
        }
        assert_eq!(b.counters()[0].received, 0);
        assert_eq!(b.counters()[1].received, 5);
    }

    #[tokio::test]
    async fn binds_by_address_and_refuses_bad_setups() {
        let e = UdpInterconnect::from_sockets("A", SECRET, vec![]).unwrap_err();
        assert!(matches!(e, InterconnectError::NoLinks));
        let (s, peer) = socket().await;
        let e = UdpInterconnect::from_sockets("too-long-id", SECRET, vec![(s, peer)]).unwrap_err();
        assert!(matches!(e, InterconnectError::BadId { .. }));
        let (s, peer) = socket().await;
        let local = peer;
        drop(s);
        let links = [LinkAddrs { local, peer }];
        let a = UdpInterconnect::bind("A", SECRET, &links).await.unwrap();
        assert_eq!(a.local_addrs()[0].as_ref().unwrap(), &local);
        // The same address again is refused with the link named.
        let e = UdpInterconnect::bind("A", SECRET, &links)
            .await
            .unwrap_err();
        assert!(matches!(e, InterconnectError::Bind { link: 0, .. }));
    }
}
