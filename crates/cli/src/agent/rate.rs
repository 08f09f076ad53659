//! The live rate on stderr: a spinner with records read and sent, records/s and MiB/s over
//! the last interval, retries and failures. Drawn only when stderr is a terminal (indicatif
//! draws nothing otherwise) and not at all with `--quiet`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use tokio::task::JoinHandle;

use super::counters::{Counters, Snapshot};

/// How often the line is redrawn.
const TICK: Duration = Duration::from_millis(250);

/// A running display; [`RateDisplay::finish`] clears it.
#[derive(Debug)]
pub struct RateDisplay {
    bar: ProgressBar,
    task: Option<JoinHandle<()>>,
}

impl RateDisplay {
    /// Starts the display (hidden when `quiet`). Needs a tokio runtime.
    pub fn start(counters: Arc<Counters>, quiet: bool) -> Self {
        if quiet {
            return Self {
                bar: ProgressBar::hidden(),
                task: None,
            };
        }
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        let shown = bar.clone();
        let task = tokio::spawn(async move {
            let mut last = (Instant::now(), counters.snapshot());
            let mut interval = tokio::time::interval(TICK);
            loop {
                interval.tick().await;
                let now = (Instant::now(), counters.snapshot());
                shown.set_message(line(&last, &now));
                shown.tick();
                last = now;
            }
        });
        Self {
            bar,
            task: Some(task),
        }
    }

    /// Stops and clears the display.
    pub fn finish(self) {
        if let Some(task) = &self.task {
            task.abort();
        }
        self.bar.finish_and_clear();
    }
}

/// The status line between two snapshots.
pub fn line(before: &(Instant, Snapshot), after: &(Instant, Snapshot)) -> String {
    let secs = after.0.duration_since(before.0).as_secs_f64().max(1e-3);
    let (a, b) = (&before.1, &after.1);
    let rate = b.records_sent.saturating_sub(a.records_sent) as f64 / secs;
    let mib = b.bytes_sent.saturating_sub(a.bytes_sent) as f64 / (1024.0 * 1024.0) / secs;
    let mut text = format!(
        "read {} · sent {} ({rate:.0} records/s, {mib:.2} MiB/s) · {} calls",
        b.records_read, b.records_sent, b.put_records_calls
    );
    if b.retried_entries > 0 {
        text.push_str(&format!(" · retried {}", b.retried_entries));
    }
    if b.failed + b.oversize > 0 {
        text.push_str(&format!(" · failed {} · oversize {}", b.failed, b.oversize));
    }
    text
}
