//! Triggers: filters, delivery with Knative's retry semantics, and the dispatcher loop that
//! moves each trigger along its broker's log.
#![forbid(unsafe_code)]

pub mod attempt;
pub mod auth;
pub mod cesql;
pub mod dispatcher;
pub mod filter;
pub mod index;
pub mod metrics;
pub mod plan;
pub mod process;
pub mod retry;
pub mod router;
pub mod stats;

pub use dispatcher::{run_dispatcher, DispatcherHandle};
pub use filter::{AttributesFilter, Filter};
pub use plan::{ReplyTarget, TriggerPlan};
pub use retry::RetryPolicy;
pub use stats::TriggerStats;
