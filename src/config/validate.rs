//! Cross-resource validation: the desired state Herald will run, as typed plans
//! (`super::plan`). Each field is parsed here once; the runtime takes the plans as they are.

use std::collections::BTreeMap;

use herald_broker::BrokerKey;
use herald_crds::flows_validation::{
    validate_channel_spec, validate_channelable, validate_kafka_channel_spec,
    validate_parallel_spec, validate_sequence_spec, validate_subscription_spec,
};
use herald_crds::validation::validate_destination;
use herald_crds::validation::{
    validate_delivery, validate_name, validate_namespace, validate_trigger_spec,
};
use herald_crds::{DeliveryFormat, DeliverySpec, FieldError, DEFAULT_NAMESPACE};
use herald_triggers::plan::TargetTrust;
use herald_triggers::RetryPolicy;

use super::plan::{BrokerPlan, Desired, SourcePlan, Target, TriggerSpecPlan};
use super::{ConfigError, Loaded, RefMap, Resource};
use crate::annotations;
use crate::kinds::ObjectKey;

fn namespace_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    meta.namespace
        .clone()
        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned())
}

/// A resource left out of the desired state, and why.
#[derive(Debug, Clone)]
pub struct Rejected {
    pub key: ObjectKey,
    pub error: ConfigError,
    /// Set when the only problem is that this trigger's broker does not exist (yet).
    pub missing_broker: Option<BrokerKey>,
}

/// Checks every resource and the references between them; the first problem fails all,
/// except a trigger whose broker does not exist yet: that one waits for it.
pub fn build_desired(loaded: Vec<Loaded>, refs: &RefMap) -> Result<Desired, ConfigError> {
    let (mut desired, rejected) = build_desired_lenient(loaded, refs);
    for rejected in rejected {
        match rejected.missing_broker {
            Some(broker) => {
                let key = rejected.key;
                desired
                    .waiting_triggers
                    .insert((key.namespace, key.name), broker);
            }
            None => return Err(rejected.error),
        }
    }
    Ok(desired)
}

