//! Payload decoding: one stream record in, zero or more normalised events out.
//!
//! A record is classified by its first bytes: gzip (a CloudWatch Logs subscription envelope, or
//! any gzipped payload), a KPL aggregate, JSON (NDJSON, concatenated objects, or an array of
//! objects), or plain text lines. Each event is handed to an [`EventSink`] with the defaults its
//! container implies; each bad record or event is handed over as a rejection with its raw bytes.

pub mod cloudwatch;
pub mod json;
pub mod kpl;

use std::borrow::Cow;

use crate::error::RejectReason;
use crate::level::Level;
use crate::normalize::{AttrsBuf, Fields, normalize_object, normalize_object_into};
use cloudwatch::CloudWatchMapping;
use json::Scanner;

/// Size limits applied while decoding.
#[derive(Debug, Clone)]
pub struct DecodeLimits {
    /// Largest accepted record payload (Kinesis allows 1 MiB; KPL and gzip may be larger once
    /// unpacked, which `max_decompressed_bytes` bounds).
    pub max_record_bytes: usize,
    /// Largest decompressed gzip payload.
    pub max_decompressed_bytes: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_record_bytes: 1 << 20,
            max_decompressed_bytes: 16 << 20,
        }
    }
}

/// What is left of a batch's cap on decoded bytes, for [`Decoder::decode_within`].
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Bytes the record may still decode to.
    pub left: usize,
    /// The batch's whole cap, for the rejection's reason.
    pub limit: usize,
}

impl Budget {
    /// No cap.
    pub fn unlimited() -> Self {
        Self {
            left: usize::MAX,
            limit: usize::MAX,
        }
    }

    fn exceeded(self) -> RejectReason {
        RejectReason::BatchTooLarge { limit: self.limit }
    }
}

/// Values an event inherits from its container when it does not carry them itself.
#[derive(Debug, Default, Clone, Copy)]
pub struct EventDefaults<'d> {
    pub ts_ms: Option<i64>,
    pub event_id: Option<&'d str>,
    pub tenant: Option<&'d str>,
    pub service: Option<&'d str>,
}

/// Receives what a record decodes to.
pub trait EventSink {
    /// One event. Returning a reason rejects it (the decoder then reports its raw bytes).
    fn event(
        &mut self,
        sub: u32,
        fields: &Fields<'_>,
        attrs: Option<&str>,
        defaults: &EventDefaults<'_>,
    ) -> Result<(), RejectReason>;
    /// A rejected record (`sub` is `None`) or event.
    fn reject(&mut self, sub: Option<u32>, reason: RejectReason, raw: &[u8]);
}

/// Decodes records; holds reusable buffers, so keep one per thread.
#[derive(Debug, Default)]
pub struct Decoder {
    pub limits: DecodeLimits,
    pub cloudwatch: CloudWatchMapping,
    attrs: AttrsBuf,
}

impl Decoder {
    pub fn new(limits: DecodeLimits, cloudwatch: CloudWatchMapping) -> Self {
        Self {
            limits,
            cloudwatch,
            attrs: AttrsBuf::default(),
        }
    }

    /// Decodes one record payload.
    pub fn decode(&mut self, data: &[u8], sink: &mut impl EventSink) {
        self.decode_within(data, sink, Budget::unlimited());
    }

    /// Decodes one record payload, if its decoded bytes fit in what is left of `budget` (a
    /// batch's cap); returns the decoded bytes it took. A record that does not fit is
    /// rejected whole with the budget's reason.
    pub fn decode_within(
        &mut self,
        data: &[u8],
        sink: &mut impl EventSink,
        budget: Budget,
    ) -> usize {
        if data.len() > self.limits.max_record_bytes {
            let reason = RejectReason::Oversized {
                size: data.len(),
                limit: self.limits.max_record_bytes,
            };
            sink.reject(None, reason, data);
            return 0;
        }
        if data.len() > budget.left {
            sink.reject(None, budget.exceeded(), data);
            return 0;
        }
        let mut sub = 0u32;
        if cloudwatch::is_gzip(data) {
            let cap = self.limits.max_decompressed_bytes.min(budget.left);
            let unpacked = match cloudwatch::gunzip_capped(data, cap) {
                Ok(unpacked) => unpacked,
                Err(cloudwatch::GunzipError::TooLarge { .. })
                    if cap < self.limits.max_decompressed_bytes =>
                {
                    sink.reject(None, budget.exceeded(), data);
                    return 0;
                }
                Err(e) => {
                    let detail = e.to_string();
                    sink.reject(None, RejectReason::CorruptGzip { detail }, data);
                    return 0;
                }
            };
            match cloudwatch::parse_envelope(&unpacked) {
                Some(envelope) => self.cloudwatch_events(&envelope, sink),
                None => self.plain(&unpacked, &EventDefaults::default(), &mut sub, sink, true),
            }
            return unpacked.len();
        }
        if kpl::is_aggregate(data) {
            match kpl::decode(data) {
                Ok(records) => {
                    for record in records {
                        let (tenant, service) =
                            crate::input::split_partition_key(record.partition_key);
                        let defaults = EventDefaults {
                            tenant,
                            service,
                            ..EventDefaults::default()
                        };
                        self.plain(record.data, &defaults, &mut sub, sink, false);
                    }
                }
                Err(detail) => sink.reject(None, RejectReason::CorruptKpl { detail }, data),
            }
        } else {
            self.plain(data, &EventDefaults::default(), &mut sub, sink, true);
        }
        // A KPL aggregate's records are slices of it: it decodes to no more than its size.
        data.len()
    }

