//! Routed versus direct JSON-RPC calls, 1 and 32 concurrent clients.
//!
//! Every process uses a single-threaded tokio runtime, as the Duplex daemons
//! do (see ARCHITECTURE.md). Three processes, as on the appliance: the real `duplex-router` binary, an
//! echo service on the real service runtime (this bench re-executed with
//! `BENCH_ROLE=service`), and the clients (this process). "Routed"
//! is client -> router -> service -> router -> client; "direct" is client ->
//! service -> client on a second socket of the service process served by
//! the same server runtime (the service's own socket admits only the
//! router). Each client makes calls
//! back to back on its own connection.
//!
//! `cargo bench -p duplex-router --bench routing` (set `BENCH_SECS` to change
//! the measuring time per case, default 3).

#![allow(clippy::disallowed_methods, clippy::unwrap_used, missing_docs)]

use duplex_services::conn::RpcConn;
use duplex_services::rpc::{Id, Request};
use duplex_services::{Config, ServiceBuilder};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Stats {
    calls: usize,
    per_sec: f64,
    p50_us: f64,
    p99_us: f64,
}

async fn run_case(socket: &Path, clients: usize, secs: f64) -> Stats {
    let mut conns = Vec::new();
    for _ in 0..clients {
        let s = tokio::net::UnixStream::connect(socket).await.unwrap();
        let (r, w) = s.into_split();
        conns.push(RpcConn::spawn(r, w, 1 << 20, None));
    }
    let run = |conns: Vec<Arc<RpcConn>>, dur: Duration| async move {
        let start = Instant::now();
        let tasks: Vec<_> = conns
            .into_iter()
            .map(|c| {
                tokio::spawn(async move {
                    let mut lat = Vec::with_capacity(100_000);
                    let params = json!({"payload": "0123456789abcdef"});
                    while start.elapsed() < dur {
                        let t = Instant::now();
                        let req = Request::call(Id::Num(0), "bench.echo", params.clone());
                        let resp = c.call(req, Duration::from_secs(10)).await.unwrap();
                        assert!(resp.error.is_none(), "{resp:?}");
                        lat.push(t.elapsed());
                    }
                    lat
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        (all, start.elapsed())
    };
    // Warm-up: connections, allocator, router's connection to the service.
    let _ = run(conns.clone(), Duration::from_millis(500)).await;
    let (mut lat, elapsed) = run(conns, Duration::from_secs_f64(secs)).await;
    lat.sort_unstable();
    // Nearest-rank percentile on the sorted latencies (per-mille index).
    let pct = |per_mille: usize| -> f64 {
        let idx = (lat.len().saturating_sub(1) * per_mille) / 1000;
        lat[idx.min(lat.len() - 1)].as_secs_f64() * 1e6
    };
    Stats {
        calls: lat.len(),
        per_sec: lat.len() as f64 / elapsed.as_secs_f64(),
        p50_us: pct(500),
        p99_us: pct(990),
    }
}

/// The echo answer of the direct socket.
struct Echo;

impl duplex_services::server::Dispatch for Echo {
    async fn dispatch(
        self: Arc<Self>,
        _conn: Arc<duplex_services::server::ConnCtx>,
        req: Request,
    ) -> Option<duplex_services::rpc::Response> {
        req.id
            .map(|id| duplex_services::rpc::Response::ok(Some(id), req.params))
    }
}

fn direct_socket(cfg: &Config) -> std::path::PathBuf {
    cfg.service_socket("bench-direct")
}

/// The echo service role: serve `bench.echo` until killed.
fn service_main(cfg_path: &Path) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let cfg = Config::load(Some(cfg_path)).unwrap();
        let mut b = ServiceBuilder::new(&cfg, "bench", "0", &["bench"]);
        b.method("bench.echo", |_ctx, p| async move { Ok(p) });
        let svc = b.start().await.unwrap();
        let direct = duplex_services::server::bind_unix(&direct_socket(&cfg), 0o600).unwrap();
        tokio::spawn(duplex_services::server::accept_loop(
            direct,
            duplex_services::server::Limits {
                max_frame: 1 << 20,
                max_reply: 1 << 20,
                max_inflight: 256,
            },
            1024,
            Arc::new(Echo),
        ));
        assert!(
            svc.wait_registered(Duration::from_secs(10)).await,
            "router did not come up"
        );
        std::future::pending::<()>().await;
    });
}

fn main() {
    if let (Ok("service"), Ok(cfg)) = (
        std::env::var("BENCH_ROLE").as_deref(),
        std::env::var("DUPLEX_CONFIG"),
    ) {
        service_main(Path::new(&cfg));
        return;
    }
    let secs: f64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let dir = tempfile::tempdir().unwrap();
    let sockets = dir.path().join("run");
    std::fs::create_dir_all(&sockets).unwrap();
    let cfg_path = dir.path().join("duplex.toml");
    std::fs::write(
        &cfg_path,
        format!(
            // `bench` is not in the method catalogue: allowed as a test namespace.
            "controller_id = \"A\"\nsocket_dir = \"{}\"\nstate_dir = \"{}\"\n\
             [router]\ntest_namespaces = [\"bench\"]\n",
            sockets.display(),
            dir.path().display()
        ),
    )
    .unwrap();
    let mut router = std::process::Command::new(env!("CARGO_BIN_EXE_duplex-router"))
        .env("DUPLEX_CONFIG", &cfg_path)
        .spawn()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut service = std::process::Command::new(std::env::current_exe().unwrap())
        .env("DUPLEX_CONFIG", &cfg_path)
        .env("BENCH_ROLE", "service")
        .spawn()
        .unwrap();
    let results = rt.block_on(async {
        let cfg = Config::load(Some(&cfg_path)).unwrap();
        let client = duplex_services::RouterClient::new(cfg.router_socket());
        let deadline = Instant::now() + Duration::from_secs(20);
        while client.call("bench.echo", json!({})).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "the echo service did not register"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut results = Vec::new();
        for clients in [1usize, 32] {
            let routed = run_case(&cfg.router_socket(), clients, secs).await;
            let direct = run_case(&direct_socket(&cfg), clients, secs).await;
            results.push((clients, routed, direct));
        }
        results
    });
    for p in [&mut router, &mut service] {
        let _ = p.kill();
        let _ = p.wait();
    }

    println!("\nrouted vs direct JSON-RPC calls ({secs} s per case, 2-core machine)");
    println!(
        "{:<8} {:<7} {:>10} {:>9} {:>9} {:>9}",
        "clients", "path", "calls/s", "p50 us", "p99 us", "calls"
    );
    for (clients, routed, direct) in &results {
        for (name, s) in [("routed", routed), ("direct", direct)] {
            println!(
                "{:<8} {:<7} {:>10.0} {:>9.1} {:>9.1} {:>9}",
                clients, name, s.per_sec, s.p50_us, s.p99_us, s.calls
            );
        }
        println!(
            "{:<8} {:<7} {:>9.1}%",
            clients,
            "ratio",
            100.0 * routed.per_sec / direct.per_sec
        );
    }
    for (clients, routed, direct) in &results {
        println!(
            "{}",
            json!({
                "bench": "routing", "clients": clients,
                "routed": {"per_sec": routed.per_sec.round(), "p50_us": routed.p50_us, "p99_us": routed.p99_us},
                "direct": {"per_sec": direct.per_sec.round(), "p50_us": direct.p50_us, "p99_us": direct.p99_us},
                "routed_over_direct": routed.per_sec / direct.per_sec,
            })
        );
    }
}
