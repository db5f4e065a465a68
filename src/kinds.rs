//! The resource kinds Herald serves, with their API group, version and plural: one table for
//! the admin API's paths, the store's folders and the CLI's names; and [`ObjectKey`], how
//! every module names one object. A leaf: it depends on no other module of the crate.

/// One kind of resource.
#[derive(Debug, PartialEq, Eq)]
pub struct Kind {
    pub kind: &'static str,
    pub group: &'static str,
    pub version: &'static str,
    /// The lowercase plural used in paths (`brokers`).
    pub plural: &'static str,
    /// Whether it is an event source (`herald get sources` lists these).
    pub source: bool,
    /// Another version accepted with the same schema (read as `version`).
    pub also_served: Option<&'static str>,
}

impl Kind {
    /// `group/version`, as in `apiVersion`.
    pub fn api_version(&self) -> String {
        format!("{}/{}", self.group, self.version)
    }

    /// Whether `api_version` (`group/version`) names this kind's schema.
    pub fn serves(&self, api_version: &str) -> bool {
        api_version.split_once('/').is_some_and(|(group, version)| {
            group == self.group && (version == self.version || Some(version) == self.also_served)
        })
    }

    /// The collection path in a namespace.
    pub fn collection_path(&self, namespace: &str) -> String {
        format!(
            "/apis/{}/{}/namespaces/{namespace}/{}",
            self.group, self.version, self.plural
        )
    }

    /// One object's path.
    pub fn object_path(&self, namespace: &str, name: &str) -> String {
        format!("{}/{name}", self.collection_path(namespace))
    }
}

pub const BROKER: Kind = Kind {
    kind: "Broker",
    group: "eventing.knative.dev",
    version: "v1",
    plural: "brokers",
    source: false,
    also_served: None,
};

pub const TRIGGER: Kind = Kind {
    kind: "Trigger",
    group: "eventing.knative.dev",
    version: "v1",
    plural: "triggers",
    source: false,
    also_served: None,
};

/// Stored as v1beta3; v1beta2 objects are read and converted (see `herald_crds::event_type`).
pub const EVENT_TYPE: Kind = Kind {
    kind: "EventType",
    group: "eventing.knative.dev",
    version: "v1beta3",
    plural: "eventtypes",
    source: false,
    also_served: Some("v1beta2"),
};

pub const NATS_SOURCE: Kind = Kind {
    kind: "NatsSource",
    group: "sources.herald.dev",
    version: "v1alpha1",
    plural: "natssources",
    source: true,
    also_served: None,
};

pub const PING_SOURCE: Kind = Kind {
    kind: "PingSource",
    group: "sources.knative.dev",
    version: "v1",
    plural: "pingsources",
    source: true,
    also_served: None,
};

pub const CONTAINER_SOURCE: Kind = Kind {
    kind: "ContainerSource",
    group: "sources.knative.dev",
    version: "v1",
    plural: "containersources",
    source: true,
    also_served: None,
};

pub const WEBHOOK_SOURCE: Kind = Kind {
    kind: "WebhookSource",
    group: "sources.herald.dev",
    version: "v1alpha1",
    plural: "webhooksources",
    source: true,
    also_served: None,
};

pub const KAFKA_SOURCE: Kind = Kind {
    kind: "KafkaSource",
    group: "sources.knative.dev",
    version: "v1",
    plural: "kafkasources",
    source: true,
    also_served: Some(herald_crds::kafka_source::ALSO_SERVED_VERSION),
};

pub const API_SERVER_SOURCE: Kind = Kind {
    kind: "ApiServerSource",
    group: "sources.knative.dev",
    version: "v1",
    plural: "apiserversources",
    source: true,
    also_served: None,
};

pub const SINK_BINDING: Kind = Kind {
    kind: "SinkBinding",
    group: "sources.knative.dev",
    version: "v1",
    plural: "sinkbindings",
    source: true,
    also_served: None,
};

pub const CHANNEL: Kind = Kind {
    kind: "Channel",
    group: "messaging.knative.dev",
    version: "v1",
    plural: "channels",
    source: false,
    also_served: None,
};

pub const IN_MEMORY_CHANNEL: Kind = Kind {
    kind: "InMemoryChannel",
    group: "messaging.knative.dev",
    version: "v1",
    plural: "inmemorychannels",
    source: false,
    also_served: None,
};

