//! What every source shares (Knative's source duck type): `sink`, `ceOverrides`, and the
//! status with `SinkProvided`, `Ready` and `sinkUri`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::status::Condition;
use crate::Destination;

/// Knative's `ceOverrides`: extensions set on every event a source sends.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CloudEventOverrides {
    #[serde(default)]
    pub extensions: BTreeMap<String, String>,
}

/// Knative's source status shape.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink_uri: Option<String>,
    /// Its sender identity, with `authentication-oidc` on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<crate::status::AuthStatus>,
}

/// The parts of a source's spec that Herald handles the same way for every source.
pub trait SourceSpec {
    fn sink(&self) -> &Destination;
    fn ce_overrides(&self) -> Option<&CloudEventOverrides>;

    /// The extensions to set on every event.
    fn extensions(&self) -> BTreeMap<String, String> {
        self.ce_overrides()
            .map(|o| o.extensions.clone())
            .unwrap_or_default()
    }
}

/// Implements [`SourceSpec`] for a spec with `sink` and `ce_overrides` fields.
#[macro_export]
macro_rules! source_spec {
    ($spec:ty) => {
        impl $crate::source::SourceSpec for $spec {
            fn sink(&self) -> &$crate::Destination {
                &self.sink
            }
            fn ce_overrides(&self) -> Option<&$crate::source::CloudEventOverrides> {
                self.ce_overrides.as_ref()
            }
        }
    };
}

source_spec!(crate::NatsSourceSpec);
source_spec!(crate::PingSourceSpec);
source_spec!(crate::ContainerSourceSpec);
source_spec!(crate::WebhookSourceSpec);
source_spec!(crate::KafkaSourceSpec);
source_spec!(crate::ApiServerSourceSpec);
source_spec!(crate::SinkBindingSpec);
