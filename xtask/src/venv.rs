//! Python virtual environments for the tooling: moto, pyarrow, DuckDB, cfn-lint
//! (`xtask/python/requirements.txt`), and an optional separate one for LocalStack
//! (`xtask/python/requirements-localstack.txt`, needs Python >= 3.13).
//!
//! A venv is (re)installed only when the MD5 of its requirements file differs from the stamp
//! kept inside the venv, so a second run costs one `python -c ''`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use md5::{Digest, Md5};

use crate::util::{self, note};

const STAMP: &str = ".sluice-requirements.md5";

/// A Python virtual environment.
#[derive(Debug, Clone)]
pub struct Venv {
    pub dir: PathBuf,
}

impl Venv {
    /// `<venv>/bin/python`.
    pub fn python(&self) -> PathBuf {
        self.bin("python")
    }

    /// `<venv>/bin/<name>`.
    pub fn bin(&self, name: &str) -> PathBuf {
        self.dir.join("bin").join(name)
    }

    fn works(&self) -> bool {
        util::succeeds(Command::new(self.python()).args(["-c", ""]))
    }
}

/// Where the tooling venv lives: `$SLUICE_VENV`, else `<repo>/.sluice/venv`.
pub fn tools_dir() -> PathBuf {
    match std::env::var_os("SLUICE_VENV") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => util::state_dir().join("venv"),
    }
}

/// Where the LocalStack venv lives: `$SLUICE_LOCALSTACK_VENV`, else next to the tooling venv
/// (`<tools venv>-localstack`).
pub fn localstack_dir() -> PathBuf {
    match std::env::var_os("SLUICE_LOCALSTACK_VENV") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => {
            let mut name = tools_dir().into_os_string();
            name.push("-localstack");
            PathBuf::from(name)
        }
    }
}

/// Creates or updates the tooling venv (moto, pyarrow, DuckDB, cfn-lint, SAM translator).
pub fn ensure_venv() -> Result<Venv> {
    let base = std::env::var("SLUICE_BASE_PYTHON").unwrap_or_else(|_| "python3".to_string());
    ensure(
        "tooling",
        &tools_dir(),
        &util::python_file("requirements.txt"),
        Path::new(&base),
    )
}

/// Creates or updates a venv for one tool kept apart from the tooling venv (its pins conflict,
/// or only some commands need it): `<tools venv>-<name>`, from
/// `xtask/python/requirements-<name>.txt` (`sam`, `checkov`, `lambda`).
pub fn ensure_extra(name: &str) -> Result<Venv> {
    let base = std::env::var("SLUICE_BASE_PYTHON").unwrap_or_else(|_| "python3".to_string());
    let mut dir = tools_dir().into_os_string();
    dir.push(format!("-{name}"));
    ensure(
        name,
        Path::new(&dir),
        &util::python_file(&format!("requirements-{name}.txt")),
        Path::new(&base),
    )
}

/// Creates or updates the LocalStack venv. Needs a Python >= 3.13 on the host: taken from
/// `$SLUICE_LOCALSTACK_PYTHON`, else searched on PATH and in pyenv's versions.
pub fn ensure_localstack_venv() -> Result<Venv> {
    let dir = localstack_dir();
    let requirements = util::python_file("requirements-localstack.txt");
    let venv = Venv { dir: dir.clone() };
    if stamp_matches(&venv, &requirements)? && venv.works() {
        return Ok(venv);
    }
    let base = find_python_313().context(
        "LocalStack (localstack-core 2026.3.0) needs Python >= 3.13 and none was found; \
         set SLUICE_LOCALSTACK_PYTHON=/path/to/python3.13, or use the default emulator \
         (SLUICE_EMULATOR=moto)",
    )?;
    ensure("LocalStack", &dir, &requirements, &base)
}

fn ensure(label: &str, dir: &Path, requirements: &Path, base_python: &Path) -> Result<Venv> {
    let venv = Venv {
        dir: dir.to_path_buf(),
    };
    if stamp_matches(&venv, requirements)? && venv.works() {
        note(format!("{label} venv {} is up to date", venv.dir.display()));
        return Ok(venv);
    }
    if !venv.works() {
        note(format!(
            "creating {label} venv at {} (with {})",
            dir.display(),
            base_python.display()
        ));
        if let Some(parent) = dir.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        util::run(
            Command::new(base_python)
                .args(["-m", "venv", "--clear"])
                .arg(dir),
        )
        .with_context(|| {
            format!(
                "creating the {label} venv (is `{}` a Python 3 with the venv module?)",
                base_python.display()
            )
        })?;
    }
    note(format!(
        "installing pinned packages from {} (first run takes a minute)",
        requirements.display()
    ));
    util::run(
        Command::new(venv.python())
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--no-input",
                "--quiet",
                "-r",
            ])
            .arg(requirements),
    )
    .with_context(|| {
        format!(
            "installing {} into {} (needs access to PyPI)",
            requirements.display(),
            dir.display()
        )
    })?;
    fs::write(dir.join(STAMP), requirements_hash(requirements)?)
        .with_context(|| format!("writing the stamp in {}", dir.display()))?;
    note(format!("{label} venv ready at {}", dir.display()));
    Ok(venv)
}

fn requirements_hash(requirements: &Path) -> Result<String> {
    let bytes =
        fs::read(requirements).with_context(|| format!("reading {}", requirements.display()))?;
    Ok(hex::encode(Md5::digest(&bytes)))
}

fn stamp_matches(venv: &Venv, requirements: &Path) -> Result<bool> {
    let want = requirements_hash(requirements)?;
    Ok(fs::read_to_string(venv.dir.join(STAMP)).is_ok_and(|have| have.trim() == want))
}

/// Finds a Python interpreter >= 3.13.
fn find_python_313() -> Result<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("SLUICE_LOCALSTACK_PYTHON") {
        candidates.push(p.into());
    }
    for name in ["python3.13", "python3.14", "python3"] {
        candidates.push(name.into());
    }
    let pyenv_root = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".pyenv")));
    if let Some(root) = pyenv_root
        && let Ok(entries) = fs::read_dir(root.join("versions"))
    {
        let mut versions: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path().join("bin").join("python3")))
            .collect();
        versions.sort();
        versions.reverse();
        candidates.extend(versions);
    }
    candidates.extend([
        "/usr/bin/python3.13".into(),
        "/usr/local/bin/python3.13".into(),
    ]);
    for candidate in candidates {
        let ok = util::succeeds(Command::new(&candidate).args([
            "-c",
            "import sys; sys.exit(0 if sys.version_info >= (3, 13) else 1)",
        ]));
        if ok {
            return Ok(candidate);
        }
    }
    bail!("no Python >= 3.13 found")
}
