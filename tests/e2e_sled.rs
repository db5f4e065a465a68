//! The end-to-end scenario list on the embedded sled log.

mod common;
mod scenarios;

use common::herald::Sled;

on_backend!(Sled =>
    ingress::status_codes,
    ingress::content_modes_preserve_everything,
    ingress::exact_filters,
    ingress::invalid_config_is_rejected_before_binding,
    delivery::linear_backoff,
    delivery::exponential_backoff,
    delivery::retry_after_is_honoured,
    delivery::timeout_then_dead_letter,
    delivery::dead_letter_extensions,
    delivery::parked_when_dead_letter_sink_is_down,
    delivery::replies_are_published_to_the_broker,
    delivery::ttl_stops_reply_loops,
    delivery::dead_subscriber_does_not_hold_back_others,
    delivery::ordered_per_partition_key,
    delivery::outbound_requests_are_bounded_across_triggers,
    durability::accepted_events_survive_sigkill,
    durability::readiness_and_health,
    filters::every_dialect,
    observability::metrics_count_exactly_the_traffic,
    observability::trace_context_reaches_subscribers,
    filters::invalid_filters_are_rejected_at_load,
    durability::sigterm_finishes_in_flight_deliveries,
);
