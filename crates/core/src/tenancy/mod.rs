//! Tenants as operators manage them: per-tenant limits ([`limits`]).

pub mod limits;
