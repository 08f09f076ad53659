//! Lambda's Kinesis event JSON over the generated traffic, for the benchmarks of the Lambda
//! functions (included with `#[path]`, next to `traffic.rs` as `mod traffic`).

use base64::Engine as _;

/// A Kinesis event of `n` generated records, shaped exactly as Lambda sends it, with the
/// top-level `members` (e.g. a tumbling window's fields) added.
pub fn event_json(n: usize, members: serde_json::Value) -> Vec<u8> {
    let records: Vec<serde_json::Value> = super::traffic::events(n)
        .enumerate()
        .map(|(i, e)| {
            let sequence = format!("4959033827149025660855969253836157109592157598913{:07}", i);
            serde_json::json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": e.partition_key,
                    "sequenceNumber": sequence,
                    "data": base64::engine::general_purpose::STANDARD.encode(&e.payload),
                    "approximateArrivalTimestamp": (super::traffic::NOW as f64 + i as f64) / 1000.0,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": format!("shardId-000000000006:{sequence}"),
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/sluice-ingest-role",
                "awsRegion": "us-east-1",
                "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/sluice-logs",
            })
        })
        .collect();
    let mut event = members;
    event["Records"] = serde_json::Value::Array(records);
    serde_json::to_vec(&event).expect("event JSON")
}

/// Deserialises a payload as lambda_runtime does: through `serde_path_to_error`, which copies
/// every key it passes into a String.
pub fn as_lambda_runtime<T: serde::de::DeserializeOwned>(json: &[u8]) -> T {
    serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(json))
        .expect("event")
}
