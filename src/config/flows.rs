//! Channels, Subscriptions, Sequences and Parallels, run on what Herald already has.
//!
//! * A channel (Channel, InMemoryChannel, KafkaChannel) is a stream of its own in the log,
//!   [`BrokerKey::channel`]: durable like a broker's, never meeting one.
//! * A Subscription is a delivery from that stream without a filter, with Knative's
//!   retries, dead letters and parking, whose replies go to `spec.reply` (or nowhere).
//! * A Sequence and a Parallel are expanded into channels and Subscriptions exactly as
//!   Knative's controllers create them ([`expand_sequence`], [`expand_parallel`]), which then
//!   run like any others.
//!
//! All of it is pure: the config turns these kinds into internal brokers and triggers
//! ([`lower`]), the runtime runs those.

use std::collections::BTreeMap;

use herald_broker::log::BrokerSettings;
use herald_broker::{BrokerKey, StartFrom};
use herald_crds::channel::{ChannelTemplateSpec, KAFKA_CHANNEL_API_VERSION};
use herald_crds::{
    ChannelTemplateSpec as Template, DeliveryFormat, DeliverySpec, Destination, InMemoryChannel,
    InMemoryChannelSpec, KReference, KafkaChannel, KafkaChannelSpec, OwnAddressable, Parallel,
    Sequence, Subscription, SubscriptionSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::config::{BrokerPlan, Resource, Target, TriggerKey, TriggerSpecPlan};

/// The start of the name of the internal trigger that runs a Subscription. `:` is not
/// allowed in Kubernetes names, so it never meets a user's trigger.
pub const SUBSCRIPTION_TRIGGER_PREFIX: &str = "subscription:";

/// The name of the internal trigger that runs Subscription `name`.
pub fn subscription_trigger(name: &str) -> String {
    format!("{SUBSCRIPTION_TRIGGER_PREFIX}{name}")
}

/// Sequence channel and subscription `i`: `{sequence}-kn-sequence-{i}`, as Knative names them.
pub fn sequence_child(sequence: &str, i: usize) -> String {
    format!("{sequence}-kn-sequence-{i}")
}

/// A Parallel's ingress channel: `{parallel}-kn-parallel`.
pub fn parallel_ingress(parallel: &str) -> String {
    format!("{parallel}-kn-parallel")
}

/// Branch `i`'s channel and subscriber Subscription: `{parallel}-kn-parallel-{i}`.
pub fn parallel_branch(parallel: &str, i: usize) -> String {
    format!("{parallel}-kn-parallel-{i}")
}

/// Branch `i`'s filter Subscription: `{parallel}-kn-parallel-filter-{i}`.
pub fn parallel_filter(parallel: &str, i: usize) -> String {
    format!("{parallel}-kn-parallel-filter-{i}")
}

/// The channel stream events sent to an addressable land in, for the kinds Herald serves
/// through channels (`None` for a Broker: its own log).
pub fn channel_behind(kind: OwnAddressable, name: &str) -> Option<String> {
    match kind {
        OwnAddressable::Broker | OwnAddressable::EventTransform | OwnAddressable::RequestReply => {
            None
        }
        OwnAddressable::Channel => Some(name.to_owned()),
        OwnAddressable::Sequence => Some(sequence_child(name, 0)),
        OwnAddressable::Parallel => Some(parallel_ingress(name)),
    }
}

/// The log stream a reference to one of Herald's addressables appends to.
pub fn stream_of(kind: OwnAddressable, namespace: &str, name: &str) -> BrokerKey {
    match channel_behind(kind, name) {
        None => BrokerKey::new(namespace, name),
        Some(channel) => BrokerKey::channel(namespace, &channel),
    }
}

/// The audience of one of Herald's addressables with sender identity on: what its address
/// advertises, what senders' tokens to it carry, and what its ingress requires. A broker's
/// or channel's is its stream's (a Sequence or Parallel is reached through its first
/// channel, as in Knative); an EventTransform's is Knative's
/// `eventing.knative.dev/eventtransform/{ns}/{name}`; a RequestReply (for which Knative has
/// none) gets `eventing.knative.dev/requestreply/{ns}/{name}` in the same form.
pub fn audience_of(kind: OwnAddressable, namespace: &str, name: &str) -> String {
    use crate::identity::naming;
    match kind {
        OwnAddressable::EventTransform => {
            naming::audience("eventing.knative.dev", "EventTransform", namespace, name)
        }
        OwnAddressable::RequestReply => {
            naming::audience("eventing.knative.dev", "RequestReply", namespace, name)
        }
        _ => naming::stream_audience(&stream_of(kind, namespace, name)),
    }
}

/// The template in effect: the given one, else Knative's default, InMemoryChannel.
fn template_or_default(template: Option<&ChannelTemplateSpec>) -> Template {
    template.cloned().unwrap_or_else(Template::in_memory)
}

fn owned_meta(name: String, namespace: &str, owner_kind: &str, owner: &ObjectMeta) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(namespace.to_owned()),
        owner_references: Some(vec![OwnerReference {
            api_version: "flows.knative.dev/v1".into(),
            kind: owner_kind.into(),
            name: owner.name.clone().unwrap_or_default(),
            uid: owner.uid.clone().unwrap_or_default(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }]),
        ..ObjectMeta::default()
    }
}

