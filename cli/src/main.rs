//! `duplexctl`: the admin CLI over the router, or over a controller's
//! management endpoint (`duplexctl login URL`, then `--remote URL`).
//!
//! Human-readable output by default, `--json` for scripts. Exit status: 0 on
//! success, 1 when the call returned an error, 2 when the router (or the
//! endpoint) could not be reached or the command line was wrong.

mod admin;
mod audit;
mod catalogue;
mod cluster;
mod conn;
mod progress;
mod remote;

use anyhow::Context;

use clap::{Parser, Subcommand};
use conn::{Conn, Failed};
use duplex_services::client::RouterClient;
use duplex_services::rpc::{Id, Request};
use duplex_services::Config;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Command-line arguments.
#[derive(Parser)]
#[command(version, about = "Duplex admin CLI")]
struct Args {
    /// Router socket (default: from the configuration, else /run/duplex/router.sock).
    #[arg(long, global = true)]
    socket: Option<PathBuf>,
    /// Machine-readable JSON output.
    #[arg(long, global = true)]
    json: bool,
    /// Run the command on this controller (the partner's id goes over the peer link).
    #[arg(long, short = 'c', global = true)]
    controller: Option<String>,
    /// Call timeout in seconds (the router bounds each call by the
    /// method's own limit, at most 15 min, so this is a backstop).
    #[arg(long, global = true, default_value_t = 960)]
    timeout: u64,
    /// Work through this controller's management endpoint over HTTPS
    /// (`https://HOST[:PORT]`) with the session of `duplexctl login`,
    /// instead of the local router.
    #[arg(long, global = true, env = "DUPLEX_REMOTE")]
    remote: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Call any method: `duplexctl call pool.status '{"name":"p1"}'`.
    /// Parameters of typed methods are checked against the catalogue's
    /// schema first; a bad one is named and nothing is sent.
    Call {
        /// The method (`namespace.verb_object`).
        method: String,
        /// Parameters as a JSON object or array.
        params: Option<String>,
        /// Use this action id instead of letting the router assign one.
        #[arg(long)]
        action_id: Option<String>,
        /// Send without checking the parameters here (the service still does).
        #[arg(long)]
        no_check: bool,
    },
    /// List the catalogue's methods with their marks: `duplexctl methods config`.
    Methods {
        /// Only this namespace (`pool`, `config`...).
        namespace: Option<String>,
    },
    /// A method's doc, marks, parameters, result and errors:
    /// `duplexctl describe config.apply`.
    Describe {
        /// The method (`namespace.verb_object`).
        method: String,
    },
    /// List the registered services and the peer link.
    Services,
    /// Print events as they arrive (default: all topics).
    Events {
        /// Topics or patterns (`pool.*`, `alert`).
        topics: Vec<String>,
        /// Stop after this many events.
        #[arg(long)]
        count: Option<usize>,
    },
    /// Show every routed message of one action, on both controllers.
    Trace {
        /// The action id.
        action_id: String,
    },
    /// Shared disks: `duplexctl disk list`.
    Disk {
        #[command(subcommand)]
        op: admin::DiskCmd,
    },
    /// Pools: `duplexctl pool list|layouts|create|delete`.
    Pool {
        #[command(subcommand)]
        op: admin::PoolCmd,
    },
    /// Volumes: `duplexctl volume list|tree|create|resize|delete|snapshot|clone`.
    Volume {
        #[command(subcommand)]
        op: admin::VolumeCmd,
    },
    /// Hosts (initiator names): `duplexctl host list|show|add|delete`.
    Host {
        #[command(subcommand)]
        op: admin::ObjectCmd<admin::HostAdd>,
    },
    /// Host groups: `duplexctl host-group list|show|add|delete`.
    HostGroup {
        #[command(subcommand)]
        op: admin::ObjectCmd<admin::GroupAdd>,
    },
    /// Exports of volumes to host groups: `duplexctl export list|show|add|delete`.
    Export {
        #[command(subcommand)]
        op: admin::ObjectCmd<admin::ExportAdd>,
    },
    /// Floating IP addresses: `duplexctl ip list|show|add|delete`.
    Ip {
        #[command(subcommand)]
        op: admin::ObjectCmd<admin::IpAdd>,
    },
    /// Management users: `duplexctl user list|show|add|delete` (add reads
    /// the password from standard input).
    User {
        #[command(subcommand)]
        op: admin::ObjectCmd<admin::UserAdd>,
    },
    /// Jobs (long methods run in the background): `duplexctl job list|get|wait`.
    Job {
        #[command(subcommand)]
        op: admin::JobCmd,
    },
    /// Log in to a controller's management endpoint: `echo PASSWORD |
    /// duplexctl login https://10.53.0.1 --user admin`. The password is read
    /// from standard input; the endpoint's certificate is pinned on first
    /// use (like ssh) and the session kept for `--remote`.
    Login {
        /// The endpoint, `https://HOST[:PORT]`.
        url: String,
        /// The user.
        #[arg(long, default_value = "admin")]
        user: String,
    },
    /// End the session of `duplexctl login` (on the endpoint and here).
    Logout,
    /// The management endpoint's certificate, on this controller:
    /// `duplexctl cert install --cert nas.pem --key nas.key`, `cert show`.
    Cert {
        #[command(subcommand)]
        op: CertCmd,
    },
    /// Shell completion script: `duplexctl completions bash >
    /// /etc/bash_completion.d/duplexctl`.
    Completions {
        /// bash | zsh | fish | elvish | powershell.
        shell: clap_complete::Shell,
    },
    /// The audit log: every write an administrator made on either
    /// controller, newest first: `duplexctl audit --limit 20`.
    Audit {
        /// At most this many entries (1 to 1000).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Only entries older than this (ms since the Unix epoch: the
        /// oldest time of the previous page).
        #[arg(long)]
        before_ms: Option<u64>,
        /// Only the calls this controller's router saw.
        #[arg(long)]
        on: Option<String>,
    },
    /// The heartbeat: `duplexctl cluster status`, `timeline`, `failover
    /// [--pool P]`, `giveback`, `maintenance on|off`, `fence-test`.
    Cluster {
        #[command(subcommand)]
        op: ClusterCmd,
    },
}