/// Checks every resource and the references between them, leaving out (and reporting) those
/// with a problem, so that the rest can run: what a controller needs, where each object
/// gets its own status. Each non-Broker `ref` is first rewritten into the URL `refs` maps it
/// to (`herald serve --resolve`; the controller resolves its refs on the cluster before).
pub fn build_desired_lenient(loaded: Vec<Loaded>, refs: &RefMap) -> (Desired, Vec<Rejected>) {
    let mut rejected = Vec::new();
    let mut desired = Desired::default();
    let mut origins: BTreeMap<String, String> = BTreeMap::new();
    let mut pending = Pending::default();
    for Loaded {
        origin,
        mut resource,
    } in loaded
    {
        let key = ObjectKey::of(&resource);
        let checked = match refs
            .resolve(&mut resource)
            .and_then(|()| super::trust::check(&mut resource))
        {
            Ok(()) => check_one(&origin, resource, &mut desired, &mut origins, &mut pending),
            Err(error) => {
                let (namespace, name) = resource.namespaced_name();
                Err(ConfigError {
                    origin: origin.clone(),
                    resource: Some(format!("{} {namespace}/{name}", key.kind)),
                    field: Some(error.path),
                    message: error.message,
                })
            }
        };
        match checked {
            Ok(()) => {}
            Err(error) => rejected.push(Rejected {
                key,
                error,
                missing_broker: None,
            }),
        }
    }
    for trigger in pending.triggers {
        let (namespace, name) = (trigger.namespace.clone(), trigger.name.clone());
        let key = ObjectKey::new(&crate::kinds::TRIGGER, &namespace, &name);
        let fail = |path: &str, message: String| ConfigError {
            origin: trigger.origin.clone(),
            resource: Some(trigger.ident.clone()),
            field: Some(path.to_owned()),
            message,
        };
        let broker = BrokerKey::new(namespace.clone(), trigger.spec.broker.clone());
        let Some(broker_plan) = desired.brokers.get(&broker) else {
            rejected.push(Rejected {
                key,
                error: fail("spec.broker", format!("broker {broker} does not exist")),
                missing_broker: Some(broker),
            });
            continue;
        };
        let subscriber = Target::of(&trigger.spec.subscriber, &namespace);
        let own_dead_letter_sink = trigger
            .spec
            .delivery
            .as_ref()
            .and_then(|d| d.dead_letter_sink.as_ref())
            .map(|d| Target::of(d, &namespace));
        let targets = [
            ("spec.subscriber", Some(&subscriber)),
            (
                "spec.delivery.deadLetterSink",
                own_dead_letter_sink.as_ref(),
            ),
        ];
        if let Some((path, message)) = missing_target(&desired, targets) {
            rejected.push(Rejected {
                key,
                error: fail(&path, message),
                missing_broker: None,
            });
            continue;
        }
        // Knative: a trigger without `delivery` takes its broker's, else the default.
        let delivery = trigger
            .spec
            .delivery
            .clone()
            .or_else(|| broker_plan.delivery.clone())
            .unwrap_or_else(DeliverySpec::broker_default);
        let plan_broker = broker.clone();
        let plan = TriggerSpecPlan {
            generation: trigger.generation,
            broker,
            filter: trigger.filter,
            subscriber,
            dead_letter_sink: delivery
                .dead_letter_sink
                .as_ref()
                .map(|d| Target::of(d, &namespace)),
            policy: RetryPolicy::from_spec(&delivery),
            format: delivery.format.unwrap_or(DeliveryFormat::Binary),
            ordered: trigger.ordered,
            start: trigger.start,
            reply: Some(Target::Broker {
                broker: plan_broker,
                path: String::new(),
            }),
            trust: TargetTrust {
                subscriber: super::trust::of(&trigger.spec.subscriber),
                dead_letter_sink: delivery
                    .dead_letter_sink
                    .as_ref()
                    .and_then(super::trust::of),
                reply: None,
            },
        };
        desired.triggers.insert((namespace, name), plan);
    }
    for subscription in pending.subscriptions {
        if let Err(error) = plan_subscription(&mut desired, &subscription) {
            rejected.push(Rejected {
                key: ObjectKey::new(
                    &crate::kinds::SUBSCRIPTION,
                    &subscription.namespace,
                    &subscription.name,
                ),
                error,
                missing_broker: None,
            });
        }
    }
    check_transform_sinks(&mut desired, &mut rejected);
    let lowered = desired.flows.lower();
    desired.brokers.extend(lowered.brokers);
    desired.triggers.extend(lowered.triggers);
    (desired, rejected)
}

/// Leaves out the EventTransforms whose sink names one of Herald's objects that does not
/// exist; adds the internal reply trigger of each RequestReply whose broker exists.
fn check_transform_sinks(desired: &mut Desired, rejected: &mut Vec<Rejected>) {
    let missing: Vec<((String, String), (String, String))> = desired
        .flows
        .transforms
        .iter()
        .filter_map(|(key, plan)| {
            missing_target(desired, [("spec.sink", plan.sink.as_ref())])
                .map(|problem| (key.clone(), problem))
        })
        .collect();
    for ((namespace, name), (field, message)) in missing {
        desired
            .flows
            .transforms
            .remove(&(namespace.clone(), name.clone()));
        rejected.push(Rejected {
            key: ObjectKey::new(&crate::kinds::EVENT_TRANSFORM, &namespace, &name),
            error: ConfigError {
                origin: String::new(),
                resource: Some(format!("EventTransform {namespace}/{name}")),
                field: Some(field),
                message,
            },
            missing_broker: None,
        });
    }
    let triggers: Vec<_> = desired
        .flows
        .request_replies
        .iter()
        .filter(|(_, plan)| desired.brokers.contains_key(&plan.broker))
        .filter_map(|((namespace, name), plan)| {
            let trigger = crate::config::request_reply_plan::trigger_plan(namespace, name, plan)?;
            Some((
                (
                    namespace.clone(),
                    crate::config::request_reply_plan::reply_trigger(name),
                ),
                trigger,
            ))
        })
        .collect();
    desired.triggers.extend(triggers);
}

