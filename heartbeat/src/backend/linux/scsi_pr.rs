//! I/O fencing with SCSI-3 persistent reservations on the pool's disks,
//! through the stock `sg_persist` (sg3-utils).
//!
//! # Key lifecycle
//! 1. **Boot.** Each controller registers its own key on every PR-capable
//!    shelf disk ([`PrAgent::register`], REGISTER AND IGNORE EXISTING KEY,
//!    so a restart re-registers cleanly). The key is derived from the
//!    cluster id and the controller id ([`PrKey::derive`]), so either
//!    controller can compute the other's key and no key is shared between
//!    clusters on one shelf.
//! 2. **Owner.** The controller that owns the pools holds a
//!    Write Exclusive – Registrants Only reservation (type 5,
//!    [`PrAgent::reserve`]): every registered controller may write, nothing
//!    unregistered can.
//! 3. **Fence.** The survivor PREEMPTs the partner's key: its registration
//!    is removed (and the reservation, if the partner held it, passes to
//!    the survivor), so every later write from the partner fails with a
//!    reservation conflict. PREEMPT AND ABORT is tried first, since it also
//!    aborts the partner's commands already queued in the target; a target
//!    that refuses it (the lab's tgt does) gets a plain PREEMPT. Then the
//!    survivor makes sure it holds the type 5 reservation itself.
//! 4. **Confirmed** only when, on every disk, the preempt succeeded (or the
//!    partner's key was already gone), READ KEYS no longer lists the
//!    partner's key, and READ RESERVATION shows the survivor holding type 5.
//!    One disk short of that and the fence fails.
//! 5. **Rejoin.** The fenced controller registers its key again when it
//!    is a member again; the survivor's `unfence` only checks that it did.
//!
//! "Boot" is not process start: [`PrFence::join`] runs only when the
//! heartbeat machine enters `normal` (the partner counts this controller
//! as a member) or `survivor`. A controller that was fenced and keeps
//! running, or whose heartbeat daemon restarts while it is fenced, stays
//! `fenced` until the survivor acknowledges it, so it never puts back the
//! key the survivor removed. The first controller to join reserves a disk
//! nobody holds; a fence moves the reservation to the survivor; a planned
//! move does not move it (type 5 lets every registrant write).

use crate::backend::{BoxFuture, FenceAgent, FenceOutcome, HeartbeatDisk};
use crate::core::slot::{AreaHeader, HEADER_OFFSET};
use duplex_services::exec::{Cmd, ExecError};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The stock sg_persist.
pub const SG_PERSIST: &str = "/usr/bin/sg_persist";

/// A persistent-reservation key (never 0: 0 means "no key" to the target).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PrKey(pub u64);

impl std::fmt::Display for PrKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "0x{:x}", self.0)
    }
}

impl PrKey {
    /// The key of `controller` in cluster `cluster`: the first 8 bytes of
    /// SHA-256 over both ids, so each side computes the other's.
    pub fn derive(cluster: &str, controller: &str) -> Self {
        let mut h = Sha256::new();
        h.update(b"duplex-pr-key-v1\0");
        h.update(cluster.as_bytes());
        h.update(b"\0");
        h.update(controller.as_bytes());
        let digest = h.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(digest.get(..8).unwrap_or(&[0; 8]));
        match u64::from_be_bytes(first) {
            0 => PrKey(1),
            k => PrKey(k),
        }
    }
}

/// Persistent reservation types (SPC-4 table "PERSISTENT RESERVE OUT type
/// codes"), named as sg_persist prints them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrType {
    /// 1: "Write Exclusive".
    WriteExclusive,
    /// 3: "Exclusive Access".
    ExclusiveAccess,
    /// 5: "Write Exclusive, registrants only" (what the owner holds).
    WriteExclusiveRegistrantsOnly,
    /// 6: "Exclusive Access, registrants only".
    ExclusiveAccessRegistrantsOnly,
    /// 7: "Write Exclusive, all registrants".
    WriteExclusiveAllRegistrants,
    /// 8: "Exclusive Access, all registrants".
    ExclusiveAccessAllRegistrants,
}