/// `duplexctl cluster ...`.
#[derive(Subcommand)]
enum ClusterCmd {
    /// Both controllers' phases, the epoch, the lock, each interconnect
    /// link and heartbeat disk with its age, the fence agents.
    Status,
    /// The last takeovers, failovers and givebacks, each step with its
    /// duration under its action_id.
    Timeline,
    /// Planned failover of this controller's pools (or one) to the partner.
    Failover {
        /// Only this pool.
        #[arg(long)]
        pool: Option<String>,
    },
    /// Give the partner's pools back to it (their home).
    Giveback,
    /// Hold every automatic takeover (`on`) or allow them again (`off`).
    Maintenance {
        /// on | off.
        #[arg(value_parser = ["on", "off"])]
        mode: String,
    },
    /// Check each fence agent against the partner without fencing it.
    FenceTest,
}

/// `duplexctl cert`.
#[derive(Subcommand)]
enum CertCmd {
    /// Install a certificate chain and its key (PEM files); the endpoint
    /// uses them from its next connection. Checked first: a pair that does
    /// not load together changes nothing.
    Install {
        /// The certificate chain (PEM), the endpoint's own first.
        #[arg(long)]
        cert: PathBuf,
        /// Its private key (PEM).
        #[arg(long)]
        key: PathBuf,
    },
    /// The installed certificate's fingerprint (what `duplexctl login`
    /// pins), to compare on another machine.
    Show,
}

/// Calls `method`: its result, or the exit code when the service answered
/// with an error (printed; exit 1, like `call`). An unreachable router is
/// the outer error (exit 2).
async fn call_cmd(
    client: &Conn,
    controller: Option<&str>,
    method: &str,
    params: Value,
) -> anyhow::Result<Result<Value, ExitCode>> {
    match client.call_at(controller, method, params).await {
        Ok(v) => Ok(Ok(v)),
        Err(Failed::Rpc(e)) => {
            eprintln!("error: {e}");
            if let Some(f) = e.field() {
                eprintln!("field: {f}");
            }
            Ok(Err(ExitCode::from(1)))
        }
        Err(e) => Err(connect_error(e)),
    }
}