/// Checks a Subscription against the channels and the targets it names, then adds it to
/// the flows of `desired`.
fn plan_subscription(
    desired: &mut Desired,
    pending: &PendingSubscription,
) -> Result<(), ConfigError> {
    let (namespace, spec) = (&pending.namespace, &pending.spec);
    let fail = |path: &str, message: String| ConfigError {
        origin: pending.origin.clone(),
        resource: Some(pending.ident.clone()),
        field: Some(path.to_owned()),
        message,
    };
    let channel = desired
        .flows
        .channels
        .get(&(namespace.clone(), spec.channel.name.clone()))
        .filter(|c| c.kind == spec.channel.kind || c.backing_kind == spec.channel.kind)
        .ok_or_else(|| {
            fail(
                "spec.channel",
                format!(
                    "{} {namespace}/{} does not exist",
                    spec.channel.kind, spec.channel.name
                ),
            )
        })?;
    let delivery = crate::config::flows::subscription_delivery(
        spec.delivery.as_ref(),
        channel.delivery.as_ref(),
    );
    let subscriber = Target::of(&spec.subscriber.clone().unwrap_or_default(), namespace);
    let reply = spec.reply.as_ref().map(|d| Target::of(d, namespace));
    let dead_letter_sink = delivery
        .dead_letter_sink
        .as_ref()
        .map(|d| Target::of(d, namespace));
    let targets = [
        ("spec.subscriber", Some(&subscriber)),
        ("spec.reply", reply.as_ref()),
        ("spec.delivery.deadLetterSink", dead_letter_sink.as_ref()),
    ];
    if let Some((path, message)) = missing_target(desired, targets) {
        return Err(fail(&path, message));
    }
    let run = crate::config::flows::SubscriptionRun {
        generation: pending.generation,
        channel: spec.channel.name.clone(),
        subscriber,
        reply,
        trust: TargetTrust {
            subscriber: spec.subscriber.as_ref().and_then(super::trust::of),
            reply: spec.reply.as_ref().and_then(super::trust::of),
            dead_letter_sink: delivery
                .dead_letter_sink
                .as_ref()
                .and_then(super::trust::of),
        },
        delivery,
        owned: pending.owned,
    };
    desired
        .flows
        .subscriptions
        .insert((namespace.clone(), pending.name.clone()), run);
    Ok(())
}

/// The first target that names a Broker, channel, Sequence or Parallel that does not
/// exist: its field path and what is missing.
fn missing_target<'a>(
    desired: &Desired,
    targets: impl IntoIterator<Item = (&'a str, Option<&'a Target>)>,
) -> Option<(String, String)> {
    for (path, target) in targets {
        let missing = match target {
            Some(Target::Broker { broker, .. }) if !desired.brokers.contains_key(broker) => {
                format!("broker {broker} does not exist")
            }
            Some(Target::Flow {
                kind,
                namespace,
                name,
                ..
            }) if !desired.flows.has(*kind, namespace, name) => {
                format!("{kind:?} {namespace}/{name} does not exist")
            }
            _ => continue,
        };
        return Some((format!("{path}.ref"), missing));
    }
    None
}

/// Triggers and Subscriptions that passed their own checks, waiting for the check of their
/// references once every broker and channel is known.
#[derive(Default)]
struct Pending {
    triggers: Vec<PendingTrigger>,
    subscriptions: Vec<PendingSubscription>,
}

/// A Subscription that passed its own checks.
struct PendingSubscription {
    origin: String,
    ident: String,
    namespace: String,
    name: String,
    generation: Option<i64>,
    spec: herald_crds::SubscriptionSpec,
    /// Made by a Sequence or Parallel.
    owned: bool,
}

/// A trigger that passed its own checks, waiting for the check of its references.
struct PendingTrigger {
    origin: String,
    ident: String,
    namespace: String,
    name: String,
    generation: Option<i64>,
    spec: herald_crds::TriggerSpec,
    filter: herald_triggers::Filter,
    ordered: bool,
    start: herald_broker::StartFrom,
}

