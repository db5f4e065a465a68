//! Knative's `Destination` duck type: where events are sent.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A destination: a reference to an addressable (a Broker here), a URI, or both
/// (then the URI is resolved relative to the reference's address).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Destination {
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<KReference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// PEM CA certificates to trust for this destination (Knative spells the key `CACerts`).
    #[serde(rename = "CACerts", default, skip_serializing_if = "Option::is_none")]
    pub ca_certs: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
}

/// A reference to another resource by kind and name (Knative's `KReference`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KReference {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// The kinds of object Herald itself serves an address for, so that a `ref` to one needs no
/// `--resolve` mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OwnAddressable {
    /// `eventing.knative.dev` Broker: `/{namespace}/{name}`.
    Broker,
    /// `messaging.knative.dev` Channel, InMemoryChannel or KafkaChannel: `/channels/{namespace}/{name}`.
    Channel,
    /// `flows.knative.dev` Sequence: `/sequences/{namespace}/{name}`.
    Sequence,
    /// `flows.knative.dev` Parallel: `/parallels/{namespace}/{name}`.
    Parallel,
    /// `eventing.knative.dev` EventTransform: `/eventtransforms/{namespace}/{name}`.
    EventTransform,
    /// `eventing.knative.dev` RequestReply: `/requestreplies/{namespace}/{name}`.
    RequestReply,
}

impl OwnAddressable {
    /// Which of Herald's addressables a reference names, by API group and kind.
    pub fn of(reference: &KReference) -> Option<Self> {
        let group = reference.api_version.split_once('/')?.0;
        match (group, reference.kind.as_str()) {
            ("eventing.knative.dev", "Broker") => Some(Self::Broker),
            ("messaging.knative.dev", "Channel" | "InMemoryChannel" | "KafkaChannel") => {
                Some(Self::Channel)
            }
            ("flows.knative.dev", "Sequence") => Some(Self::Sequence),
            ("flows.knative.dev", "Parallel") => Some(Self::Parallel),
            ("eventing.knative.dev", "EventTransform") => Some(Self::EventTransform),
            ("eventing.knative.dev", "RequestReply") => Some(Self::RequestReply),
            _ => None,
        }
    }

    /// The path of the object's address on Herald's ingress listener.
    pub fn path(self, namespace: &str, name: &str) -> String {
        match self {
            Self::Broker => format!("/{namespace}/{name}"),
            Self::Channel => format!("/channels/{namespace}/{name}"),
            Self::Sequence => format!("/sequences/{namespace}/{name}"),
            Self::Parallel => format!("/parallels/{namespace}/{name}"),
            Self::EventTransform => format!("/eventtransforms/{namespace}/{name}"),
            Self::RequestReply => format!("/requestreplies/{namespace}/{name}"),
        }
    }
}