impl PrType {
    const ALL: [(PrType, u8, &'static str); 6] = [
        (PrType::WriteExclusive, 1, "Write Exclusive"),
        (PrType::ExclusiveAccess, 3, "Exclusive Access"),
        (
            PrType::WriteExclusiveRegistrantsOnly,
            5,
            "Write Exclusive, registrants only",
        ),
        (
            PrType::ExclusiveAccessRegistrantsOnly,
            6,
            "Exclusive Access, registrants only",
        ),
        (
            PrType::WriteExclusiveAllRegistrants,
            7,
            "Write Exclusive, all registrants",
        ),
        (
            PrType::ExclusiveAccessAllRegistrants,
            8,
            "Exclusive Access, all registrants",
        ),
    ];

    /// The type code for `--prout-type`.
    pub fn code(self) -> u8 {
        Self::ALL
            .iter()
            .find(|(t, _, _)| *t == self)
            .map_or(0, |(_, c, _)| *c)
    }

    fn from_text(s: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .find(|(_, _, name)| *name == s)
            .map(|(t, _, _)| *t)
    }
}

/// READ KEYS: the registered keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    /// PR generation (bumped by the target on every PR OUT that changes state).
    pub generation: u32,
    /// Registered keys, one per registered I_T nexus (so a key may repeat).
    pub keys: Vec<PrKey>,
}

/// READ RESERVATION: who holds the reservation, if anyone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// PR generation.
    pub generation: u32,
    /// The holder's key and the type, or `None` when none is held.
    pub held: Option<(PrKey, PrType)>,
}

fn hex_u64(s: &str) -> Option<u64> {
    u64::from_str_radix(s.trim().strip_prefix("0x")?, 16).ok()
}

/// Splits "  PR generation=0x4, rest" into the generation and "rest".
fn generation_line(stdout: &str) -> Option<(u32, &str, std::str::Lines<'_>)> {
    let mut lines = stdout.lines();
    for line in lines.by_ref() {
        if let Some(rest) = line.trim().strip_prefix("PR generation=") {
            let (gen, rest) = rest.split_once(',')?;
            let gen = u32::from_str_radix(gen.strip_prefix("0x")?, 16).ok()?;
            return Some((gen, rest.trim(), lines));
        }
    }
    None
}

/// Parses `sg_persist --in --read-keys` (with or without the inquiry lines).
pub fn parse_read_keys(stdout: &str) -> Option<Keys> {
    let (generation, rest, lines) = generation_line(stdout)?;
    if rest == "there are NO registered reservation keys" {
        return Some(Keys {
            generation,
            keys: Vec::new(),
        });
    }
    let (count, tail) = rest.split_once(' ')?;
    let count: usize = count.parse().ok()?;
    if !matches!(
        tail,
        "registered reservation key follows:" | "registered reservation keys follow:"
    ) {
        return None;
    }
    let keys = lines
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| hex_u64(l).map(PrKey))
        .collect::<Option<Vec<_>>>()?;
    (keys.len() == count).then_some(Keys { generation, keys })
}

/// Parses `sg_persist --in --read-reservation`.
pub fn parse_read_reservation(stdout: &str) -> Option<Reservation> {
    let (generation, rest, mut lines) = generation_line(stdout)?;
    if rest == "there is NO reservation held" {
        return Some(Reservation {
            generation,
            held: None,
        });
    }
    if rest != "Reservation follows:" {
        return None;
    }
    let key = hex_u64(lines.next()?.trim().strip_prefix("Key=")?)?;
    // "scope: LU_SCOPE,  type: Write Exclusive, registrants only"
    let scope_line = lines.next()?.trim();
    let (scope, kind) = scope_line.split_once(" type: ")?;
    if scope.trim() != "scope: LU_SCOPE," {
        return None;
    }
    let kind = PrType::from_text(kind.trim())?;
    Some(Reservation {
        generation,
        held: Some((PrKey(key), kind)),
    })
}

/// How sg_persist failed, from its standard error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SenseKind {
    /// RESERVATION CONFLICT: another nexus holds the reservation, or the
    /// key given is not registered.
    ReservationConflict,
    /// ILLEGAL REQUEST: the target refuses the service action (PREEMPT AND
    /// ABORT on tgt) or a field.
    IllegalRequest,
    /// The target does not implement persistent reservations at all.
    NotSupported,
    /// The device is not a SCSI device (no SG_IO), or cannot be opened.
    NotScsi,
    /// Anything else.
    Other,
}

/// Classifies sg_persist's standard error.
pub fn classify_failure(stderr: &str) -> SenseKind {
    let s = stderr.to_ascii_lowercase();
    if s.contains("reservation conflict") {
        SenseKind::ReservationConflict
    } else if s.contains("bad field in cdb") || s.contains("illegal request") {
        SenseKind::IllegalRequest
    } else if s.contains("command not supported") || s.contains("invalid opcode") {
        SenseKind::NotSupported
    } else if s.contains("inappropriate ioctl") || s.contains("error opening file") {
        SenseKind::NotScsi
    } else {
        SenseKind::Other
    }
}

