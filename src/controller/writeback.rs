//! What the leader writes to the API server: status subresources and the Trigger
//! finalizer, each only when it differs from what the object already has.

use chrono::{SecondsFormat, Utc};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::Client;
use serde_json::{json, Value};

use super::cache::api_resource;
use crate::kinds::Kind;

/// Removing a Trigger waits until Herald has deleted its consumer state in the log.
pub const FINALIZER: &str = "herald.dev/finalizer";

pub struct Writer {
    client: Client,
    /// `herald-{identity}`: the field manager of every write, so `managedFields` tells which
    /// replica wrote.
    params: PatchParams,
}

fn api(client: &Client, kind: &Kind, object: &DynamicObject) -> Api<DynamicObject> {
    let namespace = object.metadata.namespace.as_deref().unwrap_or("default");
    Api::namespaced_with(client.clone(), namespace, &api_resource(kind))
}

impl Writer {
    pub fn new(client: Client, identity: &str) -> Self {
        let params = PatchParams {
            field_manager: Some(format!("herald-{identity}")),
            ..PatchParams::default()
        };
        Self { client, params }
    }

    /// Writes `status` unless the object has it already. Conditions keep their
    /// `lastTransitionTime` while their status stays the same.
    pub async fn status(&self, kind: &Kind, object: &DynamicObject, mut status: Value) {
        let current = object.data.get("status").cloned().unwrap_or(Value::Null);
        carry_transition_times(&current, &mut status);
        if current == status {
            return;
        }
        // A merge patch keeps fields it does not name: remove the ones no longer reported.
        if let (Some(old), Some(new)) = (current.as_object(), status.as_object_mut()) {
            for key in old.keys() {
                new.entry(key.clone()).or_insert(Value::Null);
            }
        }
        let name = object.metadata.name.as_deref().unwrap_or_default();
        let patch = Patch::Merge(json!({ "status": status }));
        if let Err(error) = api(&self.client, kind, object)
            .patch_status(name, &self.params, &patch)
            .await
        {
            tracing::warn!(kind = kind.kind, name, %error, "cannot write status");
        }
    }

    /// Adds (`present`) or removes the finalizer; a concurrent change makes this a no-op
    /// (the next watch event brings the object back).
    pub async fn finalizer(&self, kind: &Kind, object: &DynamicObject, present: bool) {
        let mut finalizers = object.metadata.finalizers.clone().unwrap_or_default();
        let has = finalizers.iter().any(|f| f == FINALIZER);
        if has == present {
            return;
        }
        if present {
            finalizers.push(FINALIZER.to_owned());
        } else {
            finalizers.retain(|f| f != FINALIZER);
        }
        let name = object.metadata.name.as_deref().unwrap_or_default();
        let patch = Patch::Merge(json!({
            "metadata": {
                "finalizers": finalizers,
                "resourceVersion": object.metadata.resource_version,
            }
        }));
        if let Err(error) = api(&self.client, kind, object)
            .patch(name, &self.params, &patch)
            .await
        {
            tracing::info!(kind = kind.kind, name, %error, "finalizer not updated; retrying on the next change");
        }
    }
}

/// Copies each condition's `lastTransitionTime` from `current` when its status did not
/// change, and stamps the others with now.
fn carry_transition_times(current: &Value, status: &mut Value) {
    let old = current["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let now = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
    let Some(conditions) = status.get_mut("conditions").and_then(Value::as_array_mut) else {
        return;
    };
    for condition in conditions {
        let previous = old
            .iter()
            .find(|c| c["type"] == condition["type"] && c["status"] == condition["status"]);
        let time = previous
            .and_then(|c| c.get("lastTransitionTime").cloned())
            .unwrap_or_else(|| Value::String(now.clone()));
        condition["lastTransitionTime"] = time;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_times_change_only_with_the_status() {
        let current = json!({"conditions": [
            {"type": "Ready", "status": "False", "lastTransitionTime": "2020-01-01T00:00:00Z"},
            {"type": "BrokerReady", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z"}
        ]});
        let mut status = json!({"conditions": [
            {"type": "Ready", "status": "True"},
            {"type": "BrokerReady", "status": "True", "reason": "x"}
        ]});
        carry_transition_times(&current, &mut status);
        assert_ne!(
            status["conditions"][0]["lastTransitionTime"],
            "2020-01-01T00:00:00Z"
        );
        assert!(status["conditions"][0]["lastTransitionTime"].is_string());
        assert_eq!(
            status["conditions"][1]["lastTransitionTime"],
            "2020-01-01T00:00:00Z"
        );
    }
}
