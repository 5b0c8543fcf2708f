//! duplex-lab-agent: runs inside every lab guest and executes commands sent
//! by `duplex-lab exec` over the virtio-serial port `org.duplex.agent`,
//! answering with the exit code and output. One thread per request, so a
//! long command (a verify run) does not block a short one.

use duplex_lab::agent::{Request, Response, PORT_NAME};
use duplex_lab::cmd;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Output beyond this is dropped: the channel is for control, not bulk data.
const MAX_OUTPUT: usize = 4 << 20;

/// The port's device: udev's /dev/virtio-ports link, or the /dev/vportNpM
/// node whose sysfs name is ours. udev loses the link when a coldplug event
/// is in flight while udevd restarts (the payload restarts it), and then
/// the lab could never reach the guest.
fn port_path() -> PathBuf {
    let link = PathBuf::from("/dev/virtio-ports").join(PORT_NAME);
    if link.exists() {
        return link;
    }
    if let Ok(rd) = std::fs::read_dir("/sys/class/virtio-ports") {
        for e in rd.flatten() {
            let name = std::fs::read_to_string(e.path().join("name")).unwrap_or_default();
            if name.trim() == PORT_NAME {
                return PathBuf::from("/dev").join(e.file_name());
            }
        }
    }
    link
}

fn main() {
    loop {
        let port = port_path();
        match OpenOptions::new().read(true).write(true).open(&port) {
            Ok(f) => serve(f),
            Err(e) => {
                eprintln!("duplex-lab-agent: {}: {e}", port.display());
                thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

/// Reads request lines forever; returns only on a hard read error.
fn serve(port: File) {
    let writer = match port.try_clone() {
        Ok(w) => Arc::new(Mutex::new(w)),
        Err(e) => {
            eprintln!("duplex-lab-agent: clone port: {e}");
            thread::sleep(Duration::from_secs(1));
            return;
        }
    };
    let mut port = port;
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 65536];
    loop {
        match port.read(&mut chunk) {
            Ok(0) => {
                // No host connected: the port reads as end-of-file. Drop any
                // half line from the last client and poll again.
                pending.clear();
                thread::sleep(Duration::from_millis(100));
            }
            Ok(n) => {
                pending.extend_from_slice(chunk.get(..n).unwrap_or_default());
                while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=pos).collect();
                    match serde_json::from_slice::<Request>(&line) {
                        Ok(req) => {
                            let w = Arc::clone(&writer);
                            thread::spawn(move || answer(&w, &req));
                        }
                        Err(e) => eprintln!("duplex-lab-agent: bad request: {e}"),
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                eprintln!("duplex-lab-agent: read: {e}");
                thread::sleep(Duration::from_millis(500));
                return;
            }
        }
    }
}

fn answer(writer: &Arc<Mutex<File>>, req: &Request) {
    let resp = run(req);
    let Ok(mut line) = serde_json::to_vec(&resp) else {
        return;
    };
    line.push(b'\n');
    // A poisoned lock only means another answer panicked mid-write.
    let mut w = match writer.lock() {
        Ok(w) => w,
        Err(p) => p.into_inner(),
    };
    if let Err(e) = w.write_all(&line).and_then(|()| w.flush()) {
        eprintln!("duplex-lab-agent: write answer: {e}");
    }
}

fn capture<R: Read + Send + 'static>(
    pipe: Option<R>,
) -> (Arc<Mutex<Vec<u8>>>, thread::JoinHandle<()>) {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let b = Arc::clone(&buf);
    let h = thread::spawn(move || {
        let Some(mut p) = pipe else { return };
        let mut chunk = [0u8; 8192];
        while let Ok(n) = p.read(&mut chunk) {
            if n == 0 {
                break;
            }
            if let Ok(mut v) = b.lock() {
                if v.len() < MAX_OUTPUT {
                    v.extend_from_slice(chunk.get(..n).unwrap_or_default());
                }
            }
        }
    });
    (buf, h)
}

fn take(buf: &Arc<Mutex<Vec<u8>>>) -> String {
    buf.lock()
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .unwrap_or_default()
}

fn run(req: &Request) -> Response {
    let mut resp = Response {
        id: req.id,
        code: None,
        stdout: String::new(),
        stderr: String::new(),
        timed_out: false,
        error: None,
    };
    let mut c = match cmd::command(&req.argv) {
        Ok(c) => c,
        Err(e) => {
            resp.error = Some(e.to_string());
            return resp;
        }
    };
    // Own process group, so a timeout can kill the whole tree.
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = match c.spawn() {
        Ok(ch) => ch,
        Err(e) => {
            resp.error = Some(format!("{}: {e}", req.argv.join(" ")));
            resp.code = Some(127);
            return resp;
        }
    };
    let (out, oh) = capture(child.stdout.take());
    let (err, eh) = capture(child.stderr.take());
    let timeout = Duration::from_millis(req.timeout_ms);
    let pid = child.id().to_string();
    match cmd::wait_bounded(&mut child, "command", timeout) {
        Ok(Some(st)) => resp.code = st.code(),
        Ok(None) => {
            resp.timed_out = true;
            // The leader is dead; take its group with it (best effort).
            let kill = cmd::argv(&["kill", "-KILL", "--", &format!("-{pid}")]);
            let _ = cmd::run_any(&kill, Duration::from_secs(5));
        }
        Err(e) => resp.error = Some(e.to_string()),
    }
    // Background children may keep the pipes open: wait briefly, then
    // answer with what we have.
    let deadline = Instant::now() + Duration::from_secs(1);
    while !(oh.is_finished() && eh.is_finished()) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    resp.stdout = take(&out);
    resp.stderr = take(&err);
    resp
}
