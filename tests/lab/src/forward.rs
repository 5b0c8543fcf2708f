//! Management ports: TCP on the host's loopback forwarded into the lab
//! namespace, so a browser on this machine reaches a controller's web UI.
//!
//! No network link joins the host and the namespace: the forwarder listens
//! on 127.0.0.1 and, per connection, runs `ip netns exec <ns> duplex-lab
//! connect <addr>` and pumps bytes through that child's stdin/stdout.

use crate::cmd;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::Stdio;
use std::thread;
use std::time::Duration;
use tracing::{info, warn};

/// Default forwards: host port = VM:port (override with DUPLEX_LAB_MGMT).
pub const DEFAULT_SPEC: &str = "18443=A:443,18444=B:443,18080=A:80,18081=B:80";

/// One forward: host loopback port to a guest address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// Port on 127.0.0.1.
    pub host_port: u16,
    /// VM name.
    pub vm: String,
    /// Port in the guest.
    pub guest_port: u16,
}

/// Parses `18443=A:443,18444=B:443`; bad entries are skipped with a warning.
pub fn parse_spec(spec: &str) -> Vec<Forward> {
    spec.split(',')
        .filter(|s| !s.trim().is_empty())
        .filter_map(|s| {
            let (hp, rest) = s.trim().split_once('=')?;
            let (vm, gp) = rest.split_once(':')?;
            let f = Forward {
                host_port: hp.parse().ok()?,
                vm: vm.to_string(),
                guest_port: gp.parse().ok()?,
            };
            Some(f)
        })
        .collect()
}

/// Copies until EOF or error, then half-closes nothing: callers decide.
fn pump(mut from: impl Read, mut to: impl Write) {
    let mut buf = [0u8; 16384];
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 {
            break;
        }
        if to.write_all(buf.get(..n).unwrap_or_default()).is_err() || to.flush().is_err() {
            break;
        }
    }
}

fn serve_conn(conn: TcpStream, exe: &str, ns: &str, target: &str) {
    let argv = cmd::argv(&["ip", "netns", "exec", ns, exe, "connect", target]);
    let mut c = match cmd::command(&argv) {
        Ok(c) => c,
        Err(e) => return warn!("forward: {e}"),
    };
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = match c.spawn() {
        Ok(ch) => ch,
        Err(e) => return warn!("forward: spawn connector: {e}"),
    };
    let (Some(cin), Some(cout)) = (child.stdin.take(), child.stdout.take()) else {
        let _ = child.kill();
        let _ = child.wait();
        return;
    };
    let Ok(up) = conn.try_clone() else {
        let _ = child.kill();
        let _ = child.wait();
        return;
    };
    let down = thread::spawn(move || {
        pump(cout, &conn);
        let _ = conn.shutdown(Shutdown::Both);
    });
    // Client -> guest; when the client closes, closing stdin ends the connector.
    pump(&up, cin);
    let _ = down.join();
    let _ = child.kill();
    let _ = child.wait();
}

/// Runs the forwarder until killed (by `duplex-lab down`).
pub fn run_forwarder(ns: &str, forwards: &[(u16, String)]) {
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "duplex-lab".into());
    let mut hs = Vec::new();
    for (port, target) in forwards.iter().cloned() {
        let listen = SocketAddr::from(([127, 0, 0, 1], port));
        let l = match TcpListener::bind(listen) {
            Ok(l) => l,
            Err(e) => {
                warn!("forward: cannot listen on {listen}: {e}");
                continue;
            }
        };
        info!("forward: {listen} -> {target} in {ns}");
        let (exe, ns) = (exe.clone(), ns.to_string());
        hs.push(thread::spawn(move || {
            for conn in l.incoming().flatten() {
                let (exe, ns, target) = (exe.clone(), ns.clone(), target.clone());
                thread::spawn(move || serve_conn(conn, &exe, &ns, &target));
            }
        }));
    }
    if hs.is_empty() {
        warn!("forward: no port could be bound; exiting");
        std::process::exit(1);
    }
    for h in hs {
        let _ = h.join();
    }
}

/// The in-namespace half: connects to `target` and pumps stdin/stdout.
pub fn connect(target: &str) -> std::io::Result<()> {
    let addr: SocketAddr = target.parse().map_err(|e| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{target}: {e}"))
    })?;
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    let r = s.try_clone()?;
    let out = thread::spawn(move || pump(r, std::io::stdout()));
    pump(std::io::stdin(), &s);
    let _ = s.shutdown(Shutdown::Write);
    let _ = out.join();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec() {
        let f = parse_spec("18443=A:443, bad, 1=B:80");
        assert_eq!(f.len(), 2);
        assert_eq!(
            f[0],
            Forward {
                host_port: 18443,
                vm: "A".into(),
                guest_port: 443
            }
        );
        assert_eq!(f[1].vm, "B");
    }
}
