//! Precompiled rules (`.cwasm`). Deserialising one is `unsafe` in wasmtime: the bytes are
//! machine code that runs as is. So this host only ever deserialises a [`TrustedArtifact`],
//! which can only come from [`Host::precompile`](crate::Host::precompile) (or
//! [`LoadedRule::artifact`](crate::LoadedRule::artifact)) in this process, or be read back
//! from the location where only the registry writes (`compiled/<fingerprint>/…`) and match
//! the SHA-256 the registry recorded for it ([`TrustedArtifact::from_verified_store`],
//! docs/ARCHITECTURE.md §10). A tenant's upload is always a `.wasm` that goes through
//! validation and compilation; never a `.cwasm`.

use wasmtime::component::Component;
use wasmtime::{Engine, Precompiled};

use crate::error::RuleError;

/// Precompiled code from a trusted origin, with the fingerprint of the engine that built it.
#[derive(Clone, PartialEq, Eq)]
pub struct TrustedArtifact {
    fingerprint: String,
    bytes: Vec<u8>,
}

impl std::fmt::Debug for TrustedArtifact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustedArtifact")
            .field("fingerprint", &self.fingerprint)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

impl TrustedArtifact {
    pub(crate) fn new(fingerprint: String, bytes: Vec<u8>) -> TrustedArtifact {
        TrustedArtifact { fingerprint, bytes }
    }

    /// Bytes read back from `compiled/<fingerprint>/<tenant>/<rule>.cwasm`, a location that
    /// only the registry (through [`Host::precompile`](crate::Host::precompile)) writes and no
    /// tenant can. `fingerprint` is the directory it was read from.
    ///
    /// Never call this on bytes a tenant supplied: they would run as native code in the host.
    pub fn from_trusted_store(fingerprint: impl Into<String>, bytes: Vec<u8>) -> TrustedArtifact {
        TrustedArtifact::new(fingerprint.into(), bytes)
    }

    /// Bytes read back from `compiled/…`, accepted only when their SHA-256 is `recorded`, the
    /// digest the registry wrote beside the accepted version (where only the registry
    /// writes). On a mismatch, gives back the digest the bytes have: log it, count it, and
    /// recompile from the component instead.
    pub fn from_verified_store(
        fingerprint: impl Into<String>,
        bytes: Vec<u8>,
        recorded: &str,
    ) -> Result<TrustedArtifact, DigestMismatch> {
        let found = crate::accepted::sha256_hex(&bytes);
        if found.eq_ignore_ascii_case(recorded) {
            Ok(TrustedArtifact::new(fingerprint.into(), bytes))
        } else {
            Err(DigestMismatch {
                recorded: recorded.to_owned(),
                found,
            })
        }
    }

    /// The fingerprint of the engine that compiled it.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The `.cwasm` bytes, to store.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// Stored artifact bytes whose SHA-256 is not the one the registry recorded: never loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the artifact's SHA-256 is {found}, the registry recorded {recorded}")]
pub struct DigestMismatch {
    pub recorded: String,
    pub found: String,
}

/// Deserialises a trusted artifact after checking it was compiled for this engine.
pub(crate) fn load(
    engine: &Engine,
    fingerprint: &str,
    artifact: &TrustedArtifact,
) -> Result<Component, RuleError> {
    if artifact.fingerprint != fingerprint {
        return Err(RuleError::FingerprintMismatch {
            expected: fingerprint.to_string(),
            found: artifact.fingerprint.clone(),
        });
    }
    if Engine::detect_precompiled(&artifact.bytes) != Some(Precompiled::Component) {
        return Err(RuleError::Load(
            "not a precompiled component (a .cwasm written by the registry)".into(),
        ));
    }
    // SAFETY: a `TrustedArtifact` only holds bytes this host's engine compiled, either in this
    // process or read back from the registry's `compiled/` prefix, which tenants cannot write
    // (see the type's documentation). wasmtime itself still checks the header, version and
    // configuration and refuses bytes compiled by an incompatible engine.
    #[allow(unsafe_code)]
    let component = unsafe { Component::deserialize(engine, &artifact.bytes) };
    component.map_err(|e| RuleError::Load(format!("{e:#}")))
}