/// Errors of one sg_persist run.
#[derive(Debug, thiserror::Error)]
pub enum PrError {
    /// sg_persist ran and failed.
    #[error("{disk}: sg_persist failed ({kind:?}): {stderr}")]
    Failed {
        /// The disk.
        disk: PathBuf,
        /// The classified cause.
        kind: SenseKind,
        /// Its standard error.
        stderr: String,
    },
    /// sg_persist could not run or timed out.
    #[error("{disk}: sg_persist did not complete")]
    Exec {
        /// The disk.
        disk: PathBuf,
        /// The executor's error.
        #[source]
        source: ExecError,
    },
    /// sg_persist printed something we do not understand.
    #[error("{disk}: unexpected sg_persist output {stdout:?}")]
    Unexpected {
        /// The disk.
        disk: PathBuf,
        /// What it printed.
        stdout: String,
    },
}

impl PrError {
    fn kind(&self) -> Option<SenseKind> {
        match self {
            PrError::Failed { kind, .. } => Some(*kind),
            _ => None,
        }
    }
}

/// Which preempt removed the partner's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preempted {
    /// PREEMPT AND ABORT (queued commands aborted too).
    WithAbort,
    /// Plain PREEMPT (the target refused PREEMPT AND ABORT).
    Plain,
    /// Nothing to do: the key was not registered.
    AlreadyGone,
}

/// [`FenceAgent`] that preempts the partner's key on the pool's disks.
#[derive(Debug, Clone)]
pub struct PrAgent {
    cluster: String,
    own: String,
    own_key: PrKey,
    disks: Vec<PathBuf>,
    sg_persist: PathBuf,
    timeout: Duration,
    try_abort: bool,
}

/// The type the owner holds.
const OWNER_TYPE: PrType = PrType::WriteExclusiveRegistrantsOnly;

impl PrAgent {
    /// An agent for controller `own` of cluster `cluster` acting on `disks`
    /// (the pool's PR-capable shelf disks, stable `/dev/disk/by-id` paths).
    pub fn new(cluster: &str, own: &str, disks: Vec<PathBuf>) -> Self {
        PrAgent {
            cluster: cluster.to_string(),
            own: own.to_string(),
            own_key: PrKey::derive(cluster, own),
            disks,
            sg_persist: PathBuf::from(SG_PERSIST),
            timeout: Duration::from_secs(10),
            try_abort: true,
        }
    }

    /// Uses another sg_persist binary (an absolute path).
    pub fn with_sg_persist(mut self, path: &Path) -> Self {
        self.sg_persist = path.to_path_buf();
        self
    }

    /// Skips PREEMPT AND ABORT for targets known to refuse it (saves one
    /// round trip per disk during a fence).
    pub fn without_preempt_abort(mut self) -> Self {
        self.try_abort = false;
        self
    }

    /// This controller's key.
    pub fn own_key(&self) -> PrKey {
        self.own_key
    }

    /// Controller `controller`'s key in this cluster.
    pub fn key_of(&self, controller: &str) -> PrKey {
        PrKey::derive(&self.cluster, controller)
    }

    /// The disks this agent acts on.
    pub fn disks(&self) -> &[PathBuf] {
        &self.disks
    }

    async fn run(&self, disk: &Path, args: &[String]) -> Result<String, PrError> {
        let cmd = Cmd::new(&self.sg_persist)
            .arg("--no-inquiry")
            .args(args)
            .arg(disk)
            .timeout(self.timeout);
        match cmd.run().await {
            Ok(out) => Ok(out.stdout),
            Err(ExecError::Failed { stderr, .. }) => Err(PrError::Failed {
                disk: disk.to_path_buf(),
                kind: classify_failure(&stderr),
                stderr,
            }),
            Err(source) => Err(PrError::Exec {
                disk: disk.to_path_buf(),
                source,
            }),
        }
    }

    fn unexpected(disk: &Path, stdout: String) -> PrError {
        PrError::Unexpected {
            disk: disk.to_path_buf(),
            stdout,
        }
    }

    /// Ensures this controller's key is registered on `disk` (REGISTER AND
    /// IGNORE EXISTING KEY, so calling it again is harmless).
    pub async fn register(&self, disk: &Path) -> Result<(), PrError> {
        let args = [
            "--out".to_string(),
            "--register-ignore".to_string(),
            format!("--param-sark={}", self.own_key),
        ];
        self.run(disk, &args).await.map(|_| ())
    }

    /// Ensures this controller holds the Write Exclusive – Registrants Only
    /// reservation on `disk` (succeeds if it already does; a conflict if
    /// another controller holds it).
    pub async fn reserve(&self, disk: &Path) -> Result<(), PrError> {
        let args = [
            "--out".to_string(),
            "--reserve".to_string(),
            format!("--param-rk={}", self.own_key),
            format!("--prout-type={}", OWNER_TYPE.code()),
        ];
        self.run(disk, &args).await.map(|_| ())
    }