/// Calls `method`, as a job when the catalogue marks it so (`pool create`,
/// `cluster failover`...): started with `job.start`, followed with
/// `job.wait` (its progress on standard error), answered like a call.
async fn call_or_job(
    client: &Conn,
    controller: Option<&str>,
    method: &str,
    params: Value,
) -> anyhow::Result<Result<Value, ExitCode>> {
    let is_job = duplex_api::catalogue::lookup(method)
        .is_some_and(|m| m.job && m.audience == duplex_api::catalogue::Audience::External);
    if !is_job {
        return call_cmd(client, controller, method, params).await;
    }
    let p = json!({"method": method, "params": params});
    let started = match call_cmd(client, controller, "job.start", p).await? {
        Ok(v) => v,
        Err(code) => return Ok(Err(code)),
    };
    let Some(job) = started["job"].as_str().map(str::to_string) else {
        anyhow::bail!("job.start answered without a job id: {started}");
    };
    let mut line = progress::JobProgress::start(&job, method);
    let mut shown = Value::Null;
    loop {
        let w = json!({"job": job, "timeout_ms": 2000});
        let j = match call_cmd(client, controller, "job.wait", w).await? {
            Ok(v) => v,
            Err(code) => {
                line.finish("no answer");
                return Ok(Err(code));
            }
        };
        if !j["progress"].is_null() && j["progress"] != shown {
            line.step(&j["progress"]);
            shown = j["progress"].clone();
        }
        match j["state"].as_str() {
            Some("succeeded") => {
                line.finish("succeeded");
                return Ok(Ok(j["result"].clone()));
            }
            Some("failed") => {
                line.finish("failed");
                match serde_json::from_value::<duplex_services::RpcError>(j["error"].clone()) {
                    Ok(e) => {
                        eprintln!("error: {e}");
                        if let Some(f) = e.field() {
                            eprintln!("field: {f}");
                        }
                    }
                    Err(_) => eprintln!("error: {}", j["error"]),
                }
                eprintln!("job: {job}");
                return Ok(Err(ExitCode::from(1)));
            }
            _ => {}
        }
    }
}

/// An admin command: its parameters checked against the catalogue (a bad
/// one is named and nothing is sent), the call, its answer as a table.
async fn admin_cmd(client: &Conn, args: &Args, cmd: admin::Admin<'_>) -> anyhow::Result<ExitCode> {
    let (method, mut params) = cmd.call();
    if cmd.wants_password() {
        let Some(password) = read_password()? else {
            return Ok(ExitCode::from(2));
        };
        params["changes"][0]["object"]["password"] = json!(password);
    }
    if let Err(e) = catalogue::check_params(method, &params) {
        eprintln!("duplexctl: invalid params for {method}: {e}");
        eprintln!("field: {}", e.field);
        return Ok(ExitCode::from(2));
    }
    let v = match call_or_job(client, args.controller.as_deref(), method, params).await? {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", cmd.render(&v));
    }
    Ok(ExitCode::SUCCESS)
}

/// One line of standard input as a password; `None` (said why) when empty.
fn read_password() -> anyhow::Result<Option<String>> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        eprintln!("duplexctl: give the password on standard input (one line)");
        return Ok(None);
    }
    Ok(Some(password.to_string()))
}

