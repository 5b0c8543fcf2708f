//! duplex-lab: drives the Duplex lab (two controllers and a multipath host
//! in QEMU, inside a private network namespace). See tests/lab/README.md.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use duplex_lab::lab::{self, Lab, Power};
use duplex_lab::{bmc, cmd, demo, events, failover, fault, framework, scenario};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "duplex-lab",
    about = "The Duplex lab: controllers A and B, host H, in QEMU"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build or reuse the images, boot A, B and H in parallel, install Duplex.
    Up,
    /// Stop every VM and delete the lab namespace (safe to repeat).
    Down,
    /// Show each VM's process, run state and agent.
    Status,
    /// Run a command in a VM through its agent; exits with its exit code.
    Exec {
        /// A, B or H.
        vm: String,
        /// Kill the command after this many seconds.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
        /// The command and its arguments.
        #[arg(last = true, required = true)]
        argv: Vec<String>,
    },
    /// Pull the plug of a VM (SIGKILL its QEMU).
    Kill {
        /// A, B or H.
        vm: String,
    },
    /// Start a killed VM again from its disk; returns when its agent answers.
    Start {
        /// A, B or H.
        vm: String,
    },
    /// Pause a VM's CPU (a hung controller).
    Freeze {
        /// A, B or H.
        vm: String,
    },
    /// Resume a frozen VM.
    Thaw {
        /// A, B or H.
        vm: String,
    },
    /// Hardware reset of a VM.
    Reset {
        /// A, B or H.
        vm: String,
    },
    /// Cut or restore a link: `link A ic0 down`.
    Link {
        /// A, B or H.
        vm: String,
        /// fe0, ic0 or ic1.
        nic: String,
        /// up or down.
        state: String,
    },
    /// Print the QMP events recorded for a VM (WATCHDOG, RESET, SHUTDOWN,
    /// STOP, RESUME...), one per line with the host time.
    Events {
        /// A, B or H.
        vm: String,
    },
    /// A controller's BMC over IPMI-over-LAN (`ipmitool -I lanplus` from
    /// the lab namespace): `bmc A off|on|reset|status`.
    Bmc {
        /// A or B.
        vm: String,
        /// off, on, reset or status.
        op: String,
    },
    /// Take a shared disk away from one controller: `disk pull A shelf0
    /// --kind vanish|fail`, `disk push A shelf0`.
    Disk {
        /// pull or push.
        action: String,
        /// A or B.
        vm: String,
        /// shelfN or hbN.
        disk: String,
        /// vanish: the device is unplugged; fail: it stays and every I/O
        /// fails with EIO (pull only).
        #[arg(long, default_value = "vanish")]
        kind: String,
    },
    /// SIGSTOP every process of a systemd unit in a VM (a hung daemon).
    Hang {
        /// A, B or H.
        vm: String,
        /// The unit (`duplex-router` means duplex-router.service).
        service: String,
    },
    /// SIGCONT a unit stopped by `hang`.
    Resume {
        /// A, B or H.
        vm: String,
        /// The unit.
        service: String,
    },
    /// Panic a VM's kernel with kernel.panic=0: it stays down, its
    /// emulated hardware (the watchdog) keeps running.
    Panic {
        /// A, B or H.
        vm: String,
    },
    /// The same as `panic` (a kernel that stops, hardware that runs).
    KernelHang {
        /// A, B or H.
        vm: String,
    },
    /// Kill both controllers at the same moment (power cut).
    PowerCut,
    /// (internal) ipmi_sim's chassis control: VM get|set|check ...
    #[command(hide = true)]
    BmcControl {
        /// VM, operation and parameters, as ipmi_sim passes them.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// (internal) Record the VMs' QMP events until killed.
    #[command(hide = true)]
    RecordEvents {
        /// The VMs.
        vms: Vec<String>,
    },
    /// Attach to a VM's serial console (Ctrl-] leaves).
    Console {
        /// A, B or H.
        vm: String,
    },
    /// Save the whole lab (memory, devices, overlays, shelf) under NAME.
    Snapshot {
        /// Snapshot name (letters, digits, - and _).
        name: String,
    },
    /// Bring the whole lab back to snapshot NAME.
    Restore {
        /// Snapshot name.
        name: String,
    },
    /// The demo through the appliance's services (a pool and two volumes
    /// from pool-manager, exports built by targets on A and B), H attached
    /// over iSCSI and NVMe/TCP, a short verified write, the host's view.
    /// `--fixture`: the old raw configfs fixture instead.
    Demo {
        /// Use the configfs fixture on raw shelf disks (no Duplex services).
        #[arg(long)]
        fixture: bool,
    },
    /// Hand the demo pool over from one controller to the other (standby,
    /// new owner under a new epoch, export to it, import, active) and print
    /// the steps' times.
    Handover {
        /// The controller that owns the pool now.
        from: String,
        /// The controller that takes it.
        to: String,
    },
    /// (internal) Serve the management-port forwards until killed.
    #[command(hide = true)]
    Forward {
        /// The lab namespace.
        #[arg(long)]
        ns: String,
        /// PORT=ADDR:PORT entries.
        forwards: Vec<String>,
    },
    /// (internal) Pump stdin/stdout to a TCP address (run inside the namespace).
    #[command(hide = true)]
    Connect {
        /// ADDR:PORT.
        target: String,
    },
    /// Heartbeat failover scenarios on the lab that is up (prepared by
    /// `demo` with `DUPLEX_LAB_HEARTBEAT=1`): planned, kill, freeze, ic-cut
    /// (CI's set, run without a name); ic-one, panic, fence-fails, hb-stop,
    /// services, hb-disks, fe-cut, power-cut, cycles, scale, shelf-lost;
    /// `list` names them, `all` runs every one.
    /// Prints each one's figures as JSON.
    Failover {
        /// Scenario names (default: CI's set, in order).
        names: Vec<String>,
    },
    /// Scenarios: `scenario list`, `scenario run NAME...`, `scenario all`,
    /// `scenario smoke` (boots its own lab and tears it down). The fault
    /// scenarios share one lab (booted when none is up, torn down after
    /// unless it was up before or --keep), restored from a snapshot
    /// between them.
    Scenario {
        /// list | all | run NAME... | smoke.
        #[arg(required = true)]
        args: Vec<String>,
        /// Leave the lab running afterwards (debugging).
        #[arg(long)]
        keep: bool,
    },
}

fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match run() {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("duplex-lab: {e:#}");
            std::process::exit(1);
        }
    }
}

fn print_duplex(lab: &Lab) {
    for vm in ["A", "B"] {
        println!("--- {vm}: duplex.target and `duplexctl services`");
        for argv in [
            vec!["systemctl", "--no-pager", "list-units", "--all", "duplex*"],
            vec!["duplexctl", "services"],
        ] {
            match lab::exec(lab, vm, &cmd::argv(&argv), Duration::from_secs(30)) {
                Ok(r) => {
                    print!("{}", r.stdout);
                    if let Some(e) = r.error {
                        println!("({e})");
                    } else if r.code != Some(0) {
                        println!(
                            "({} exited {:?}: {})",
                            argv.join(" "),
                            r.code,
                            r.stderr.trim()
                        );
                    }
                }
                Err(e) => println!("({e:#})"),
            }
        }
    }
}

fn console(lab: &Lab, vm: &str) -> Result<()> {
    let v = lab::vm_spec(vm)?;
    let log = lab.console_log(v.name);
    if let Ok(s) = std::fs::read_to_string(&log) {
        let tail: Vec<&str> = s.lines().rev().take(20).collect();
        for l in tail.into_iter().rev() {
            println!("{l}");
        }
    }
    eprintln!("[console {}: Ctrl-] then Enter leaves]", v.name);
    let sock = UnixStream::connect(lab.console_sock(v.name)).context("console socket")?;
    let mut rx = sock.try_clone()?;
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut out = std::io::stdout();
        while let Ok(n) = rx.read(&mut buf) {
            if n == 0 {
                break;
            }
            let _ = out.write_all(buf.get(..n).unwrap_or_default());
            let _ = out.flush();
        }
    });
    let mut tx = sock;
    let mut buf = [0u8; 1024];
    let mut stdin = std::io::stdin();
    loop {
        let n = stdin.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let data = buf.get(..n).unwrap_or_default();
        if data.contains(&0x1d) {
            break;
        }
        tx.write_all(data)?;
    }
    Ok(())
}