/// A channel of the template's kind (its `spec` only, as Knative creates them).
fn channel_of_template(template: &Template, meta: ObjectMeta) -> Result<Resource, String> {
    let spec = template.spec.clone().unwrap_or(serde_json::json!({}));
    if template.kind == "KafkaChannel" {
        let spec: KafkaChannelSpec = serde_json::from_value(spec).map_err(|e| e.to_string())?;
        Ok(Resource::KafkaChannel(KafkaChannel {
            metadata: meta,
            spec,
            status: None,
        }))
    } else {
        let spec: InMemoryChannelSpec = serde_json::from_value(spec).map_err(|e| e.to_string())?;
        Ok(Resource::InMemoryChannel(InMemoryChannel {
            metadata: meta,
            spec,
            status: None,
        }))
    }
}

/// A reference to a channel of the template's kind.
fn channel_ref(template: &Template, name: String, namespace: Option<&str>) -> KReference {
    KReference {
        api_version: template.api_version.clone(),
        kind: template.kind.clone(),
        name,
        namespace: namespace.map(str::to_owned),
    }
}

fn subscription(
    meta: ObjectMeta,
    channel: KReference,
    subscriber: Destination,
    reply: Option<Destination>,
    delivery: Option<DeliverySpec>,
) -> Resource {
    Resource::Subscription(Subscription {
        metadata: meta,
        spec: SubscriptionSpec {
            channel,
            subscriber: Some(subscriber),
            reply,
            delivery,
        },
        status: None,
    })
}

/// The channels and Subscriptions Knative's Sequence controller creates: channel `i` and
/// Subscription `i` (`{name}-kn-sequence-{i}`) per step; Subscription `i` takes channel
/// `i` to step `i` with the step's delivery, its reply to channel `i+1`, the last one's to
/// `spec.reply`.
pub fn expand_sequence(sequence: &Sequence) -> Result<Vec<Resource>, String> {
    let meta = &sequence.metadata;
    let namespace = meta
        .namespace
        .as_deref()
        .unwrap_or(herald_crds::DEFAULT_NAMESPACE);
    let name = meta.name.clone().unwrap_or_default();
    let template = template_or_default(sequence.spec.channel_template.as_ref());
    let steps = &sequence.spec.steps;
    let mut children = Vec::with_capacity(steps.len() * 2);
    for (i, step) in steps.iter().enumerate() {
        let child = sequence_child(&name, i);
        children.push(channel_of_template(
            &template,
            owned_meta(child.clone(), namespace, "Sequence", meta),
        )?);
        let reply = match i + 1 < steps.len() {
            true => Some(Destination {
                reference: Some(channel_ref(
                    &template,
                    sequence_child(&name, i + 1),
                    Some(namespace),
                )),
                ..Destination::default()
            }),
            false => sequence.spec.reply.clone(),
        };
        children.push(subscription(
            owned_meta(child.clone(), namespace, "Sequence", meta),
            channel_ref(&template, child, None),
            step.destination(),
            reply,
            step.delivery.clone(),
        ));
    }
    Ok(children)
}

