//! # sluice-cli (library part)
//!
//! The parts of the `sluice` command line that other crates (the end-to-end tests, benchmarks)
//! drive directly, as a library rather than through the binary:
//!
//! - [`agent`]: `sluice agent`, the producer that follows log files (or stdin) and ships each
//!   line to a Kinesis stream with batched, retried `PutRecords` calls.
//!
//! The rest of the command line lives in the `sluice` binary (`src/main.rs`).

pub mod agent;
