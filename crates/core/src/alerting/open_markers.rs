//! Which tenants have an open (pending or firing) alert, kept as one empty marker object per
//! tenant under `alerts/open/`, so the evaluator finds the quiet tenants it must still evaluate
//! with one LIST instead of reading every tenant's state each window.
//!
//! The evaluator puts a tenant's marker when its state gains an open alert and deletes it when
//! the last one resolves; it reconciles a marker with the state whenever it reads the state, so
//! a marker missed by a failed run is put right the next time the tenant is evaluated.
//! `alerts/open/complete` says the markers were built from every tenant's state once (a store
//! written before markers existed has none).

use bytes::Bytes;

use crate::store::{BlobStore, StoreError};

/// Where the markers live.
pub const DIR: &str = "alerts/open/";
/// Present once every tenant with an open alert has its marker.
pub const COMPLETE_KEY: &str = "alerts/open/complete";
const TENANT_PREFIX: &str = "alerts/open/tenant=";

/// The marker of one tenant.
pub fn marker_key(tenant: &str) -> String {
    format!("{TENANT_PREFIX}{tenant}")
}

/// The tenants with a marker, or `None` while the markers have not been built.
pub async fn marked_tenants(
    store: &dyn BlobStore,
) -> Result<Option<std::collections::BTreeSet<String>>, StoreError> {
    let keys = store.list(DIR).await?;
    if !keys.iter().any(|k| k == COMPLETE_KEY) {
        return Ok(None);
    }
    Ok(Some(
        keys.iter()
            .filter_map(|k| k.strip_prefix(TENANT_PREFIX))
            .map(str::to_owned)
            .collect(),
    ))
}

/// Puts or deletes `tenant`'s marker so that it says `open`; `marked` is whether it exists now
/// (nothing is written when it already agrees).
pub async fn reconcile(
    store: &dyn BlobStore,
    tenant: &str,
    marked: bool,
    open: bool,
) -> Result<(), StoreError> {
    match (marked, open) {
        (false, true) => {
            store
                .put(
                    &marker_key(tenant),
                    Bytes::new(),
                    "application/octet-stream",
                )
                .await
        }
        (true, false) => store.delete(&marker_key(tenant)).await,
        _ => Ok(()),
    }
}

/// Records that every tenant with an open alert has its marker.
pub async fn mark_complete(store: &dyn BlobStore) -> Result<(), StoreError> {
    store
        .put(COMPLETE_KEY, Bytes::new(), "application/octet-stream")
        .await
}
