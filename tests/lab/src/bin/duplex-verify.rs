//! duplex-verify: runs on the lab host H. Writes sequence-numbered,
//! checksummed 4 KiB blocks with O_DIRECT|O_DSYNC to one or more block
//! devices for a while (a few writer threads per device), records every
//! acknowledged write, then reads everything back and checks that each
//! acknowledged block is intact. Prints one JSON object.

use anyhow::{bail, Context, Result};
use clap::Parser;
use duplex_lab::verify::{self, BLOCK};
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Parser, Debug)]
#[command(about = "Verified O_DIRECT writes: IOPS, longest pause, errors, read-back check")]
struct Args {
    /// Block device to test, as NAME=PATH or PATH; repeat for several.
    #[arg(long = "device", required = true)]
    devices: Vec<String>,
    /// How long to write, in seconds.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Writer threads per device (each keeps one write in flight).
    #[arg(long, default_value_t = 4)]
    threads: u64,
    /// Blocks used per device (split between the threads).
    #[arg(long, default_value_t = 8192)]
    blocks: u64,
    /// First block used on each device.
    #[arg(long, default_value_t = 0)]
    offset_blocks: u64,
    /// Stop writing as soon as this file exists (before `--seconds`): the
    /// caller ends the run when the event it measures is over.
    #[arg(long)]
    stop_file: Option<std::path::PathBuf>,
    /// Give up if a write is still outstanding this long after the end.
    #[arg(long, default_value_t = 60.0)]
    stall_seconds: f64,
}

/// What one writer thread did.
struct WriterLog {
    first_lba: u64,
    /// Last acknowledged sequence number per block of the region.
    acked: Vec<Option<u64>>,
    /// A failed write after the last ack: the block may hold either.
    failed: Vec<Option<u64>>,
    times: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
}

#[derive(Serialize, Default)]
struct VerifyReport {
    checked: u64,
    intact: u64,
    bad: u64,
    read_errors: u64,
    first_bad: Option<String>,
    ok: bool,
}

#[derive(Serialize)]
struct DeviceReport {
    name: String,
    device: String,
    writes_acked: u64,
    write_errors: u64,
    iops: f64,
    max_gap_ms: f64,
    max_gap_at_s: f64,
    first_error: Option<String>,
    /// The longest pauses, longest first, to tell an event from noise.
    gaps: Vec<Gap>,
    verify: VerifyReport,
    ok: bool,
}

#[derive(Serialize)]
struct Gap {
    at_s: f64,
    ms: f64,
}

#[derive(Serialize)]
struct Report {
    seconds: f64,
    /// When the stop file was seen, seconds after the writes started: the
    /// caller, who knows when it made the file, places the writer's
    /// timeline on its own clock with it.
    stop_seen_at_s: Option<f64>,
    threads_per_device: u64,
    stuck_writers: u64,
    devices: Vec<DeviceReport>,
    ok: bool,
}

fn open(path: &str, write: bool) -> Result<File> {
    let mut o = OpenOptions::new();
    o.read(true).write(write);
    let flags = if write {
        libc::O_DIRECT | libc::O_DSYNC
    } else {
        libc::O_DIRECT
    };
    o.custom_flags(flags);
    o.open(path)
        .with_context(|| format!("open {path} with O_DIRECT"))
}

/// A block-aligned 4 KiB window into an over-allocated buffer: O_DIRECT
/// needs aligned memory and this avoids unsafe allocation.
struct Aligned {
    buf: Vec<u8>,
    off: usize,
}

impl Aligned {
    fn new() -> Self {
        let buf = vec![0u8; 2 * BLOCK];
        let off = buf.as_ptr().align_offset(BLOCK);
        Self { buf, off }
    }
    fn get(&mut self) -> &mut [u8] {
        let off = self.off;
        self.buf.get_mut(off..off + BLOCK).unwrap_or_default()
    }
}

struct WriterCfg {
    file: Arc<File>,
    run: u64,
    first_lba: u64,
    count: u64,
    start: Instant,
    end: Instant,
    stop: Arc<AtomicBool>,
    seq: Arc<AtomicU64>,
}

