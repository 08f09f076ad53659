//! The Lambda functions as Lambda runs them:
//!
//! - `cargo xtask package`: `sam build` (BuildMethod rust-cargolambda) for arm64 (into
//!   `.aws-sam/build`, where `sam deploy` looks) and x86_64 (`.aws-sam/build-x86_64`), then
//!   checks that every `bootstrap` is an ELF binary for its architecture. Functions of the template whose binary is not in the workspace yet
//!   are reported and left out (`--require-all` makes that an error).
//! - `cargo xtask invoke FUNCTION --event FILE`: `cargo lambda watch` serves the function
//!   through the Lambda runtime API on 127.0.0.1, `cargo lambda invoke --data-file FILE` sends
//!   it the event. Without `--endpoint`, a moto server is started for it, with the data and
//!   rules buckets created, and the objects the function wrote are listed afterwards.
//!   `api` (the front door) gets a stream name and a key pepper for the emulator unless
//!   `--env` gives them: `infra/events/api-handshake.json` (`GET /`, the Elasticsearch
//!   handshake, no key) shows the router answering through the runtime API.
//!
//! SAM CLI and cargo-lambda (whose wheel ships the binary and zig, the cross linker) are
//! installed into venvs next to the tooling venv; the Rust targets with `rustup target add`.

use std::fs::{self, File};
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::emulator::{self, Emulator, Kind};
use crate::infra;
use crate::util::{self, note};
use crate::venv::{self, Venv};

/// A Lambda instruction set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Arch {
    #[value(name = "arm64")]
    Arm64,
    #[value(name = "x86_64")]
    X86_64,
}

impl Arch {
    fn name(self) -> &'static str {
        match self {
            Arch::Arm64 => "arm64",
            Arch::X86_64 => "x86_64",
        }
    }

    fn rust_target(self) -> &'static str {
        match self {
            Arch::Arm64 => "aarch64-unknown-linux-gnu",
            Arch::X86_64 => "x86_64-unknown-linux-gnu",
        }
    }

    /// Where `sam build` puts this architecture: the template's default (arm64) goes where a
    /// plain `sam deploy` looks, `.aws-sam/build`; the other to `.aws-sam/build-x86_64`.
    fn build_dir(self, root: &Path) -> PathBuf {
        match self {
            Arch::Arm64 => root.join(".aws-sam").join("build"),
            Arch::X86_64 => root.join(".aws-sam").join("build-x86_64"),
        }
    }

    /// ELF `e_machine`.
    fn elf_machine(self) -> u16 {
        match self {
            Arch::Arm64 => 0xB7,
            Arch::X86_64 => 0x3E,
        }
    }
}

/// Options of `cargo xtask package`.
#[derive(Debug, clap::Args)]
pub struct PackageArgs {
    /// Architecture to build for; repeat for several [default: arm64 and x86_64].
    #[arg(long = "arch", value_enum)]
    pub arches: Vec<Arch>,
    /// Fail when a function of the template has no binary in the workspace yet.
    #[arg(long)]
    pub require_all: bool,
}

/// Options of `cargo xtask invoke`.
#[derive(Debug, clap::Args)]
pub struct InvokeArgs {
    /// The function: ingest, aggregate, evaluate, registry or api (or its logical id,
    /// IngestFunction, or its binary, sluice-ingest).
    pub function: String,
    /// The event to send, a JSON file (e.g. infra/events/kinesis.json).
    #[arg(long)]
    pub event: PathBuf,
    /// S3 endpoint for the function (AWS_ENDPOINT_URL). Without it, a moto server is started
    /// on 127.0.0.1 for the invocation, with the buckets created.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Data bucket (SLUICE_DATA_BUCKET).
    #[arg(long, default_value = "sluice-invoke-data")]
    pub data_bucket: String,
    /// Rules bucket (SLUICE_RULES_BUCKET).
    #[arg(long, default_value = "sluice-invoke-rules")]
    pub rules_bucket: String,
    /// More environment for the function, KEY=VALUE; repeatable.
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Build and run the function in release mode.
    #[arg(long)]
    pub release: bool,
}

