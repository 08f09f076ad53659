//! `misbehave`: a rule written to attack its sandbox, for the host's tests. Its params pick the
//! attack (`{"do": "loop"}`), so one component covers them all:
//!
//! | `do` | what it does | what the host must answer |
//! |---|---|---|
//! | `echo` | one alert echoing the window, params and wall clock; prints to stdout; counts evaluations in state | alerts and state |
//! | `loop` | spins forever without allocating | out of fuel, or the deadline |
//! | `sleep` | sleeps an hour, then reports how long it slept | returns at once: clocks are frozen |
//! | `memory-bomb` | allocates 1 MiB blocks until it dies | memory limit |
//! | `recursion` | recurses without bound | stack overflow |
//! | `many-alerts` | returns `count` alerts (default 100,000) | output too large |
//! | `huge-description` | returns one alert with a `bytes`-long description | output too large |
//! | `huge-state` | returns `bytes` of state | output too large |
//! | `unreachable` | executes `unreachable` | trap |
//! | `panic` | panics with a message | panic, with the message |
//! | `fail` | returns `rule-error::failed` | rule error |
//!
//! Never ship anything like it; it is here so that the sandbox is tested against real,
//! compiled Rust rather than hand-written wasm.

use serde::{Deserialize, Serialize};
use sluice_rule_sdk::{Alert, Rule, Severity, Window, export_rule};
use std::hint::black_box;

/// The rule.
#[derive(Debug)]
pub struct Misbehave;

/// Which attack, and its size.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    #[serde(rename = "do")]
    pub action: Action,
    #[serde(default)]
    pub count: Option<usize>,
    #[serde(default)]
    pub bytes: Option<usize>,
    #[serde(default)]
    pub message: Option<String>,
}

/// The attacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Echo,
    Loop,
    Sleep,
    MemoryBomb,
    Recursion,
    ManyAlerts,
    HugeDescription,
    HugeState,
    Unreachable,
    Panic,
}

/// Counts evaluations (for `echo`) or carries a payload (for `huge-state`).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct State {
    pub evaluations: u64,
    #[serde(default)]
    pub payload: String,
}

impl Rule for Misbehave {
    type Params = Params;
    type State = State;

    fn evaluate(window: &Window, p: &Params, state: &mut State) -> Vec<Alert> {
        state.evaluations += 1;
        match p.action {
            Action::Echo => vec![echo(window, p, state)],
            Action::Loop => spin(),
            Action::Sleep => {
                let started = std::time::Instant::now();
                std::thread::sleep(std::time::Duration::from_secs(3600));
                let slept = started.elapsed().as_secs_f64();
                vec![Alert::new("slept", Severity::Info, "slept").value(slept)]
            }
            Action::MemoryBomb => memory_bomb(),
            Action::Recursion => {
                let depth = recurse(black_box(1));
                vec![Alert::new("depth", Severity::Info, "unreachable").value(depth as f64)]
            }
            Action::ManyAlerts => (0..p.count.unwrap_or(100_000))
                .map(|i| Alert::new(format!("k{i}"), Severity::Info, "x"))
                .collect(),
            Action::HugeDescription => vec![
                Alert::new("huge", Severity::Info, "huge")
                    .description("x".repeat(p.bytes.unwrap_or(4 << 20))),
            ],
            Action::HugeState => {
                state.payload = "s".repeat(p.bytes.unwrap_or(4 << 20));
                Vec::new()
            }
            Action::Unreachable => unreachable_instruction(),
            Action::Panic => panic!(
                "{}",
                p.message
                    .as_deref()
                    .unwrap_or("misbehave: deliberate panic")
            ),
        }
    }
}

fn echo(window: &Window, p: &Params, state: &State) -> Alert {
    let records: u64 = window.services.iter().map(|s| s.count).sum();
    println!("echo for {}", window.tenant);
    let wall_clock_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    Alert::new("echo", Severity::Info, format!("tenant {}", window.tenant))
        .description(p.message.clone().unwrap_or_default())
        .label("services", window.services.len().to_string())
        .label("patterns", window.patterns.len().to_string())
        .label("records", records.to_string())
        .label("evaluations", state.evaluations.to_string())
        .label("wall_clock_ms", wall_clock_ms.to_string())
        .value(state.evaluations as f64)
}

fn spin() -> ! {
    let mut i: u64 = 0;
    loop {
        i = black_box(i.wrapping_add(1));
    }
}

fn memory_bomb() -> ! {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut block = vec![0u8; 1 << 20];
        block[black_box(0)] = 1;
        blocks.push(black_box(block));
    }
}

/// Recurses without bound on the native wasm stack: no locals in linear memory (whose
/// shadow stack would overflow first, as an out-of-bounds access), and work after the call so
/// it cannot become a loop.
#[inline(never)]
fn recurse(n: u64) -> u64 {
    if n == u64::MAX {
        return 0; // Never: keeps the compiler from seeing unconditional recursion.
    }
    recurse(n.wrapping_add(1)).wrapping_mul(31).wrapping_add(n)
}

#[cfg(target_arch = "wasm32")]
fn unreachable_instruction() -> ! {
    core::arch::wasm32::unreachable()
}

#[cfg(not(target_arch = "wasm32"))]
fn unreachable_instruction() -> ! {
    std::process::abort()
}

export_rule!(Misbehave);

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use sluice_rule_sdk::Harness;
    use sluice_rule_sdk::testing::{service, window};

    #[test]
    fn echo_counts_evaluations_in_its_state() {
        let mut h = Harness::<Misbehave>::with_params_json(r#"{"do":"echo","message":"hi"}"#)
            .expect("valid params");
        let w = window(0, 1, vec![service("a", 10, 1), service("b", 5, 0)]);
        h.evaluate(&w).expect("first");
        let alerts = h.evaluate(&w).expect("second");
        assert_eq!(alerts[0].value, 2.0);
        assert_eq!(alerts[0].description, "hi");
        assert_eq!(alerts[0].label_value("records"), Some("15"));
    }

    #[test]
    fn many_alerts_returns_the_count_asked_for() {
        let mut h = Harness::<Misbehave>::with_params_json(r#"{"do":"many-alerts","count":7}"#)
            .expect("valid params");
        assert_eq!(h.evaluate(&Window::default()).expect("evaluates").len(), 7);
    }
}
