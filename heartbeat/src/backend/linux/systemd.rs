//! The units' states from systemd over D-Bus on its private socket
//! `/run/systemd/private`: a direct connection that works where no D-Bus
//! daemon runs (the appliance's image has none) and that only root may
//! open. No `systemctl` is run. The wire format is [`super::dbus`] (that
//! module says why not zbus).

use super::dbus::{self, Incoming};
use crate::backend::{BoxFuture, Units, UnitsError};
use crate::core::units::UnitState;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::Mutex;

/// systemd's private socket.
pub const PRIVATE_SOCKET: &str = "/run/systemd/private";
/// The longest one sample (every unit's state) may take before it is
/// dropped and the connection made again.
const SAMPLE_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest authentication line accepted, bytes.
const MAX_AUTH_LINE: usize = 512;

const DEST: &str = "org.freedesktop.systemd1";
const MANAGER_PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";
const PROPERTIES: &str = "org.freedesktop.DBus.Properties";
const UNIT: &str = "org.freedesktop.systemd1.Unit";
const SERVICE: &str = "org.freedesktop.systemd1.Service";
const NO_SUCH_UNIT: &str = "org.freedesktop.systemd1.NoSuchUnit";

/// One authenticated connection to systemd.
struct Bus {
    stream: BufReader<UnixStream>,
    serial: u32,
}

impl Bus {
    /// Connects and authenticates as this process's uid (`EXTERNAL`).
    async fn connect() -> Result<Bus, UnitsError> {
        let fail = |e: std::io::Error| UnitsError::Connect(format!("{PRIVATE_SOCKET}: {e}"));
        let mut s = BufReader::new(UnixStream::connect(PRIVATE_SOCKET).await.map_err(fail)?);
        let uid = nix::unistd::getuid().as_raw().to_string();
        let hex: String = uid.bytes().map(|b| format!("{b:02x}")).collect();
        s.get_mut()
            .write_all(format!("\0AUTH EXTERNAL {hex}\r\n").as_bytes())
            .await
            .map_err(fail)?;
        let mut line = Vec::new();
        (&mut s)
            .take(MAX_AUTH_LINE as u64)
            .read_until(b'\n', &mut line)
            .await
            .map_err(fail)?;
        if !line.starts_with(b"OK ") {
            return Err(UnitsError::Connect(format!(
                "systemd refused the authentication: {}",
                String::from_utf8_lossy(&line).trim()
            )));
        }
        s.get_mut().write_all(b"BEGIN\r\n").await.map_err(fail)?;
        Ok(Bus {
            stream: s,
            serial: 0,
        })
    }

    /// Calls `member` with string arguments; its reply (signals and other
    /// messages systemd sends meanwhile are skipped).
    async fn call(
        &mut self,
        path: &str,
        interface: &str,
        member: &str,
        args: &[&str],
    ) -> Result<Incoming, UnitsError> {
        let what = || format!("{member} {}", args.join(" "));
        let io = |e: std::io::Error| UnitsError::Call {
            what: what(),
            message: e.to_string(),
        };
        let wire = |e: dbus::WireError| UnitsError::Call {
            what: what(),
            message: e.to_string(),
        };
        self.serial = self.serial.wrapping_add(1).max(1);
        let msg = dbus::method_call(self.serial, DEST, path, interface, member, args);
        self.stream.get_mut().write_all(&msg).await.map_err(io)?;
        loop {
            let mut fixed = [0u8; 16];
            self.stream.read_exact(&mut fixed).await.map_err(io)?;
            let len = dbus::frame_len(&fixed).map_err(wire)?;
            let mut whole = fixed.to_vec();
            whole.resize(len, 0);
            self.stream.read_exact(&mut whole[16..]).await.map_err(io)?;
            let m = dbus::parse(&whole).map_err(wire)?;
            if m.reply_serial == Some(self.serial)
                && (m.kind == dbus::METHOD_RETURN || m.kind == dbus::ERROR)
            {
                return Ok(m);
            }
        }
    }

    /// A property's value as text.
    async fn property(
        &mut self,
        path: &str,
        interface: &str,
        name: &str,
    ) -> Result<String, UnitsError> {
        let m = self
            .call(path, PROPERTIES, "Get", &[interface, name])
            .await?;
        if m.kind == dbus::ERROR {
            return Err(UnitsError::Call {
                what: format!("{name} of {path}"),
                message: format!(
                    "{}: {}",
                    m.error_name.as_deref().unwrap_or_default(),
                    dbus::error_message(&m)
                ),
            });
        }
        dbus::variant(&m).map_err(|e| UnitsError::Call {
            what: format!("{name} of {path}"),
            message: e.to_string(),
        })
    }

    async fn state(&mut self, name: &str) -> Result<UnitState, UnitsError> {
        let m = self.call(MANAGER_PATH, MANAGER, "GetUnit", &[name]).await?;
        if m.kind == dbus::ERROR {
            if m.error_name.as_deref() == Some(NO_SUCH_UNIT) {
                // Not loaded (not installed, or never started): say so.
                return Ok(UnitState {
                    name: name.to_string(),
                    active: "not-found".into(),
                    sub: String::new(),
                    restarts: 0,
                });
            }
            return Err(UnitsError::Call {
                what: format!("GetUnit {name}"),
                message: dbus::error_message(&m),
            });
        }
        let path = dbus::object_path(&m).map_err(|e| UnitsError::Call {
            what: format!("GetUnit {name}"),
            message: e.to_string(),
        })?;
        let active = self.property(&path, UNIT, "ActiveState").await?;
        let sub = self.property(&path, UNIT, "SubState").await?;
        let restarts = self
            .property(&path, SERVICE, "NRestarts")
            .await?
            .parse()
            .unwrap_or(0);
        Ok(UnitState {
            name: name.to_string(),
            active,
            sub,
            restarts,
        })
    }
}

/// systemd, asked over its private socket; the connection is made at the
/// first sample and again after an error.
#[derive(Default)]
pub struct SystemdUnits {
    bus: Mutex<Option<Bus>>,
}

impl SystemdUnits {
    /// A client that connects when first asked.
    pub fn new() -> Self {
        SystemdUnits::default()
    }

    async fn all(&self, names: &[&str]) -> Result<Vec<UnitState>, UnitsError> {
        let mut g = self.bus.lock().await;
        if g.is_none() {
            *g = Some(Bus::connect().await?);
        }
        let Some(bus) = g.as_mut() else {
            return Err(UnitsError::Connect("no connection".into()));
        };
        let mut out = Vec::with_capacity(names.len());
        for n in names {
            out.push(bus.state(n).await?);
        }
        Ok(out)
    }
}

impl Units for SystemdUnits {
    fn states<'a>(
        &'a self,
        names: &'a [&'a str],
    ) -> BoxFuture<'a, Result<Vec<UnitState>, UnitsError>> {
        Box::pin(async move {
            let r = match tokio::time::timeout(SAMPLE_TIMEOUT, self.all(names)).await {
                Ok(r) => r,
                Err(_) => Err(UnitsError::Call {
                    what: "the units' states".into(),
                    message: format!("no answer within {} s", SAMPLE_TIMEOUT.as_secs()),
                }),
            };
            if r.is_err() {
                // Connect again next time (systemd re-executed, the
                // connection broke, or a reply was cut by the timeout).
                *self.bus.lock().await = None;
            }
            r
        })
    }
}