/// A function of the template: logical id and the binary it builds.
#[derive(Debug, Clone)]
struct Function {
    logical_id: String,
    binary: String,
}

/// The `AWS::Serverless::Function` resources of the template, with their
/// `Metadata.BuildProperties.Binary` (read with cfn-lint's YAML loader, which knows the
/// intrinsic-function tags).
fn template_functions(python: &Path) -> Result<Vec<Function>> {
    const SCRIPT: &str = "import json, sys\n\
from cfnlint.decode import cfn_yaml\n\
t = cfn_yaml.load(sys.argv[1])\n\
print(json.dumps({k: ((r.get('Metadata') or {}).get('BuildProperties') or {}).get('Binary') \
for k, r in t['Resources'].items() if r.get('Type') == 'AWS::Serverless::Function'}))\n";
    let out = util::output(
        Command::new(python)
            .args(["-c", SCRIPT])
            .arg(infra::template())
            .stdout(Stdio::piped()),
    )?;
    let map = util::last_json_object(&out).context("reading the template's functions")?;
    let mut functions = Vec::new();
    for (logical_id, binary) in map.as_object().into_iter().flatten() {
        let binary = binary.as_str().with_context(|| {
            format!("{logical_id} has no Metadata.BuildProperties.Binary in the template")
        })?;
        functions.push(Function {
            logical_id: logical_id.clone(),
            binary: binary.to_string(),
        });
    }
    if functions.is_empty() {
        bail!("infra/template.yaml defines no AWS::Serverless::Function");
    }
    Ok(functions)
}

/// Names of every `bin` target of the workspace.
fn workspace_binaries() -> Result<Vec<String>> {
    let meta = util::output(
        util::cargo()
            .args(["metadata", "--format-version", "1", "--no-deps"])
            .stdout(Stdio::piped()),
    )?;
    let meta: serde_json::Value =
        serde_json::from_str(&meta).context("parsing `cargo metadata` output")?;
    let mut bins = Vec::new();
    for package in meta["packages"].as_array().into_iter().flatten() {
        for target in package["targets"].as_array().into_iter().flatten() {
            let is_bin = target["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "bin"));
            if let (true, Some(name)) = (is_bin, target["name"].as_str()) {
                bins.push(name.to_string());
            }
        }
    }
    Ok(bins)
}

/// `rustup target add TRIPLE` unless it is installed (a no-op without rustup).
pub fn ensure_rust_target(triple: &str) -> Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .stderr(Stdio::inherit())
        .output();
    match installed {
        Err(_) => {
            note(format!("rustup not found; assuming {triple} is available"));
            Ok(())
        }
        Ok(out)
            if String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l.trim() == triple) =>
        {
            Ok(())
        }
        Ok(_) => util::run(Command::new("rustup").args(["target", "add", triple])),
    }
}

/// PATH with the venvs' bin directories first (cargo-lambda, zig's `python3 -m ziglang`, sam).
fn path_with(venvs: &[&Venv]) -> Result<std::ffi::OsString> {
    let mut dirs: Vec<PathBuf> = venvs.iter().map(|v| v.dir.join("bin")).collect();
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    std::env::join_paths(dirs).context("building PATH")
}

