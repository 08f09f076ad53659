//! `sluice rules new NAME`: a rule crate in the plugins workspace that builds with one command
//! and has a passing native test.

use std::io::Write as _;
use std::path::{Component, Path, PathBuf};

use anyhow::Context as _;
use sluice_rules::contract::CONTRACT_VERSION;

/// The long `--help` text (clap takes the short one from the command's doc comment).
pub const LONG_ABOUT: &str = r#"Scaffold a new rule crate in the plugins workspace:

  Cargo.toml   joins the workspace through its `members` glob (examples/*)
  rule.toml    the manifest, with the rule's [params]
  src/lib.rs   a working rule implementing sluice_rule_sdk::Rule, with typed params and state,
               and native tests using the SDK's Harness and testing helpers

It builds with one command, in the plugins workspace:

  cargo build --target wasm32-wasip2 -p NAME      (or: sluice rules build -p NAME)
  cargo test -p NAME                              (its logic, natively)

Never overwrites anything: refuses when the directory exists and is not empty, or when the
workspace already has a crate of that name."#;

#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// The rule crate's name: lowercase letters, digits, `-` and `_`, starting with a letter.
    name: String,
    /// The directory to create the crate in (as <dir>/<name>); it must be covered by the
    /// workspace's `members` globs.
    #[arg(long, default_value = "plugins/examples")]
    dir: PathBuf,
}

pub fn run(args: NewArgs) -> anyhow::Result<()> {
    check_crate_name(&args.name)?;
    let parent = std::path::absolute(&args.dir)
        .with_context(|| format!("resolving {}", args.dir.display()))?;
    let crate_dir = parent.join(&args.name);
    if crate_dir.exists()
        && std::fs::read_dir(&crate_dir)
            .with_context(|| format!("reading {}", crate_dir.display()))?
            .next()
            .is_some()
    {
        anyhow::bail!(
            "{} already exists and is not empty; refusing to overwrite it",
            crate_dir.display()
        );
    }
    let workspace = Workspace::find(&parent)?;
    workspace.check_can_host(&crate_dir, &args.name)?;
    let type_name = type_name(&args.name);
    let files = [
        ("Cargo.toml", cargo_toml(&args.name)),
        ("rule.toml", rule_toml(&args.name)),
        ("src/lib.rs", lib_rs(&args.name, &type_name)),
    ];
    for (rel, text) in &files {
        write_new(&crate_dir.join(rel), text)?;
    }
    rustfmt(&crate_dir.join("src/lib.rs"));
    let shown = args.dir.join(&args.name);
    let manifest = shown.join("rule.toml");
    let rel_root = workspace
        .root
        .strip_prefix(std::path::absolute(".").unwrap_or_default())
        .map_or_else(|_| workspace.root.clone(), Path::to_path_buf);
    let rel_root = if rel_root.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        rel_root
    };
    let wasm = rel_root
        .join("target")
        .join(super::cargo_build::WASM_TARGET)
        .join("release")
        .join(format!("{}.wasm", args.name.replace('-', "_")));
    println!(
        "created the rule crate `{}` (type {type_name}) in {}:",
        args.name,
        shown.display()
    );
    for (rel, _) in &files {
        println!("  {}", shown.join(rel).display());
    }
    println!("\nnext:");
    if rel_root == Path::new(".") {
        println!("  cargo test -p {}     # its tests, natively", args.name);
    } else {
        println!(
            "  (cd {} && cargo test -p {})     # its tests, natively",
            rel_root.display(),
            args.name
        );
    }
    println!(
        "  sluice rules build -p {} --release --plugins-dir {}",
        args.name,
        rel_root.display()
    );
    println!(
        "  sluice rules check {} --manifest {}",
        wasm.display(),
        manifest.display()
    );
    let example_window = rel_root.join("examples/threshold/window.example.json");
    println!(
        "  sluice rules test {} --params {} --window {}",
        wasm.display(),
        manifest.display(),
        if workspace
            .root
            .join("examples/threshold/window.example.json")
            .is_file()
        {
            example_window.display().to_string()
        } else {
            "<window.json>".to_owned()
        }
    );
    println!(
        "  sluice rules upload --tenant <tenant> --rule {} {} --manifest {}",
        args.name,
        wasm.display(),
        manifest.display()
    );
    Ok(())
}

/// Rust keywords and crate names cargo refuses or that would shadow the standard crates.
const RESERVED: &[&str] = &[
    "abstract",
    "alloc",
    "as",
    "async",
    "await",
    "become",
    "box",
    "break",
    "const",
    "continue",
    "core",
    "crate",
    "do",
    "dyn",
    "else",
    "enum",
    "extern",
    "false",
    "final",
    "fn",
    "for",
    "gen",
    "if",
    "impl",
    "in",
    "let",
    "loop",
    "macro",
    "match",
    "mod",
    "move",
    "mut",
    "override",
    "priv",
    "proc_macro",
    "pub",
    "ref",
    "return",
    "self",
    "static",
    "std",
    "struct",
    "super",
    "test",
    "trait",
    "true",
    "try",
    "type",
    "typeof",
    "unsafe",
    "unsized",
    "use",
    "virtual",
    "where",
    "while",
    "yield",
];

fn check_crate_name(name: &str) -> anyhow::Result<()> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && !name.ends_with(['-', '_']);
    if !ok {
        anyhow::bail!(
            "invalid rule crate name `{name}`: use up to 64 lowercase letters, digits, `-` and `_`, starting with a letter"
        );
    }
    if RESERVED.contains(&name.replace('-', "_").as_str()) {
        anyhow::bail!("`{name}` is reserved in Rust; choose another rule name");
    }
    Ok(())
}

/// `my-rule` → `MyRule`, avoiding the names the generated code already uses.
fn type_name(name: &str) -> String {
    let camel: String = name
        .split(['-', '_'])
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut chars = p.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect();
    const TAKEN: &[&str] = &[
        "Alert",
        "BTreeMap",
        "Deserialize",
        "Harness",
        "Params",
        "Rule",
        "Serialize",
        "Severity",
        "State",
        "Window",
    ];
    if TAKEN.contains(&camel.as_str()) {
        format!("{camel}Rule")
    } else {
        camel
    }
}

/// Creates a file (and its directory), failing if it exists.
fn write_new(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("creating {} (refusing to overwrite)", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// Formats the generated code the way `cargo fmt` would (the template is formatted for
/// typical names; long ones can shift a line). Best effort: without rustfmt the code is
/// still valid.
fn rustfmt(path: &Path) {
    let formatted = std::process::Command::new("rustfmt")
        .args(["--edition", "2024"])
        .arg(path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    if !formatted.is_ok_and(|s| s.success()) {
        tracing::debug!(path = %path.display(), "rustfmt did not run on the scaffold");
    }
}

/// The cargo workspace the crate joins.
#[derive(Debug)]
struct Workspace {
    root: PathBuf,
    members: Vec<String>,
    exclude: Vec<String>,
}

impl Workspace {
    /// The nearest directory at or above `dir` whose Cargo.toml has a `[workspace]`.
    fn find(dir: &Path) -> anyhow::Result<Workspace> {
        for candidate in dir.ancestors() {
            let manifest = candidate.join("Cargo.toml");
            let Ok(text) = std::fs::read_to_string(&manifest) else {
                continue;
            };
            let doc: toml::Table =
                toml::from_str(&text).with_context(|| format!("parsing {}", manifest.display()))?;
            let Some(ws) = doc.get("workspace").and_then(toml::Value::as_table) else {
                continue;
            };
            let strings = |key: &str| -> Vec<String> {
                ws.get(key)
                    .and_then(toml::Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let deps = ws.get("dependencies").and_then(toml::Value::as_table);
            for needed in ["sluice-rule-sdk", "serde"] {
                if !deps.is_some_and(|d| d.contains_key(needed)) {
                    anyhow::bail!(
                        "the workspace {} has no `{needed}` in [workspace.dependencies]; `sluice rules new` creates crates in the plugins workspace (plugins/examples by default)",
                        manifest.display()
                    );
                }
            }
            return Ok(Workspace {
                root: candidate.to_path_buf(),
                members: strings("members"),
                exclude: strings("exclude"),
            });
        }
        anyhow::bail!(
            "no cargo workspace at or above {}; `sluice rules new` creates crates in the plugins workspace (plugins/examples by default)",
            dir.display()
        )
    }

    /// Refuses a crate directory the `members` globs do not cover, or a name another member
    /// already has.
    fn check_can_host(&self, crate_dir: &Path, name: &str) -> anyhow::Result<()> {
        let rel = crate_dir.strip_prefix(&self.root).with_context(|| {
            format!(
                "{} is not inside the workspace {}",
                crate_dir.display(),
                self.root.display()
            )
        })?;
        let rel: Vec<String> = rel
            .components()
            .filter_map(|c| match c {
                Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
                _ => None,
            })
            .collect();
        let covered = |patterns: &[String]| patterns.iter().any(|p| path_matches(p, &rel));
        if !covered(&self.members) || covered(&self.exclude) {
            anyhow::bail!(
                "{} would not be a member of the workspace {} (members = {:?}); use a --dir its members cover, such as {}",
                crate_dir.display(),
                self.root.join("Cargo.toml").display(),
                self.members,
                self.root.join("examples").display()
            );
        }
        for member in self.member_dirs() {
            let manifest = member.join("Cargo.toml");
            let Ok(text) = std::fs::read_to_string(&manifest) else {
                continue;
            };
            let Ok(doc) = toml::from_str::<toml::Table>(&text) else {
                continue;
            };
            let existing = doc
                .get("package")
                .and_then(|p| p.get("name"))
                .and_then(toml::Value::as_str);
            if existing.is_some_and(|n| n.replace('_', "-") == name.replace('_', "-")) {
                anyhow::bail!(
                    "the workspace already has a crate named `{name}` ({}); refusing to create another",
                    member.display()
                );
            }
        }
        Ok(())
    }

    /// The directories the `members` globs name today.
    fn member_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = Vec::new();
        for pattern in &self.members {
            let mut level = vec![self.root.clone()];
            for segment in pattern.split('/').filter(|s| !s.is_empty() && *s != ".") {
                let mut next = Vec::new();
                for dir in &level {
                    if segment.contains(['*', '?']) {
                        let Ok(entries) = std::fs::read_dir(dir) else {
                            continue;
                        };
                        for entry in entries.flatten() {
                            let name = entry.file_name().to_string_lossy().into_owned();
                            if entry.path().is_dir() && wildcard(segment, &name) {
                                next.push(entry.path());
                            }
                        }
                    } else {
                        next.push(dir.join(segment));
                    }
                }
                level = next;
            }
            dirs.extend(level);
        }
        dirs
    }
}

/// Whether a workspace member glob (`examples/*`) matches a relative path, segment by segment.
fn path_matches(pattern: &str, rel: &[String]) -> bool {
    let segments: Vec<&str> = pattern
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    segments.len() == rel.len() && segments.iter().zip(rel).all(|(p, r)| wildcard(p, r))
}

/// `*` (any run of characters) and `?` (one character) within one path segment.
fn wildcard(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

fn cargo_toml(name: &str) -> String {
    format!(
        r#"[package]
name = "{name}"
description = "sluice alert rule {name}: error-level records per minute over a warning and a critical threshold."
version.workspace = true
edition.workspace = true
rust-version.workspace = true
license.workspace = true
publish.workspace = true

# cdylib: the WebAssembly component (cargo build --target wasm32-wasip2);
# rlib: the native tests.
[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
sluice-rule-sdk.workspace = true
serde.workspace = true

[lints]
workspace = true
"#
    )
}

fn rule_toml(name: &str) -> String {
    format!(
        r#"# The manifest of the sluice alert rule `{name}`. Upload it next to the component:
#   sluice rules upload --tenant <tenant> --rule {name} <component>.wasm --manifest rule.toml
[rule]
name = "{name}"
description = "Error-level records per minute over a warning and a critical threshold."
# The contract the component exports (sluice:rules/rule@{CONTRACT_VERSION}).
api = "{CONTRACT_VERSION}"

# Optional; each limit only lowers the tenant's policy.
# [limits]
# fuel = 10_000_000
# deadline_ms = 50
# memory_mib = 8

# Handed to the rule as its typed `Params` (src/lib.rs).
[params]
# Error-level records per minute above which a service gets a warning...
warning_per_minute = 10.0
# ...and above which the alert is critical (optional).
critical_per_minute = 100.0
# Services to watch; empty watches every service.
services = []
"#
    )
}

fn lib_rs(name: &str, ty: &str) -> String {
    let wasm = name.replace('-', "_");
    format!(
        r##"//! `{name}`: a sluice alert rule.
//!
//! Alerts when a service logs more error-level records per minute than its thresholds allow,
//! and says for how many windows in a row it has. Replace the logic with your own: the
//! parameters come from `[params]` in `rule.toml`, and the state is kept by the host from one
//! window to the next.
//!
//! - Test natively: `cargo test -p {name}` (in `plugins/`).
//! - Build the component (add `--release` for the one to upload):
//!   `cargo build --target wasm32-wasip2 -p {name}`, which writes
//!   `target/wasm32-wasip2/<profile>/{wasm}.wasm`.
//! - Try it: `sluice rules test <component> --window <window.json> --params rule.toml`.

use std::collections::BTreeMap;

use serde::{{Deserialize, Serialize}};
use sluice_rule_sdk::{{Alert, Rule, Severity, Window, export_rule}};

/// The rule.
#[derive(Debug)]
pub struct {ty};

/// The `[params]` of `rule.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {{
    /// Error-level records per minute above which a service gets a warning.
    pub warning_per_minute: f64,
    /// Error-level records per minute above which the alert is critical.
    #[serde(default)]
    pub critical_per_minute: Option<f64>,
    /// Services to watch; empty watches every service.
    #[serde(default)]
    pub services: Vec<String>,
}}

/// What the rule remembers between windows: for each service over the threshold, how many
/// windows in a row it has been.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct State {{
    streaks: BTreeMap<String, u32>,
}}

impl Rule for {ty} {{
    type Params = Params;
    type State = State;

    fn check_params(p: &Params) -> Result<(), String> {{
        if !p.warning_per_minute.is_finite() || p.warning_per_minute < 0.0 {{
            return Err("warning_per_minute must be a number, at least 0".into());
        }}
        match p.critical_per_minute {{
            Some(c) if c.is_nan() || c < p.warning_per_minute => Err(format!(
                "critical_per_minute ({{c}}) must be at least warning_per_minute ({{}})",
                p.warning_per_minute
            )),
            _ => Ok(()),
        }}
    }}

    fn evaluate(window: &Window, p: &Params, state: &mut State) -> Vec<Alert> {{
        let minutes = window.minutes();
        let mut streaks = BTreeMap::new();
        let mut alerts = Vec::new();
        for s in window.selected_services(&p.services) {{
            let per_minute = s.errors() as f64 / minutes;
            if per_minute <= p.warning_per_minute {{
                continue;
            }}
            let severity = match p.critical_per_minute {{
                Some(c) if per_minute > c => Severity::Critical,
                _ => Severity::Warning,
            }};
            let streak = state.streaks.get(&s.service).copied().unwrap_or(0) + 1;
            streaks.insert(s.service.clone(), streak);
            alerts.push(
                Alert::new(
                    format!("{{}}/errors_per_minute", s.service),
                    severity,
                    format!("{{}}: {{per_minute:.1}} errors/min", s.service),
                )
                .description(format!(
                    "{{}} logged {{}} error-level records in {{minutes:.0}} min, over {{}} per minute, for {{streak}} window(s) in a row.",
                    s.service,
                    s.errors(),
                    p.warning_per_minute
                ))
                .label("service", s.service.clone())
                .value(per_minute),
            );
        }}
        state.streaks = streaks;
        alerts
    }}
}}

export_rule!({ty});

#[cfg(test)]
mod tests {{
    use super::*;
    use sluice_rule_sdk::Harness;
    use sluice_rule_sdk::testing::{{service, window}};

    fn harness() -> Harness<{ty}> {{
        Harness::from_manifest(include_str!("../rule.toml")).expect("rule.toml fits the rule")
    }}

    #[test]
    fn shipped_manifest_is_valid_and_quiet_on_a_healthy_window() {{
        let alerts = harness()
            .evaluate(&window(0, 1, vec![service("api", 1000, 2)]))
            .expect("evaluates");
        assert!(alerts.is_empty(), "{{alerts:?}}");
    }}

    #[test]
    fn warns_then_goes_critical_and_counts_windows_in_a_row() {{
        let mut h = harness();
        let first = window(
            0,
            1,
            vec![service("api", 1000, 20), service("web", 1000, 1)],
        );
        let alerts = h.evaluate(&first).expect("evaluates");
        assert_eq!(alerts.len(), 1, "{{alerts:?}}");
        assert_eq!(alerts[0].key, "api/errors_per_minute");
        assert_eq!(alerts[0].severity, Severity::Warning);
        assert_eq!(alerts[0].label_value("service"), Some("api"));

        let worse = window(0, 1, vec![service("api", 1000, 200)]).shifted(1);
        let alerts = h.evaluate(&worse).expect("evaluates");
        assert_eq!(alerts[0].severity, Severity::Critical);
        assert_eq!(h.state().streaks.get("api"), Some(&2));
    }}

    #[test]
    fn critical_below_warning_is_refused() {{
        let params = r#"{{"warning_per_minute": 10, "critical_per_minute": 5}}"#;
        let refused = Harness::<{ty}>::with_params_json(params);
        let err = refused.expect_err("critical below warning");
        assert!(err.to_string().contains("critical_per_minute"), "{{err}}");
    }}
}}
"##
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crate_names_must_be_valid_and_unreserved() {
        assert!(check_crate_name("error-burst").is_ok());
        assert!(check_crate_name("p99_slo2").is_ok());
        for bad in [
            "",
            "Caps",
            "1st",
            "has space",
            "trailing-",
            "../x",
            "fn",
            "test",
        ] {
            assert!(check_crate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn type_names_are_camel_case_and_avoid_the_template_s_names() {
        assert_eq!(type_name("error-burst"), "ErrorBurst");
        assert_eq!(type_name("p99_slo"), "P99Slo");
        assert_eq!(type_name("state"), "StateRule");
    }

    #[test]
    fn member_globs_match_segment_by_segment() {
        let rel = |s: &str| s.split('/').map(str::to_owned).collect::<Vec<_>>();
        assert!(path_matches("examples/*", &rel("examples/my-rule")));
        assert!(path_matches("./examples/*", &rel("examples/my-rule")));
        assert!(!path_matches("examples/*", &rel("examples/a/b")));
        assert!(!path_matches("sdk", &rel("examples/sdk")));
        assert!(path_matches("rules/team-*", &rel("rules/team-a")));
        assert!(!path_matches("rules/team-*", &rel("rules/other")));
    }
}