    /// READ KEYS on `disk`.
    pub async fn read_keys(&self, disk: &Path) -> Result<Keys, PrError> {
        let args = ["--in".to_string(), "--read-keys".to_string()];
        let out = self.run(disk, &args).await?;
        parse_read_keys(&out).ok_or_else(|| Self::unexpected(disk, out))
    }

    /// READ RESERVATION on `disk`.
    pub async fn read_reservation(&self, disk: &Path) -> Result<Reservation, PrError> {
        let args = ["--in".to_string(), "--read-reservation".to_string()];
        let out = self.run(disk, &args).await?;
        parse_read_reservation(&out).ok_or_else(|| Self::unexpected(disk, out))
    }

    /// Removes `victim`'s registration on `disk`: PREEMPT AND ABORT, or a
    /// plain PREEMPT where the target refuses that.
    pub async fn preempt(&self, disk: &Path, victim: PrKey) -> Result<Preempted, PrError> {
        let args = |action: &str| {
            [
                "--out".to_string(),
                action.to_string(),
                format!("--param-rk={}", self.own_key),
                format!("--param-sark={victim}"),
                format!("--prout-type={}", OWNER_TYPE.code()),
            ]
        };
        if self.try_abort {
            match self.run(disk, &args("--preempt-abort")).await {
                Ok(_) => return Ok(Preempted::WithAbort),
                Err(e)
                    if matches!(
                        e.kind(),
                        Some(SenseKind::IllegalRequest | SenseKind::NotSupported)
                    ) =>
                {
                    tracing::info!(disk = %disk.display(), "PREEMPT AND ABORT refused; plain PREEMPT");
                }
                Err(e) => return Err(e),
            }
        }
        self.run(disk, &args("--preempt")).await?;
        Ok(Preempted::Plain)
    }

    /// Registers this controller's key on every disk and reserves (type 5)
    /// each disk nobody holds; `Ok` says what each disk shows afterwards.
    /// Idempotent. A disk held by another key with another type is an
    /// error: something outside the cluster reserved it.
    pub async fn join(&self) -> Result<String, String> {
        let mut done = Vec::new();
        for disk in &self.disks {
            let e = |e: PrError| e.to_string();
            self.register(disk).await.map_err(e)?;
            let res = self.read_reservation(disk).await.map_err(e)?;
            let held = match res.held {
                Some(h) => h,
                None => match self.reserve(disk).await {
                    Ok(()) => (self.own_key, OWNER_TYPE),
                    // The partner reserved in between: read who holds it.
                    Err(PrError::Failed {
                        kind: SenseKind::ReservationConflict,
                        ..
                    }) => self
                        .read_reservation(disk)
                        .await
                        .map_err(e)?
                        .held
                        .ok_or_else(|| {
                            format!("{}: reserve conflicted but nothing is held", disk.display())
                        })?,
                    Err(other) => return Err(other.to_string()),
                },
            };
            if held.1 != OWNER_TYPE {
                return Err(format!(
                    "{}: reserved by key {} with {:?}, not the cluster's type 5",
                    disk.display(),
                    held.0,
                    held.1
                ));
            }
            let by = if held.0 == self.own_key {
                "us"
            } else {
                "the partner"
            };
            done.push(format!("{} (reserved by {by})", disk.display()));
        }
        Ok(format!(
            "key {} registered on {}",
            self.own_key,
            done.join(", ")
        ))
    }

    /// Fences `victim` on one disk and proves it; `Ok` says how.
    async fn fence_disk(&self, disk: &Path, victim: PrKey) -> Result<Preempted, String> {
        let e = |e: PrError| e.to_string();
        self.register(disk).await.map_err(e)?;
        let before = self.read_keys(disk).await.map_err(e)?;
        let how = if before.keys.contains(&victim) {
            self.preempt(disk, victim).await.map_err(e)?
        } else {
            Preempted::AlreadyGone
        };
        let res = self.read_reservation(disk).await.map_err(e)?;
        if res.held != Some((self.own_key, OWNER_TYPE)) {
            self.reserve(disk).await.map_err(e)?;
        }
        let keys = self.read_keys(disk).await.map_err(e)?;
        if keys.keys.contains(&victim) {
            return Err(format!(
                "{}: key {victim} still registered after the preempt",
                disk.display()
            ));
        }
        let res = self.read_reservation(disk).await.map_err(e)?;
        if res.held != Some((self.own_key, OWNER_TYPE)) {
            return Err(format!(
                "{}: reservation is {:?}, not ours ({})",
                disk.display(),
                res.held,
                self.own_key
            ));
        }
        Ok(how)
    }

    fn refuse_target(&self, target: &str) -> Option<String> {
        if target == self.own {
            return Some(format!("{target} is this controller"));
        }
        if self.disks.is_empty() {
            return Some("no PR-capable disks configured".to_string());
        }
        None
    }
}