fn writer(c: &WriterCfg) -> WriterLog {
    let n = usize::try_from(c.count).unwrap_or(0);
    let mut log = WriterLog {
        first_lba: c.first_lba,
        acked: vec![None; n],
        failed: vec![None; n],
        times: Vec::new(),
        errors: 0,
        first_error: None,
    };
    let mut buf = Aligned::new();
    let mut i: u64 = 0;
    while Instant::now() < c.end && !c.stop.load(Ordering::Relaxed) && c.count > 0 {
        let idx = i % c.count;
        i += 1;
        let lba = c.first_lba + idx;
        let seq = c.seq.fetch_add(1, Ordering::Relaxed);
        if verify::encode(buf.get(), c.run, lba, seq).is_err() {
            break;
        }
        let slot = usize::try_from(idx).unwrap_or(0);
        match c.file.write_at(buf.get(), lba * BLOCK as u64) {
            Ok(w) if w == BLOCK => {
                if let Some(a) = log.acked.get_mut(slot) {
                    *a = Some(seq);
                }
                if let Some(f) = log.failed.get_mut(slot) {
                    *f = None;
                }
                let t = c.start.elapsed().as_nanos();
                log.times.push(u64::try_from(t).unwrap_or(u64::MAX));
            }
            other => {
                log.errors += 1;
                if let Some(f) = log.failed.get_mut(slot) {
                    *f = Some(seq);
                }
                if log.first_error.is_none() {
                    log.first_error = Some(match other {
                        Ok(w) => format!("short write {w} at lba {lba}"),
                        Err(e) => {
                            format!("lba {lba} at {:.3}s: {e}", c.start.elapsed().as_secs_f64())
                        }
                    });
                }
                // Do not spin on a dead device.
                thread::sleep(Duration::from_millis(10));
            }
        }
    }
    log
}

