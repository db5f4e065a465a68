//! A trigger as the data plane runs it: resolved URLs, compiled filter, retry policy.

use std::time::Duration;

use herald_broker::BrokerKey;
use herald_crds::DeliveryFormat;

use crate::{Filter, RetryPolicy};

/// Knative's annotation for in-order delivery, honoured on every backend.
pub const DELIVERY_ORDER_ANNOTATION: &str = "kafka.eventing.knative.dev/delivery.order";

/// Default bound of deliveries in flight per trigger.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 100;
/// How often a dispatcher commits its low-water mark.
pub const DEFAULT_COMMIT_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Clone, Debug, PartialEq)]
pub struct TriggerPlan {
    pub namespace: String,
    pub name: String,
    pub broker: BrokerKey,
    pub filter: Filter,
    pub subscriber: String,
    pub dead_letter_sink: Option<String>,
    pub policy: RetryPolicy,
    pub format: DeliveryFormat,
    pub max_in_flight: usize,
    /// Deliver in order per `partitionkey` (Knative's `delivery.order: ordered`).
    pub ordered: bool,
    /// Where the subscriber's reply events go.
    pub reply: ReplyTarget,
    /// Its sender identity and its targets' audiences (empty: no tokens).
    pub auth: TriggerAuth,
    /// The `CACerts` of its destinations.
    pub trust: TargetTrust,
}

/// A trigger's sender identity (Knative's `authentication-oidc`): with an identity, each
/// request to a target with an audience carries a token for that audience.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TriggerAuth {
    /// `None` while the feature is off.
    pub identity: Option<crate::auth::SenderIdentity>,
    pub subscriber_audience: Option<String>,
    /// Of an HTTP reply target.
    pub reply_audience: Option<String>,
    pub dead_letter_audience: Option<String>,
}

impl TriggerAuth {
    /// What a request to a target with `audience` carries, given where tokens come from.
    pub fn credentials<'a>(
        &'a self,
        tokens: Option<&'a dyn crate::auth::TokenSource>,
        audience: &'a Option<String>,
    ) -> Option<crate::auth::Credentials<'a>> {
        Some(crate::auth::Credentials {
            tokens: tokens?,
            sender: self.identity.as_ref()?,
            audience: audience.as_deref().filter(|a| !a.is_empty())?,
        })
    }
}

/// The CA certificates each destination's own `CACerts` adds to the trusted roots for
/// HTTPS (Knative's `subscriberCACerts`, `replyCACerts`, `deadLetterSinkCACerts`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TargetTrust {
    pub subscriber: Option<herald_tls::CaCerts>,
    pub reply: Option<herald_tls::CaCerts>,
    pub dead_letter_sink: Option<herald_tls::CaCerts>,
}

/// Where a subscriber's reply events go: a trigger's go back to its broker; a
/// Subscription's to its `spec.reply`, or nowhere without one (Knative drops them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplyTarget {
    /// Appended to this stream of Herald's log (a broker, or a channel's stream), through
    /// the ingress's checks (TTL, arrival time).
    Log(BrokerKey),
    /// POSTed to this URL; an answer other than 2xx fails the delivery (retried, then
    /// dead-lettered with `knativeerrordest` set to this URL).
    Http(String),
    /// Dropped.
    Drop,
}

impl TriggerPlan {
    /// The name of the trigger's durable consumer of its broker's log.
    pub fn consumer_name(&self) -> String {
        consumer_name(&self.name)
    }
}

/// The durable consumer of the trigger called `trigger` (unique within its broker).
pub fn consumer_name(trigger: &str) -> String {
    format!("trigger-{trigger}")
}
