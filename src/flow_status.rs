//! Knative-shaped status of channels, Subscriptions, Sequences and Parallels: the admin API
//! and the controller report the same conditions from the same runtime.

use herald_broker::BrokerKey;
use herald_crds::channel::{ChannelStatus, SubscriberStatus};
use herald_crds::flows::{
    ChannelStatusEntry, ParallelBranchStatus, ParallelStatus, SequenceStatus,
    SubscriptionStatusEntry,
};
use herald_crds::status::Addressable;
use herald_crds::subscription::{PhysicalSubscription, SubscriptionStatus};
use herald_crds::{Condition, KReference, OwnAddressable};

use crate::config::flows::{self, ChannelRun, FlowRun};
use crate::config::Desired;
use crate::kinds;
use crate::runtime::Runtime;

/// The status of a channel, Subscription, Sequence or Parallel that is in the desired
/// state, or `None` for another kind (or one that is not). `base_url` is where clients
/// reach Herald's ingress (its own listener, or the controller's `--external-url`).
pub fn status(
    runtime: &Runtime,
    base_url: &str,
    desired: &Desired,
    kind: &str,
    namespace: &str,
    name: &str,
    generation: Option<i64>,
) -> Option<serde_json::Value> {
    let key = (namespace.to_owned(), name.to_owned());
    let value = if kind == kinds::SUBSCRIPTION.kind {
        let run = desired.flows.subscriptions.get(&key)?;
        let generation = generation.or(run.generation);
        serde_json::to_value(subscription(runtime, namespace, name, generation))
    } else if kind == kinds::SEQUENCE.kind {
        let sequence = desired.flows.sequences.get(&key)?;
        let generation = generation.or(sequence.generation);
        serde_json::to_value(sequence_status(
            runtime, base_url, namespace, name, sequence, generation,
        ))
    } else if kind == kinds::PARALLEL.kind {
        let parallel = desired.flows.parallels.get(&key)?;
        let generation = generation.or(parallel.generation);
        serde_json::to_value(parallel_status(
            runtime, base_url, namespace, name, parallel, generation,
        ))
    } else if [
        kinds::CHANNEL.kind,
        kinds::IN_MEMORY_CHANNEL.kind,
        kinds::KAFKA_CHANNEL.kind,
    ]
    .contains(&kind)
    {
        let channel = desired
            .flows
            .channels
            .get(&key)
            .filter(|c| c.kind == kind)?;
        serde_json::to_value(channel_status(
            runtime, base_url, desired, namespace, name, channel, generation,
        ))
    } else if kind == kinds::EVENT_TRANSFORM.kind {
        let plan = desired.flows.transforms.get(&key)?;
        let generation = generation.or(plan.generation);
        serde_json::to_value(transform_status(
            runtime, base_url, namespace, name, plan, generation,
        ))
    } else if kind == kinds::REQUEST_REPLY.kind {
        let plan = desired.flows.request_replies.get(&key)?;
        let generation = generation.or(plan.generation);
        serde_json::to_value(request_reply_status(
            runtime, base_url, namespace, name, plan, generation,
        ))
    } else {
        return None;
    };
    value.ok()
}

fn condition(type_: &str, ok: bool, reason: &str, message: &str) -> Condition {
    if ok {
        Condition::new(type_, true, None, None)
    } else {
        Condition::new(type_, false, Some(reason), Some(message.to_owned()))
    }
}

/// Knative's not-ready-yet form of a condition (Sequence's are Unknown, not False).
fn unknown(mut condition: Condition) -> Condition {
    if condition.status == "False" {
        condition.status = "Unknown".into();
    }
    condition
}

/// `status.address` and `status.addresses` of one of Herald's addressables (https first
/// when TLS is on), each with its audience while sender identity is on (Knative writes it
/// into every entry).
fn addresses(
    runtime: &Runtime,
    base_url: &str,
    kind: OwnAddressable,
    namespace: &str,
    name: &str,
) -> (Addressable, Vec<Addressable>) {
    let (mut address, mut addresses) = runtime
        .transport()
        .addresses(base_url, &kind.path(namespace, name));
    if runtime.sender_identity_enabled() {
        let audience = flows::audience_of(kind, namespace, name);
        for each in std::iter::once(&mut address).chain(addresses.iter_mut()) {
            each.audience = Some(audience.clone());
        }
    }
    (address, addresses)
}

/// Whether a channel's stream is open and accepting.
fn channel_running(runtime: &Runtime, namespace: &str, name: &str) -> bool {
    runtime
        .deps()
        .ingress
        .brokers()
        .contains(&BrokerKey::channel(namespace, name))
}

