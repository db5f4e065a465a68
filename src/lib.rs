//! Herald's control plane as a library: resources and their validation into typed plans
//! ([`config`]), the store of objects ([`store`]), the runtime that makes brokers,
//! dispatchers and sources match the plans ([`runtime`], [`sources`]), the control plane
//! that applies changes ([`control`]) and the status it reports ([`status`]). The `herald`
//! binary adds the CLI, the listeners, the admin API and the Kubernetes controller.
//!
//! Modules depend on each other one way (see ARCHITECTURE.md):
//! `kinds`, `annotations`, `apiserver_source` ← `source_kinds` ← `config` ← `store`,
//! `sources` ← `catalog` ← `runtime` ← `status` ← `control`.
#![forbid(unsafe_code)]

pub mod addresses;
pub mod annotations;
pub mod apiserver_source;
pub mod catalog;
pub mod config;
pub mod control;
pub mod flow_status;
pub mod identity;
pub mod kinds;
pub mod parked;
pub mod policy;
pub mod request_reply;
pub mod runtime;
pub mod source_kinds;
pub mod sources;
pub mod status;
pub mod store;
pub mod transform;
