//! Herald's resource model: Knative-compatible Broker and Trigger types.
//!
//! The same structs parse YAML files under `herald serve`, bodies of the admin API and
//! CRD objects on a cluster, so every shape here follows Knative's field names exactly.
//! Validation returns [`FieldError`]s that name the JSON path of the bad field.
#![forbid(unsafe_code)]

pub mod api_server_source;
pub mod broker;
pub mod channel;
pub mod container_source;
pub mod delivery;
pub mod destination;
pub mod duration;
pub mod event_policy;
pub mod event_type;
pub mod flows;
pub mod flows_validation;
pub mod kafka_source;
pub mod manifests;
pub mod nats_source;
pub mod ping_source;
pub mod sink_binding;
pub mod source;
pub mod status;
pub mod subscription;
pub mod transform;
pub mod trigger;
pub mod validation;
pub mod webhook_source;

pub use api_server_source::{ApiServerSource, ApiServerSourceSpec, LabelSelector};
pub use broker::{Broker, BrokerSpec, BrokerStatus};
pub use channel::{
    Channel, ChannelSpec, ChannelStatus, ChannelTemplateSpec, InMemoryChannel, InMemoryChannelSpec,
    KafkaChannel, KafkaChannelSpec,
};
pub use container_source::{ContainerSource, ContainerSourceSpec};
pub use delivery::{BackoffPolicy, DeliveryFormat, DeliverySpec};
pub use destination::{Destination, KReference, OwnAddressable};
pub use event_policy::{AppliedEventPolicy, EventPolicy, EventPolicySpec, EventPolicyStatus};
pub use event_type::{
    EventAttributeDefinition, EventType, EventTypeSeen, EventTypeSpec, EventTypeStatus,
    EventTypeV1beta2,
};
pub use flows::{Parallel, ParallelSpec, ParallelStatus, Sequence, SequenceSpec, SequenceStatus};
pub use kafka_source::{
    KafkaNetSpec, KafkaSaslSpec, KafkaSource, KafkaSourceSpec, KafkaTlsSpec, SecretKeySelector,
    SecretValueFromSource,
};
pub use nats_source::{JetStreamSourceSpec, NatsSource, NatsSourceSpec};
pub use ping_source::{PingSource, PingSourceSpec};
pub use sink_binding::{BindingSubject, SinkBinding, SinkBindingSpec};
pub use source::{CloudEventOverrides, SourceSpec, SourceStatus};
pub use status::Condition;
pub use subscription::{Subscription, SubscriptionSpec, SubscriptionStatus};
pub use transform::{
    EventTransform, EventTransformSpec, EventTransformStatus, RequestReply, RequestReplySpec,
    RequestReplyStatus,
};
pub use trigger::{SubscriptionsApiFilter, Trigger, TriggerFilter, TriggerSpec, TriggerStatus};
pub use validation::FieldError;
pub use webhook_source::{
    SecretFrom, TypeFromHeader, WebhookAuth, WebhookScheme, WebhookSource, WebhookSourceSpec,
};

/// The namespace a resource lives in when its metadata names none.
pub const DEFAULT_NAMESPACE: &str = "default";

/// The annotation that selects a broker implementation (Knative's broker class).
pub const BROKER_CLASS_ANNOTATION: &str = "eventing.knative.dev/broker.class";
