//! Resolving an event's identity: tenant, service, event time and level, from the event, its
//! container's defaults and the record's partition key, with the checks every path applies.

use crate::decode::EventDefaults;
use crate::encode_batch::IngestConfig;
use crate::error::RejectReason;
use crate::input::{RecordRef, split_partition_key};
use crate::level::Level;
use crate::normalize::{Fields, timestamp, validate_name};

/// The resolved identity of one event. Strings borrow from the event or the record.
#[derive(Debug, Clone, Copy)]
pub struct Resolved<'r> {
    pub tenant: &'r str,
    pub service: &'r str,
    pub ts_ms: i64,
    pub level: Level,
}

/// Resolves tenant (event, then container, then partition key: required), service (same order,
/// else `unknown`), event time (else the arrival time; bounded around it) and level.
pub fn resolve<'r>(
    config: &IngestConfig,
    record: RecordRef<'r>,
    reference_ms: i64,
    fields: &'r Fields<'_>,
    defaults: &EventDefaults<'r>,
) -> Result<Resolved<'r>, RejectReason> {
    // Most events name their tenant and service: split the partition key only when needed.
    let partition_key = || split_partition_key(record.partition_key);
    let tenant = fields
        .tenant
        .as_deref()
        .or(defaults.tenant)
        .or_else(|| partition_key().0)
        .ok_or(RejectReason::NoTenant)?;
    validate_name("tenant", tenant)?;
    let service = fields
        .service
        .as_deref()
        .or(defaults.service)
        .or_else(|| partition_key().1)
        .unwrap_or(DEFAULT_SERVICE);
    check_service(service)?;
    let ts_ms = fields.ts_ms.or(defaults.ts_ms).unwrap_or(reference_ms);
    check_event_time(config, ts_ms, reference_ms)?;
    Ok(Resolved {
        tenant,
        service,
        ts_ms,
        level: fields.level.unwrap_or(Level::Info),
    })
}

/// The service of an event that names none.
pub const DEFAULT_SERVICE: &str = "unknown";

/// Checks a service name's length (it goes into partition keys, which hold 256 bytes).
pub fn check_service(service: &str) -> Result<(), RejectReason> {
    if service.len() > 256 {
        return Err(RejectReason::InvalidName {
            field: "service",
            value: service.chars().take(80).collect(),
        });
    }
    Ok(())
}

/// Checks that an event time is within the accepted window around its arrival time.
pub fn check_event_time(
    config: &IngestConfig,
    ts_ms: i64,
    reference_ms: i64,
) -> Result<(), RejectReason> {
    if ts_ms < reference_ms - config.max_past_ms || ts_ms > reference_ms + config.max_future_ms {
        return Err(RejectReason::TimestampOutOfRange {
            detail: format!(
                "{} is outside [-{}s, +{}s] of the arrival time {}",
                timestamp::format_rfc3339_ms(ts_ms),
                config.max_past_ms / 1000,
                config.max_future_ms / 1000,
                timestamp::format_rfc3339_ms(reference_ms)
            ),
        });
    }
    Ok(())
}
