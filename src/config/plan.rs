//! The desired state as validation leaves it: typed plans of every broker, trigger and source,
//! each field parsed once (annotations, filters, delivery, destinations). The runtime, the
//! admin API's status and the controller read these; none parses the objects again.

use std::collections::BTreeMap;
use std::sync::Arc;

use herald_broker::log::BrokerSettings;
use herald_broker::{BrokerKey, StartFrom};
use herald_crds::{DeliveryFormat, Destination, OwnAddressable};
use herald_triggers::{Filter, RetryPolicy};

use crate::kinds::{Kind, ObjectKey};
use crate::source_kinds::SourceRunner;

/// Namespaced name of a trigger.
pub type TriggerKey = (String, String);

/// The validated desired state: every broker, trigger and source to run.
#[derive(Clone, Debug, Default)]
pub struct Desired {
    pub brokers: BTreeMap<BrokerKey, BrokerPlan>,
    pub triggers: BTreeMap<TriggerKey, TriggerSpecPlan>,
    /// Every source, of every kind. A source's sink broker need not exist yet: the source
    /// waits (status `SinkProvided=False`) until it does.
    pub sources: BTreeMap<ObjectKey, SourcePlan>,
    /// Triggers whose broker does not exist yet, with that broker: accepted (as Knative
    /// does, `Ready=False BrokerDoesNotExist`) and started once the broker appears.
    pub waiting_triggers: BTreeMap<TriggerKey, BrokerKey>,
    /// Channels, Subscriptions, Sequences and Parallels; their channels and Subscriptions
    /// also run as `brokers` and `triggers`, under internal names ([`crate::config::flows`]).
    pub flows: crate::config::flows::Flows,
    /// Declared EventTypes; the broker they refer to need not exist
    /// (`ReferenceExists=False`).
    pub event_types: BTreeMap<ObjectKey, EventTypePlan>,
    /// EventPolicies, the addressables they may apply to and the senders they may name.
    pub policies: crate::config::policy_plan::Policies,
}

impl Desired {
    /// One log line per trigger that waits for its broker.
    pub fn log_waiting_triggers(&self) {
        for ((namespace, name), broker) in &self.waiting_triggers {
            tracing::warn!(
                trigger = %format!("{namespace}/{name}"),
                %broker,
                "the trigger's broker does not exist: the trigger waits for it (Ready=False BrokerDoesNotExist)"
            );
        }
    }
}

/// Where events go: one of Herald's brokers (by its key, wherever Herald listens), one of
/// its channels, Sequences or Parallels, or a URL. A `ref` to anything else is a URL by now
/// (`--resolve`, or the controller's resolver).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A Broker `ref`, with the destination's `uri` as a path under the broker's address.
    Broker { broker: BrokerKey, path: String },
    /// A `ref` to a channel (Channel, InMemoryChannel, KafkaChannel), Sequence or Parallel,
    /// with the destination's `uri` as a path under its address.
    Flow {
        kind: OwnAddressable,
        namespace: String,
        name: String,
        path: String,
    },
    /// A URL, with the destination's `audience` (its tokens' `aud`), if any.
    Url {
        url: String,
        audience: Option<String>,
    },
}

impl Target {
    /// The target of a destination of an object in `namespace` (a `ref` without a namespace
    /// is in the object's).
    pub fn of(destination: &Destination, namespace: &str) -> Self {
        match &destination.reference {
            Some(reference) => {
                let namespace = reference.namespace.as_deref().unwrap_or(namespace);
                let path = destination.uri.clone().unwrap_or_default();
                match OwnAddressable::of(reference) {
                    Some(kind) if kind != OwnAddressable::Broker => Target::Flow {
                        kind,
                        namespace: namespace.to_owned(),
                        name: reference.name.clone(),
                        path,
                    },
                    _ => Target::Broker {
                        broker: BrokerKey::new(namespace, reference.name.clone()),
                        path,
                    },
                }
            }
            None => Target::Url {
                url: destination.uri.clone().unwrap_or_default(),
                audience: destination.audience.clone().filter(|a| !a.is_empty()),
            },
        }
    }

    /// The broker it names, if any.
    pub fn broker(&self) -> Option<&BrokerKey> {
        match self {
            Target::Broker { broker, .. } => Some(broker),
            Target::Flow { .. } | Target::Url { .. } => None,
        }
    }

    /// The log stream a reply to it is appended to directly: a broker's, or the channel
    /// behind a channel, Sequence or Parallel (none with a path or a URL: those are posted).
    pub fn stream(&self) -> Option<BrokerKey> {
        match self {
            Target::Broker { broker, path } if path.is_empty() => Some(broker.clone()),
            Target::Flow {
                kind,
                namespace,
                name,
                path,
            } if path.is_empty() && crate::config::flows::channel_behind(*kind, name).is_some() => {
                Some(crate::config::flows::stream_of(*kind, namespace, name))
            }
            _ => None,
        }
    }