/// Checks one resource on its own and adds its plan to `desired`; a trigger or
/// Subscription goes to `pending` instead, to be checked against the brokers and channels
/// once all are known. A Sequence or Parallel is checked with the channels and
/// Subscriptions it is made of.
fn check_one(
    origin: &str,
    resource: Resource,
    desired: &mut Desired,
    origins: &mut BTreeMap<String, String>,
    pending: &mut Pending,
) -> Result<(), ConfigError> {
    let (meta, kind) = (resource.meta(), resource.kind().kind);
    let namespace = namespace_of(meta);
    let name = meta.name.clone().unwrap_or_default();
    let ident = format!("{kind} {namespace}/{name}");
    let fail = |e: FieldError| ConfigError {
        origin: origin.to_owned(),
        resource: Some(ident.clone()),
        field: Some(e.path),
        message: e.message,
    };
    validate_name("metadata.name", &name).map_err(fail)?;
    validate_namespace("metadata.namespace", &namespace).map_err(fail)?;
    if let Some(first) = origins.insert(ident.clone(), origin.to_owned()) {
        return Err(fail(FieldError::new(
            "metadata.name",
            format!("{ident} is defined twice (first in {first})"),
        )));
    }
    let (kind_of_resource, labels) = (resource.kind(), meta.labels.clone());
    let noted = (namespace.clone(), name.clone());
    match resource {
        Resource::Broker(broker) => {
            let settings = annotations::broker_settings(&broker.metadata).map_err(fail)?;
            let catalog = annotations::BrokerCatalogSettings::of(&broker.metadata).map_err(fail)?;
            if let Some(delivery) = &broker.spec.delivery {
                validate_delivery("spec.delivery", delivery).map_err(fail)?;
            }
            let plan = BrokerPlan {
                generation: broker.metadata.generation,
                class: annotations::broker_class(&broker.metadata).map(str::to_owned),
                settings,
                catalog,
                dead_letter_sink: broker
                    .spec
                    .delivery
                    .as_ref()
                    .and_then(|d| d.dead_letter_sink.as_ref())
                    .map(|d| Target::of(d, &namespace)),
                delivery: broker.spec.delivery,
            };
            desired
                .brokers
                .insert(BrokerKey::new(namespace, name), plan);
        }
        Resource::Trigger(trigger) => {
            validate_trigger_spec(&trigger.spec).map_err(fail)?;
            let filter = herald_triggers::filter::compile(&trigger.spec).map_err(fail)?;
            let ordered = annotations::ordered(&trigger.metadata).map_err(fail)?;
            let start = annotations::start_from(&trigger.metadata).map_err(fail)?;
            pending.triggers.push(PendingTrigger {
                origin: origin.to_owned(),
                ident,
                namespace,
                name,
                generation: trigger.metadata.generation,
                spec: trigger.spec,
                filter,
                ordered,
                start,
            });
        }
        Resource::Channel(_) | Resource::InMemoryChannel(_) | Resource::KafkaChannel(_) => {
            validate_channel(&resource).map_err(fail)?;
            // Every channel kind shares one set of names per namespace: a Channel's backing
            // channel has its name, as in Knative.
            let key = (namespace.clone(), name.clone());
            if desired.flows.channels.contains_key(&key) {
                return Err(fail(FieldError::new(
                    "metadata.name",
                    format!("another channel in namespace {namespace} is called {name:?}"),
                )));
            }
            if let Some(run) = crate::config::flows::ChannelRun::of(&resource) {
                desired.flows.channels.insert(key, run);
            }
        }
        Resource::Subscription(subscription) => {
            validate_subscription_spec(&subscription.spec).map_err(fail)?;
            pending.subscriptions.push(PendingSubscription {
                origin: origin.to_owned(),
                ident,
                namespace,
                name,
                generation: subscription.metadata.generation,
                owned: subscription.metadata.owner_references.is_some(),
                spec: subscription.spec,
            });
        }
        Resource::Sequence(sequence) => {
            validate_sequence_spec(&sequence.spec).map_err(fail)?;
            let children = crate::config::flows::expand_sequence(&sequence)
                .map_err(|e| fail(FieldError::new("spec.channelTemplate.spec", e)))?;
            let run = crate::config::flows::FlowRun::of_sequence(&sequence);
            desired.flows.sequences.insert((namespace, name), run);
            for child in children {
                check_one(origin, child, desired, origins, pending)?;
            }
        }
        Resource::Parallel(parallel) => {
            validate_parallel_spec(&parallel.spec).map_err(fail)?;
            let children = crate::config::flows::expand_parallel(&parallel)
                .map_err(|e| fail(FieldError::new("spec.channelTemplate.spec", e)))?;
            let run = crate::config::flows::FlowRun::of_parallel(&parallel);
            desired.flows.parallels.insert((namespace, name), run);
            for child in children {
                check_one(origin, child, desired, origins, pending)?;
            }
        }
        Resource::EventType(event_type) => {
            let plan = crate::config::event_type::plan(&event_type, &namespace).map_err(fail)?;
            let key = ObjectKey::new(&crate::kinds::EVENT_TYPE, &namespace, &name);
            desired.event_types.insert(key, plan);
        }
        Resource::EventTransform(transform) => {
            herald_crds::transform::validate_event_transform_spec(&transform.spec).map_err(fail)?;
            let plan = crate::config::transform_plan::TransformPlan::of(
                &transform.spec,
                &namespace,
                transform.metadata.generation,
            )
            .map_err(|(path, message)| fail(FieldError::new(path, message)))?;
            desired
                .flows
                .transforms
                .insert((namespace, name), std::sync::Arc::new(plan));
        }
        Resource::RequestReply(request_reply) => {
            herald_crds::transform::validate_request_reply_spec(&request_reply.spec)
                .map_err(fail)?;
            let plan = crate::config::request_reply_plan::RequestReplyPlan::of(
                &request_reply.spec,
                &namespace,
                request_reply.metadata.generation,
            );
            desired
                .flows
                .request_replies
                .insert((namespace, name), plan);
        }
        Resource::EventPolicy(policy) => {
            let plan = crate::config::policy_plan::PolicyPlan::of(
                &policy.spec,
                &namespace,
                &name,
                policy.metadata.generation,
            )
            .map_err(fail)?;
            desired
                .policies
                .policies
                .insert((namespace.clone(), name.clone()), std::sync::Arc::new(plan));
        }
        source => {
            let plan = plan_source(&source, &namespace, &name).map_err(fail)?;
            desired.sources.insert(ObjectKey::of(&source), plan);
        }
    }
    note_for_policies(
        desired,
        kind_of_resource,
        &noted.0,
        &noted.1,
        labels.as_ref(),
    );
    Ok(())
}