/// The channels and Subscriptions Knative's Parallel controller creates: the ingress
/// channel `{name}-kn-parallel`; per branch `i` a channel `{name}-kn-parallel-{i}`, a filter
/// Subscription `{name}-kn-parallel-filter-{i}` on the ingress channel (to the filter, whose
/// reply enters the branch channel; without a filter straight to the branch channel; no
/// delivery: one attempt) and a subscriber Subscription `{name}-kn-parallel-{i}` on the
/// branch channel (the branch's delivery; reply: the branch's, else the Parallel's).
pub fn expand_parallel(parallel: &Parallel) -> Result<Vec<Resource>, String> {
    let meta = &parallel.metadata;
    let namespace = meta
        .namespace
        .as_deref()
        .unwrap_or(herald_crds::DEFAULT_NAMESPACE);
    let name = meta.name.clone().unwrap_or_default();
    let template = template_or_default(parallel.spec.channel_template.as_ref());
    let ingress = parallel_ingress(&name);
    let mut children = vec![channel_of_template(
        &template,
        owned_meta(ingress.clone(), namespace, "Parallel", meta),
    )?];
    for (i, branch) in parallel.spec.branches.iter().enumerate() {
        let branch_channel = parallel_branch(&name, i);
        children.push(channel_of_template(
            &template,
            owned_meta(branch_channel.clone(), namespace, "Parallel", meta),
        )?);
        let to_branch = Destination {
            reference: Some(channel_ref(
                &template,
                branch_channel.clone(),
                Some(namespace),
            )),
            ..Destination::default()
        };
        let (filter_subscriber, filter_reply) = match &branch.filter {
            Some(filter) => (filter.clone(), Some(to_branch)),
            None => (to_branch, None),
        };
        children.push(subscription(
            owned_meta(parallel_filter(&name, i), namespace, "Parallel", meta),
            channel_ref(&template, ingress.clone(), None),
            filter_subscriber,
            filter_reply,
            None,
        ));
        children.push(subscription(
            owned_meta(branch_channel.clone(), namespace, "Parallel", meta),
            channel_ref(&template, branch_channel, None),
            branch.subscriber.clone(),
            branch.reply.clone().or_else(|| parallel.spec.reply.clone()),
            branch.delivery.clone(),
        ));
    }
    Ok(children)
}

/// The field that makes a resource need the Kafka backend: a KafkaChannel's `kind`, or a
/// `channelTemplate` naming KafkaChannel.
pub fn kafka_channel_field(resource: &Resource) -> Option<&'static str> {
    let template = match resource {
        Resource::KafkaChannel(_) => return Some("kind"),
        Resource::Channel(c) => c.spec.channel_template.as_ref(),
        Resource::Sequence(s) => s.spec.channel_template.as_ref(),
        Resource::Parallel(p) => p.spec.channel_template.as_ref(),
        _ => None,
    };
    template
        .filter(|t| t.kind == "KafkaChannel")
        .map(|_| "spec.channelTemplate.kind")
}

/// A channel as Herald runs it.
#[derive(Clone, Debug, PartialEq)]
pub struct ChannelRun {
    /// `Channel`, `InMemoryChannel` or `KafkaChannel`: the kind the user declared.
    pub kind: &'static str,
    /// The kind that runs it: a Channel's template kind, else `kind`.
    pub backing_kind: String,
    pub backing_api_version: String,
    /// Default delivery of Subscriptions without their own.
    pub delivery: Option<DeliverySpec>,
    /// On the Kafka backend (a KafkaChannel), with the topic's settings.
    pub kafka: Option<KafkaChannelSpec>,
    /// The Sequence or Parallel that made it, if any.
    pub owner: Option<(String, String)>,
}

