//! A criterion [`Measurement`] of the calling thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`),
//! shared by the benchmarks of several crates (included with `#[path]`). Targets are per core:
//! CPU time does not count the time other processes on a busy machine take the core away.

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use nix::time::{ClockId, clock_gettime};

/// CPU time of the calling thread (`CLOCK_THREAD_CPUTIME_ID`, nanoseconds).
pub struct ThreadCpuTime;

static WALL_TIME: WallTime = WallTime;

impl ThreadCpuTime {
    fn now_ns() -> u64 {
        let t = clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
            .expect("clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
        t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
    }
}

impl Measurement for ThreadCpuTime {
    type Intermediate = u64;
    type Value = u64;

    fn start(&self) -> u64 {
        Self::now_ns()
    }

    fn end(&self, started: u64) -> u64 {
        Self::now_ns().saturating_sub(started)
    }

    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }

    fn zero(&self) -> u64 {
        0
    }

    fn to_f64(&self, value: &u64) -> f64 {
        *value as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        // Nanoseconds, like wall time.
        WALL_TIME.formatter()
    }
}