/// Whether a Subscription's delivery runs.
fn subscription_running(runtime: &Runtime, namespace: &str, name: &str) -> bool {
    runtime
        .trigger(&(namespace.to_owned(), flows::subscription_trigger(name)))
        .is_some()
}

fn channel_status(
    runtime: &Runtime,
    base_url: &str,
    desired: &Desired,
    namespace: &str,
    name: &str,
    channel: &ChannelRun,
    generation: Option<i64>,
) -> ChannelStatus {
    let running = channel_running(runtime, namespace, name);
    let dead_letter_sink = channel
        .delivery
        .as_ref()
        .and_then(|d| d.dead_letter_sink.as_ref())
        .map(|d| runtime.url(&crate::config::Target::of(d, namespace)));
    let mut conditions = Vec::new();
    if channel.kind == kinds::CHANNEL.kind {
        conditions.push(condition(
            "BackingChannelReady",
            running,
            "BackingChannelNotConfigured",
            "the channel's stream is not open",
        ));
    }
    conditions.push(condition(
        "Addressable",
        running,
        "EmptyHostname",
        "the channel's stream is not open",
    ));
    conditions.push(match &dead_letter_sink {
        Some(_) => Condition::new("DeadLetterSinkResolved", true, None, None),
        None => Condition::new(
            "DeadLetterSinkResolved",
            true,
            Some("DeadLetterSinkNotConfigured"),
            Some("No dead letter sink is configured.".into()),
        ),
    });
    conditions.push(condition(
        "Ready",
        running,
        "ChannelNotRunning",
        "the channel's stream is not open",
    ));
    let subscribers = desired
        .flows
        .subscriptions
        .iter()
        .filter(|((ns, _), run)| ns == namespace && run.channel == name)
        .map(|((_, sub), _)| {
            let ready = subscription_running(runtime, namespace, sub);
            SubscriberStatus {
                uid: None,
                observed_generation: None,
                ready: if ready { "True" } else { "False" }.into(),
                message: (!ready).then(|| "the subscription's delivery is not running".into()),
                name: Some(sub.clone()),
            }
        })
        .collect();
    let (address, all_addresses) =
        addresses(runtime, base_url, OwnAddressable::Channel, namespace, name);
    let is_channel = channel.kind == kinds::CHANNEL.kind;
    ChannelStatus {
        observed_generation: generation,
        conditions,
        // Knative's Channel copies its backing channel's `address` but not `addresses`.
        addresses: if is_channel {
            Vec::new()
        } else {
            all_addresses
        },
        address: Some(address),
        // Filled in by `policy::status::decorate`.
        policies: Vec::new(),
        subscribers,
        dead_letter_sink_uri: dead_letter_sink,
        channel: is_channel.then(|| KReference {
            api_version: channel.backing_api_version.clone(),
            kind: channel.backing_kind.clone(),
            name: name.to_owned(),
            namespace: Some(namespace.to_owned()),
        }),
    }
}

/// `ReferencesResolved`, `AddedToChannel`, `ChannelReady` and `Ready`, with the URLs the
/// delivery uses and the events it parked.
pub fn subscription(
    runtime: &Runtime,
    namespace: &str,
    name: &str,
    generation: Option<i64>,
) -> SubscriptionStatus {
    let running = runtime.trigger(&(namespace.to_owned(), flows::subscription_trigger(name)));
    let Some((plan, _)) = running else {
        let message = "the subscription's delivery is not running";
        return SubscriptionStatus {
            observed_generation: generation,
            conditions: vec![
                condition(
                    "ChannelReady",
                    false,
                    "SubscriptionNotMarkedReadyByChannel",
                    message,
                ),
                condition(
                    "Ready",
                    false,
                    "SubscriptionNotMarkedReadyByChannel",
                    message,
                ),
            ],
            ..SubscriptionStatus::default()
        };
    };
    let reply_uri = match &plan.reply {
        herald_triggers::ReplyTarget::Http(url) => Some(url.clone()),
        herald_triggers::ReplyTarget::Log(stream) => Some(stream_url(runtime, stream)),
        herald_triggers::ReplyTarget::Drop => None,
    };
    SubscriptionStatus {
        observed_generation: generation,
        conditions: [
            "ReferencesResolved",
            "AddedToChannel",
            "ChannelReady",
            "Ready",
        ]
        .into_iter()
        .map(|type_| Condition::new(type_, true, None, None))
        .collect(),
        physical_subscription: Some(PhysicalSubscription {
            subscriber_uri: Some(plan.subscriber.clone()),
            reply_uri,
            dead_letter_sink_uri: plan.dead_letter_sink.clone(),
        }),
        parked_events: None,
    }
}