fn socket_path(args: &Args) -> PathBuf {
    if let Some(s) = &args.socket {
        return s.clone();
    }
    match Config::load(None) {
        Ok(cfg) => cfg.router_socket(),
        Err(_) => std::env::var_os("DUPLEX_SOCKET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/run/duplex"))
            .join("router.sock"),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("duplexctl: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let timeout = Duration::from_secs(args.timeout);
    match &args.cmd {
        Cmd::Login { url, user } => return login(url, user, timeout).await,
        Cmd::Logout => return logout(args.remote.as_deref(), timeout).await,
        Cmd::Cert { op } => return cert(&args, op),
        _ => {}
    }
    let client = match &args.remote {
        Some(url) => Conn::Remote(remote::Remote::with_session(url, timeout)?),
        None => Conn::Local(RouterClient::with_timeout(socket_path(&args), timeout)),
    };
    let controller = args.controller.clone();
    match &args.cmd {
        Cmd::Methods { namespace } => {
            let ms = match catalogue::list(namespace.as_deref()) {
                Ok(ms) => ms,
                Err(e) => {
                    eprintln!("duplexctl: {e}");
                    return Ok(ExitCode::from(2));
                }
            };
            if args.json {
                println!("{}", serde_json::to_string_pretty(&ms)?);
            } else {
                print!("{}", catalogue::table(&ms));
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Describe { method } => {
            let Some(m) = duplex_api::catalogue::lookup(method) else {
                eprintln!(
                    "duplexctl: no method {method:?} in the catalogue (see `duplexctl methods`)"
                );
                return Ok(ExitCode::from(2));
            };
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&catalogue::describe_json(m))?
                );
            } else {
                print!("{}", catalogue::describe(m));
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Call {
            method,
            params,
            action_id,
            no_check,
        } => {
            let params: Value = match params {
                Some(p) => serde_json::from_str(p).context("PARAMS is not valid JSON")?,
                None => Value::Null,
            };
            if !no_check {
                if let Err(e) = catalogue::check_params(method, &params) {
                    eprintln!("duplexctl: invalid params for {method}: {e}");
                    eprintln!("field: {}", e.field);
                    eprintln!("(see `duplexctl describe {method}`; nothing was sent)");
                    return Ok(ExitCode::from(2));
                }
            }
            let mut req = Request::call(Id::Num(0), method.clone(), params);
            req.controller = controller;
            req.action_id = action_id.clone();
            let resp = client.send_request(req).await.map_err(connect_error)?;
            let action = resp.action_id.clone().unwrap_or_default();
            if args.json {
                println!("{}", serde_json::to_string_pretty(&resp)?);
                return Ok(if resp.error.is_some() {
                    ExitCode::from(1)
                } else {
                    ExitCode::SUCCESS
                });
            }
            match resp.into_result() {
                Ok(v) => {
                    println!("{}", serde_json::to_string_pretty(&v)?);
                    eprintln!("action_id: {action}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    if let Some(f) = e.field() {
                        eprintln!("field: {f}");
                    }
                    eprintln!("action_id: {action}");
                    Ok(ExitCode::from(1))
                }
            }
        }
        Cmd::Services => {
            let v = client
                .call_at(controller.as_deref(), "router.services", json!({}))
                .await
                .map_err(connect_error)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print_services(&v);
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Events { topics, count } => {
            let topics: Vec<&str> = if topics.is_empty() {
                vec!["*"]
            } else {
                topics.iter().map(String::as_str).collect()
            };
            let mut sub = client.subscribe(&topics).await.map_err(connect_error)?;
            let mut seen = 0usize;
            loop {
                if count.is_some_and(|c| seen >= c) {
                    return Ok(ExitCode::SUCCESS);
                }
                let ev = sub.next().await.map_err(connect_error)?;
                seen += 1;
                if args.json {
                    println!("{}", serde_json::to_string(&ev)?);
                } else {
                    println!(
                        "{} {} [{}] {} {}",
                        cluster::utc(ev.time_ms),
                        ev.topic,
                        ev.controller.as_deref().unwrap_or("?"),
                        ev.action_id.as_deref().unwrap_or("-"),
                        ev.data
                    );
                }
            }
        }
        Cmd::Cluster { op } => {
            let (method, params) = match op {
                ClusterCmd::Status => ("cluster.status", json!({})),
                ClusterCmd::Timeline => ("cluster.timeline", json!({})),
                ClusterCmd::Failover { pool } => (
                    "cluster.failover",
                    pool.as_ref()
                        .map_or_else(|| json!({}), |p| json!({"pool": p})),
                ),
                ClusterCmd::Giveback => ("cluster.giveback", json!({})),
                ClusterCmd::Maintenance { mode } => {
                    ("cluster.maintenance", json!({"on": mode == "on"}))
                }
                ClusterCmd::FenceTest => ("cluster.fence_test", json!({})),
            };
            let v = match call_or_job(&client, controller.as_deref(), method, params).await? {
                Ok(v) => v,
                Err(code) => return Ok(code),
            };
            if args.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let text = match op {
                    ClusterCmd::Status => cluster::status(&v),
                    ClusterCmd::Timeline => cluster::timeline(&v),
                    ClusterCmd::Failover { .. } | ClusterCmd::Giveback => cluster::moved(&v),
                    ClusterCmd::Maintenance { .. } => format!(
                        "maintenance {}\n",
                        if v["maintenance"] == json!(true) {
                            "on: automatic takeovers are held"
                        } else {
                            "off: automatic takeovers are allowed"
                        }
                    ),
                    ClusterCmd::FenceTest => cluster::fence_test(&v),
                };
                print!("{text}");
            }
            Ok(ExitCode::SUCCESS)
        }
        // Answered before the connection is made.
        Cmd::Login { .. } | Cmd::Logout | Cmd::Cert { .. } => Ok(ExitCode::from(2)),
        Cmd::Completions { shell } => {
            let mut cmd = <Args as clap::CommandFactory>::command();
            clap_complete::generate(*shell, &mut cmd, "duplexctl", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Disk { op } => admin_cmd(&client, &args, admin::Admin::Disk(op)).await,
        Cmd::Pool { op } => admin_cmd(&client, &args, admin::Admin::Pool(op)).await,
        Cmd::Volume { op } => admin_cmd(&client, &args, admin::Admin::Volume(op)).await,
        Cmd::Host { op } => admin_cmd(&client, &args, admin::Admin::Host(op)).await,
        Cmd::HostGroup { op } => admin_cmd(&client, &args, admin::Admin::Group(op)).await,
        Cmd::Export { op } => admin_cmd(&client, &args, admin::Admin::Export(op)).await,
        Cmd::Ip { op } => admin_cmd(&client, &args, admin::Admin::Ip(op)).await,
        Cmd::User { op } => admin_cmd(&client, &args, admin::Admin::User(op)).await,
        Cmd::Job { op } => admin_cmd(&client, &args, admin::Admin::Job(op)).await,
        Cmd::Audit {
            limit,
            before_ms,
            on,
        } => {
            let p = duplex_api::methods::config::AuditParams {
                limit: Some(*limit),
                before_ms: *before_ms,
                controller: on.clone(),
            };
            let v = match call_cmd(&client, controller.as_deref(), "config.audit", json!(p)).await?
            {
                Ok(v) => v,
                Err(code) => return Ok(code),
            };
            if args.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let r: duplex_api::methods::config::AuditResult =
                    serde_json::from_value(v).context("reading config.audit's answer")?;
                print!("{}", audit::table(&r));
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Trace { action_id } => {
            let p = json!({"action_id": action_id, "limit": 10_000});
            let local = client
                .call("router.actions", p.clone())
                .await
                .map_err(connect_error)?;
            let mut records: Vec<Value> = local["actions"].as_array().cloned().unwrap_or_default();
            // The partner's half of the action, when the peer link is up.
            let services = client
                .call("router.services", json!({}))
                .await
                .map_err(connect_error)?;
            let mut partner_note = None;
            if let Some(partner) = services["peer"]["controller"].as_str() {
                match client.call_on(partner, "router.actions", p).await {
                    Ok(v) => records.extend(v["actions"].as_array().cloned().unwrap_or_default()),
                    Err(e) => partner_note = Some(format!("partner {partner} not consulted: {e}")),
                }
            }
            // The trace calls themselves were recorded on the partner under
            // no action of ours; keep only the action asked for.
            records.retain(|r| r["action_id"] == *action_id);
            records.sort_by_key(|r| r["time_ms"].as_u64().unwrap_or(0));
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &json!({"action_id": action_id, "actions": records, "note": partner_note})
                    )?
                );
            } else {
                if records.is_empty() {
                    println!("no messages recorded for action {action_id}");
                }
                for r in &records {
                    println!(
                        "{} [{}] {} -> {} {} {}us {}",
                        r["time_ms"]
                            .as_u64()
                            .map_or_else(|| r["time_ms"].to_string(), cluster::utc),
                        r["controller"].as_str().unwrap_or("?"),
                        r["caller"].as_str().unwrap_or("?"),
                        r["callee"].as_str().unwrap_or("?"),
                        r["method"].as_str().unwrap_or("?"),
                        r["duration_us"],
                        r["result"].as_str().unwrap_or("?"),
                    );
                }
                if let Some(n) = partner_note {
                    eprintln!("{n}");
                }
            }
            Ok(if records.is_empty() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

fn connect_error(e: Failed) -> anyhow::Error {
    match e {
        Failed::Rpc(r) => anyhow::anyhow!("{r}"),
        other => anyhow::Error::new(other),
    }
}

/// `duplexctl login URL`: the password from standard input, the
/// certificate pinned on first use, the session saved.
async fn login(url: &str, user: &str, timeout: Duration) -> anyhow::Result<ExitCode> {
    let mut r = remote::Remote::open(url, timeout, true)?;
    let Some(password) = read_password()? else {
        return Ok(ExitCode::from(2));
    };
    let answer = r
        .call("auth.login", json!({"user": user, "password": password}))
        .await;
    // Pinned once the handshake proved the key, whatever the password did.
    if let Some(fp) = r.unpinned() {
        remote::pin(r.dir(), r.target(), &fp)?;
        eprintln!(
            "pinned the certificate of {} on first use: {fp} (in {})",
            r.target().addr(),
            remote::pins_file(r.dir()).display()
        );
    }
    let v = match answer? {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    let login: duplex_api::methods::auth::LoginResult =
        serde_json::from_value(v).context("reading auth.login's answer")?;
    r.set_token(login.token.clone());
    let role = serde_json::to_value(login.role)?
        .as_str()
        .unwrap_or("?")
        .to_string();
    remote::save_session(
        r.dir(),
        &remote::Session {
            url: r.target().url(),
            user: login.user.clone(),
            role: role.clone(),
            token: login.token,
            expires_ms: login.expires_ms,
        },
    )?;
    println!(
        "logged in to {} as {} ({role}) until {}; use --remote {} (or DUPLEX_REMOTE)",
        r.target().url(),
        login.user,
        cluster::utc(login.expires_ms),
        r.target().url()
    );
    Ok(ExitCode::SUCCESS)
}

/// `duplexctl cert`: the endpoint's certificate files on this controller.
fn cert(args: &Args, op: &CertCmd) -> anyhow::Result<ExitCode> {
    if args.remote.is_some() {
        eprintln!("duplexctl: cert works on the controller itself, not over --remote");
        return Ok(ExitCode::from(2));
    }
    let cfg = Config::load(None).context("loading the configuration")?;
    let dir = cfg.mgmt_state_dir();
    match op {
        CertCmd::Install { cert, key } => {
            let c = std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
            let k = std::fs::read(key).with_context(|| format!("reading {}", key.display()))?;
            let print = match duplex_mgmt::tls::install(&dir, &c, cert, &k, key) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("error: {e:#}; nothing changed");
                    return Ok(ExitCode::from(1));
                }
            };
            println!(
                "installed in {}: {print}\nthe endpoint uses it from its next connection; \
                 duplexctl clients that pinned the old one must delete its line in their known_hosts",
                dir.display()
            );
        }
        CertCmd::Show => {
            let print = duplex_mgmt::tls::installed_fingerprint(&dir)?;
            println!("{print}  {}", duplex_mgmt::tls::cert_path(&dir).display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `duplexctl logout`: ends the session on the endpoint, forgets it here.
async fn logout(url: Option<&str>, timeout: Duration) -> anyhow::Result<ExitCode> {
    let Some(url) = url else {
        eprintln!("duplexctl: logout needs --remote URL (or DUPLEX_REMOTE)");
        return Ok(ExitCode::from(2));
    };
    let r = remote::Remote::with_session(url, timeout)?;
    let ended = match r.call("auth.logout", json!({})).await {
        Ok(Ok(v)) => v["logged_out"].as_bool().unwrap_or(false),
        // Expired or unreachable: forgetting it here is still right.
        Ok(Err(e)) => {
            eprintln!("the endpoint: {e}");
            false
        }
        Err(e) => {
            eprintln!("the endpoint: {e}");
            false
        }
    };
    remote::forget_session(r.dir())?;
    println!(
        "logged out of {}{}",
        r.target().url(),
        if ended {
            ""
        } else {
            " (the session had already ended there)"
        }
    );
    Ok(ExitCode::SUCCESS)
}

fn print_services(v: &Value) {
    println!("controller {}", v["controller"].as_str().unwrap_or("?"));
    println!(
        "{:<16} {:<6} {:<8} {:<8} NAMESPACES",
        "SERVICE", "STATE", "VERSION", "PID"
    );
    for s in v["services"].as_array().into_iter().flatten() {
        let ns: Vec<&str> = s["namespaces"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        println!(
            "{:<16} {:<6} {:<8} {:<8} {}",
            s["name"].as_str().unwrap_or("?"),
            s["state"].as_str().unwrap_or("?"),
            s["version"].as_str().unwrap_or("?"),
            s["pid"].to_string(),
            ns.join(",")
        );
    }
    match v["peer"].as_object() {
        Some(p) => println!(
            "peer {} {}{}",
            p.get("controller").and_then(Value::as_str).unwrap_or("?"),
            p.get("state").and_then(Value::as_str).unwrap_or("?"),
            p.get("via")
                .and_then(Value::as_str)
                .map(|a| format!(" via {a}"))
                .unwrap_or_default()
        ),
        None => println!("peer: none configured"),
    }
}
