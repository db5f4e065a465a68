//! Cross-resource validation: the desired state Herald will run.

use std::collections::BTreeMap;

use herald_broker::BrokerKey;
use herald_crds::validation::validate_destination;
use herald_crds::validation::{
    validate_delivery, validate_name, validate_namespace, validate_trigger_spec,
};
use herald_crds::{Broker, Destination, FieldError, NatsSourceSpec, Trigger, DEFAULT_NAMESPACE};

use super::{ConfigError, Loaded, RefMap, Resource};
use crate::store::ObjectKey;

/// Namespaced name of a trigger.
pub type TriggerKey = (String, String);

/// The validated desired state: every broker and trigger to run.
#[derive(Clone, Debug, Default)]
pub struct Desired {
    pub brokers: BTreeMap<BrokerKey, Broker>,
    pub triggers: BTreeMap<TriggerKey, Trigger>,
    /// Every source, of every kind. A source's sink broker need not exist yet: the source
    /// waits (status `SinkProvided=False`) until it does.
    pub sources: BTreeMap<ObjectKey, Resource>,
    /// Triggers whose broker does not exist yet, with that broker: accepted (as Knative
    /// does, `Ready=False BrokerDoesNotExist`) and started once the broker appears.
    pub waiting_triggers: BTreeMap<TriggerKey, BrokerKey>,
    /// Declared EventTypes (v1beta3); a referenced broker need not exist
    /// (`ReferenceExists=False`).
    pub event_types: BTreeMap<ObjectKey, herald_crds::EventType>,
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
    let mut triggers = Vec::new();
    for Loaded {
        origin,
        mut resource,
    } in loaded
    {
        let key = ObjectKey::of(&resource);
        let checked = match refs.resolve(&mut resource) {
            Ok(()) => check_one(&origin, resource, &mut desired, &mut origins),
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
            Ok(Some(trigger)) => triggers.push(trigger),
            Ok(None) => {}
            Err(error) => rejected.push(Rejected {
                key,
                error,
                missing_broker: None,
            }),
        }
    }
    for (origin, ident, namespace, name, trigger) in triggers {
        let key = ObjectKey::new(&crate::kinds::TRIGGER, &namespace, &name);
        let fail = |path: &str, message: String| ConfigError {
            origin: origin.clone(),
            resource: Some(ident.clone()),
            field: Some(path.to_owned()),
            message,
        };
        let broker = BrokerKey::new(namespace.clone(), trigger.spec.broker.clone());
        if !desired.brokers.contains_key(&broker) {
            rejected.push(Rejected {
                key,
                error: fail("spec.broker", format!("broker {broker} does not exist")),
                missing_broker: Some(broker),
            });
            continue;
        }
        let destinations = [
            ("spec.subscriber", Some(&trigger.spec.subscriber)),
            (
                "spec.delivery.deadLetterSink",
                trigger
                    .spec
                    .delivery
                    .as_ref()
                    .and_then(|d| d.dead_letter_sink.as_ref()),
            ),
        ];
        let mut problem = None;
        for (path, destination) in destinations {
            if let Some(target) = destination.and_then(|d| referenced_broker(d, &namespace)) {
                if !desired.brokers.contains_key(&target) {
                    problem.get_or_insert_with(|| {
                        fail(
                            &format!("{path}.ref"),
                            format!("broker {target} does not exist"),
                        )
                    });
                }
            }
        }
        match problem {
            Some(error) => rejected.push(Rejected {
                key,
                error,
                missing_broker: None,
            }),
            None => {
                desired.triggers.insert((namespace, name), trigger);
            }
        }
    }
    (desired, rejected)
}

/// A trigger that passed its own checks, waiting for the check of its references.
type PendingTrigger = (String, String, String, String, Trigger);