/// The address a reply stream is reached at: a broker's, or a channel's.
fn stream_url(runtime: &Runtime, stream: &BrokerKey) -> String {
    let base = runtime.ingress_base_url();
    match stream
        .name
        .strip_prefix(herald_broker::log::CHANNEL_STREAM_PREFIX)
    {
        Some(channel) => format!(
            "{base}{}",
            OwnAddressable::Channel.path(&stream.namespace, channel)
        ),
        None => format!("{base}/{}/{}", stream.namespace, stream.name),
    }
}

fn channel_entry(
    runtime: &Runtime,
    namespace: &str,
    name: String,
    template_kind: (&str, &str),
) -> ChannelStatusEntry {
    let ready = channel_running(runtime, namespace, &name);
    ChannelStatusEntry {
        ready: condition(
            "Ready",
            ready,
            "NotAddressable",
            "the channel's stream is not open",
        ),
        channel: KReference {
            api_version: template_kind.0.to_owned(),
            kind: template_kind.1.to_owned(),
            name,
            namespace: Some(namespace.to_owned()),
        },
    }
}

fn subscription_entry(runtime: &Runtime, namespace: &str, name: String) -> SubscriptionStatusEntry {
    let ready = subscription_running(runtime, namespace, &name);
    SubscriptionStatusEntry {
        ready: condition(
            "Ready",
            ready,
            "NoReady",
            "the subscription's delivery is not running",
        ),
        subscription: KReference {
            api_version: "messaging.knative.dev/v1".into(),
            kind: "Subscription".into(),
            name,
            namespace: Some(namespace.to_owned()),
        },
    }
}

/// Ready conditions of a flow from its children: `ChannelsReady`, `SubscriptionsReady`,
/// `Addressable` and `Ready`.
fn flow_conditions(channels_ready: bool, subscriptions_ready: bool) -> Vec<Condition> {
    let all = channels_ready && subscriptions_ready;
    vec![
        condition(
            "ChannelsReady",
            channels_ready,
            "ChannelsNotReady",
            "not every channel is ready",
        ),
        condition(
            "SubscriptionsReady",
            subscriptions_ready,
            "SubscriptionsNotReady",
            "not every subscription is ready",
        ),
        condition(
            "Addressable",
            channels_ready,
            "emptyAddress",
            "the first channel is not ready",
        ),
        condition(
            "Ready",
            all,
            "NotReady",
            "not every channel and subscription is ready",
        ),
    ]
}

fn sequence_status(
    runtime: &Runtime,
    base_url: &str,
    namespace: &str,
    name: &str,
    sequence: &FlowRun,
    generation: Option<i64>,
) -> SequenceStatus {
    let (api_version, kind) = &sequence.template;
    let children = 0..sequence.children;
    let channel_statuses: Vec<_> = children
        .clone()
        .map(|i| {
            channel_entry(
                runtime,
                namespace,
                flows::sequence_child(name, i),
                (api_version, kind),
            )
        })
        .collect();
    let subscription_statuses: Vec<_> = children
        .map(|i| subscription_entry(runtime, namespace, flows::sequence_child(name, i)))
        .collect();
    let channels_ready = channel_statuses.iter().all(|c| c.ready.status == "True");
    let subscriptions_ready = subscription_statuses
        .iter()
        .all(|s| s.ready.status == "True");
    SequenceStatus {
        observed_generation: generation,
        // Knative reports a Sequence that is not ready yet as Unknown.
        conditions: flow_conditions(channels_ready, subscriptions_ready)
            .into_iter()
            .map(unknown)
            .collect(),
        // Knative's Sequence copies its first channel's `address` only: http when plain
        // HTTP is served too.
        address: Some(addresses(runtime, base_url, OwnAddressable::Sequence, namespace, name).0),
        channel_statuses,
        subscription_statuses,
        // Filled in by `policy::status::decorate`.
        policies: Vec::new(),
    }
}