/// Runs failover scenarios in order on the lab that is up; stops at the
/// first one that could not run (a failed check does not stop the rest).
fn run_failover(lab: &Lab, names: &[String]) -> Result<i32> {
    let mut all = Vec::new();
    let mut ok = true;
    for n in names {
        let r = failover::run(lab, n);
        let out = match r {
            Ok(o) => o,
            Err(e) => {
                all.push(serde_json::json!({"scenario": n, "ok": false, "error": e.to_string()}));
                ok = false;
                break;
            }
        };
        ok &= out.ok;
        println!("{}", serde_json::to_string_pretty(&out.report)?);
        all.push(out.report);
    }
    // The JSON above is for tools; this is for the person at the terminal.
    for r in &all {
        eprint!("{}", failover::summary(r));
    }
    let text = serde_json::to_string_pretty(&all)?;
    let file = lab.run_dir.join("failover.json");
    if let Err(e) = std::fs::write(&file, &text) {
        eprintln!("duplex-lab: {}: {e}", file.display());
    }
    eprintln!(
        "duplex-lab: failover scenarios {}; every report is in {}",
        if ok { "passed" } else { "FAILED" },
        file.display()
    );
    Ok(if ok { 0 } else { 1 })
}

/// Runs fault scenarios of the framework on one lab, restored from a
/// snapshot between them; prints each one's table and the JSON of all.
fn run_scenarios(
    lab: &Lab,
    catalog: &[framework::Scenario],
    names: &[String],
    keep: bool,
) -> Result<i32> {
    let mut chosen = Vec::new();
    for n in names {
        let sc = catalog
            .iter()
            .find(|s| s.name == n.as_str())
            .with_context(|| {
                let known: Vec<&str> = catalog.iter().map(|s| s.name).collect();
                format!("unknown scenario {n} (known: smoke {})", known.join(" "))
            })?;
        chosen.push(sc);
    }
    let was_up = scenario::is_up(lab);
    if !was_up {
        lab::up(lab)?;
    }
    let result = (|| -> Result<Vec<framework::Report>> {
        lab::snapshot(lab, "scenarios")?;
        let mut reports = Vec::new();
        // The appliance demo is set up once, on the first scenario that
        // asks for it, and snapshotted: the next ones restore it.
        let mut set_up = false;
        for (i, sc) in chosen.iter().enumerate() {
            if sc.steps.contains(&framework::Step::Setup) {
                if set_up {
                    lab::restore(lab, "scenarios-setup")?;
                } else {
                    if i > 0 {
                        lab::restore(lab, "scenarios")?;
                    }
                    let t = std::time::Instant::now();
                    framework::Rig::setup(&framework::LabRig(lab))
                        .map_err(|e| anyhow::anyhow!("appliance setup: {e}"))?;
                    eprintln!(
                        "duplex-lab: appliance set up in {:.0} s",
                        t.elapsed().as_secs_f64()
                    );
                    lab::snapshot(lab, "scenarios-setup")?;
                    set_up = true;
                }
            } else if i > 0 {
                lab::restore(lab, "scenarios")?;
            }
            let r = framework::run(&framework::LabRig(lab), sc);
            print!("{}", framework::table(&r));
            reports.push(r);
        }
        Ok(reports)
    })();
    if !was_up && !keep {
        if let Err(e) = lab::down(lab) {
            eprintln!("duplex-lab: teardown: {e:#}");
        }
    } else if !keep {
        // The lab stays for its owner; this run's snapshots need not.
        for name in ["scenarios", "scenarios-setup"] {
            if let Err(e) = lab::drop_snapshot(lab, name) {
                eprintln!("duplex-lab: snapshot {name}: {e:#}");
            }
        }
    }
    let reports = result?;
    let ok = reports.iter().all(|r| r.ok);
    let text =
        serde_json::to_string_pretty(&serde_json::json!({ "ok": ok, "scenarios": reports }))?;
    let file = lab.run_dir.join("scenarios.json");
    if let Err(e) = std::fs::write(&file, &text) {
        eprintln!("duplex-lab: {}: {e}", file.display());
    }
    println!("{text}");
    Ok(if ok { 0 } else { 1 })
}