fn check(path: &str, run: u64, logs: &[WriterLog]) -> VerifyReport {
    let mut r = VerifyReport::default();
    let file = match open(path, false) {
        Ok(f) => f,
        Err(e) => {
            r.first_bad = Some(format!("{e:#}"));
            r.read_errors = 1;
            return r;
        }
    };
    let mut buf = Aligned::new();
    for log in logs {
        for (i, (acked, failed)) in log.acked.iter().zip(&log.failed).enumerate() {
            let Some(want) = acked else { continue };
            let lba = log.first_lba + u64::try_from(i).unwrap_or(0);
            r.checked += 1;
            let b = buf.get();
            match file.read_at(b, lba * BLOCK as u64) {
                Ok(n) if n == BLOCK => match verify::decode(b, run, lba) {
                    Ok(seq) if seq == *want || Some(seq) == *failed => r.intact += 1,
                    Ok(seq) => {
                        r.bad += 1;
                        r.first_bad
                            .get_or_insert_with(|| format!("lba {lba}: seq {seq}, acked {want}"));
                    }
                    Err(e) => {
                        r.bad += 1;
                        r.first_bad.get_or_insert_with(|| format!("lba {lba}: {e}"));
                    }
                },
                Ok(n) => {
                    r.read_errors += 1;
                    r.first_bad
                        .get_or_insert_with(|| format!("lba {lba}: short read {n}"));
                }
                Err(e) => {
                    r.read_errors += 1;
                    r.first_bad.get_or_insert_with(|| format!("lba {lba}: {e}"));
                }
            }
        }
    }
    r.ok = r.bad == 0 && r.read_errors == 0;
    r
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.threads == 0 || args.blocks < args.threads {
        bail!("need at least one block per writer thread");
    }
    let run = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos() & u128::from(u64::MAX)).unwrap_or(1))
        .unwrap_or(1);
    let seq = Arc::new(AtomicU64::new(1));
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(args.seconds.max(0.0));
    let stop = Arc::new(AtomicBool::new(false));
    if let Some(f) = &args.stop_file {
        // A file left from an earlier run would end this one at once.
        let _ = std::fs::remove_file(f);
    }
    let per = args.blocks / args.threads;

    let mut devices = Vec::new();
    for d in &args.devices {
        let (name, path) = d.split_once('=').unwrap_or((d.as_str(), d.as_str()));
        let file = Arc::new(open(path, true)?);
        let mut handles = Vec::new();
        for t in 0..args.threads {
            let cfg = WriterCfg {
                file: Arc::clone(&file),
                run,
                first_lba: args.offset_blocks + t * per,
                count: per,
                start,
                end,
                stop: Arc::clone(&stop),
                seq: Arc::clone(&seq),
            };
            handles.push(thread::spawn(move || writer(&cfg)));
        }
        devices.push((name.to_string(), path.to_string(), handles));
    }

    // Bounded wait: a write stuck in a queueing multipath device must not
    // hang the caller forever.
    let stall_for = Duration::from_secs_f64(args.stall_seconds.max(0.0));
    let mut stall = end + stall_for;
    let mut stop_seen_at_s = None;
    loop {
        if !stop.load(Ordering::Relaxed) && args.stop_file.as_ref().is_some_and(|f| f.exists()) {
            stop.store(true, Ordering::Relaxed);
            stop_seen_at_s = Some((start.elapsed().as_secs_f64() * 1000.0).round() / 1000.0);
            stall = Instant::now() + stall_for;
        }
        let pending = devices
            .iter()
            .flat_map(|(_, _, hs)| hs.iter())
            .filter(|h| !h.is_finished())
            .count();
        if pending == 0 {
            break;
        }
        if Instant::now() >= stall {
            let report = Report {
                seconds: args.seconds,
                stop_seen_at_s,
                threads_per_device: args.threads,
                stuck_writers: u64::try_from(pending).unwrap_or(u64::MAX),
                devices: Vec::new(),
                ok: false,
            };
            println!("{}", serde_json::to_string_pretty(&report)?);
            std::process::exit(2);
        }
        thread::sleep(Duration::from_millis(20));
    }
    let elapsed = start.elapsed().as_secs_f64();

    let mut reports = Vec::new();
    for (name, path, handles) in devices {
        let logs: Vec<WriterLog> = handles.into_iter().filter_map(|h| h.join().ok()).collect();
        let mut times: Vec<u64> = logs.iter().flat_map(|l| l.times.iter().copied()).collect();
        let acked = u64::try_from(times.len()).unwrap_or(u64::MAX);
        let errors: u64 = logs.iter().map(|l| l.errors).sum();
        let first_error = logs.iter().find_map(|l| l.first_error.clone());
        let gaps: Vec<Gap> = verify::longest_gaps(&mut times, 8)
            .into_iter()
            .map(|(g, a)| {
                #[allow(clippy::cast_precision_loss)]
                let (ms, at) = (g as f64 / 1e6, a as f64 / 1e9);
                Gap {
                    at_s: (at * 1000.0).round() / 1000.0,
                    ms: (ms * 10.0).round() / 10.0,
                }
            })
            .collect();
        let (gap, at) = verify::longest_gap(&mut times).unwrap_or((0, 0));
        let v = check(&path, run, &logs);
        #[allow(clippy::cast_precision_loss)]
        let iops = acked as f64 / elapsed.max(1e-9);
        #[allow(clippy::cast_precision_loss)]
        let (gap_ms, at_s) = (gap as f64 / 1e6, at as f64 / 1e9);
        let ok = errors == 0 && v.ok && acked > 0;
        reports.push(DeviceReport {
            name,
            device: path,
            writes_acked: acked,
            write_errors: errors,
            iops: (iops * 10.0).round() / 10.0,
            max_gap_ms: (gap_ms * 10.0).round() / 10.0,
            max_gap_at_s: (at_s * 1000.0).round() / 1000.0,
            first_error,
            gaps,
            verify: v,
            ok,
        });
    }
    let ok = reports.iter().all(|r| r.ok);
    let report = Report {
        seconds: args.seconds,
        stop_seen_at_s,
        threads_per_device: args.threads,
        stuck_writers: 0,
        devices: reports,
        ok,
    };
    println!("{}", serde_json::to_string_pretty(&report)?);
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}
