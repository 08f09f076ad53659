//! A reader that closes stdout early (`sluice gen | head`, `sluice local up | head -1`) ends
//! the command quietly with success, as it does for other Unix tools, instead of a panic
//! ("failed printing to stdout") or an error with a backtrace.
//!
//! Rust ignores SIGPIPE, so writes to a closed pipe fail with `BrokenPipe`. `println!` panics on
//! that; the panic hook here turns exactly that panic into a quiet exit. Commands that stream to
//! stdout map their own `BrokenPipe` into [`StdoutClosed`], which `main` treats as success.
//! Nothing else is affected: a broken connection to an endpoint is a different error.

use std::io::ErrorKind;

/// The reader of stdout went away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StdoutClosed;

impl std::fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stdout was closed by its reader")
    }
}

impl std::error::Error for StdoutClosed {}

/// `result` of writing to stdout, with a closed pipe turned into [`StdoutClosed`].
pub fn check(result: std::io::Result<()>) -> anyhow::Result<()> {
    match result {
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        other => Ok(other?),
    }
}

/// Installs a panic hook that exits with status 0, silently, when `print!`/`println!` failed
/// because stdout was closed; every other panic goes to the default hook.
pub fn exit_quietly_when_printing_fails() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        default_hook(info);
    }));
}