fn parallel_status(
    runtime: &Runtime,
    base_url: &str,
    namespace: &str,
    name: &str,
    parallel: &FlowRun,
    generation: Option<i64>,
) -> ParallelStatus {
    let (api_version, kind) = &parallel.template;
    let template = (api_version.as_str(), kind.as_str());
    let ingress = channel_entry(runtime, namespace, flows::parallel_ingress(name), template);
    let branch_statuses: Vec<_> = (0..parallel.children)
        .map(|i| ParallelBranchStatus {
            filter_subscription_status: subscription_entry(
                runtime,
                namespace,
                flows::parallel_filter(name, i),
            ),
            filter_channel_status: channel_entry(
                runtime,
                namespace,
                flows::parallel_branch(name, i),
                template,
            ),
            subscriber_subscription_status: subscription_entry(
                runtime,
                namespace,
                flows::parallel_branch(name, i),
            ),
        })
        .collect();
    let channels_ready = ingress.ready.status == "True"
        && branch_statuses
            .iter()
            .all(|b| b.filter_channel_status.ready.status == "True");
    let subscriptions_ready = branch_statuses.iter().all(|b| {
        b.filter_subscription_status.ready.status == "True"
            && b.subscriber_subscription_status.ready.status == "True"
    });
    ParallelStatus {
        observed_generation: generation,
        conditions: flow_conditions(channels_ready, subscriptions_ready),
        address: Some(addresses(runtime, base_url, OwnAddressable::Parallel, namespace, name).0),
        ingress_channel_status: Some(ingress),
        branch_statuses,
        // Filled in by `policy::status::decorate`.
        policies: Vec::new(),
    }
}

/// An EventTransform runs in process: its transformation is ready once loaded (the
/// expressions compiled), its address is Herald's ingress.
fn transform_status(
    runtime: &Runtime,
    base_url: &str,
    namespace: &str,
    name: &str,
    plan: &crate::transform::TransformPlan,
    generation: Option<i64>,
) -> herald_crds::EventTransformStatus {
    let (address, all_addresses) = addresses(
        runtime,
        base_url,
        OwnAddressable::EventTransform,
        namespace,
        name,
    );
    let sink_uri = plan.sink.as_ref().map(|sink| runtime.url(sink));
    let conditions = vec![
        Condition::new("TransformationReady", true, None, None),
        Condition::new("JsonataDeploymentReady", true, None, None),
        Condition::new("JsonataSinkBindingReady", true, None, None),
        Condition::new("Addressable", true, None, None),
        Condition::new(
            "EventPoliciesReady",
            true,
            Some("NotImplemented"),
            Some("Herald does not implement EventPolicies".into()),
        ),
        Condition::new("Ready", true, None, None),
    ];
    herald_crds::EventTransformStatus {
        observed_generation: generation,
        conditions,
        addresses: all_addresses,
        address: Some(address),
        sink_uri,
        // Filled in by `policy::status::decorate`.
        policies: Vec::new(),
    }
}

/// A RequestReply is ready when its broker accepts events and its reply trigger runs.
fn request_reply_status(
    runtime: &Runtime,
    base_url: &str,
    namespace: &str,
    name: &str,
    plan: &crate::request_reply::RequestReplyPlan,
    generation: Option<i64>,
) -> herald_crds::RequestReplyStatus {
    let broker_ready = runtime.deps().ingress.brokers().contains(&plan.broker);
    let trigger_ready = runtime
        .trigger(&(
            namespace.to_owned(),
            crate::request_reply::reply_trigger(name),
        ))
        .is_some();
    let broker = match broker_ready {
        true => Condition::new("BrokerReady", true, None, None),
        false => unknown(Condition::new(
            "BrokerReady",
            false,
            Some("NotFound"),
            Some(format!("broker {} does not exist", plan.broker)),
        )),
    };
    let triggers = match trigger_ready {
        true => Condition::new("TriggersReady", true, None, None),
        false => unknown(Condition::new(
            "TriggersReady",
            false,
            Some("TriggersNotReady"),
            Some("the reply trigger waits for the broker".into()),
        )),
    };
    let ready = broker_ready && trigger_ready;
    let (address, all_addresses) = addresses(
        runtime,
        base_url,
        OwnAddressable::RequestReply,
        namespace,
        name,
    );
    let conditions = vec![
        broker,
        triggers,
        Condition::new("Addressable", true, None, None),
        Condition::new(
            "EventPoliciesReady",
            true,
            Some("NotImplemented"),
            Some("Herald does not implement EventPolicies".into()),
        ),
        match ready {
            true => Condition::new("Ready", true, None, None),
            false => unknown(condition(
                "Ready",
                false,
                "NotReady",
                "the broker or the reply trigger is not ready",
            )),
        },
    ];
    herald_crds::RequestReplyStatus {
        observed_generation: generation,
        conditions,
        addresses: all_addresses,
        address: Some(address),
    }
}