impl ChannelRun {
    /// The channel kinds, as declared.
    pub fn of(resource: &Resource) -> Option<Self> {
        let owner = |meta: &ObjectMeta| {
            meta.owner_references
                .as_ref()
                .and_then(|o| o.first())
                .map(|o| (o.kind.clone(), o.name.clone()))
        };
        Some(match resource {
            Resource::InMemoryChannel(c) => Self {
                kind: "InMemoryChannel",
                backing_kind: "InMemoryChannel".into(),
                backing_api_version: herald_crds::channel::IN_MEMORY_CHANNEL_API_VERSION.into(),
                delivery: c.spec.delivery.clone(),
                kafka: None,
                owner: owner(&c.metadata),
            },
            Resource::KafkaChannel(c) => Self {
                kind: "KafkaChannel",
                backing_kind: "KafkaChannel".into(),
                backing_api_version: KAFKA_CHANNEL_API_VERSION.into(),
                delivery: c.spec.delivery.clone(),
                kafka: Some(c.spec.clone()),
                owner: owner(&c.metadata),
            },
            Resource::Channel(c) => {
                let template = template_or_default(c.spec.channel_template.as_ref());
                // The backing channel's spec: the Channel's delivery merged with the
                // template's spec, the template's keys winning (Knative's NewPhysicalChannel).
                let template_delivery = template
                    .spec
                    .as_ref()
                    .and_then(|s| s.get("delivery"))
                    .and_then(|d| serde_json::from_value::<DeliverySpec>(d.clone()).ok());
                let kafka = (template.kind == "KafkaChannel").then(|| {
                    template
                        .spec
                        .clone()
                        .and_then(|s| serde_json::from_value::<KafkaChannelSpec>(s).ok())
                        .unwrap_or_default()
                });
                Self {
                    kind: "Channel",
                    backing_kind: template.kind.clone(),
                    backing_api_version: template.api_version.clone(),
                    delivery: template_delivery.or_else(|| c.spec.delivery.clone()),
                    kafka,
                    owner: owner(&c.metadata),
                }
            }
            _ => return None,
        })
    }
}

/// A Subscription as Herald runs it.
#[derive(Clone, Debug, PartialEq)]
pub struct SubscriptionRun {
    pub generation: Option<i64>,
    pub channel: String,
    pub subscriber: Target,
    /// Where replies go; `None` drops them.
    pub reply: Option<Target>,
    /// Its destinations' `CACerts`.
    pub trust: herald_triggers::plan::TargetTrust,
    /// The delivery in effect (Knative's `deliverySpec()`).
    pub delivery: DeliverySpec,
    /// Made by a Sequence or Parallel (with its channel): it reads its channel from the
    /// first event, so that nothing sent while the flow starts is missed.
    pub owned: bool,
}

/// Knative's choice of a Subscription's delivery: without its own, the channel's (none
/// means one attempt, no dead-letter sink); with its own, only its own retry fields, and
/// its dead-letter sink or else the channel's. Unlike Knative, `format` is kept.
pub fn subscription_delivery(
    own: Option<&DeliverySpec>,
    channel: Option<&DeliverySpec>,
) -> DeliverySpec {
    match own {
        None => channel.cloned().unwrap_or_default(),
        Some(own) => {
            let mut delivery = own.clone();
            if delivery.dead_letter_sink.is_none() {
                delivery.dead_letter_sink = channel.and_then(|c| c.dead_letter_sink.clone());
            }
            delivery
        }
    }
}

/// A Sequence or Parallel as Herald runs it: its children are in [`Flows::channels`] and
/// [`Flows::subscriptions`]; this is what its status needs.
#[derive(Clone, Debug, PartialEq)]
pub struct FlowRun {
    pub generation: Option<i64>,
    /// Steps of a Sequence, branches of a Parallel.
    pub children: usize,
    /// The channels' kind: `apiVersion` and `kind` of the template in effect.
    pub template: (String, String),
}

impl FlowRun {
    pub fn of_sequence(sequence: &Sequence) -> Self {
        let template = template_or_default(sequence.spec.channel_template.as_ref());
        Self {
            generation: sequence.metadata.generation,
            children: sequence.spec.steps.len(),
            template: (template.api_version, template.kind),
        }
    }

    pub fn of_parallel(parallel: &Parallel) -> Self {
        let template = template_or_default(parallel.spec.channel_template.as_ref());
        Self {
            generation: parallel.metadata.generation,
            children: parallel.spec.branches.len(),
            template: (template.api_version, template.kind),
        }
    }
}