    /// Its URL; Herald's own addressables are under `base_url` (`http://host:port` of an
    /// ingress).
    pub fn url(&self, base_url: &str) -> String {
        match self {
            Target::Broker { broker, path } => {
                format!("{base_url}/{}/{}{path}", broker.namespace, broker.name)
            }
            Target::Flow {
                kind,
                namespace,
                name,
                path,
            } => format!("{base_url}{}{path}", kind.path(namespace, name)),
            Target::Url { url, .. } => url.clone(),
        }
    }

    /// The audience of its tokens: a URL's own, or that of Herald's addressable
    /// ([`crate::config::flows::audience_of`]).
    pub fn audience(&self) -> Option<String> {
        match self {
            Target::Url { audience, .. } => audience.clone(),
            Target::Broker { broker, .. } => Some(crate::identity::naming::stream_audience(broker)),
            Target::Flow {
                kind,
                namespace,
                name,
                ..
            } => Some(crate::config::flows::audience_of(*kind, namespace, name)),
        }
    }
}

/// A broker as it runs.
#[derive(Clone, Debug, PartialEq)]
pub struct BrokerPlan {
    pub generation: Option<i64>,
    /// `eventing.knative.dev/broker.class`: the backend of its log.
    pub class: Option<String>,
    /// The `herald.dev/*` log settings.
    pub settings: BrokerSettings,
    /// Its `spec.delivery`: the default of its triggers.
    pub delivery: Option<herald_crds::DeliverySpec>,
    pub dead_letter_sink: Option<Target>,
    /// The event catalog's `herald.dev/*` settings.
    pub catalog: crate::annotations::BrokerCatalogSettings,
}

/// An EventType as ingress checks it and its status reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct EventTypePlan {
    pub generation: Option<i64>,
    /// `Kind name` of `spec.reference`, when set.
    pub reference: Option<String>,
    /// The broker it refers to, when the reference is a Broker.
    pub broker: Option<BrokerKey>,
    /// The `type` attribute's value.
    pub event_type: String,
    /// The `source` attribute's value, when set: only events from it match.
    pub source: Option<String>,
    pub schema: Option<SchemaSource>,
}

/// Where an EventType's JSON Schema comes from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SchemaSource {
    /// `spec.schemaData`.
    Inline(String),
    /// The `schemadata` attribute: read once when loaded.
    Url(String),
}

impl BrokerPlan {
    /// What the object says, without the checks of validation: for the status of a broker
    /// that is not in the desired state.
    pub fn unchecked(broker: &herald_crds::Broker) -> Self {
        let namespace = broker
            .metadata
            .namespace
            .as_deref()
            .unwrap_or(herald_crds::DEFAULT_NAMESPACE);
        Self {
            generation: broker.metadata.generation,
            class: crate::annotations::broker_class(&broker.metadata).map(str::to_owned),
            settings: BrokerSettings::default(),
            catalog: Default::default(),
            delivery: broker.spec.delivery.clone(),
            dead_letter_sink: broker
                .spec
                .delivery
                .as_ref()
                .and_then(|d| d.dead_letter_sink.as_ref())
                .map(|d| Target::of(d, namespace)),
        }
    }
}

/// A trigger as it runs, but for the addresses of Herald's own brokers (the runtime knows
/// where it listens) and the in-flight bound (a flag).
#[derive(Clone, Debug, PartialEq)]
pub struct TriggerSpecPlan {
    pub generation: Option<i64>,
    pub broker: BrokerKey,
    pub filter: Filter,
    pub subscriber: Target,
    /// The trigger's, or else its broker's.
    pub dead_letter_sink: Option<Target>,
    /// The trigger's delivery, or else its broker's, or else Knative's default.
    pub policy: RetryPolicy,
    pub format: DeliveryFormat,
    /// `kafka.eventing.knative.dev/delivery.order: ordered`.
    pub ordered: bool,
    /// `herald.dev/start-from`: where a new consumer starts.
    pub start: StartFrom,
    /// Where the subscriber's replies go: a trigger's broker; a Subscription's
    /// `spec.reply`, or nowhere (`None`).
    pub reply: Option<Target>,
    /// Its destinations' `CACerts`.
    pub trust: herald_triggers::plan::TargetTrust,
}

/// A source as it runs.
#[derive(Clone)]
pub struct SourcePlan {
    pub kind: &'static Kind,
    pub generation: Option<i64>,
    /// The spec, to tell a changed source from an unchanged one.
    pub spec: serde_json::Value,
    pub sink: Target,
    /// The sink's `CACerts`.
    pub sink_ca_certs: Option<herald_tls::CaCerts>,
    /// `ceOverrides.extensions`.
    pub overrides: BTreeMap<String, String>,
    /// Makes the running source; its kind's fields are parsed already.
    pub runner: Arc<dyn SourceRunner>,
}

impl std::fmt::Debug for SourcePlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourcePlan")
            .field("kind", &self.kind.kind)
            .field("generation", &self.generation)
            .field("sink", &self.sink)
            .finish_non_exhaustive()
    }
}
