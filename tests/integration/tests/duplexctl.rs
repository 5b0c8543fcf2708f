//! duplexctl's admin commands against the real router, config-keeper and
//! pool-manager (on its simulated shelf): tables for people, the field
//! named when the service refuses, the audit log of what was done.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)] // test helpers; duplexctl fed on stdin

use duplex_integration_tests::{node, Node, Proc};

/// Controller A with its router, config-keeper and pool-manager on the
/// simulated shelf.
async fn storage_node() -> (Node, [Proc; 3]) {
    let n = node("A", None, "");
    let router = n.start_router().await;
    let ck = n
        .start_daemon("duplex-config-keeper", "config-keeper", &[])
        .await;
    let pm = n
        .start_daemon("duplex-pool-manager", "pool-manager", &["--sim"])
        .await;
    (n, [router, ck, pm])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_commands_show_tables_name_bad_fields_and_are_audited() {
    let (n, _daemons) = storage_node().await;
    let ctl = |args: &[&str]| {
        let (code, out, err) = n.duplexctl(args);
        (code, out, err)
    };

    let (code, out, err) = ctl(&["completions", "bash"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("host-group") && out.contains("audit"),
        "completion script"
    );

    let (code, out, err) = ctl(&["disk", "list"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("PATH"), "{out}");
    let (code, out, err) = ctl(&["pool", "layouts", "--disks", "2"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("LAYOUT") && out.lines().count() > 1, "{out}");
    let (code, out, err) = ctl(&["pool", "list"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("NAME"), "{out}");

    let iqn = "iqn.2024-01.com.example:h1";
    let (code, out, err) = ctl(&["host", "add", "h1", "--iqn", iqn]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("done"), "{out}");
    // The same again changes nothing.
    let (code, out, _) = ctl(&["host", "add", "h1", "--iqn", iqn]);
    assert_eq!(code, 0);
    assert!(out.contains("nothing changed"), "{out}");
    let (code, out, _) = ctl(&["host", "list"]);
    assert_eq!(code, 0);
    assert!(
        out.lines().any(|l| l.starts_with("h1") && l.contains(iqn)),
        "{out}"
    );
    // A bad initiator name: the service's reason and the field, exit 1.
    let (code, out, err) = ctl(&["host", "add", "h2", "--iqn", "not-an-iqn"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("field: changes[0].object.iqns"), "{err}");
    let (code, out, err) = ctl(&["host-group", "add", "g1", "--host", "h1"]);
    assert_eq!(code, 0, "{out}{err}");
    // A host in a group cannot go.
    let (code, _, err) = ctl(&["host", "delete", "h1"]);
    assert_eq!(code, 1, "{err}");
    // An export of a volume that does not exist names the field.
    let (code, _, err) = ctl(&[
        "export",
        "add",
        "e1",
        "--volume",
        "nope",
        "--group",
        "g1",
        "--protocol",
        "iscsi",
        "--lun",
        "0",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("field: changes[0].object.volume"), "{err}");
    // A bad parameter caught before sending: exit 2, nothing sent.
    let (code, _, err) = ctl(&["pool", "layouts", "--disks", "x"]);
    assert_eq!(code, 2, "{err}");

    // A user: the password comes on standard input and is never shown.
    let mut child = std::process::Command::new(duplex_integration_tests::bin("duplexctl"))
        .args(["user", "add", "ann", "--role", "read_only"])
        .env_clear()
        .env("DUPLEX_CONFIG", &n.config)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        &mut child.stdin.take().unwrap(),
        b"correct horse battery staple\n",
    )
    .unwrap();
    let done = child.wait_with_output().unwrap();
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let (code, out, _) = ctl(&["user", "list"]);
    assert_eq!(code, 0);
    assert!(
        out.lines()
            .any(|l| l.starts_with("ann") && l.contains("read_only")),
        "{out}"
    );
    assert!(!out.contains("argon2"), "{out}");

    // Everything above that wrote is in the audit log, newest first.
    let (code, out, err) = ctl(&["audit"]);
    assert_eq!(code, 0, "{out}{err}");
    let applies = out.lines().filter(|l| l.contains("config.apply")).count();
    assert!(applies >= 5, "{out}");
    assert!(
        !out.contains("pool.status") && !out.contains("disk.list"),
        "{out}"
    );
    let (code, all, _) = ctl(&["--json", "audit"]);
    assert_eq!(code, 0);
    assert!(all.contains("(redacted)"), "{all}");
    assert!(!all.contains("correct horse"), "{all}");
    let (code, out, _) = ctl(&["--json", "audit", "--limit", "1"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["entries"].as_array().unwrap().len(), 1);
    assert_eq!(v["entries"][0]["method"], "config.apply");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_methods_run_as_jobs_and_are_listed() {
    let (n, _daemons) = storage_node().await;
    let c = n.client();

    // A pool creation the service refuses: run as a job, the refusal is
    // the job's error, exit 1.
    let (code, out, err) = n.duplexctl(&[
        "pool", "create", "p1", "--layout", "raid1", "--disk", "nope-1", "--disk", "nope-2",
    ]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("job A:") && err.contains("started"), "{err}");
    assert!(err.contains("error: "), "{err}");
    let (code, out, err) = n.duplexctl(&["job", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.lines()
            .any(|l| l.contains("pool.create") && l.contains("failed")),
        "{out}"
    );

    // The job API itself.
    let started = c
        .call(
            "job.start",
            serde_json::json!({"method": "pool.create", "params": {"name": "p2", "layout": "raid1", "disks": ["x", "y"]}}),
        )
        .await
        .unwrap();
    let id = started["job"].as_str().unwrap().to_string();
    assert!(id.starts_with("A:"), "{id}");
    let j = c
        .call("job.wait", serde_json::json!({"job": id}))
        .await
        .unwrap();
    assert_eq!(j["state"], "failed", "{j}");
    assert_eq!(j["method"], "pool.create");
    assert!(j["ended_ms"].as_u64().is_some(), "{j}");
    let got = c
        .call("job.get", serde_json::json!({"job": id}))
        .await
        .unwrap();
    assert_eq!(got, j);
    // Only an administrator's job methods run as jobs.
    for method in ["pool.takeover", "pool.status", "no.such"] {
        let e = c
            .call("job.start", serde_json::json!({"method": method}))
            .await
            .unwrap_err()
            .into_rpc();
        assert_eq!(e.field(), Some("method"), "{method}: {e}");
    }
    let e = c
        .call("job.get", serde_json::json!({"job": "A:nothing"}))
        .await
        .unwrap_err()
        .into_rpc();
    assert_eq!(e.field(), Some("job"), "{e}");
    // The job's start is an administrator's write: audited.
    let (code, out, _) = n.duplexctl(&["audit"]);
    assert_eq!(code, 0);
    assert!(out.contains("job.start"), "{out}");
}

/// duplexctl with its configuration directory `dir` and `input` on stdin.
fn ctl_in(n: &Node, dir: &std::path::Path, args: &[&str], input: &str) -> (i32, String, String) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut c = Command::new(duplex_test_kit::bin("duplexctl"))
        .args(args)
        .env_clear()
        .env("DUPLEX_CONFIG", &n.config)
        .env("DUPLEX_CLI_DIR", dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = c.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_duplexctl_logs_in_pins_the_certificate_and_refuses_another() {
    let (n, _daemons) = storage_node().await;
    let addr = duplex_test_kit::free_addr();
    let mut toml = std::fs::read_to_string(&n.config).unwrap();
    toml.push_str(&format!(
        "[mgmt]\nlisten = [\"127.0.0.1\"]\nport = {}\n",
        addr.port()
    ));
    std::fs::write(&n.config, toml).unwrap();
    let r = n
        .client()
        .call(
            "config.apply",
            serde_json::json!({"changes": [{"op": "upsert", "kind": "user",
                "object": {"name": "admin", "password": "remote admin pw", "role": "admin"}}]}),
        )
        .await;
    assert!(r.is_ok(), "{r:?}");
    let _mgmt = n.spawn("mgmt", duplex_test_kit::bin("duplex-mgmt"), &[]);
    let cert = n.state_dir().join("mgmt").join("cert.pem");
    duplex_test_kit::wait_until(
        "duplex-mgmt listens",
        std::time::Duration::from_secs(15),
        || async { cert.exists() && tokio::net::TcpStream::connect(addr).await.is_ok() },
    )
    .await;
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("duplex");
    let url = format!("https://127.0.0.1:{}", addr.port());
    let ctl = |args: &[&str], input: &str| ctl_in(&n, &dir, args, input);

    // Before any login: nothing pinned, nothing sent.
    let (code, _, err) = ctl(&["--remote", &url, "pool", "list"], "");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no pinned certificate"), "{err}");
    // A wrong password: refused, but the certificate is pinned (the
    // handshake proved its key), as ssh pins before the password.
    let (code, _, err) = ctl(&["login", &url], "wrong\n");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("pinned the certificate"), "{err}");
    let pins = std::fs::read_to_string(dir.join("known_hosts")).unwrap();
    assert_eq!(pins.lines().count(), 1, "{pins}");
    let (code, out, err) = ctl(&["login", &url, "--user", "admin"], "remote admin pw\n");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("as admin (admin)"), "{out}");
    assert!(!err.contains("pinned"), "pinned once only: {err}");

    // Commands go through the endpoint, with the session's user.
    let (code, out, err) = ctl(&["--remote", &url, "pool", "list"], "");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("NAME"), "{out}");
    let iqn = "iqn.2024-01.com.example:remote";
    let (code, out, err) = ctl(&["--remote", &url, "host", "add", "hr", "--iqn", iqn], "");
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, _) = n.duplexctl(&["audit", "--limit", "5"]);
    assert_eq!(code, 0);
    assert!(
        out.lines()
            .any(|l| l.contains("admin") && l.contains("config.apply")),
        "the remote write is audited under its user: {out}"
    );
    // Events over the endpoint's WebSocket: changes are made until the
    // subscriber has printed one (so its subscription surely came first).
    let mut events = std::process::Command::new(duplex_test_kit::bin("duplexctl"))
        .args(["--remote", &url, "events", "config.*", "--count", "1"])
        .env_clear()
        .env("DUPLEX_CONFIG", &n.config)
        .env("DUPLEX_CLI_DIR", &dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut exited = None;
    for i in 0..40 {
        if let Some(s) = events.try_wait().unwrap() {
            exited = Some(s);
            break;
        }
        let name = format!("ev{i}");
        let iqn = format!("iqn.2024-01.com.example:ev{i}");
        let (code, out, err) = ctl(&["--remote", &url, "host", "add", &name, "--iqn", &iqn], "");
        assert_eq!(code, 0, "{out}{err}");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    if exited.is_none() {
        let _ = events.kill();
    }
    let out = events.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("config.changed"), "{stdout}{stderr}");
    let (code, _, err) = ctl(&["--remote", &url, "-c", "B", "pool", "list"], "");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("own management address"), "{err}");

    // Another certificate at the same address is refused, with the way out.
    let pins_file = dir.join("known_hosts");
    let forged = pins.replace("SHA256:", "SHA256:00");
    std::fs::write(&pins_file, &forged).unwrap();
    let (code, _, err) = ctl(&["--remote", &url, "pool", "list"], "");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not the pinned one"), "{err}");
    std::fs::write(&pins_file, &pins).unwrap();

    // The admin installs another certificate on the controller: the
    // endpoint uses it at once, and the pin refuses it until removed.
    let other = home.path().join("other");
    duplex_mgmt::tls::ensure_certificate(&other, vec!["nas.example.com".into()]).unwrap();
    let (c, k) = (
        duplex_mgmt::tls::cert_path(&other),
        duplex_mgmt::tls::key_path(&other),
    );
    let (code, out, err) = n.duplexctl(&[
        "cert",
        "install",
        "--cert",
        &c.display().to_string(),
        "--key",
        &k.display().to_string(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, shown, _) = n.duplexctl(&["cert", "show"]);
    assert_eq!(code, 0);
    let new_print = duplex_mgmt::tls::installed_fingerprint(&other).unwrap();
    assert!(shown.starts_with(&new_print), "{shown}");
    let (code, _, err) = ctl(&["--remote", &url, "pool", "list"], "");
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("not the pinned one") && err.contains(&new_print),
        "{err}"
    );
    // Removing the old pin on purpose, then logging in, pins the new one.
    std::fs::write(&pins_file, "").unwrap();
    let (code, _, err) = ctl(&["login", &url], "remote admin pw\n");
    assert_eq!(code, 0, "{err}");
    assert!(err.contains(&new_print), "{err}");

    let (code, out, err) = ctl(&["--remote", &url, "logout"], "");
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, err) = ctl(&["--remote", &url, "pool", "list"], "");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not logged in"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audit_record_held_when_the_router_dies_is_stored_after_its_restart() {
    let n = node("A", None, "");
    let mut router = n.start_router().await;
    // No config-keeper: the write fails, its record waits in the router.
    let (code, _, _) = n.duplexctl(&["host", "add", "h1", "--iqn", "iqn.2024-01.com.example:h1"]);
    assert_ne!(code, 0);
    let spool = n.state_dir().join("router-audit.spool");
    duplex_test_kit::wait_until(
        "the record is spooled",
        std::time::Duration::from_secs(10),
        || async { std::fs::read_to_string(&spool).is_ok_and(|s| s.contains("config.apply")) },
    )
    .await;
    router.kill9();
    let _router = n.start_router().await;
    let _ck = n
        .start_daemon("duplex-config-keeper", "config-keeper", &[])
        .await;
    let c = n.client();
    duplex_test_kit::wait_until(
        "the record reaches the audit log",
        std::time::Duration::from_secs(20),
        || async {
            c.call("config.audit", serde_json::json!({}))
                .await
                .is_ok_and(|v| {
                    v["entries"]
                        .as_array()
                        .is_some_and(|e| e.iter().any(|x| x["method"] == "config.apply"))
                })
        },
    )
    .await;
    // Once: the spool is gone and no second copy follows.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let v = c.call("config.audit", serde_json::json!({})).await.unwrap();
    let n_apply = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["method"] == "config.apply")
        .count();
    assert_eq!(n_apply, 1, "{v}");
    assert!(!spool.exists());
}
