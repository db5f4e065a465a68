//! The end-to-end scenario list on the embedded sled log.

mod common;
mod scenarios;

use common::herald::Sled;

every_scenario!(Sled);

// Configuration checks happen before any backend is touched: run them once.
on_backend!(Sled =>
    ingress::invalid_config_is_rejected_before_binding,
    filters::invalid_filters_are_rejected_at_load,
);
