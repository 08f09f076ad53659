//! Lambda's tumbling windows for a Kinesis mapping (`TumblingWindowInSeconds`): fixed,
//! non-overlapping windows by the records' **arrival** time, aligned to multiples of the window
//! length since the epoch. A batch never spans two windows. The function's state is carried
//! from one invocation of a window to the next; once the window has ended (a record of a later
//! window arrives, or the shard is read up to now past the window's end, or the shard ends),
//! the function is invoked one last time with no records and `isFinalInvokeForWindow`, and the
//! state is dropped.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::stream_source::SourceRecord;

/// A window being filled, with the state its last invocation returned.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenWindow {
    pub start_ms: i64,
    pub end_ms: i64,
    pub state: HashMap<String, String>,
}

impl OpenWindow {
    /// The (empty) window that a record arriving at `arrival_ms` belongs to.
    pub fn containing(arrival_ms: i64, size_ms: i64) -> Self {
        let size = size_ms.max(1);
        let start = arrival_ms.div_euclid(size) * size;
        Self {
            start_ms: start,
            end_ms: start + size,
            state: HashMap::new(),
        }
    }

    /// True when a record arriving at `arrival_ms` belongs here.
    pub fn contains(&self, arrival_ms: i64) -> bool {
        (self.start_ms..self.end_ms).contains(&arrival_ms)
    }
}

/// How many records at the front of `records` belong to `window` (records are in arrival
/// order within a shard).
pub fn records_in(window: &OpenWindow, records: &[SourceRecord]) -> usize {
    records
        .iter()
        .take_while(|r| r.arrival_ms < window.end_ms)
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_align_to_multiples_of_their_length() {
        let w = OpenWindow::containing(1_736_937_065_500, 60_000);
        assert_eq!(
            (w.start_ms, w.end_ms),
            (1_736_937_060_000, 1_736_937_120_000)
        );
        assert!(w.contains(1_736_937_060_000));
        assert!(!w.contains(1_736_937_120_000));
    }

    #[test]
    fn a_batch_stops_at_the_window_end() {
        let w = OpenWindow::containing(10_000, 10_000);
        let rec = |ms: i64| SourceRecord {
            sequence_number: ms.to_string(),
            partition_key: String::new(),
            data: vec![],
            arrival_ms: ms,
        };
        let records = [rec(10_000), rec(19_999), rec(20_000), rec(20_001)];
        assert_eq!(records_in(&w, &records), 2);
    }
}
