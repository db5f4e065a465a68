//! The registry of kinds Herald runs: one line per kind below makes its [`Resource`] variant
//! and everything generic about it (parsing, metadata, JSON). Source kinds also say how they
//! are checked and run, through their [`SourceKind`] implementation in `crate::source_kinds`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::kinds::{self, Kind, ObjectKey};
use crate::source_kinds::SourceKind;

/// Makes [`Resource`] from the list of kinds: `plain` kinds, then `sources` (whose CRD type
/// implements [`SourceKind`] and whose spec has a `sink`).
macro_rules! resources {
    (
        plain { $( $(#[$pmeta:meta])* $pvariant:ident($ptype:ty) = $pkind:path, )* }
        sources { $( $(#[$smeta:meta])* $svariant:ident($stype:ty) = $skind:path, )* }
    ) => {
        /// A resource in a config file that Herald knows.
        #[derive(Clone, Debug)]
        pub enum Resource {
            $( $(#[$pmeta])* $pvariant($ptype), )*
            $( $(#[$smeta])* $svariant($stype), )*
        }

        impl Resource {
            pub fn kind(&self) -> &'static Kind {
                match self {
                    $( Resource::$pvariant(_) => &$pkind, )*
                    $( Resource::$svariant(_) => &$skind, )*
                }
            }

            /// Parses an object of `kind`; the error keeps the path of the field at fault.
            pub fn parse(
                kind: &Kind,
                value: serde_yaml_ng::Value,
            ) -> Result<Self, serde_path_to_error::Error<serde_yaml_ng::Error>> {
                use serde_path_to_error::deserialize;
                // Two versions, one stored (v1beta2 is converted).
                if *kind == kinds::EVENT_TYPE {
                    return crate::config::event_type::parse_event_type(value).map(Resource::EventType);
                }
                $( if *kind == $pkind {
                    return deserialize(value).map(Resource::$pvariant);
                } )*
                $( if *kind == $skind {
                    return deserialize(value).map(Resource::$svariant);
                } )*
                deserialize(value).map(|never: Unregistered| match never {})
            }

            pub fn meta(&self) -> &ObjectMeta {
                match self {
                    $( Resource::$pvariant(r) => &r.metadata, )*
                    $( Resource::$svariant(r) => &r.metadata, )*
                }
            }

            pub fn meta_mut(&mut self) -> &mut ObjectMeta {
                match self {
                    $( Resource::$pvariant(r) => &mut r.metadata, )*
                    $( Resource::$svariant(r) => &mut r.metadata, )*
                }
            }

            /// The source kind's checks and runner, for source kinds.
            pub fn as_source(&self) -> Option<&dyn SourceKind> {
                match self {
                    $( Resource::$pvariant(_) => None, )*
                    $( Resource::$svariant(r) => Some(r), )*
                }
            }

            /// Every destination of the resource with its field path: a trigger's subscriber
            /// and dead-letter sink, a broker's dead-letter sink, a source's sink.
            pub fn destinations_mut(
                &mut self,
            ) -> Vec<(String, &mut herald_crds::Destination)> {
                match self {
                    $( Resource::$svariant(r) => vec![("spec.sink".to_owned(), &mut r.spec.sink)], )*
                    other => other.plain_destinations_mut(),
                }
            }

            /// The spec alone, to tell a spec change (new generation) from a metadata change.
            pub fn spec_json(&self) -> serde_json::Value {
                match self {
                    $( Resource::$pvariant(r) => serde_json::to_value(&r.spec), )*
                    $( Resource::$svariant(r) => serde_json::to_value(&r.spec), )*
                }
                .unwrap_or_default()
            }

            /// Drops any `status` the client sent: status is Herald's to report.
            pub fn clear_status(&mut self) {
                match self {
                    $( Resource::$pvariant(r) => r.status = None, )*
                    $( Resource::$svariant(r) => r.status = None, )*
                }
            }

            /// The whole object as JSON (`apiVersion`, `kind`, `metadata`, `spec`, `status`).
            pub fn to_json(&self) -> serde_json::Value {
                match self {
                    $( Resource::$pvariant(r) => serde_json::to_value(r), )*
                    $( Resource::$svariant(r) => serde_json::to_value(r), )*
                }
                .unwrap_or_default()
            }
        }
    };
}

resources! {
    plain {
        Broker(herald_crds::Broker) = kinds::BROKER,
        Trigger(herald_crds::Trigger) = kinds::TRIGGER,
        Channel(herald_crds::Channel) = kinds::CHANNEL,
        InMemoryChannel(herald_crds::InMemoryChannel) = kinds::IN_MEMORY_CHANNEL,
        KafkaChannel(herald_crds::KafkaChannel) = kinds::KAFKA_CHANNEL,
        Subscription(herald_crds::Subscription) = kinds::SUBSCRIPTION,
        Sequence(herald_crds::Sequence) = kinds::SEQUENCE,
        Parallel(herald_crds::Parallel) = kinds::PARALLEL,
        EventType(herald_crds::EventType) = kinds::EVENT_TYPE,
        EventTransform(herald_crds::EventTransform) = kinds::EVENT_TRANSFORM,
        RequestReply(herald_crds::RequestReply) = kinds::REQUEST_REPLY,
        EventPolicy(herald_crds::EventPolicy) = kinds::EVENT_POLICY,
    }
    sources {
        NatsSource(herald_crds::NatsSource) = kinds::NATS_SOURCE,
        PingSource(herald_crds::PingSource) = kinds::PING_SOURCE,
        /// Boxed: a pod template is far larger than the other kinds.
        ContainerSource(Box<herald_crds::ContainerSource>) = kinds::CONTAINER_SOURCE,
        WebhookSource(herald_crds::WebhookSource) = kinds::WEBHOOK_SOURCE,
        KafkaSource(herald_crds::KafkaSource) = kinds::KAFKA_SOURCE,
        ApiServerSource(herald_crds::ApiServerSource) = kinds::API_SERVER_SOURCE,
        /// Runs only under `herald controller`: it binds Kubernetes workloads.
        SinkBinding(herald_crds::SinkBinding) = kinds::SINK_BINDING,
    }
}

/// No kind: what [`Resource::parse`] is left with for a kind missing above (every kind of
/// [`kinds::KINDS`] is listed; a test checks it).
enum Unregistered {}

impl<'de> serde::Deserialize<'de> for Unregistered {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom("not a kind Herald knows"))
    }
}

impl Resource {
    /// The destinations of the kinds that are not sources: a trigger's subscriber and
    /// dead-letter sink, a broker's or channel's dead-letter sink, a Subscription's
    /// subscriber and reply, every step, filter, subscriber and reply of a Sequence or
    /// Parallel.
    fn plain_destinations_mut(&mut self) -> Vec<(String, &mut herald_crds::Destination)> {
        fn dead_letter<'a>(
            path: &str,
            delivery: Option<&'a mut herald_crds::DeliverySpec>,
        ) -> Option<(String, &'a mut herald_crds::Destination)> {
            delivery
                .and_then(|d| d.dead_letter_sink.as_mut())
                .map(|d| (format!("{path}.deadLetterSink"), d))
        }
        let mut all = Vec::new();
        match self {
            Resource::Broker(b) => {
                all.extend(dead_letter("spec.delivery", b.spec.delivery.as_mut()))
            }
            Resource::Trigger(t) => {
                let spec = &mut t.spec;
                all.push(("spec.subscriber".to_owned(), &mut spec.subscriber));
                all.extend(dead_letter("spec.delivery", spec.delivery.as_mut()));
            }
            Resource::Channel(r) => {
                all.extend(dead_letter("spec.delivery", r.spec.delivery.as_mut()))
            }
            Resource::InMemoryChannel(r) => {
                all.extend(dead_letter("spec.delivery", r.spec.delivery.as_mut()))
            }
            Resource::KafkaChannel(r) => {
                all.extend(dead_letter("spec.delivery", r.spec.delivery.as_mut()))
            }
            Resource::Subscription(r) => {
                let spec = &mut r.spec;
                all.extend(
                    spec.subscriber
                        .as_mut()
                        .map(|d| ("spec.subscriber".into(), d)),
                );
                all.extend(spec.reply.as_mut().map(|d| ("spec.reply".into(), d)));
                all.extend(dead_letter("spec.delivery", spec.delivery.as_mut()));
            }
            Resource::Sequence(r) => {
                let spec = &mut r.spec;
                for (i, step) in spec.steps.iter_mut().enumerate() {
                    let path = format!("spec.steps[{i}]");
                    all.extend(dead_letter(
                        &format!("{path}.delivery"),
                        step.delivery.as_mut(),
                    ));
                    all.push((path, &mut step.destination));
                }
                all.extend(spec.reply.as_mut().map(|d| ("spec.reply".into(), d)));
            }
            Resource::Parallel(r) => {
                let spec = &mut r.spec;
                for (i, branch) in spec.branches.iter_mut().enumerate() {
                    let path = format!("spec.branches[{i}]");
                    all.extend(
                        branch
                            .filter
                            .as_mut()
                            .map(|d| (format!("{path}.filter"), d)),
                    );
                    all.push((format!("{path}.subscriber"), &mut branch.subscriber));
                    all.extend(branch.reply.as_mut().map(|d| (format!("{path}.reply"), d)));
                    all.extend(dead_letter(
                        &format!("{path}.delivery"),
                        branch.delivery.as_mut(),
                    ));
                }
                all.extend(spec.reply.as_mut().map(|d| ("spec.reply".into(), d)));
            }
            Resource::EventTransform(r) => {
                all.extend(r.spec.sink.as_mut().map(|d| ("spec.sink".into(), d)));
            }
            _ => {}
        }
        all
    }

    /// The shared source fields (`sink`, `ceOverrides`), for source kinds.
    pub fn source_spec(&self) -> Option<&dyn herald_crds::SourceSpec> {
        self.as_source().map(|source| source.spec())
    }

    /// The resource's namespace (`default` when unset) and name.
    pub fn namespaced_name(&self) -> (String, String) {
        let meta = self.meta();
        (
            meta.namespace
                .clone()
                .unwrap_or_else(|| herald_crds::DEFAULT_NAMESPACE.to_owned()),
            meta.name.clone().unwrap_or_default(),
        )
    }

    /// Its [`ObjectKey`].
    pub fn key(&self) -> ObjectKey {
        let (namespace, name) = self.namespaced_name();
        ObjectKey::new(self.kind(), &namespace, &name)
    }
}

impl ObjectKey {
    pub fn of(resource: &Resource) -> Self {
        resource.key()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind of the table parses as its own variant.
    #[test]
    fn every_kind_is_registered() {
        for kind in kinds::KINDS {
            let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(&format!(
                "{{apiVersion: {}, kind: {}, metadata: {{name: x}}, spec: {{}}}}",
                kind.api_version(),
                kind.kind
            ))
            .unwrap();
            // A kind whose spec has required fields fails on them, not on being unknown.
            match Resource::parse(kind, value) {
                Ok(resource) => assert_eq!(resource.kind(), kind),
                Err(error) => assert!(
                    !error.to_string().contains("not a kind Herald knows"),
                    "{}: {error}",
                    kind.kind
                ),
            }
        }
    }
}