/// Everything of channels and flows the desired state holds, by `(namespace, name)`.
#[derive(Clone, Debug, Default)]
pub struct Flows {
    pub channels: BTreeMap<(String, String), ChannelRun>,
    pub subscriptions: BTreeMap<(String, String), SubscriptionRun>,
    pub sequences: BTreeMap<(String, String), FlowRun>,
    pub parallels: BTreeMap<(String, String), FlowRun>,
    /// EventTransforms, served in process at their own address.
    pub transforms:
        BTreeMap<(String, String), std::sync::Arc<crate::config::transform_plan::TransformPlan>>,
    /// RequestReplies, served in process at their own address.
    pub request_replies:
        BTreeMap<(String, String), crate::config::request_reply_plan::RequestReplyPlan>,
}

impl Flows {
    /// Whether the object a reference names exists (Brokers are checked elsewhere).
    pub fn has(&self, kind: OwnAddressable, namespace: &str, name: &str) -> bool {
        let key = (namespace.to_owned(), name.to_owned());
        match kind {
            OwnAddressable::Broker => true,
            OwnAddressable::Channel => self.channels.contains_key(&key),
            OwnAddressable::Sequence => self.sequences.contains_key(&key),
            OwnAddressable::Parallel => self.parallels.contains_key(&key),
            OwnAddressable::EventTransform => self.transforms.contains_key(&key),
            OwnAddressable::RequestReply => self.request_replies.contains_key(&key),
        }
    }

    /// Every address path and the channel stream it appends to.
    pub fn addresses(&self) -> std::collections::HashMap<String, BrokerKey> {
        let mut out = std::collections::HashMap::new();
        let kinds = [
            (
                OwnAddressable::Channel,
                self.channels.keys().collect::<Vec<_>>(),
            ),
            (OwnAddressable::Sequence, self.sequences.keys().collect()),
            (OwnAddressable::Parallel, self.parallels.keys().collect()),
        ];
        for (kind, keys) in kinds {
            for (namespace, name) in keys {
                out.insert(kind.path(namespace, name), stream_of(kind, namespace, name));
            }
        }
        out
    }

    /// The internal brokers (one per channel) and triggers (one per Subscription) that run
    /// these, keyed as the desired state keys brokers and triggers.
    pub fn lower(&self) -> Lowered {
        let brokers = self
            .channels
            .iter()
            .map(|((namespace, name), channel)| {
                let mut settings = BrokerSettings::default();
                let mut class = None;
                if let Some(kafka) = &channel.kafka {
                    class = Some(herald_broker::log::routed::KAFKA_BROKER_CLASS.to_owned());
                    settings.partitions = kafka.num_partitions;
                    settings.replicas = kafka.replication_factor.map(|r| r.max(1) as usize);
                    settings.max_age = kafka
                        .retention_duration
                        .as_deref()
                        .and_then(|d| herald_crds::duration::parse_iso8601(d).ok());
                }
                let plan = BrokerPlan {
                    generation: None,
                    class,
                    settings,
                    delivery: None,
                    dead_letter_sink: None,
                    catalog: Default::default(),
                };
                (BrokerKey::channel(namespace.clone(), name), plan)
            })
            .collect();
        let triggers = self
            .subscriptions
            .iter()
            .map(|((namespace, name), subscription)| {
                let delivery = &subscription.delivery;
                let plan = TriggerSpecPlan {
                    generation: subscription.generation,
                    broker: BrokerKey::channel(namespace.clone(), &subscription.channel),
                    filter: herald_triggers::Filter::no_filter(),
                    subscriber: subscription.subscriber.clone(),
                    dead_letter_sink: delivery
                        .dead_letter_sink
                        .as_ref()
                        .map(|d| Target::of(d, namespace)),
                    policy: herald_triggers::RetryPolicy::from_spec(delivery),
                    format: delivery.format.unwrap_or(DeliveryFormat::Binary),
                    ordered: false,
                    // A new Subscription gets what its channel accepts from then on
                    // (Knative's behaviour); one a flow made reads its own new channel from
                    // the start.
                    start: match subscription.owned {
                        true => StartFrom::Earliest,
                        false => StartFrom::Latest,
                    },
                    reply: subscription.reply.clone(),
                    trust: subscription.trust.clone(),
                };
                ((namespace.clone(), subscription_trigger(name)), plan)
            })
            .collect();
        Lowered { brokers, triggers }
    }
}

