//! Alerting on the host side: what rules return ([`model`]), the lifecycle the host keeps for
//! them ([`lifecycle`]), per-tenant configuration ([`tenant_config`]), and notifications in the
//! Alertmanager webhook shape, signed ([`webhook`]) and delivered with retries ([`delivery`]);
//! [`open_markers`] lists the tenants with open alerts.

pub mod delivery;
pub mod lifecycle;
pub mod model;
pub mod open_markers;
pub mod tenant_config;
pub mod webhook;