/// Checks one resource on its own and adds it to `desired`; a trigger is returned instead,
/// to be checked against the brokers once all are known.
fn check_one(
    origin: &str,
    resource: Resource,
    desired: &mut Desired,
    origins: &mut BTreeMap<String, String>,
) -> Result<Option<PendingTrigger>, ConfigError> {
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
    match resource {
        Resource::Broker(broker) => {
            broker_settings(&broker).map_err(fail)?;
            crate::catalog::BrokerCatalogSettings::of(&broker).map_err(fail)?;
            if let Some(delivery) = &broker.spec.delivery {
                validate_delivery("spec.delivery", delivery).map_err(fail)?;
            }
            desired
                .brokers
                .insert(BrokerKey::new(namespace, name), broker);
        }
        Resource::EventType(event_type) => {
            herald_crds::event_type::validate_event_type_spec(&event_type.spec).map_err(fail)?;
            let key = ObjectKey::new(&crate::kinds::EVENT_TYPE, &namespace, &name);
            desired.event_types.insert(key, event_type);
        }
        Resource::NatsSource(_)
        | Resource::PingSource(_)
        | Resource::ContainerSource(_)
        | Resource::WebhookSource(_)
        | Resource::KafkaSource(_)
        | Resource::ApiServerSource(_)
        | Resource::SinkBinding(_) => {
            validate_source(&resource).map_err(fail)?;
            desired.sources.insert(ObjectKey::of(&resource), resource);
        }
        Resource::Trigger(trigger) => {
            validate_trigger_spec(&trigger.spec).map_err(fail)?;
            herald_triggers::filter::compile(&trigger.spec).map_err(fail)?;
            if let Some(order) = crate::runtime::delivery_order(&trigger) {
                if order != "ordered" && order != "unordered" {
                    return Err(fail(FieldError::new(
                        format!(
                            "metadata.annotations[{}]",
                            herald_triggers::plan::DELIVERY_ORDER_ANNOTATION
                        ),
                        format!("{order:?} is not a delivery order: use ordered or unordered"),
                    )));
                }
            }
            start_from(&trigger).map_err(fail)?;
            return Ok(Some((origin.to_owned(), ident, namespace, name, trigger)));
        }
    }
    Ok(None)
}

/// The broker a destination's `ref` names, if any.
pub fn referenced_broker(destination: &Destination, default_namespace: &str) -> Option<BrokerKey> {
    let reference = destination.reference.as_ref()?;
    let namespace = reference
        .namespace
        .clone()
        .unwrap_or_else(|| default_namespace.to_owned());
    Some(BrokerKey::new(namespace, reference.name.clone()))
}

/// Where a new trigger starts reading its broker: `earliest`, `latest` (Knative's behaviour,
/// the default) or an RFC 3339 time to replay from.
pub const START_FROM_ANNOTATION: &str = "herald.dev/start-from";

/// The trigger's starting point; errors name the annotation.
pub fn start_from(trigger: &Trigger) -> Result<herald_broker::StartFrom, FieldError> {
    use herald_broker::StartFrom;
    let Some(text) = trigger
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(START_FROM_ANNOTATION))
    else {
        return Ok(StartFrom::Latest);
    };
    match text.as_str() {
        "latest" => Ok(StartFrom::Latest),
        "earliest" => Ok(StartFrom::Earliest),
        other => chrono::DateTime::parse_from_rfc3339(other)
            .map(|time| StartFrom::Time(time.into()))
            .map_err(|e| {
                FieldError::new(
                    format!("metadata.annotations[{START_FROM_ANNOTATION}]"),
                    format!(
                        "{other:?} is not earliest, latest or an RFC 3339 time like 2026-01-02T15:04:05Z: {e}"
                    ),
                )
            }),
    }
}

/// Herald's per-broker log settings, from the Broker's annotations.
pub const MAX_AGE_ANNOTATION: &str = "herald.dev/retention-max-age";
pub const MAX_BYTES_ANNOTATION: &str = "herald.dev/retention-max-bytes";
pub const REPLICAS_ANNOTATION: &str = "herald.dev/replicas";
pub const RETENTION_ANNOTATION: &str = "herald.dev/retention";
pub const PARTITIONS_ANNOTATION: &str = "herald.dev/partitions";

