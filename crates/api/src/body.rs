//! Reading a request body within its limits: at most `max_body_bytes` as sent (checked
//! against `Content-Length` first, then while reading), and at most `max_decoded_bytes` once
//! decompressed. Decompression stops one byte past the limit, so a gzip bomb costs no more
//! memory than the limit.

use std::io::Read as _;

use axum::body::Body;
use axum::http::{HeaderMap, header};
use bytes::Bytes;
use http_body_util::{BodyExt as _, LengthLimitError, Limited};

use crate::config::ApiConfig;
use crate::error::ApiError;

/// The body as sent, within `max_body_bytes`.
pub async fn read_raw(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, ApiError> {
    let too_large = ApiError::TooLarge {
        what: "the request body",
        limit,
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large);
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large),
        Err(e) => Err(ApiError::BadRequest(format!("reading the body: {e}"))),
    }
}

/// The body read and decompressed as its `Content-Encoding` says (`gzip`, or none).
pub async fn read(body: Body, headers: &HeaderMap, config: &ApiConfig) -> Result<Bytes, ApiError> {
    let raw = read_raw(body, headers, config.max_body_bytes).await?;
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase());
    match encoding.as_deref() {
        None | Some("" | "identity") => {
            if raw.len() > config.max_decoded_bytes {
                return Err(ApiError::TooLarge {
                    what: "the decompressed body",
                    limit: config.max_decoded_bytes,
                });
            }
            Ok(raw)
        }
        Some("gzip" | "x-gzip") => gunzip(&raw, config.max_decoded_bytes).map(Bytes::from),
        Some(other) => Err(ApiError::Unsupported(format!("Content-Encoding {other:?}"))),
    }
}

/// Decompresses gzip (any number of members) to at most `limit` bytes.
pub fn gunzip(data: &[u8], limit: usize) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::with_capacity(data.len().saturating_mul(4).min(limit));
    flate2::read::MultiGzDecoder::new(data)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| ApiError::BadRequest(format!("corrupt gzip body: {e}")))?;
    if out.len() > limit {
        return Err(ApiError::TooLarge {
            what: "the decompressed body",
            limit,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let _ = enc.write_all(data);
        enc.finish().unwrap_or_default()
    }

    #[test]
    fn refuses_a_gzip_bomb_past_the_decoded_limit() {
        let bomb = gzip(&vec![b'a'; 10 << 20]);
        assert!(bomb.len() < 64 << 10, "{}", bomb.len());
        let err = gunzip(&bomb, 1 << 20);
        assert!(matches!(err, Err(ApiError::TooLarge { .. })), "{err:?}");
        assert_eq!(
            gunzip(&gzip(b"hello"), 5).ok().as_deref(),
            Some(&b"hello"[..])
        );
    }

    #[test]
    fn rejects_corrupt_gzip_with_the_reason() {
        let err = gunzip(b"\x1f\x8bnot really", 100);
        assert!(
            matches!(err, Err(ApiError::BadRequest(ref m)) if m.contains("gzip")),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn refuses_a_body_over_the_limit_as_sent() {
        let headers = HeaderMap::new();
        let err = read_raw(Body::from(vec![0u8; 101]), &headers, 100).await;
        assert!(matches!(err, Err(ApiError::TooLarge { .. })), "{err:?}");
        let ok = read_raw(Body::from(vec![0u8; 100]), &headers, 100).await;
        assert_eq!(ok.map(|b| b.len()).ok(), Some(100));
    }
}