fn run() -> Result<i32> {
    let cli = Cli::parse();
    let lab = Lab::from_env();
    match cli.cmd {
        Cmd::Up => {
            let st = lab::up(&lab)?;
            println!("lab up: namespace {}, boot {:?} s", st.ns, st.boot_seconds);
            for (port, target) in &st.forwards {
                println!("management: http(s)://127.0.0.1:{port} -> {target}");
            }
            print_duplex(&lab);
        }
        Cmd::Down => lab::down(&lab)?,
        Cmd::Status => print!("{}", lab::status(&lab)?),
        Cmd::Exec { vm, timeout, argv } => {
            let r = lab::exec(&lab, &vm, &argv, Duration::from_secs(timeout))?;
            print!("{}", r.stdout);
            eprint!("{}", r.stderr);
            if let Some(e) = r.error {
                eprintln!("duplex-lab: {e}");
            }
            if r.timed_out {
                eprintln!("duplex-lab: command timed out after {timeout} s");
                return Ok(124);
            }
            return Ok(r.code.unwrap_or(128));
        }
        Cmd::Kill { vm } => lab::power(&lab, &vm, Power::Kill)?,
        Cmd::Start { vm } => lab::power(&lab, &vm, Power::Start)?,
        Cmd::Freeze { vm } => lab::power(&lab, &vm, Power::Freeze)?,
        Cmd::Thaw { vm } => lab::power(&lab, &vm, Power::Thaw)?,
        Cmd::Reset { vm } => lab::power(&lab, &vm, Power::Reset)?,
        Cmd::Link { vm, nic, state } => {
            let up = match state.as_str() {
                "up" => true,
                "down" => false,
                other => bail!("link state must be up or down, not {other}"),
            };
            lab::link(&lab, &vm, &nic, up)?;
        }
        Cmd::Console { vm } => console(&lab, &vm)?,
        Cmd::Events { vm } => {
            print!("{}", events::format(&events::read(&lab, &vm)?));
        }
        Cmd::Bmc { vm, op } => {
            let op: bmc::Op = op.parse()?;
            print!("{}", bmc::chassis(&lab, &vm, op)?);
        }
        Cmd::Disk {
            action,
            vm,
            disk,
            kind,
        } => match action.as_str() {
            "pull" => fault::pull(&lab, &vm, &disk, kind.parse()?)?,
            "push" => fault::push(&lab, &vm, &disk)?,
            other => bail!("disk action must be pull or push, not {other}"),
        },
        Cmd::Hang { vm, service } => fault::hang(&lab, &vm, &service)?,
        Cmd::Resume { vm, service } => fault::resume(&lab, &vm, &service)?,
        Cmd::Panic { vm } | Cmd::KernelHang { vm } => {
            let at = fault::panic(&lab, &vm)?;
            println!("{vm}: kernel panicked at {at:.3} (kernel.panic=0)");
        }
        Cmd::PowerCut => fault::power_cut(&lab)?,
        Cmd::BmcControl { args } => {
            let r = bmc::control(&lab, &args);
            if !r.out.is_empty() {
                println!("{}", r.out.trim_end());
            }
            return Ok(r.code);
        }
        Cmd::RecordEvents { vms } => events::run_recorder(&lab, &vms),
        Cmd::Snapshot { name } => {
            let s = lab::snapshot(&lab, &name)?;
            println!("snapshot {name} saved in {s:.1} s");
        }
        Cmd::Restore { name } => {
            let s = lab::restore(&lab, &name)?;
            println!("snapshot {name} restored in {s:.1} s");
        }
        Cmd::Demo { fixture } => {
            let facts = if fixture {
                demo::setup(&lab)?
            } else {
                duplex_lab::appliance::setup(&lab)?
            };
            println!("host devices: {}", serde_json::to_string(&facts)?);
            let v = demo::verify(&lab, &facts, 5)?;
            println!(
                "--- H: duplex-verify (5 s)\n{}",
                serde_json::to_string_pretty(&v)?
            );
            if fixture {
                print!("{}", demo::report(&lab));
            } else {
                print!("{}", duplex_lab::appliance::report(&lab));
            }
            if v.get("ok").and_then(serde_json::Value::as_bool) != Some(true) {
                return Ok(1);
            }
        }
        Cmd::Handover { from, to } => {
            for (step, s) in duplex_lab::appliance::handover(&lab, &from, &to)? {
                println!("{step:>9} at {s:6.2} s");
            }
            print!("{}", duplex_lab::appliance::states(&lab));
        }
        Cmd::Forward { ns, forwards } => {
            let fw: Vec<(u16, String)> = forwards
                .iter()
                .filter_map(|f| {
                    let (p, t) = f.split_once('=')?;
                    Some((p.parse().ok()?, t.to_string()))
                })
                .collect();
            duplex_lab::forward::run_forwarder(&ns, &fw);
        }
        Cmd::Connect { target } => duplex_lab::forward::connect(&target)?,
        Cmd::Failover { names } => {
            let names: Vec<String> = match names.first().map(String::as_str) {
                None => failover::NAMES.iter().map(|s| (*s).to_string()).collect(),
                Some("all") => failover::NAMES
                    .iter()
                    .chain(failover::MORE)
                    .map(|s| (*s).to_string())
                    .collect(),
                Some("list") => {
                    println!("CI: {}", failover::NAMES.join(" "));
                    println!("on demand: {}", failover::MORE.join(" "));
                    return Ok(0);
                }
                Some(_) => names,
            };
            return run_failover(&lab, &names);
        }
        Cmd::Scenario { args, keep } => {
            let catalog = framework::catalog();
            let names: Vec<String> = match args.first().map(String::as_str) {
                Some("list") => {
                    println!("{:<16} boot, demo, planned handover A -> B under verified writes (own lab)", "smoke");
                    for sc in &catalog {
                        println!("{:<16} {}", sc.name, sc.about);
                    }
                    return Ok(0);
                }
                Some("all") => catalog.iter().map(|s| s.name.to_string()).collect(),
                Some("run") => args.iter().skip(1).cloned().collect(),
                _ => args.clone(),
            };
            if names.iter().any(|n| n != "smoke") {
                if names.iter().any(|n| n == "smoke") {
                    bail!("run smoke on its own: it boots and tears down its own lab");
                }
                return run_scenarios(&lab, &catalog, &names, keep);
            }
            if names.len() != 1 {
                bail!("run smoke on its own");
            }
            let name = "smoke".to_string();
            // A lab that is up is used and left up (the lab tier boots once).
            let was_up = scenario::is_up(&lab);
            let r = scenario::smoke(&lab);
            if !keep && !was_up {
                if let Err(e) = lab::down(&lab) {
                    eprintln!("duplex-lab: teardown: {e:#}");
                }
            }
            let out = r?;
            let text = serde_json::to_string_pretty(&out.report)?;
            // Kept by `down` (it removes only disks and sockets) for CI logs.
            let file = lab.run_dir.join(format!("{name}.json"));
            if let Err(e) = std::fs::write(&file, &text) {
                eprintln!("duplex-lab: {}: {e}", file.display());
            }
            println!("{text}");
            return Ok(if out.ok { 0 } else { 1 });
        }
    }
    Ok(0)
}