/// Records what EventPolicies may name: an addressable they can apply to (with its labels),
/// or a sender with an identity.
fn note_for_policies(
    desired: &mut Desired,
    kind: &'static crate::kinds::Kind,
    namespace: &str,
    name: &str,
    labels: Option<&BTreeMap<String, String>>,
) {
    use herald_crds::OwnAddressable;
    let address = if *kind == crate::kinds::BROKER {
        Some(OwnAddressable::Broker)
    } else if *kind == crate::kinds::SEQUENCE {
        Some(OwnAddressable::Sequence)
    } else if *kind == crate::kinds::PARALLEL {
        Some(OwnAddressable::Parallel)
    } else if *kind == crate::kinds::EVENT_TRANSFORM {
        Some(OwnAddressable::EventTransform)
    } else if [
        &crate::kinds::CHANNEL,
        &crate::kinds::IN_MEMORY_CHANNEL,
        &crate::kinds::KAFKA_CHANNEL,
    ]
    .contains(&kind)
    {
        Some(OwnAddressable::Channel)
    } else {
        None
    };
    if let Some(address) = address {
        // A Channel answers also to its backing channel's kind, as Knative derives its
        // policies for the backing channel.
        let backing = desired
            .flows
            .channels
            .get(&(namespace.to_owned(), name.to_owned()))
            .filter(|_| address == OwnAddressable::Channel)
            .map(|run| run.backing_kind.clone());
        let mut kinds = vec![(kind.group, kind.kind)];
        if let Some(backing) = backing.as_deref() {
            kinds.push(("messaging.knative.dev", backing));
        }
        desired
            .policies
            .add_target(address, namespace, name, &kinds, labels);
    } else if kind.source || *kind == crate::kinds::TRIGGER || *kind == crate::kinds::SUBSCRIPTION {
        desired
            .policies
            .senders
            .insert(ObjectKey::new(kind, namespace, name));
    }
}

/// A channel's own fields.
fn validate_channel(resource: &Resource) -> Result<(), FieldError> {
    match resource {
        Resource::Channel(c) => validate_channel_spec(&c.spec),
        Resource::InMemoryChannel(c) => {
            validate_channelable("spec", &c.spec.subscribers, &c.spec.delivery)
        }
        Resource::KafkaChannel(c) => validate_kafka_channel_spec("spec", &c.spec),
        _ => Ok(()),
    }
}

