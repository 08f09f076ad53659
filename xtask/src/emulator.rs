//! The local AWS emulator: moto server 5.2.5 (default) or LocalStack in host mode
//! (`SLUICE_EMULATOR=localstack`), started on a free loopback port.
//!
//! `cargo xtask emulator up` starts one detached and records it in `.sluice/emulator.json`;
//! `cargo xtask test` starts its own for the duration of the tests, held by an [`Emulator`]
//! whose `Drop` stops it, so it is stopped on failure too.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::json;

use crate::util::{self, note};
use crate::venv;

/// Which emulator to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Moto,
    Localstack,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Moto => "moto",
            Kind::Localstack => "localstack",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "moto" => Some(Kind::Moto),
            "localstack" => Some(Kind::Localstack),
            _ => None,
        }
    }

    /// A string that the emulator's command line contains, to recognise its pid.
    fn cmdline_marker(self) -> &'static str {
        match self {
            Kind::Moto => "moto_server",
            Kind::Localstack => "localstack",
        }
    }

    fn startup_timeout(self) -> Duration {
        match self {
            Kind::Moto => Duration::from_secs(30),
            Kind::Localstack => Duration::from_secs(120),
        }
    }
}

/// What `cargo xtask test` should talk to, from `SLUICE_EMULATOR`.
#[derive(Debug, Clone)]
pub enum Choice {
    /// Start this emulator for the run.
    Start(Kind),
    /// `SLUICE_EMULATOR=external`: use the endpoint in `SLUICE_TEST_ENDPOINT` or
    /// `AWS_ENDPOINT_URL` (e.g. LocalStack in Docker), start nothing.
    External(String),
}

impl Choice {
    pub fn from_env() -> Result<Choice> {
        let raw = std::env::var("SLUICE_EMULATOR").unwrap_or_default();
        if raw.trim().eq_ignore_ascii_case("external") {
            let endpoint = ["SLUICE_TEST_ENDPOINT", "AWS_ENDPOINT_URL"]
                .iter()
                .find_map(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
                .context(
                    "SLUICE_EMULATOR=external needs SLUICE_TEST_ENDPOINT or AWS_ENDPOINT_URL \
                     (e.g. http://127.0.0.1:4566)",
                )?;
            return Ok(Choice::External(
                endpoint.trim().trim_end_matches('/').to_string(),
            ));
        }
        kind_from_env().map(Choice::Start)
    }
}

/// `SLUICE_EMULATOR` as a kind to start (`moto`, the default, or `localstack`).
pub fn kind_from_env() -> Result<Kind> {
    let raw = std::env::var("SLUICE_EMULATOR").unwrap_or_default();
    Kind::parse(&raw).with_context(|| {
        format!("SLUICE_EMULATOR={raw:?} is not one of: moto (default), localstack, external")
    })
}

/// The environment an AWS SDK (and the e2e tests) need to talk to the emulator.
pub fn sdk_env(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", endpoint.to_string()),
        ("SLUICE_TEST_ENDPOINT", endpoint.to_string()),
        ("AWS_ACCESS_KEY_ID", "test".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
        ("AWS_DEFAULT_REGION", "us-east-1".to_string()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
    ]
}

/// A running emulator. If it was started attached (by `cargo xtask test`), dropping it stops it.
#[derive(Debug)]
pub struct Emulator {
    pub kind: Kind,
    pub pid: u32,
    pub port: u16,
    pub endpoint: String,
    pub log: PathBuf,
    /// LocalStack's private tmp/volume directory, removed when stopped.
    work_dir: Option<PathBuf>,
    /// Set when this process owns the emulator and must stop it on drop.
    child: Option<Child>,
}

impl Emulator {
    /// Starts an emulator of `kind` on a free port and waits until it answers HTTP.
    ///
    /// `detached`: in its own process group, outliving xtask (for `emulator up`). Otherwise it
    /// stays in xtask's process group (so Ctrl-C reaches it) and is stopped on drop.
    pub fn start(kind: Kind, detached: bool) -> Result<Emulator> {
        let port = free_port()?;
        let endpoint = format!("http://127.0.0.1:{port}");
        let state = util::state_dir();
        fs::create_dir_all(&state).with_context(|| format!("creating {}", state.display()))?;
        let log = state.join(format!(
            "emulator-{}{}.log",
            kind.name(),
            if detached { "" } else { "-test" }
        ));
        let (mut cmd, work_dir) = match kind {
            Kind::Moto => {
                let venv = venv::ensure_venv()?;
                let mut cmd = Command::new(venv.bin("moto_server"));
                cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
                (cmd, None)
            }
            Kind::Localstack => localstack_command(port)?,
        };
        let log_file = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let log_err = log_file.try_clone().context("duplicating the log handle")?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(log_file))
            .stderr(Stdio::from(log_err));
        if detached {
            cmd.process_group(0);
        }
        note(format!(
            "starting {} on {endpoint} (log: {})",
            kind.name(),
            log.display()
        ));
        eprintln!("$ {}", util::display_cmd(&cmd));
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", util::display_cmd(&cmd)))?;
        let mut emulator = Emulator {
            kind,
            pid: child.id(),
            port,
            endpoint,
            log,
            work_dir,
            child: Some(child),
        };
        let started = Instant::now();
        emulator.wait_ready()?;
        note(format!(
            "{} ready after {:.1}s (pid {})",
            kind.name(),
            started.elapsed().as_secs_f64(),
            emulator.pid
        ));
        if detached {
            // Let it run on; `emulator down` stops it by pid.
            emulator.child = None;
        }
        Ok(emulator)
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + self.kind.startup_timeout();
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait().context("polling the emulator")?
            {
                self.child = None;
                bail!(
                    "{} exited during startup ({status}); last lines of {}:\n{}",
                    self.kind.name(),
                    self.log.display(),
                    log_tail(&self.log, 30)
                );
            }
            if self.answers() {
                return Ok(());
            }
            if Instant::now() > deadline {
                let tail = log_tail(&self.log, 30);
                self.stop();
                bail!(
                    "{} did not answer on {} within {}s; last lines of {}:\n{tail}",
                    self.kind.name(),
                    self.endpoint,
                    self.kind.startup_timeout().as_secs(),
                    self.log.display()
                );
            }
            sleep(Duration::from_millis(100));
        }
    }