impl FenceAgent for PrAgent {
    fn name(&self) -> &str {
        "scsi_pr"
    }

    fn fence<'a>(&'a self, target: &'a str) -> BoxFuture<'a, FenceOutcome> {
        Box::pin(async move {
            if let Some(reason) = self.refuse_target(target) {
                return FenceOutcome::Failed { reason };
            }
            let victim = self.key_of(target);
            tracing::info!(agent = "scsi_pr", target, %victim, disks = self.disks.len(), "preempting the partner's key");
            let mut done = Vec::new();
            let mut failed = Vec::new();
            for disk in &self.disks {
                match self.fence_disk(disk, victim).await {
                    Ok(how) => done.push(format!("{}: {how:?}", disk.display())),
                    Err(reason) => failed.push(reason),
                }
            }
            if failed.is_empty() {
                FenceOutcome::Confirmed {
                    detail: format!(
                        "key {victim} of {target} gone and reservation held by {} on every disk ({})",
                        self.own_key,
                        done.join(", ")
                    ),
                }
            } else {
                let reason = format!(
                    "{} of {} disks not fenced: {}",
                    failed.len(),
                    self.disks.len(),
                    failed.join("; ")
                );
                tracing::warn!(agent = "scsi_pr", target, %reason, "fence not confirmed");
                FenceOutcome::Failed { reason }
            }
        })
    }

    fn test<'a>(&'a self, target: &'a str) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            if let Some(reason) = self.refuse_target(target) {
                return Err(reason);
            }
            let victim = self.key_of(target);
            let mut partner_on = 0;
            for disk in &self.disks {
                let keys = self.read_keys(disk).await.map_err(|e| e.to_string())?;
                // Without our own registration a preempt would conflict.
                if !keys.keys.contains(&self.own_key) {
                    return Err(format!(
                        "{}: our key {} is not registered",
                        disk.display(),
                        self.own_key
                    ));
                }
                self.read_reservation(disk)
                    .await
                    .map_err(|e| e.to_string())?;
                partner_on += usize::from(keys.keys.contains(&victim));
            }
            Ok(format!(
                "{} disks answer PR commands with our key {} registered; {target}'s key {victim} on {partner_on}",
                self.disks.len(),
                self.own_key
            ))
        })
    }

    fn unfence<'a>(&'a self, target: &'a str) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            if let Some(reason) = self.refuse_target(target) {
                return Err(reason);
            }
            // A registration belongs to the initiator that made it: only the
            // partner can register its key again, when it boots.
            let victim = self.key_of(target);
            let mut missing = Vec::new();
            for disk in &self.disks {
                let keys = self.read_keys(disk).await.map_err(|e| e.to_string())?;
                if !keys.keys.contains(&victim) {
                    missing.push(disk.display().to_string());
                }
            }
            if missing.is_empty() {
                Ok(format!(
                    "{target} registered its key {victim} again on every disk"
                ))
            } else {
                Err(format!(
                    "{target} has not registered its key {victim} yet on {}",
                    missing.join(", ")
                ))
            }
        })
    }
}

/// The cluster id in the heartbeat area of the first disk whose header
/// names both controllers.
pub fn area_cluster_id(
    areas: &[Arc<dyn HeartbeatDisk>],
    me: &str,
    partner: &str,
) -> Result<String, String> {
    let mut why = Vec::new();
    for d in areas {
        match d.read_block(HEADER_OFFSET) {
            Ok(b) => match AreaHeader::decode(&b[..]) {
                Ok(h)
                    if h.controllers.iter().any(|c| c == me)
                        && h.controllers.iter().any(|c| c == partner) =>
                {
                    return Ok(h.cluster_id)
                }
                Ok(_) => why.push(format!(
                    "{}: the area is not for {me} and {partner}",
                    d.name()
                )),
                Err(e) => why.push(format!("{}: no heartbeat area ({e})", d.name())),
            },
            Err(e) => why.push(format!("{}: {e}", d.name())),
        }
    }
    Err(format!("no cluster id for the PR keys: {}", why.join("; ")))
}

/// The `scsi_pr` agent as the service runs it: the keys' cluster id comes
/// from the heartbeat area, read when first needed (`cluster.init` may
/// make the area after the service started).
pub struct PrFence {
    own: String,
    partner: String,
    disks: Vec<PathBuf>,
    areas: Vec<Arc<dyn HeartbeatDisk>>,
    sg_persist: PathBuf,
    agent: OnceLock<PrAgent>,
}