    fn cloudwatch_events(&mut self, envelope: &cloudwatch::Envelope, sink: &mut impl EventSink) {
        if envelope.message_type == "CONTROL_MESSAGE" {
            return;
        }
        let mapped = self.cloudwatch.map(&envelope.log_group);
        for (i, event) in envelope.log_events.iter().enumerate() {
            let sub = i as u32;
            let defaults = EventDefaults {
                ts_ms: Some(event.timestamp),
                event_id: Some(event.id.as_str()).filter(|id| !id.is_empty()),
                tenant: mapped.tenant.as_deref(),
                service: mapped
                    .service
                    .as_deref()
                    .or(Some(envelope.log_group.as_str())),
            };
            let message = event.message.trim_end_matches(['\n', '\r']);
            let result = if message.trim_start().starts_with('{') {
                let mut scanner = Scanner::new(message);
                normalize_object(&mut scanner, &mut self.attrs).and_then(|fields| {
                    if scanner.at_end() {
                        Ok(fields)
                    } else {
                        Err(RejectReason::NotJson {
                            detail: format!("trailing characters at byte {}", scanner.pos()),
                        })
                    }
                })
            } else {
                self.attrs.clear();
                Ok(text_fields(message))
            };
            let outcome =
                result.and_then(|fields| sink.event(sub, &fields, self.attrs.as_json(), &defaults));
            if let Err(reason) = outcome {
                // The raw bytes of one CloudWatch event are its message.
                sink.reject(Some(sub), reason, event.message.as_bytes());
            }
        }
    }

    /// NDJSON / concatenated JSON / JSON array / text lines.
    fn plain(
        &mut self,
        data: &[u8],
        defaults: &EventDefaults<'_>,
        sub: &mut u32,
        sink: &mut impl EventSink,
        whole_record: bool,
    ) {
        // The SIMD check only says yes or no; std's finds where a bad record goes wrong.
        let text = match simdutf8::basic::from_utf8(data) {
            Ok(text) => text,
            Err(_) => {
                let offset = std::str::from_utf8(data)
                    .err()
                    .map_or(0, |e| e.valid_up_to());
                let reason = RejectReason::NotUtf8 { offset };
                let index = (!whole_record).then_some(*sub);
                *sub += 1;
                return sink.reject(index, reason, data);
            }
        };
        // A record that starts with its object (nearly all) skips the Unicode-aware trim.
        let trimmed = if text.starts_with('{') {
            text
        } else {
            text.trim_start()
        };
        if trimmed.is_empty() {
            let index = (!whole_record).then_some(*sub);
            *sub += 1;
            return sink.reject(index, RejectReason::Empty, data);
        }
        if trimmed.starts_with(['{', '[']) {
            self.json_events(text, defaults, sub, sink);
        } else {
            for line in text.lines() {
                if line.trim().is_empty() {
                    continue;
                }
                self.attrs.clear();
                let index = *sub;
                *sub += 1;
                if let Err(reason) = sink.event(index, &text_fields(line), None, defaults) {
                    sink.reject(Some(index), reason, line.as_bytes());
                }
            }
        }
    }

    fn json_events(
        &mut self,
        text: &str,
        defaults: &EventDefaults<'_>,
        sub: &mut u32,
        sink: &mut impl EventSink,
    ) {
        let mut scanner = Scanner::new(text);
        let mut in_array = false;
        while let Some(next) = scanner.peek() {
            let start = scanner.pos();
            let index = *sub;
            match next {
                b'[' if !in_array => {
                    scanner.advance(1);
                    in_array = true;
                    continue;
                }
                b',' | b']' if in_array => {
                    scanner.advance(1);
                    in_array = next == b',';
                    continue;
                }
                b'{' => {
                    *sub += 1;
                    let mut fields = Fields::default();
                    let outcome = normalize_object_into(&mut scanner, &mut self.attrs, &mut fields)
                        .and_then(|()| sink.event(index, &fields, self.attrs.as_json(), defaults));
                    match outcome {
                        Ok(()) => {}
                        Err(reason @ RejectReason::NotJson { .. }) => {
                            // Resynchronise at the next line; the bad event is the rest of this one.
                            let end = line_end(text, start);
                            sink.reject(Some(index), reason, &text.as_bytes()[start..end]);
                            scanner.set_pos(end);
                            in_array = false;
                        }
                        Err(reason) => {
                            sink.reject(Some(index), reason, &text.as_bytes()[start..scanner.pos()])
                        }
                    }
                }
                _ => {
                    *sub += 1;
                    let end = line_end(text, start);
                    let reason = RejectReason::NotJson {
                        detail: format!("expected a JSON object at byte {start}"),
                    };
                    sink.reject(Some(index), reason, &text.as_bytes()[start..end]);
                    scanner.set_pos(end);
                    in_array = false;
                }
            }
        }
    }
}

fn line_end(text: &str, from: usize) -> usize {
    memchr::memchr(b'\n', &text.as_bytes()[from..]).map_or(text.len(), |i| from + i)
}

/// A plain-text line: the message, with the level inferred where it is obvious.
pub fn text_fields(line: &str) -> Fields<'_> {
    Fields {
        level: Level::infer_from_text(line),
        message: Some(Cow::Borrowed(line)),
        ..Fields::default()
    }
}
