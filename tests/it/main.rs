//! Herald's integration tests, one test binary: the modules below were separate binaries that
//! each compiled `common` again. Run one file's tests with its module path, e.g.
//! `scripts/test --test it e2e_sled::` (see README "Development").
#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "test code"
)]

#[macro_use]
mod common;
mod scenarios;

mod admin_api;
mod bench_smoke;
mod cesql_tck;
mod cli;
mod connections;
mod console;
mod controller;
mod controller_oidc;
mod e2e_kafka;
mod e2e_nats;
mod e2e_sled;
mod filter_cli;
mod flows;
mod interop;
mod knative_yaml;
mod kubernetes;
mod oidc;
mod sources;
mod tls;
mod transforms;