impl PrFence {
    /// Controller `own`'s agent on the PR `disks`, with the heartbeat disks
    /// `areas` to read the cluster id from.
    pub fn new(
        own: &str,
        partner: &str,
        disks: Vec<PathBuf>,
        areas: Vec<Arc<dyn HeartbeatDisk>>,
    ) -> Self {
        PrFence {
            own: own.into(),
            partner: partner.into(),
            disks,
            areas,
            sg_persist: PathBuf::from(SG_PERSIST),
            agent: OnceLock::new(),
        }
    }

    /// Uses another sg_persist binary (an absolute path).
    pub fn with_sg_persist(mut self, path: &Path) -> Self {
        self.sg_persist = path.to_path_buf();
        self
    }

    /// The agent, made on the first call that finds the area.
    async fn agent(&self) -> Result<&PrAgent, String> {
        if let Some(a) = self.agent.get() {
            return Ok(a);
        }
        // One O_DIRECT block per disk, off the async workers: a hung disk
        // must not stall the beat.
        let (areas, me, partner) = (self.areas.clone(), self.own.clone(), self.partner.clone());
        let id = tokio::task::spawn_blocking(move || area_cluster_id(&areas, &me, &partner))
            .await
            .map_err(|e| format!("reading the heartbeat area: {e}"))??;
        Ok(self.agent.get_or_init(|| {
            PrAgent::new(&id, &self.own, self.disks.clone()).with_sg_persist(&self.sg_persist)
        }))
    }
}

impl FenceAgent for PrFence {
    fn name(&self) -> &str {
        "scsi_pr"
    }

    fn fence<'a>(&'a self, target: &'a str) -> BoxFuture<'a, FenceOutcome> {
        Box::pin(async move {
            match self.agent().await {
                Ok(a) => a.fence(target).await,
                Err(reason) => FenceOutcome::Failed { reason },
            }
        })
    }