    fn answers(&self) -> bool {
        match self.kind {
            Kind::Moto => http_status(self.port, "/").is_some(),
            Kind::Localstack => {
                http_status(self.port, "/_localstack/health") == Some(200)
                    && fs::read_to_string(&self.log).is_ok_and(|l| l.contains("Ready."))
            }
        }
    }

    /// Stops the emulator (SIGTERM, then SIGKILL after a grace period) and cleans up.
    pub fn stop(&mut self) {
        let grace = Duration::from_secs(15);
        match self.child.take() {
            Some(mut child) => {
                let _ = kill(Pid::from_raw(pid_i32(self.pid)), Signal::SIGTERM);
                let deadline = Instant::now() + grace;
                while Instant::now() < deadline {
                    if matches!(child.try_wait(), Ok(Some(_)) | Err(_)) {
                        break;
                    }
                    sleep(Duration::from_millis(50));
                }
                if matches!(child.try_wait(), Ok(None)) {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
            None => stop_pid(self.pid, grace),
        }
        if let Some(dir) = self.work_dir.take() {
            let _ = fs::remove_dir_all(dir);
        }
        note(format!("stopped {} (pid {})", self.kind.name(), self.pid));
    }

    fn state_json(&self) -> serde_json::Value {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        json!({
            "kind": self.kind.name(),
            "pid": self.pid,
            "port": self.port,
            "endpoint": self.endpoint,
            "log": self.log,
            "work_dir": self.work_dir,
            "started_unix": now,
        })
    }

    fn from_state(v: &serde_json::Value) -> Option<Emulator> {
        Some(Emulator {
            kind: Kind::parse(v["kind"].as_str()?)?,
            pid: u32::try_from(v["pid"].as_u64()?).ok()?,
            port: u16::try_from(v["port"].as_u64()?).ok()?,
            endpoint: v["endpoint"].as_str()?.to_string(),
            log: PathBuf::from(v["log"].as_str().unwrap_or_default()),
            work_dir: v["work_dir"].as_str().map(PathBuf::from),
            child: None,
        })
    }

    /// Whether the recorded pid is alive and still the emulator (guards against pid reuse).
    fn alive(&self) -> bool {
        kill(Pid::from_raw(pid_i32(self.pid)), None).is_ok()
            && fs::read(format!("/proc/{}/cmdline", self.pid))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(self.kind.cmdline_marker()))
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
    }
}

/// LocalStack host mode: `python -m localstack.runtime.main` from its own venv, bound to
/// `127.0.0.1:port`, with a private tmp dir so that no state survives between runs.
fn localstack_command(port: u16) -> Result<(Command, Option<PathBuf>)> {
    let venv = venv::ensure_localstack_venv()?;
    let work = util::state_dir().join("localstack").join(port.to_string());
    let tmp = work.join("tmp");
    let volume = work.join("volume");
    for dir in [&tmp, &volume] {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut cmd = Command::new(venv.python());
    cmd.args(["-m", "localstack.runtime.main"])
        .env("GATEWAY_LISTEN", format!("127.0.0.1:{port}"))
        .env("LOCALSTACK_HOST", format!("127.0.0.1:{port}"))
        .env("LOCALSTACK_VOLUME_DIR", &volume)
        .env("TMPDIR", &tmp)
        // No downloads (TLS certificate), no analytics, no DNS server on port 53.
        .env("SKIP_SSL_CERT_DOWNLOAD", "1")
        .env("DISABLE_EVENTS", "1")
        .env("DNS_ADDRESS", "0");
    if std::env::var_os("SERVICES").is_none() {
        cmd.env("SERVICES", "s3,kinesis,sqs,cloudformation,sts,iam,logs");
    }
    Ok((cmd, Some(work)))
}

/// A free TCP port on 127.0.0.1 (bind port 0, read it back, release it).
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    Ok(listener
        .local_addr()
        .context("reading the bound port")?
        .port())
}

/// Sends `GET path` to 127.0.0.1:port and returns the HTTP status, if anything answered.
fn http_status(port: u16, path: &str) -> Option<u16> {
    http_status_at(SocketAddr::from(([127, 0, 0, 1], port)), path)
}

fn http_status_at(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = [0u8; 64];
    let n = stream.read(&mut buf).ok()?;
    let head = String::from_utf8_lossy(&buf[..n]);
    let mut parts = head.split_whitespace();
    parts.next().filter(|p| p.starts_with("HTTP/"))?;
    parts.next()?.parse().ok()
}

/// Checks that an `http://host:port` endpoint answers HTTP.
pub fn check_endpoint(endpoint: &str) -> Result<()> {
    let Some(rest) = endpoint.strip_prefix("http://") else {
        note(format!("not probing {endpoint} (only http:// is probed)"));
        return Ok(());
    };
    let hostport = rest.split('/').next().unwrap_or_default();
    let hostport = if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:80")
    };
    let addrs = std::net::ToSocketAddrs::to_socket_addrs(&hostport)
        .with_context(|| format!("resolving {hostport}"))?;
    for addr in addrs {
        if http_status_at(addr, "/").is_some() {
            return Ok(());
        }
    }
    bail!("nothing answers HTTP at {endpoint}")
}

