//! Alerting on the host side: what rules return ([`model`]), the lifecycle the host keeps for
//! them ([`lifecycle`]), per-tenant configuration ([`tenant_config`]) checked on write
//! ([`config_validation`]), and notifications in the Alertmanager webhook shape, signed with
//! generated secrets ([`webhook`], [`webhook_secrets`]), delivered with retries
//! ([`delivery`]) and only to public addresses ([`egress`]).

pub mod config_validation;
pub mod delivery;
pub mod egress;
pub mod lifecycle;
pub mod model;
pub mod tenant_config;
pub mod webhook;
pub mod webhook_secrets;
