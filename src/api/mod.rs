//! The admin API: Herald's resources in the Kubernetes API's shape, the dead-letter store of
//! each trigger, live tails of brokers, and the console's statistics (`/stats/v1/...`).

mod audit;
mod auth;
mod dead_letters;
#[cfg(test)]
mod fuzz;
mod graph;
pub mod history;
pub mod oidc;
mod prom_text;
mod resources;
pub mod roles;
mod stats;
mod tail;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use herald_broker::Ingress;

pub use auth::{check_exposure, AdminOidc};

use crate::control::ControlPlane;

#[derive(Clone)]
pub struct ApiState {
    /// Changes take it for writing; reads (objects with their status, dead-letter
    /// contexts) share it.
    pub control: Arc<tokio::sync::RwLock<ControlPlane>>,
    pub ingress: Arc<Ingress>,
    /// Ends live tails when Herald shuts down, so they do not hold the listener open.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// The last hour of Herald's own metrics, for `/stats/v1/...`.
    pub history: history::History,
}

/// The API routes; `token` (when set) guards every route but the probes and `/metrics`,
/// which the caller merges in.
pub fn router(state: ApiState) -> Router {
    let namespaced = "/apis/{group}/{version}/namespaces/{namespace}/{plural}";
    let triggers = "/apis/eventing.knative.dev/v1/namespaces/{namespace}/triggers/{name}";
    Router::new()
        .route(
            "/apis/{group}/{version}/{plural}",
            get(resources::list_all_namespaces),
        )
        .route(namespaced, get(resources::list).post(resources::create))
        .route(
            &format!("{namespaced}/{{name}}"),
            get(resources::get)
                .put(resources::replace)
                .delete(resources::delete),
        )
        .route(
            &format!("{triggers}/deadletters"),
            get(dead_letters::list).delete(dead_letters::purge),
        )
        .route(
            &format!("{triggers}/deadletters/redrive"),
            post(dead_letters::redrive),
        )
        .route(
            &format!("{triggers}/deadletters/{{id}}"),
            get(dead_letters::show),
        )
        .route(
            "/apis/eventing.knative.dev/v1/namespaces/{namespace}/brokers/{name}/events",
            get(tail::events),
        )
        .route(&format!("{triggers}/stats"), get(stats::trigger))
        .route("/stats/v1/overview", get(stats::overview))
        .route("/stats/v1/history", get(stats::history))
        .route("/stats/v1/watch", get(stats::watch))
        .route("/stats/v1/graph", get(graph::graph))
        .with_state(state)
}

/// Guards `router` with the bearer token, when one is set (a blank one counts as none), and
/// with OIDC tokens and roles, when `oidc` is set.
pub fn protect(router: Router, token: Option<&str>, oidc: Option<AdminOidc>) -> Router {
    let token: Option<Arc<str>> = crate::cli::token(token).map(Arc::from);
    router.layer(axum::middleware::from_fn_with_state(
        Arc::new(auth::AdminAuth { token, oidc }),
        auth::require_token,
    ))
}