/// What [`Flows::lower`] makes: internal broker and trigger plans, keyed as the desired
/// state keys them.
pub struct Lowered {
    pub brokers: Vec<(BrokerKey, BrokerPlan)>,
    pub triggers: Vec<(TriggerKey, TriggerSpecPlan)>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_crds::flows::{ParallelBranch, SequenceStep};
    use herald_crds::{ParallelSpec, SequenceSpec};

    fn uri(u: &str) -> Destination {
        Destination {
            uri: Some(u.into()),
            ..Destination::default()
        }
    }

    fn meta(name: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            namespace: Some("ns".into()),
            uid: Some("u-1".into()),
            ..ObjectMeta::default()
        }
    }

    fn subscriptions(children: &[Resource]) -> Vec<&Subscription> {
        children
            .iter()
            .filter_map(|r| match r {
                Resource::Subscription(s) => Some(s),
                _ => None,
            })
            .collect()
    }

    fn channel_names(children: &[Resource]) -> Vec<String> {
        children
            .iter()
            .filter(|r| ChannelRun::of(r).is_some())
            .map(|r| r.namespaced_name().1)
            .collect()
    }

    fn reply_channel(s: &Subscription) -> Option<&str> {
        s.spec
            .reply
            .as_ref()?
            .reference
            .as_ref()
            .map(|r| r.name.as_str())
    }

    #[test]
    fn a_sequence_is_wired_as_knative_wires_it() {
        let sequence = Sequence {
            metadata: meta("seq"),
            spec: SequenceSpec {
                steps: ["http://a/", "http://b/", "http://c/"]
                    .iter()
                    .map(|u| SequenceStep {
                        destination: uri(u),
                        delivery: Some(DeliverySpec {
                            retry: Some(2),
                            ..DeliverySpec::default()
                        }),
                    })
                    .collect(),
                channel_template: None,
                reply: Some(uri("http://sink/")),
            },
            status: None,
        };
        let children = expand_sequence(&sequence).unwrap();
        assert_eq!(
            channel_names(&children),
            [
                "seq-kn-sequence-0",
                "seq-kn-sequence-1",
                "seq-kn-sequence-2"
            ]
        );
        let subs = subscriptions(&children);
        assert_eq!(subs.len(), 3);
        for (i, (sub, step)) in subs
            .iter()
            .zip(["http://a/", "http://b/", "http://c/"])
            .enumerate()
        {
            assert_eq!(
                sub.metadata.name.as_deref(),
                Some(sequence_child("seq", i).as_str())
            );
            assert_eq!(sub.spec.channel.name, sequence_child("seq", i));
            assert_eq!(sub.spec.channel.kind, "InMemoryChannel");
            assert_eq!(
                sub.spec.subscriber.as_ref().unwrap().uri.as_deref(),
                Some(step)
            );
            assert_eq!(sub.spec.delivery.as_ref().unwrap().retry, Some(2));
            let owner = &sub.metadata.owner_references.as_ref().unwrap()[0];
            assert_eq!(
                (owner.kind.as_str(), owner.uid.as_str()),
                ("Sequence", "u-1")
            );
        }
        assert_eq!(reply_channel(subs[0]), Some("seq-kn-sequence-1"));
        assert_eq!(reply_channel(subs[1]), Some("seq-kn-sequence-2"));
        assert_eq!(
            subs[2].spec.reply.as_ref().unwrap().uri.as_deref(),
            Some("http://sink/")
        );
    }

    #[test]
    fn a_parallel_is_wired_as_knative_wires_it() {
        let parallel = Parallel {
            metadata: meta("p"),
            spec: ParallelSpec {
                branches: vec![
                    ParallelBranch {
                        filter: Some(uri("http://f0/")),
                        subscriber: uri("http://s0/"),
                        reply: Some(uri("http://r0/")),
                        delivery: Some(DeliverySpec {
                            retry: Some(5),
                            ..DeliverySpec::default()
                        }),
                    },
                    ParallelBranch {
                        filter: None,
                        subscriber: uri("http://s1/"),
                        ..ParallelBranch::default()
                    },
                ],
                channel_template: Some(ChannelTemplateSpec {
                    api_version: KAFKA_CHANNEL_API_VERSION.into(),
                    kind: "KafkaChannel".into(),
                    spec: Some(serde_json::json!({"numPartitions": 2})),
                }),
                reply: Some(uri("http://all/")),
            },
            status: None,
        };
        let children = expand_parallel(&parallel).unwrap();
        assert_eq!(
            channel_names(&children),
            ["p-kn-parallel", "p-kn-parallel-0", "p-kn-parallel-1"]
        );
        assert!(children
            .iter()
            .all(|c| !matches!(c, Resource::InMemoryChannel(_))));
        let subs = subscriptions(&children);
        let by_name = |n: &str| {
            *subs
                .iter()
                .find(|s| s.metadata.name.as_deref() == Some(n))
                .unwrap()
        };
        let filter0 = by_name("p-kn-parallel-filter-0");
        assert_eq!(filter0.spec.channel.name, "p-kn-parallel");
        assert_eq!(
            filter0.spec.subscriber.as_ref().unwrap().uri.as_deref(),
            Some("http://f0/")
        );
        assert_eq!(reply_channel(filter0), Some("p-kn-parallel-0"));
        assert_eq!(filter0.spec.delivery, None, "a filter gets one attempt");
        let filter1 = by_name("p-kn-parallel-filter-1");
        let straight = filter1.spec.subscriber.as_ref().unwrap().reference.as_ref();
        assert_eq!(straight.map(|r| r.name.as_str()), Some("p-kn-parallel-1"));
        assert_eq!(filter1.spec.reply, None);
        let branch0 = by_name("p-kn-parallel-0");
        assert_eq!(branch0.spec.channel.name, "p-kn-parallel-0");
        assert_eq!(
            branch0.spec.reply.as_ref().unwrap().uri.as_deref(),
            Some("http://r0/")
        );
        assert_eq!(branch0.spec.delivery.as_ref().unwrap().retry, Some(5));
        let branch1 = by_name("p-kn-parallel-1");
        assert_eq!(
            branch1.spec.reply.as_ref().unwrap().uri.as_deref(),
            Some("http://all/")
        );
        let Resource::KafkaChannel(kafka) = &children[0] else {
            panic!("KafkaChannel template")
        };
        assert_eq!(kafka.spec.num_partitions, Some(2));
    }

    #[test]
    fn subscription_delivery_follows_knative() {
        let channel = DeliverySpec {
            retry: Some(7),
            dead_letter_sink: Some(uri("http://dls/")),
            ..DeliverySpec::default()
        };
        assert_eq!(subscription_delivery(None, None), DeliverySpec::default());
        assert_eq!(subscription_delivery(None, Some(&channel)), channel);
        let own = DeliverySpec {
            retry: Some(1),
            ..DeliverySpec::default()
        };
        let merged = subscription_delivery(Some(&own), Some(&channel));
        assert_eq!(merged.retry, Some(1));
        assert_eq!(merged.dead_letter_sink, Some(uri("http://dls/")));
    }

    #[test]
    fn addresses_lead_to_the_first_channel() {
        assert_eq!(
            stream_of(OwnAddressable::Sequence, "ns", "s"),
            BrokerKey::channel("ns", "s-kn-sequence-0")
        );
        assert_eq!(
            stream_of(OwnAddressable::Parallel, "ns", "p"),
            BrokerKey::channel("ns", "p-kn-parallel")
        );
        assert_eq!(
            stream_of(OwnAddressable::Broker, "ns", "b"),
            BrokerKey::new("ns", "b")
        );
        assert!(!BrokerKey::new("ns", "b").is_channel());
        assert!(stream_of(OwnAddressable::Channel, "ns", "c").is_channel());
    }
}