pub const KAFKA_CHANNEL: Kind = Kind {
    kind: "KafkaChannel",
    group: "messaging.knative.dev",
    version: "v1beta1",
    plural: "kafkachannels",
    source: false,
    also_served: None,
};

pub const SUBSCRIPTION: Kind = Kind {
    kind: "Subscription",
    group: "messaging.knative.dev",
    version: "v1",
    plural: "subscriptions",
    source: false,
    also_served: None,
};

pub const SEQUENCE: Kind = Kind {
    kind: "Sequence",
    group: "flows.knative.dev",
    version: "v1",
    plural: "sequences",
    source: false,
    also_served: None,
};

pub const PARALLEL: Kind = Kind {
    kind: "Parallel",
    group: "flows.knative.dev",
    version: "v1",
    plural: "parallels",
    source: false,
    also_served: None,
};

pub const EVENT_TRANSFORM: Kind = Kind {
    kind: "EventTransform",
    group: "eventing.knative.dev",
    version: "v1alpha1",
    plural: "eventtransforms",
    source: false,
    also_served: None,
};

pub const REQUEST_REPLY: Kind = Kind {
    kind: "RequestReply",
    group: "eventing.knative.dev",
    version: "v1alpha1",
    plural: "requestreplies",
    source: false,
    also_served: None,
};

pub const EVENT_POLICY: Kind = Kind {
    kind: "EventPolicy",
    group: "eventing.knative.dev",
    version: "v1alpha1",
    plural: "eventpolicies",
    source: false,
    also_served: None,
};

/// Identifies an object: its kind, namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(kind: &Kind, namespace: &str, name: &str) -> Self {
        Self {
            kind: kind.kind,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// Every kind, in the order brokers → channels → flows → triggers, subscriptions, event
/// types and policies → sources (the order `apply` creates them: each after what it may refer to).
pub const KINDS: [&Kind; 19] = [
    &BROKER,
    &CHANNEL,
    &IN_MEMORY_CHANNEL,
    &KAFKA_CHANNEL,
    &SEQUENCE,
    &PARALLEL,
    &EVENT_TRANSFORM,
    &REQUEST_REPLY,
    &TRIGGER,
    &SUBSCRIPTION,
    &EVENT_TYPE,
    &EVENT_POLICY,
    &PING_SOURCE,
    &CONTAINER_SOURCE,
    &WEBHOOK_SOURCE,
    &KAFKA_SOURCE,
    &API_SERVER_SOURCE,
    &SINK_BINDING,
    &NATS_SOURCE,
];

/// The kind served at `/apis/{group}/{version}/.../{plural}`.
pub fn by_path(group: &str, version: &str, plural: &str) -> Option<&'static Kind> {
    KINDS.into_iter().find(|k| {
        k.group == group
            && (k.version == version || k.also_served == Some(version))
            && k.plural == plural
    })
}

/// A kind by what people type: `broker`, `brokers`, `Broker`, `natssource`, ...
pub fn by_name(name: &str) -> Option<&'static Kind> {
    let name = name.to_ascii_lowercase();
    // Knative's short names.
    let short = match name.as_str() {
        "ch" => Some(&CHANNEL),
        "imc" => Some(&IN_MEMORY_CHANNEL),
        "kc" => Some(&KAFKA_CHANNEL),
        "sub" => Some(&SUBSCRIPTION),
        "rr" => Some(&REQUEST_REPLY),
        _ => None,
    };
    if short.is_some() {
        return short;
    }
    KINDS.into_iter().find(|k| {
        k.plural == name
            || k.kind.to_ascii_lowercase() == name
            || format!("{}s", k.kind.to_ascii_lowercase()) == name
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups() {
        assert_eq!(
            by_path("eventing.knative.dev", "v1", "triggers"),
            Some(&TRIGGER)
        );
        assert_eq!(by_path("eventing.knative.dev", "v2", "triggers"), None);
        assert_eq!(by_name("Broker"), Some(&BROKER));
        assert_eq!(by_name("natssources"), Some(&NATS_SOURCE));
        assert_eq!(by_name("pods"), None);
        assert_eq!(by_name("imc"), Some(&IN_MEMORY_CHANNEL));
        assert_eq!(by_name("sequences"), Some(&SEQUENCE));
        assert_eq!(
            TRIGGER.object_path("ns", "t"),
            "/apis/eventing.knative.dev/v1/namespaces/ns/triggers/t"
        );
    }
}