/// Checks a source, its kind's own rules first, then the fields every source shares.
fn plan_source(resource: &Resource, namespace: &str, name: &str) -> Result<SourcePlan, FieldError> {
    let Some(source) = resource.as_source() else {
        return Err(FieldError::new("kind", "not a source"));
    };
    let runner = source.plan(namespace, name)?;
    validate_source_common(resource)?;
    let spec = source.spec();
    Ok(SourcePlan {
        kind: resource.kind(),
        generation: resource.meta().generation,
        spec: resource.spec_json(),
        sink: Target::of(spec.sink(), namespace),
        sink_ca_certs: super::trust::of(spec.sink()),
        overrides: spec.extensions(),
        runner,
    })
}

/// Checks what `herald controller` runs on the cluster itself (ContainerSources and
/// SinkBindings), which never goes through [`build_desired`].
pub fn validate_cluster_workload(resource: &Resource) -> Result<(), FieldError> {
    match resource {
        Resource::SinkBinding(binding) => {
            validate_binding_subject(binding)?;
            validate_source_common(resource)
        }
        // The pod template is the API server's to check when the Deployment is created;
        // `container::validate` is about running it as a local process.
        other => validate_source_common(other),
    }
}

/// Knative's rules for a SinkBinding's subject: in the binding's own namespace (a binding
/// must not reach into another team's workloads), and exactly one of `name` or `selector`.
fn validate_binding_subject(binding: &herald_crds::SinkBinding) -> Result<(), FieldError> {
    let subject = &binding.spec.subject;
    let own = binding.metadata.namespace.as_deref().unwrap_or("default");
    if let Some(namespace) = &subject.namespace {
        if namespace != own {
            return Err(FieldError::new(
                "spec.subject.namespace",
                format!("{namespace:?} is not the SinkBinding's namespace {own:?}: a binding binds workloads in its own namespace only"),
            ));
        }
    }
    herald_crds::validation::validate_api_version_kind(
        "spec.subject",
        &subject.api_version,
        &subject.kind,
    )?;
    match (&subject.name, &subject.selector) {
        (Some(_), Some(_)) => Err(FieldError::new(
            "spec.subject",
            "give name or selector, not both",
        )),
        (None, None) => Err(FieldError::new(
            "spec.subject",
            "give name (one workload) or selector (those its labels match)",
        )),
        _ => Ok(()),
    }
}