/// Reads the `herald.dev/*` log settings of a broker; errors name the annotation.
pub fn broker_settings(broker: &Broker) -> Result<herald_broker::log::BrokerSettings, FieldError> {
    let mut settings = herald_broker::log::BrokerSettings::default();
    let Some(annotations) = &broker.metadata.annotations else {
        return Ok(settings);
    };
    let field = |name: &str| format!("metadata.annotations[{name}]");
    if let Some(text) = annotations.get(MAX_AGE_ANNOTATION) {
        let age = herald_crds::duration::parse_iso8601(text)
            .map_err(|e| FieldError::new(field(MAX_AGE_ANNOTATION), e))?;
        settings.max_age = Some(age);
    }
    if let Some(text) = annotations.get(MAX_BYTES_ANNOTATION) {
        let bytes = text.parse::<i64>().ok().filter(|b| *b > 0);
        let bytes = bytes.ok_or_else(|| {
            FieldError::new(
                field(MAX_BYTES_ANNOTATION),
                format!("{text:?} is not a positive number of bytes"),
            )
        })?;
        settings.max_bytes = Some(bytes);
    }
    if let Some(text) = annotations.get(REPLICAS_ANNOTATION) {
        let replicas = text.parse::<usize>().ok().filter(|r| (1..=5).contains(r));
        let replicas = replicas.ok_or_else(|| {
            FieldError::new(
                field(REPLICAS_ANNOTATION),
                format!("{text:?} is not a replica count from 1 to 5"),
            )
        })?;
        settings.replicas = Some(replicas);
    }
    if let Some(text) = annotations.get(PARTITIONS_ANNOTATION) {
        let partitions = text.parse::<i32>().ok().filter(|p| *p >= 1);
        settings.partitions = Some(partitions.ok_or_else(|| {
            FieldError::new(
                field(PARTITIONS_ANNOTATION),
                format!("{text:?} is not a partition count of 1 or more"),
            )
        })?);
    }
    if let Some(text) = annotations.get(RETENTION_ANNOTATION) {
        settings.interest_retention = match text.as_str() {
            "limits" => false,
            "interest" => true,
            _ => {
                return Err(FieldError::new(
                    field(RETENTION_ANNOTATION),
                    format!("{text:?} is not a retention: use limits or interest"),
                ))
            }
        };
    }
    Ok(settings)
}

/// Checks a source: its kind's own rules, then the fields every source shares.
fn validate_source(resource: &Resource) -> Result<(), FieldError> {
    match resource {
        Resource::NatsSource(s) => {
            not_built_source("NatsSource", cfg!(feature = "nats"), "nats")?;
            validate_nats_source(&s.spec)?
        }
        Resource::PingSource(s) => herald_sources::ping::validate(&s.spec)?,
        Resource::ContainerSource(s) => herald_sources::container::validate(&s.spec)?,
        Resource::WebhookSource(s) => herald_sources::webhook::validate(&s.spec)?,
        #[cfg(feature = "kafka")]
        Resource::KafkaSource(s) => herald_sources::kafka::validate(&s.spec)?,
        #[cfg(not(feature = "kafka"))]
        Resource::KafkaSource(_) => not_built_source("KafkaSource", false, "kafka")?,
        Resource::ApiServerSource(s) => crate::apiserver_source::validate(&s.spec)?,
        Resource::SinkBinding(_) => {
            return Err(FieldError::new(
                "kind",
                "a SinkBinding binds Kubernetes workloads: it runs under `herald controller`; for a local program use `herald run --sink broker:NAME -- PROGRAM`",
            ))
        }
        Resource::Broker(_) | Resource::Trigger(_) | Resource::EventType(_) => return Ok(()),
    }
    validate_source_common(resource)
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

/// Refuses a source kind this build left out (`built` is false), naming the cargo feature.
fn not_built_source(kind: &str, built: bool, feature: &str) -> Result<(), FieldError> {
    if built {
        return Ok(());
    }
    Err(FieldError::new(
        "kind",
        format!("this herald is built without {kind}s (cargo feature `{feature}`)"),
    ))
}

/// Checks a NatsSource's own fields.
fn validate_nats_source(spec: &NatsSourceSpec) -> Result<(), FieldError> {
    if !["nats://", "tls://", "ws://", "wss://"]
        .iter()
        .any(|scheme| spec.url.starts_with(scheme))
    {
        return Err(FieldError::new(
            "spec.url",
            format!("{:?} is not a NATS URL (nats://host:port)", spec.url),
        ));
    }
    if spec.subjects.is_empty() {
        return Err(FieldError::new(
            "spec.subjects",
            "at least one subject is required",
        ));
    }
    for (i, subject) in spec.subjects.iter().enumerate() {
        if subject.is_empty() || subject.contains(char::is_whitespace) {
            return Err(FieldError::new(
                format!("spec.subjects[{i}]"),
                format!("{subject:?} is not a NATS subject"),
            ));
        }
    }
    if let Some(js) = &spec.jetstream {
        if js.stream.is_empty() {
            return Err(FieldError::new(
                "spec.jetstream.stream",
                "the stream name is required",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
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
        let settings = broker_settings(ok.brokers.values().next().unwrap()).unwrap();
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