/// `cargo xtask package`.
pub fn package(args: &PackageArgs) -> Result<()> {
    let arches = if args.arches.is_empty() {
        vec![Arch::Arm64, Arch::X86_64]
    } else {
        args.arches.clone()
    };
    let sam = venv::ensure_extra("sam")?;
    let lambda = venv::ensure_extra("lambda")?;
    let path = path_with(&[&lambda, &sam])?;

    let functions = template_functions(&sam.python())?;
    let bins = workspace_binaries()?;
    let (present, missing): (Vec<Function>, Vec<Function>) = functions
        .into_iter()
        .partition(|f| bins.contains(&f.binary));
    for f in &missing {
        note(format!(
            "{}: binary `{}` is not in the workspace yet; not built",
            f.logical_id, f.binary
        ));
    }
    if present.is_empty() {
        bail!("none of the template's functions has a binary in the workspace");
    }
    if args.require_all && !missing.is_empty() {
        bail!(
            "--require-all: {} function(s) have no binary yet: {}",
            missing.len(),
            missing
                .iter()
                .map(|f| f.binary.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }

    let root = util::repo_root();
    let mut rows = Vec::new();
    for arch in &arches {
        ensure_rust_target(arch.rust_target())?;
        let build_dir = arch.build_dir(&root);
        // With every function present, one `sam build` builds them all (in parallel, as
        // samconfig.toml says). Otherwise SAM would fail on the missing binaries, so each
        // present function is built on its own, into its own directory.
        let groups: Vec<(Option<&Function>, PathBuf)> = if missing.is_empty() {
            vec![(None, build_dir.clone())]
        } else {
            present
                .iter()
                .map(|f| (Some(f), build_dir.join(&f.logical_id)))
                .collect()
        };
        for (only, dir) in groups {
            let mut cmd = infra::sam_command(&sam);
            cmd.env("PATH", &path).arg("build");
            if let Some(f) = only {
                cmd.arg(&f.logical_id);
            }
            cmd.arg("--build-dir").arg(&dir).args([
                "--parameter-overrides",
                &format!("Architecture={}", arch.name()),
            ]);
            let started = Instant::now();
            util::run(&mut cmd).with_context(|| format!("sam build for {}", arch.name()))?;
            note(format!(
                "sam build ({}{}) took {:.0}s",
                arch.name(),
                only.map(|f| format!(", {}", f.logical_id))
                    .unwrap_or_default(),
                started.elapsed().as_secs_f64()
            ));
            for f in present
                .iter()
                .filter(|f| only.is_none_or(|o| o.logical_id == f.logical_id))
            {
                let bootstrap = dir.join(&f.logical_id).join("bootstrap");
                let size = check_elf(&bootstrap, *arch)?;
                rows.push(vec![
                    f.logical_id.clone(),
                    f.binary.clone(),
                    arch.name().to_string(),
                    format!("{:.1}", size as f64 / 1_048_576.0),
                    bootstrap
                        .strip_prefix(&root)
                        .unwrap_or(&bootstrap)
                        .display()
                        .to_string(),
                ]);
            }
        }
    }
    println!(
        "{}",
        util::table(&["function", "binary", "arch", ">MiB", "bootstrap"], &rows)
    );
    if missing.is_empty() {
        println!("all {} functions built; deploy with", present.len());
        for arch in &arches {
            match arch {
                Arch::Arm64 => println!("  arm64:  sam deploy --guided"),
                Arch::X86_64 => println!(
                    "  x86_64: sam deploy --guided --template-file .aws-sam/build-x86_64/template.yaml \\\n          \
                     --config-file \"$PWD/samconfig.toml\" --parameter-overrides Architecture=x86_64"
                ),
            }
        }
    } else {
        println!(
            "built {} of {} functions; not in the workspace yet: {}",
            present.len(),
            present.len() + missing.len(),
            missing
                .iter()
                .map(|f| f.binary.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

/// Checks that `path` is an ELF executable for `arch`; returns its size in bytes.
fn check_elf(path: &Path, arch: Arch) -> Result<u64> {
    let mut header = [0u8; 20];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut header))
        .with_context(|| format!("reading {}", path.display()))?;
    if &header[..4] != b"\x7fELF" {
        bail!("{} is not an ELF binary", path.display());
    }
    let machine = u16::from_le_bytes([header[18], header[19]]);
    if machine != arch.elf_machine() {
        bail!(
            "{} is built for ELF machine {machine:#x}, not {} ({:#x})",
            path.display(),
            arch.name(),
            arch.elf_machine()
        );
    }
    Ok(fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .len())
}

/// `cargo lambda watch` in its own process group, killed (with its children) on drop.
#[derive(Debug)]
struct Watch {
    child: Child,
    log: PathBuf,
}

impl Drop for Watch {
    fn drop(&mut self) {
        let group = Pid::from_raw(i32::try_from(self.child.id()).unwrap_or(i32::MAX));
        let _ = killpg(group, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_)) | Err(_)) {
                return;
            }
            sleep(Duration::from_millis(50));
        }
        let _ = killpg(group, Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// `cargo xtask invoke`.
pub fn invoke(args: &InvokeArgs) -> Result<()> {
    let event = util::absolute(&args.event)?;
    if !event.is_file() {
        bail!("event file {} does not exist", event.display());
    }
    let bins = workspace_binaries()?;
    let binary = function_binary(&args.function, &bins).with_context(|| {
        let functions: Vec<&String> = bins
            .iter()
            .filter(|b| FUNCTION_BINARIES.contains(&b.as_str()))
            .collect();
        format!(
            "no binary for `{}` in the workspace (functions built so far: {functions:?})",
            args.function
        )
    })?;
    let lambda = venv::ensure_extra("lambda")?;
    let path = path_with(&[&lambda])?;

    // The function's AWS: the given endpoint, or a moto server of our own with the buckets.
    let mut moto: Option<Emulator> = None;
    let endpoint = match &args.endpoint {
        Some(url) => url.trim_end_matches('/').to_string(),
        None => {
            let emu = Emulator::start(Kind::Moto, false)?;
            let url = emu.endpoint.clone();
            moto = Some(emu);
            s3_python(
                &url,
                "for b in sys.argv[2:]: s3.create_bucket(Bucket=b)",
                &[&args.data_bucket, &args.rules_bucket],
            )?;
            url
        }
    };
    let mut env: Vec<(String, String)> = emulator::sdk_env(&endpoint)
        .into_iter()
        .filter(|(k, _)| *k != "SLUICE_TEST_ENDPOINT")
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    env.push(("SLUICE_DATA_BUCKET".into(), args.data_bucket.clone()));
    env.push(("SLUICE_RULES_BUCKET".into(), args.rules_bucket.clone()));
    env.push(("RUST_LOG".into(), "info".into()));
    if binary == "api" {
        // The front door's init needs a stream and a key pepper (not a secret on an emulator).
        env.push(("SLUICE_STREAM".into(), "sluice-invoke-stream".into()));
        env.push((
            "SLUICE_KEY_PEPPER".into(),
            "sluice-invoke-pepper-0123".into(),
        ));
    }
    for kv in &args.env {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--env {kv}: expected KEY=VALUE"))?;
        env.retain(|(key, _)| key != k);
        env.push((k.to_string(), v.to_string()));
    }

    // Build first, so that compile errors show plainly and watch starts at once.
    let mut build = util::cargo();
    build.args(["build", "--bin", &binary]);
    if args.release {
        build.arg("--release");
    }
    util::run(&mut build)?;

    let port = emulator::free_port()?;
    let watch = start_watch(&binary, port, &env, &path, args.release)?;
    wait_for_port(port, &watch, Duration::from_secs(120))?;

    let mut invoke = util::cargo();
    invoke
        .env("PATH", &path)
        .args(["lambda", "invoke", &binary, "--data-file"])
        .arg(&event)
        .args([
            "--invoke-address",
            "127.0.0.1",
            "--invoke-port",
            &port.to_string(),
        ])
        .args(["--output-format", "json"])
        .stdout(Stdio::piped());
    let response = util::output(&mut invoke);
    // Give the function's last log lines a moment to reach the log.
    sleep(Duration::from_millis(300));
    let log = fs::read_to_string(&watch.log).unwrap_or_default();
    // The function's own output follows cargo's "Running `target/...`" line; the lines
    // before it are cargo-lambda's (the whole log stays in the file).
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    let first = lines
        .iter()
        .position(|l| l.trim_start().starts_with("Running `"))
        .map_or(0, |i| i + 1);
    eprintln!(
        "--- function output ({binary} under cargo lambda watch; full log {}) ---",
        watch.log.display()
    );
    for line in &lines[first..] {
        eprintln!("{line}");
    }
    eprintln!("--- end of function output ---");
    drop(watch);
    let response = response.context("cargo lambda invoke")?;
    println!("response: {}", response.trim());

    if moto.is_some() {
        let listing = s3_python(
            &endpoint,
            "for b in sys.argv[2:]:\n    \
             for o in s3.list_objects_v2(Bucket=b).get('Contents', []):\n        \
             print(f\"s3://{b}/{o['Key']}  {o['Size']} bytes\")",
            &[&args.data_bucket, &args.rules_bucket],
        )?;
        let objects: Vec<&str> = listing.lines().filter(|l| l.starts_with("s3://")).collect();
        println!("objects written ({}):", objects.len());
        for line in objects {
            println!("  {line}");
        }
    }
    if let Some(mut emu) = moto.take() {
        emu.stop();
    }
    Ok(())
}

/// The binaries of the template's functions (`Metadata.BuildProperties.Binary`).
const FUNCTION_BINARIES: [&str; 6] = [
    "sluice-ingest",
    "sluice-aggregate",
    "sluice-evaluate",
    "sluice-registry",
    "sluice-compact",
    "api",
];

/// The binary `function` names: itself, or `sluice-<name>`, or `<name>` (a logical id loses
/// its `Function` suffix and is lowercased: `ApiFunction` is `api`).
fn function_binary(function: &str, bins: &[String]) -> Option<String> {
    let name = function.trim_end_matches("Function").to_lowercase();
    [function.to_owned(), format!("sluice-{name}"), name]
        .into_iter()
        .find(|candidate| bins.contains(candidate))
}

fn start_watch(
    binary: &str,
    port: u16,
    env: &[(String, String)],
    path: &std::ffi::OsStr,
    release: bool,
) -> Result<Watch> {
    let state = util::state_dir();
    fs::create_dir_all(&state).with_context(|| format!("creating {}", state.display()))?;
    let log = state.join(format!("lambda-watch-{binary}.log"));
    let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let err = out.try_clone().context("duplicating the log handle")?;
    let mut cmd = util::cargo();
    cmd.env("PATH", path)
        .args(["lambda", "watch", "--ignore-changes", "--bin", binary])
        .args([
            "--invoke-address",
            "127.0.0.1",
            "--invoke-port",
            &port.to_string(),
        ]);
    if release {
        cmd.arg("--release");
    }
    for (k, v) in env {
        cmd.arg("--env-var").arg(format!("{k}={v}"));
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .process_group(0);
    eprintln!("$ {}", util::display_cmd(&cmd));
    note(format!("cargo lambda watch log: {}", log.display()));
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {}", util::display_cmd(&cmd)))?;
    Ok(Watch { child, log })
}

fn wait_for_port(port: u16, watch: &Watch, timeout: Duration) -> Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        sleep(Duration::from_millis(200));
    }
    let log = fs::read_to_string(&watch.log).unwrap_or_default();
    bail!("cargo lambda watch did not listen on 127.0.0.1:{port} within {timeout:?}:\n{log}")
}

/// Runs a few lines of boto3 against `endpoint` in the tooling venv (`s3` is the client,
/// `sys.argv[2:]` the extra arguments); returns stdout.
fn s3_python(endpoint: &str, body: &str, extra: &[&str]) -> Result<String> {
    let tools = venv::ensure_venv()?;
    let script = format!(
        "import sys, boto3\nfrom botocore.config import Config\n\
         s3 = boto3.client('s3', endpoint_url=sys.argv[1], \
         config=Config(s3={{'addressing_style': 'path'}}))\n{body}\n"
    );
    let mut cmd = Command::new(tools.python());
    cmd.args(["-c", &script]).arg(endpoint).args(extra);
    for (k, v) in emulator::sdk_env(endpoint) {
        cmd.env(k, v);
    }
    util::output(cmd.stdout(Stdio::piped()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_function_names_logical_ids_and_binaries() {
        let bins: Vec<String> = FUNCTION_BINARIES.iter().map(ToString::to_string).collect();
        let resolve = |f: &str| function_binary(f, &bins);
        assert_eq!(resolve("ingest").as_deref(), Some("sluice-ingest"));
        assert_eq!(resolve("IngestFunction").as_deref(), Some("sluice-ingest"));
        assert_eq!(
            resolve("sluice-registry").as_deref(),
            Some("sluice-registry")
        );
        assert_eq!(resolve("api").as_deref(), Some("api"));
        assert_eq!(resolve("ApiFunction").as_deref(), Some("api"));
        assert_eq!(resolve("nothing"), None);
    }
}
