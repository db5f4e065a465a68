//! The plan of a RequestReply and of the internal trigger that brings it replies (the data
//! path is `crate::request_reply`).

use std::time::Duration;

use herald_broker::BrokerKey;

/// The start of the name of the internal trigger that watches a RequestReply's broker for
/// replies. `:` is not allowed in Kubernetes names, so it never meets a user's trigger.
pub const REPLY_TRIGGER_PREFIX: &str = "requestreply:";

/// The internal trigger of RequestReply `name`.
pub fn reply_trigger(name: &str) -> String {
    format!("{REPLY_TRIGGER_PREFIX}{name}")
}

/// A RequestReply as it runs.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestReplyPlan {
    pub generation: Option<i64>,
    pub broker: BrokerKey,
    pub correlation_attribute: String,
    pub reply_attribute: String,
    pub timeout: Duration,
}

impl RequestReplyPlan {
    pub fn of(
        spec: &herald_crds::RequestReplySpec,
        namespace: &str,
        generation: Option<i64>,
    ) -> Self {
        Self {
            generation,
            broker: BrokerKey::new(namespace, spec.broker_ref.name.clone()),
            correlation_attribute: spec.correlation_attribute().to_owned(),
            reply_attribute: spec.reply_attribute().to_owned(),
            timeout: spec.timeout(),
        }
    }
}

/// The internal trigger that brings a RequestReply the broker's events carrying its reply
/// attribute (CESQL `EXISTS`): no retries, no dead letters, read from the newest event.
pub fn trigger_plan(
    namespace: &str,
    name: &str,
    plan: &RequestReplyPlan,
) -> Option<super::TriggerSpecPlan> {
    let filter: herald_crds::trigger::SubscriptionsApiFilter = serde_json::from_value(
        serde_json::json!({"cesql": format!("EXISTS {}", plan.reply_attribute)}),
    )
    .ok()?;
    let filter = herald_triggers::filter::compile_filters(&[filter]).ok()?;
    let delivery = herald_crds::DeliverySpec {
        retry: Some(0),
        ..Default::default()
    };
    Some(super::TriggerSpecPlan {
        generation: plan.generation,
        broker: plan.broker.clone(),
        filter,
        subscriber: super::Target::Flow {
            kind: herald_crds::OwnAddressable::RequestReply,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            path: "/reply".to_owned(),
        },
        dead_letter_sink: None,
        trust: Default::default(),
        policy: herald_triggers::RetryPolicy::from_spec(&delivery),
        format: herald_crds::DeliveryFormat::Binary,
        ordered: false,
        start: herald_broker::StartFrom::Latest,
        reply: None,
    })
}