    fn test<'a>(&'a self, target: &'a str) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async move { self.agent().await?.test(target).await })
    }

    fn unfence<'a>(&'a self, target: &'a str) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async move { self.agent().await?.unfence(target).await })
    }

    fn join(&self) -> BoxFuture<'_, Result<String, String>> {
        Box::pin(async move { self.agent().await?.join().await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS_TWO: &str = include_str!("../../../fixtures/sg_persist/read-keys-two.stdout");
    const KEYS_ONE: &str = include_str!("../../../fixtures/sg_persist/read-keys-one.stdout");
    const KEYS_NONE: &str = include_str!("../../../fixtures/sg_persist/read-keys-none.stdout");
    const RES_HELD: &str =
        include_str!("../../../fixtures/sg_persist/read-reservation-held.stdout");
    const RES_NONE: &str =
        include_str!("../../../fixtures/sg_persist/read-reservation-none.stdout");
    const NO_ABORT: &str =
        include_str!("../../../fixtures/sg_persist/preempt-abort-unsupported.stderr");
    const CONFLICT: &str = include_str!("../../../fixtures/sg_persist/reservation-conflict.stderr");
    const NOT_SCSI: &str = include_str!("../../../fixtures/sg_persist/not-scsi.stderr");
    const OPEN_FAILED: &str = include_str!("../../../fixtures/sg_persist/open-failed.stderr");

    #[test]
    fn parses_sg_persist_output() {
        assert_eq!(
            parse_read_keys(KEYS_TWO),
            Some(Keys {
                generation: 4,
                keys: vec![PrKey(0x6a1c_93e0_d4b2_f701), PrKey(0x1d07_c2a9_5e3f_8b42)],
            })
        );
        assert_eq!(parse_read_keys(KEYS_ONE).unwrap().keys.len(), 1);
        assert_eq!(
            parse_read_keys(KEYS_NONE),
            Some(Keys {
                generation: 0,
                keys: vec![]
            })
        );
        assert_eq!(
            parse_read_reservation(RES_HELD),
            Some(Reservation {
                generation: 4,
                held: Some((
                    PrKey(0x1d07_c2a9_5e3f_8b42),
                    PrType::WriteExclusiveRegistrantsOnly
                )),
            })
        );
        assert_eq!(
            parse_read_reservation(RES_NONE),
            Some(Reservation {
                generation: 4,
                held: None
            })
        );
        // A key count that does not match the keys listed is refused.
        let short = KEYS_TWO.lines().take(2).collect::<Vec<_>>().join("\n");
        assert_eq!(parse_read_keys(&short), None);
        assert_eq!(parse_read_keys(""), None);
        assert_eq!(parse_read_reservation(KEYS_TWO), None);
        assert_eq!(classify_failure(NO_ABORT), SenseKind::IllegalRequest);
        assert_eq!(classify_failure(CONFLICT), SenseKind::ReservationConflict);
        assert_eq!(classify_failure(NOT_SCSI), SenseKind::NotScsi);
        assert_eq!(classify_failure(OPEN_FAILED), SenseKind::NotScsi);
    }

    #[test]
    fn keys_are_per_cluster_and_controller() {
        let a = PrKey::derive("c1", "A");
        assert_eq!(a, PrKey::derive("c1", "A"));
        assert_ne!(a, PrKey::derive("c1", "B"));
        assert_ne!(a, PrKey::derive("c2", "A"));
        // The separator keeps ("c1A", "") and ("c1", "A") apart.
        assert_ne!(PrKey::derive("c1A", ""), a);
        assert_eq!(PrType::WriteExclusiveRegistrantsOnly.code(), 5);
        assert_eq!(a.to_string(), format!("0x{:x}", a.0));
    }

    /// Disks for `fixtures/sg_persist/fake-sg_persist`, a stand-in
    /// sg_persist keeping each disk's PR state in files: the
    /// registered keys, the reservation "KEY TYPE", the generation. It acts
    /// as this controller's one I_T nexus and enforces the SPC rules the
    /// agent relies on (the caller must be registered; the preempted key
    /// must be registered; a reservation held by another key conflicts).
    /// A disk whose state dir has `no-abort` refuses PREEMPT AND ABORT like
    /// tgt; `broken` makes it fail like a non-SCSI device.
    struct Shelf {
        /// Holds the disks' state files until the test ends.
        _dir: tempfile::TempDir,
        disks: Vec<PathBuf>,
    }

    impl Shelf {
        fn new(n: usize) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let disks = (0..n)
                .map(|i| dir.path().join(format!("shelf{i}")))
                .collect();
            Shelf { _dir: dir, disks }
        }

        /// The stand-in's path.
        fn sg_persist() -> PathBuf {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/sg_persist/fake-sg_persist")
        }

        fn agent(&self, own: &str) -> PrAgent {
            PrAgent::new("cluster-1", own, self.disks.clone()).with_sg_persist(&Self::sg_persist())
        }

        fn state(&self, disk: usize, file: &str) -> String {
            let mut p = self.disks[disk].clone().into_os_string();
            p.push(format!(".pr/{file}"));
            std::fs::read_to_string(p).unwrap_or_default()
        }

        fn touch(&self, disk: usize, file: &str) {
            let mut p = self.disks[disk].clone().into_os_string();
            p.push(".pr");
            std::fs::create_dir_all(&p).unwrap();
            p.push(format!("/{file}"));
            std::fs::write(p, "").unwrap();
        }
    }

    /// Boot as the design has it: both register, the owner (B) reserves.
    async fn booted(shelf: &Shelf) -> (PrAgent, PrAgent) {
        let a = shelf.agent("A");
        let b = shelf.agent("B");
        for disk in &shelf.disks {
            a.register(disk).await.unwrap();
            b.register(disk).await.unwrap();
            b.reserve(disk).await.unwrap();
            b.reserve(disk).await.unwrap(); // idempotent for the holder
            assert!(matches!(
                a.reserve(disk).await,
                Err(PrError::Failed {
                    kind: SenseKind::ReservationConflict,
                    ..
                })
            ));
        }
        (a, b)
    }

    #[tokio::test]
    async fn fence_preempts_and_confirms_on_every_disk() {
        let shelf = Shelf::new(2);
        // The second disk behaves like tgt: no PREEMPT AND ABORT.
        shelf.touch(1, "no-abort");
        let (a, b) = booted(&shelf).await;
        let keys = a.read_keys(&shelf.disks[0]).await.unwrap();
        assert_eq!(keys.keys, vec![a.own_key(), b.own_key()]);
        assert!(a.test("B").await.unwrap().contains("key"));

        let out = a.fence("B").await;
        let FenceOutcome::Confirmed { detail } = &out else {
            panic!("{out:?}")
        };
        assert!(detail.contains("shelf0: WithAbort"), "{detail}");
        assert!(detail.contains("shelf1: Plain"), "{detail}");
        for disk in &shelf.disks {
            let keys = a.read_keys(disk).await.unwrap();
            assert_eq!(keys.keys, vec![a.own_key()]);
            let res = a.read_reservation(disk).await.unwrap();
            assert_eq!(
                res.held,
                Some((a.own_key(), PrType::WriteExclusiveRegistrantsOnly))
            );
        }
        assert!(shelf.state(1, "calls").contains("--preempt-abort"));

        // Fencing again: the key is already gone; confirmed, no preempt.
        let calls = shelf.state(0, "calls").matches("--preempt").count();
        let out = a.fence("B").await;
        assert!(
            matches!(&out, FenceOutcome::Confirmed { detail } if detail.contains("AlreadyGone")),
            "{out:?}"
        );
        assert_eq!(shelf.state(0, "calls").matches("--preempt").count(), calls);

        // The fenced controller is out until it registers again at boot.
        assert!(a.unfence("B").await.unwrap_err().contains("not registered"));
        for disk in &shelf.disks {
            b.register(disk).await.unwrap();
        }
        assert!(a.unfence("B").await.is_ok());
    }

    #[tokio::test]
    async fn fence_reserves_when_no_one_held_the_reservation() {
        let shelf = Shelf::new(1);
        let a = shelf.agent("A");
        let b = shelf.agent("B");
        a.register(&shelf.disks[0]).await.unwrap();
        b.register(&shelf.disks[0]).await.unwrap();
        let out = a.fence("B").await;
        assert!(matches!(out, FenceOutcome::Confirmed { .. }), "{out:?}");
        assert_eq!(shelf.state(0, "res").trim(), format!("{} 5", a.own_key()));
    }

    #[tokio::test]
    async fn one_failing_disk_fails_the_fence() {
        let shelf = Shelf::new(2);
        let (a, _b) = booted(&shelf).await;
        shelf.touch(1, "broken");
        let out = a.fence("B").await;
        let FenceOutcome::Failed { reason } = out else {
            panic!("{out:?}")
        };
        assert!(reason.starts_with("1 of 2 disks not fenced"), "{reason}");
        assert!(reason.contains("NotScsi"), "{reason}");
        assert!(a.test("B").await.is_err());
        // Fencing ourselves is refused outright.
        assert!(matches!(a.fence("A").await, FenceOutcome::Failed { .. }));
    }

    #[tokio::test]
    async fn test_needs_our_own_registration() {
        let shelf = Shelf::new(1);
        let a = shelf.agent("A");
        let e = a.test("B").await.unwrap_err();
        assert!(e.contains("not registered"), "{e}");
        a.register(&shelf.disks[0]).await.unwrap();
        let ok = a.test("B").await.unwrap();
        assert!(ok.ends_with("on 0"), "{ok}");
    }

    #[tokio::test]
    async fn join_registers_everywhere_and_the_first_one_reserves() {
        let shelf = Shelf::new(2);
        let (a, b) = (shelf.agent("A"), shelf.agent("B"));
        let got = b.join().await.unwrap();
        assert!(got.contains("reserved by us"), "{got}");
        // Idempotent: nothing changes the second time.
        let before = (shelf.state(0, "keys"), shelf.state(0, "res"));
        b.join().await.unwrap();
        assert_eq!((shelf.state(0, "keys"), shelf.state(0, "res")), before);
        let got = a.join().await.unwrap();
        assert!(got.contains("reserved by the partner"), "{got}");
        for d in 0..2 {
            assert_eq!(shelf.state(d, "res").trim(), format!("{} 5", b.own_key()));
            let keys = a.read_keys(&shelf.disks[d]).await.unwrap().keys;
            assert_eq!(keys, vec![b.own_key(), a.own_key()]);
        }
        // As members both can fence; the fence moves the reservation.
        assert!(matches!(a.fence("B").await, FenceOutcome::Confirmed { .. }));
        assert_eq!(shelf.state(1, "res").trim(), format!("{} 5", a.own_key()));
        shelf.touch(1, "broken");
        assert!(a.join().await.unwrap_err().contains("shelf1"));
    }

    #[tokio::test]
    async fn the_service_agent_takes_the_cluster_id_from_the_heartbeat_area() {
        let shelf = Shelf::new(1);
        let hb = crate::backend::sim::SimShelf::new(1);
        let area: Arc<dyn HeartbeatDisk> = Arc::new(hb.disk(0, "A"));
        let fence = PrFence::new("A", "B", shelf.disks.clone(), vec![Arc::clone(&area)])
            .with_sg_persist(&Shelf::sg_persist());
        // No area yet (before cluster.init): nothing registered, and a
        // fence fails rather than guessing a key.
        let e = fence.join().await.unwrap_err();
        assert!(e.contains("no cluster id"), "{e}");
        assert!(matches!(
            fence.fence("B").await,
            FenceOutcome::Failed { .. }
        ));
        assert_eq!(shelf.state(0, "keys"), "");
        crate::driver::init_area(&*area, "c9", ["A", "B"]).unwrap();
        fence.join().await.unwrap();
        assert_eq!(
            shelf.state(0, "keys").trim(),
            PrKey::derive("c9", "A").to_string()
        );
        // An area of other controllers is not ours to take an id from.
        let other = crate::backend::sim::SimShelf::new(1);
        let d: Arc<dyn HeartbeatDisk> = Arc::new(other.disk(0, "A"));
        crate::driver::init_area(&*d, "c9", ["A", "C"]).unwrap();
        let e = area_cluster_id(&[d], "A", "B").unwrap_err();
        assert!(e.contains("not for A and B"), "{e}");
    }
}
