//! The end-to-end scenario list on Apache Kafka (one broker per test process, a topic prefix
//! per test), and Kafka's own checks.

mod common;
mod scenarios;

use common::herald::Kafka;

every_scenario!(Kafka::shared());