/// The fields every source shares: its sink and its extension names.
fn validate_source_common(resource: &Resource) -> Result<(), FieldError> {
    let Some(spec) = resource.source_spec() else {
        return Ok(());
    };
    validate_destination("spec.sink", spec.sink())?;
    for name in spec.extensions().keys() {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        {
            return Err(FieldError::new(
                format!("spec.ceOverrides.extensions.{name}"),
                "extension names are lower-case letters and digits",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotations::{
        MAX_AGE_ANNOTATION, MAX_BYTES_ANNOTATION, REPLICAS_ANNOTATION, RETENTION_ANNOTATION,
    };
    use crate::config::parse_documents;

    const BROKER: &str =
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: b}\n---\n";

    fn desired(text: &str) -> Result<Desired, ConfigError> {
        build_desired(parse_documents("f.yaml", text)?, &RefMap::default())
    }

    fn trigger(spec: &str) -> String {
        format!("{BROKER}apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: t}}\nspec: {spec}\n")
    }

    #[test]
    fn valid_config() {
        let d = desired(&trigger(
            "{broker: b, subscriber: {uri: 'http://localhost:1/x'}}",
        ))
        .unwrap();
        assert_eq!(d.brokers.len(), 1);
        assert_eq!(d.triggers.len(), 1);
    }

    #[test]
    fn errors_name_resource_and_field() {
        let cases = [
            ("{broker: b, subscriber: {}}", "spec.subscriber"),
            ("{broker: b, subscriber: {uri: 'http://x'}, delivery: {backoffDelay: 5s}}", "spec.delivery.backoffDelay"),
            ("{broker: b, subscriber: {uri: 'http://x'}, filter: {attributes: {Bad-Name: x}}}", "spec.filter.attributes.Bad-Name"),
            ("{broker: b, subscriber: {uri: 'http://x'}, filters: [{cesql: \"type = \"}]}", "spec.filters[0].cesql"),
            ("{broker: b, subscriber: {ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: other}}}", "spec.subscriber.ref"),
        ];
        for (spec, field) in cases {
            let err = desired(&trigger(spec)).unwrap_err();
            assert_eq!(err.resource.as_deref(), Some("Trigger default/t"), "{err}");
            assert_eq!(err.field.as_deref(), Some(field), "{err}");
        }
    }

    #[test]
    fn broker_settings_name_the_annotation() {
        let broker = |annotation: &str| {
            format!("apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: b\n  annotations: {{{annotation}}}\n")
        };
        let ok = desired(&broker("herald.dev/retention-max-age: PT1H, herald.dev/replicas: '3', herald.dev/retention: interest")).unwrap();
        let settings = &ok.brokers.values().next().unwrap().settings;
        assert_eq!(settings.max_age, Some(std::time::Duration::from_secs(3600)));
        assert_eq!(
            (settings.replicas, settings.interest_retention),
            (Some(3), true)
        );
        for (annotation, key) in [
            ("herald.dev/retention-max-age: 1h", MAX_AGE_ANNOTATION),
            ("herald.dev/retention-max-bytes: '-5'", MAX_BYTES_ANNOTATION),
            ("herald.dev/replicas: '9'", REPLICAS_ANNOTATION),
            ("herald.dev/retention: workqueue", RETENTION_ANNOTATION),
        ] {
            let err = desired(&broker(annotation)).unwrap_err();
            assert_eq!(
                err.field,
                Some(format!("metadata.annotations[{key}]")),
                "{err}"
            );
        }
    }

    #[test]
    fn a_trigger_waits_for_its_broker() {
        let text = "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: t}\nspec: {broker: later, subscriber: {uri: 'http://x'}}\n";
        let d = desired(text).unwrap();
        assert!(d.triggers.is_empty());
        assert_eq!(
            d.waiting_triggers
                .get(&("default".to_owned(), "t".to_owned())),
            Some(&BrokerKey::new("default", "later"))
        );
    }

    /// ApiServerSource `spec.filters` get a Trigger's checks: dialects, CESQL, nesting.
    #[test]
    fn api_server_source_filters_are_checked_as_a_triggers() {
        let source = |filters: &str| {
            format!("apiVersion: sources.knative.dev/v1\nkind: ApiServerSource\nmetadata: {{name: s}}\nspec: {{resources: [{{apiVersion: v1, kind: Event}}], sink: {{uri: 'http://x'}}, filters: {filters}}}\n")
        };
        assert!(desired(&source(
            "[{exact: {type: a}}, {not: {cesql: \"source = 'b'\"}}]"
        ))
        .is_ok());
        let deep = format!(
            "[{}{{exact: {{type: a}}}}{}]",
            "{not: ".repeat(herald_triggers::filter::MAX_DEPTH),
            "}".repeat(herald_triggers::filter::MAX_DEPTH)
        );
        let cases = [
            (
                "[{cesql: \"type = \"}]",
                "spec.filters[0].cesql".to_owned(),
                "invalid CESQL",
            ),
            (
                "[{exact: {type: a}, prefix: {type: b}}]",
                "spec.filters[0]".to_owned(),
                "multiple dialects",
            ),
            (
                "[{exact: {Bad: a}}]",
                "spec.filters[0].exact.Bad".to_owned(),
                "invalid attribute name",
            ),
            (
                &deep,
                format!(
                    "spec.filters[0]{}",
                    ".not".repeat(herald_triggers::filter::MAX_DEPTH)
                ),
                "nest deeper than 32",
            ),
        ];
        for (filters, field, message) in cases {
            let err = desired(&source(filters)).unwrap_err();
            assert_eq!(
                err.resource.as_deref(),
                Some("ApiServerSource default/s"),
                "{err}"
            );
            assert_eq!(err.field.as_deref(), Some(field.as_str()), "{err}");
            assert!(err.message.contains(message), "{err}");
        }
    }

    #[test]
    fn duplicates_are_rejected() {
        let err = desired(&format!("{BROKER}{BROKER}")).unwrap_err();
        assert!(err.message.contains("defined twice"), "{err}");
    }
}
