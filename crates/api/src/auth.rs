//! Who a request is: the key it presents, checked against the key store (through its cache),
//! the scope the route needs, and the tenant's request-rate quota.
//!
//! Keys are accepted the way each protocol's clients send them:
//! - `Authorization: Bearer <key>` (NDJSON, OTLP exporters, Loki clients);
//! - `Authorization: ApiKey <key>`, or `ApiKey base64(<id>:<key>)` as the Elasticsearch
//!   clients encode an `(id, key)` pair (either half may hold the key);
//! - `Authorization: Basic base64(<user>:<key>)`, any user (Elasticsearch, Loki and Fluent Bit
//!   `http_user`/`http_passwd` settings), or the key as the user with no password;
//! - `Authorization: Splunk <key>` (HEC).

use axum::http::{HeaderMap, header};
use base64::Engine as _;
use sluice_core::tenancy::keys::parse_token;
use sluice_core::tenancy::{AuthError, KeyCache, Principal, Scope};

use crate::error::ApiError;
use crate::quota::Quotas;

/// The key a request presents, if any.
pub fn presented_key(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    match scheme.to_ascii_lowercase().as_str() {
        "bearer" | "splunk" => Some(rest.to_owned()),
        "apikey" => Some(if parse_token(rest).is_some() {
            rest.to_owned()
        } else {
            pair_key(rest).unwrap_or_else(|| rest.to_owned())
        }),
        "basic" => pair_key(rest),
        _ => None,
    }
}

/// The key in `base64(a:b)`: whichever half has the shape of a key, else the second half.
fn pair_key(encoded: &str) -> Option<String> {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (a, b) = text.split_once(':').unwrap_or((&text, ""));
    if parse_token(b).is_some() || parse_token(a).is_none() {
        Some(b.to_owned())
    } else {
        Some(a.to_owned())
    }
}

/// Authenticates the request, checks the scope, and takes a token from its tenant's quota.
pub async fn authorize(
    keys: &KeyCache,
    quotas: &Quotas,
    headers: &HeaderMap,
    needed: Scope,
) -> Result<Principal, ApiError> {
    let token = presented_key(headers).ok_or(ApiError::Unauthorized)?;
    let principal = keys.authenticate(&token).await.map_err(|e| match e {
        AuthError::Unavailable(detail) => ApiError::Unavailable(detail),
        other => {
            tracing::info!(reason = %other, "refused a key");
            ApiError::Unauthorized
        }
    })?;
    if !principal.scope.allows(needed) {
        return Err(ApiError::Forbidden(needed));
    }
    quotas
        .take(&principal.tenant)
        .map_err(|retry_after_secs| ApiError::RateLimited {
            tenant: principal.tenant.clone(),
            retry_after_secs,
        })?;
    Ok(principal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const KEY: &str =
        "slk_0123456789abcdef_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn with(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(header::AUTHORIZATION, v);
        }
        headers
    }

    fn b64(text: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    #[test]
    fn reads_the_key_from_every_clients_header() {
        for value in [
            format!("Bearer {KEY}"),
            format!("Splunk {KEY}"),
            format!("ApiKey {KEY}"),
            format!("ApiKey {}", b64(&format!("anyid:{KEY}"))),
            format!("ApiKey {}", b64(&format!("{KEY}:whatever"))),
            format!("Basic {}", b64(&format!("elastic:{KEY}"))),
            format!("Basic {}", b64(&format!("{KEY}:"))),
        ] {
            assert_eq!(
                presented_key(&with(&value)).as_deref(),
                Some(KEY),
                "{value}"
            );
        }
        assert_eq!(presented_key(&HeaderMap::new()), None);
        assert_eq!(presented_key(&with("Digest abc")), None);
    }
}
