//! Object texts to stamped stream records: every protocol turns its payload into JSON object
//! texts with the keys the normaliser reads (`ts`, `service`, `level`, `message`, `trace_id`,
//! `span_id`, anything else as attributes) and hands them here. Each is stamped with the
//! key's tenant ([`sluice_core::stamp`]); each one the core rejects keeps its exact reason, at
//! its position, for the protocol's per-item answer.

use bytes::Bytes;
use sluice_core::RejectReason;
use sluice_core::stamp::{Stamper, partition_key};

use crate::sink::OutRecord;

/// What a request's records came to.
#[derive(Debug, Default)]
pub struct Intake {
    /// The records to put, in order.
    pub records: Vec<OutRecord>,
    /// Per input item, in order: `None` accepted, else why not.
    pub outcomes: Vec<Option<RejectReason>>,
}

impl Intake {
    /// Records accepted.
    pub fn accepted(&self) -> usize {
        self.records.len()
    }

    /// `(position, reason)` of each rejected item.
    pub fn rejected(&self) -> impl Iterator<Item = (usize, &RejectReason)> {
        self.outcomes
            .iter()
            .enumerate()
            .filter_map(|(i, o)| o.as_ref().map(|r| (i, r)))
    }

    /// Number of items rejected.
    pub fn rejected_count(&self) -> usize {
        self.outcomes.len() - self.records.len()
    }
}

/// Stamps records one by one into one shared buffer, sliced into records at the end.
#[derive(Debug)]
pub struct IntakeBuilder<'t> {
    tenant: &'t str,
    stamper: Stamper,
    now_ms: i64,
    buf: Vec<u8>,
    /// (partition key, end offset in `buf`) per accepted record.
    spans: Vec<(String, usize)>,
    outcomes: Vec<Option<RejectReason>>,
}

impl<'t> IntakeBuilder<'t> {
    pub fn new(tenant: &'t str, config: &sluice_core::IngestConfig) -> Self {
        Self {
            tenant,
            stamper: Stamper::new(config.clone()),
            now_ms: now_ms(),
            buf: Vec::new(),
            spans: Vec::new(),
            outcomes: Vec::new(),
        }
    }

    /// Stamps one object text.
    pub fn push(&mut self, object: &str) {
        match self
            .stamper
            .stamp(self.tenant, object, self.now_ms, &mut self.buf)
        {
            Ok(service) => {
                self.spans
                    .push((partition_key(self.tenant, &service), self.buf.len()));
                self.outcomes.push(None);
            }
            Err(reason) => self.outcomes.push(Some(reason)),
        }
    }

    /// Records an item rejected before stamping (the protocol could not read it).
    pub fn reject(&mut self, reason: RejectReason) {
        self.outcomes.push(Some(reason));
    }

    pub fn finish(self) -> Intake {
        let all = Bytes::from(self.buf);
        let mut start = 0;
        let records = self
            .spans
            .into_iter()
            .map(|(partition_key, end)| {
                let data = all.slice(start..end);
                start = end;
                OutRecord {
                    partition_key,
                    data,
                }
            })
            .collect();
        Intake {
            records,
            outcomes: self.outcomes,
        }
    }
}

/// The wall clock, in ms since the epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_each_rejection_at_its_position_and_slices_each_record() {
        let config = sluice_core::IngestConfig::default();
        let mut builder = IntakeBuilder::new("acme", &config);
        builder.push(r#"{"service":"web","msg":"a"}"#);
        builder.push(r#"{"msg": broken"#);
        builder.push(r#"{"service":"db","tenant":"evil"}"#);
        let intake = builder.finish();
        assert_eq!(intake.accepted(), 2);
        let rejected: Vec<usize> = intake.rejected().map(|(i, _)| i).collect();
        assert_eq!(rejected, vec![1]);
        assert_eq!(intake.records[0].partition_key, "acme/web");
        assert_eq!(
            &intake.records[0].data[..],
            br#"{"tenant":"acme","service":"web","msg":"a"}"#
        );
        assert_eq!(intake.records[1].partition_key, "acme/db");
        assert!(intake.records[1].data.starts_with(br#"{"tenant":"acme","#));
    }
}
