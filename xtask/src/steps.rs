//! A fail-fast sequence of named steps with timing and a closing summary table.

use std::time::Instant;

use anyhow::Result;

use crate::util;

/// How a step ended when it did not fail.
#[derive(Debug)]
pub enum Outcome {
    Passed,
    /// Not applicable yet; the reason is printed.
    Skipped(String),
}

#[derive(Debug)]
struct Row {
    name: String,
    status: &'static str,
    seconds: Option<f64>,
    note: String,
}

/// Runs steps in order, stopping at the first failure; prints a summary when finished.
#[derive(Debug)]
pub struct Steps {
    title: String,
    planned: Vec<String>,
    rows: Vec<Row>,
}

impl Steps {
    /// `planned` lists every step name in order, so the summary can show those not run.
    pub fn new(title: &str, planned: &[&str]) -> Steps {
        Steps {
            title: title.to_string(),
            planned: planned.iter().map(ToString::to_string).collect(),
            rows: Vec::new(),
        }
    }

    /// Runs one step. On error the error is returned (with the step name) after recording it.
    pub fn run(&mut self, name: &str, f: impl FnOnce() -> Result<Outcome>) -> Result<()> {
        eprintln!();
        eprintln!(
            "==> [{}/{}] {name}",
            self.rows.len() + 1,
            self.planned.len()
        );
        let start = Instant::now();
        let result = f();
        let seconds = start.elapsed().as_secs_f64();
        let (status, note) = match &result {
            Ok(Outcome::Passed) => ("ok", String::new()),
            Ok(Outcome::Skipped(why)) => ("skipped", why.clone()),
            Err(e) => (
                "FAILED",
                format!("{e:#}")
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_string(),
            ),
        };
        match &result {
            Ok(Outcome::Skipped(why)) => eprintln!("--> {name}: skipped ({why})"),
            Ok(Outcome::Passed) => eprintln!("--> {name}: ok ({seconds:.1}s)"),
            Err(_) => eprintln!("--> {name}: FAILED after {seconds:.1}s"),
        }
        self.rows.push(Row {
            name: name.to_string(),
            status,
            seconds: Some(seconds),
            note,
        });
        result
            .map(|_| ())
            .map_err(|e| e.context(format!("step `{name}` failed")))
    }

    /// Prints the summary table (including planned steps that did not run) to stderr, and the
    /// closing count line to stdout.
    pub fn summary(&self) {
        let mut rows: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| {
                vec![
                    r.name.clone(),
                    r.status.to_string(),
                    r.seconds.map(|s| format!("{s:.1}")).unwrap_or_default(),
                    r.note.clone(),
                ]
            })
            .collect();
        for name in self.planned.iter().skip(self.rows.len()) {
            rows.push(vec![
                name.clone(),
                "not run".to_string(),
                String::new(),
                String::new(),
            ]);
        }
        let total: f64 = self.rows.iter().filter_map(|r| r.seconds).sum();
        rows.push(vec![
            "total".to_string(),
            String::new(),
            format!("{total:.1}"),
            String::new(),
        ]);
        let count = |s: &str| self.rows.iter().filter(|r| r.status == s).count();
        eprintln!();
        eprintln!("==> {} summary", self.title);
        eprint!(
            "{}",
            util::table(&["step", "status", ">seconds", "note"], &rows)
        );
        println!(
            "steps: {} passed, {} failed, {} skipped",
            count("ok"),
            count("FAILED"),
            count("skipped")
        );
    }
}
