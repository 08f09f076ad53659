//! A real browser for the report's end-to-end test: Debian's `chromium`, installed with
//! apt-get when it is not there (as root or with `sudo -n`, like the arm64 step's qemu), and
//! driven by Playwright from the tooling venv (`playwright` is pinned in requirements.txt; it
//! downloads no browser of its own).

use std::path::Path;

use anyhow::{Context as _, Result};

use crate::arm64::apt_get;
use crate::steps::Outcome;
use crate::util::note;

/// The step's name in the summary.
pub const STEP: &str = "chromium (report test)";
/// Where Debian puts it.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Installs `chromium` unless it is there; the package lists are refreshed only when the
/// first attempt fails.
pub fn ensure_chromium() -> Result<Outcome> {
    if Path::new(CHROMIUM).exists() {
        return Ok(Outcome::Passed);
    }
    note("installing chromium with apt-get (the report test opens the report in it)");
    let args = ["install", "-y", "-q", "--no-install-recommends", "chromium"];
    if apt_get(&args).is_err() {
        apt_get(&["update", "-q"])?;
        apt_get(&args).context("installing chromium (the report test needs a real browser)")?;
    }
    Ok(Outcome::Passed)
}