fn pid_i32(pid: u32) -> i32 {
    i32::try_from(pid).unwrap_or(i32::MAX)
}

/// SIGTERM, wait up to `grace`, then SIGKILL. For processes that are not our children.
fn stop_pid(pid: u32, grace: Duration) {
    let pid = Pid::from_raw(pid_i32(pid));
    if kill(pid, Signal::SIGTERM).is_err() {
        return;
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if kill(pid, None).is_err() {
            return;
        }
        sleep(Duration::from_millis(50));
    }
    let _ = kill(pid, Signal::SIGKILL);
}

fn log_tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn state_file() -> PathBuf {
    util::state_dir().join("emulator.json")
}

fn read_state() -> Option<Emulator> {
    let text = fs::read_to_string(state_file()).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    Emulator::from_state(&value)
}

fn print_exports(endpoint: &str) {
    for (key, value) in sdk_env(endpoint) {
        println!("export {key}={value}");
    }
}

/// `cargo xtask emulator up`.
pub fn up() -> Result<ExitCode> {
    if let Some(running) = read_state().filter(Emulator::alive) {
        note(format!(
            "{} already running on {} (pid {})",
            running.kind.name(),
            running.endpoint,
            running.pid
        ));
        print_exports(&running.endpoint);
        return Ok(ExitCode::SUCCESS);
    }
    let emulator = Emulator::start(kind_from_env()?, true)?;
    let state = serde_json::to_string_pretty(&emulator.state_json())?;
    fs::write(state_file(), state)
        .with_context(|| format!("writing {}", state_file().display()))?;
    note(format!(
        "recorded in {}; stop it with `cargo xtask emulator down`",
        state_file().display()
    ));
    note("to use it in this shell: eval \"$(cargo xtask emulator up)\"");
    print_exports(&emulator.endpoint);
    Ok(ExitCode::SUCCESS)
}

/// `cargo xtask emulator down`.
pub fn down() -> Result<ExitCode> {
    let Some(mut emulator) = read_state() else {
        note("no emulator recorded; nothing to stop");
        return Ok(ExitCode::SUCCESS);
    };
    if emulator.alive() {
        emulator.stop();
    } else {
        note(format!(
            "{} (pid {}) was not running; removing the stale record",
            emulator.kind.name(),
            emulator.pid
        ));
        if let Some(dir) = emulator.work_dir.take() {
            let _ = fs::remove_dir_all(dir);
        }
    }
    fs::remove_file(state_file())
        .with_context(|| format!("removing {}", state_file().display()))?;
    Ok(ExitCode::SUCCESS)
}

/// `cargo xtask emulator status`: exit 0 and print the exports if running, else exit 1.
pub fn status() -> Result<ExitCode> {
    match read_state() {
        Some(emulator) if emulator.alive() => {
            let answering = if emulator.answers() {
                "answering"
            } else {
                "NOT answering HTTP"
            };
            note(format!(
                "{} running on {} (pid {}, {answering}, log: {})",
                emulator.kind.name(),
                emulator.endpoint,
                emulator.pid,
                emulator.log.display()
            ));
            print_exports(&emulator.endpoint);
            Ok(ExitCode::SUCCESS)
        }
        Some(emulator) => {
            note(format!(
                "{} (pid {}) is not running (stale record; `cargo xtask emulator down` clears it)",
                emulator.kind.name(),
                emulator.pid
            ));
            Ok(ExitCode::FAILURE)
        }
        None => {
            note("no emulator running (start one with `cargo xtask emulator up`)");
            Ok(ExitCode::FAILURE)
        }
    }
}
