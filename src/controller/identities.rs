//! Senders' ServiceAccounts on the cluster (Knative's `SetupOIDCServiceAccount`): with
//! sender identity on, every Trigger, Subscription and source Herald runs gets the
//! ServiceAccount its tokens name, `{name}-oidc-{group}-{kind}`, labelled
//! `eventing.knative.dev/oidc: enabled` and owned by the resource (the garbage collector
//! deletes it with its owner). Its status names it in `auth.serviceAccountName`, and
//! `OIDCIdentityCreated` says whether it exists.

use std::collections::BTreeMap;

use herald_crds::Condition;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DynamicObject, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::Client;
use serde_json::{json, Value};

use crate::identity::naming;
use crate::kinds::{self, Kind};

/// Knative's reason when a sender has no ServiceAccount.
pub const NOT_CREATED_REASON: &str = "Unable to resolve service account for OIDC authentication";

/// The senders' ServiceAccounts: read from the watch cache, created when missing.
pub struct Identities {
    client: Client,
    /// The labelled ServiceAccounts of the watched namespaces (see `cache`).
    accounts: Vec<Store<ServiceAccount>>,
}

/// The ServiceAccount a sending object's tokens name; `None` for objects that send nothing
/// (brokers, channels, ...). ContainerSource and SinkBinding pods run as theirs
/// (`controller::workloads`).
pub fn sender_account(kind: &Kind, name: &str) -> Option<String> {
    let sends =
        kind.kind == kinds::TRIGGER.kind || kind.kind == kinds::SUBSCRIPTION.kind || kind.source;
    sends.then(|| naming::service_account_name(kind.group, kind.kind, name))
}

/// Whether `account` is controlled by the object with `uid`.
fn owned_by(account: &ServiceAccount, uid: &str) -> bool {
    account
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|owner| owner.uid == uid)
}

impl Identities {
    pub fn new(client: Client, accounts: Vec<Store<ServiceAccount>>) -> Self {
        Self { client, accounts }
    }

    fn cached(&self, namespace: &str, name: &str) -> Option<std::sync::Arc<ServiceAccount>> {
        let key = ObjectRef::new(name).within(namespace);
        self.accounts.iter().find_map(|store| store.get(&key))
    }

    /// Makes sure `object`'s ServiceAccount `account` exists and is owned by it; why not,
    /// otherwise. A cached, owned account costs no request.
    pub async fn ensure(
        &self,
        kind: &Kind,
        object: &DynamicObject,
        account: &str,
    ) -> Result<(), String> {
        let namespace = object.metadata.namespace.as_deref().unwrap_or("default");
        let name = object.metadata.name.as_deref().unwrap_or_default();
        let uid = object.metadata.uid.as_deref().unwrap_or_default();
        let not_owned = || {
            format!(
                "ServiceAccount {namespace}/{account} exists and is not owned by {} {name}",
                kind.kind
            )
        };
        if let Some(existing) = self.cached(namespace, account) {
            return owned_by(&existing, uid).then_some(()).ok_or_else(not_owned);
        }
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), namespace);
        let desired = ServiceAccount {
            metadata: ObjectMeta {
                name: Some(account.to_owned()),
                namespace: Some(namespace.to_owned()),
                labels: Some(BTreeMap::from([(
                    naming::OIDC_LABEL.0.to_owned(),
                    naming::OIDC_LABEL.1.to_owned(),
                )])),
                owner_references: Some(vec![OwnerReference {
                    api_version: kind.api_version(),
                    kind: kind.kind.to_owned(),
                    name: name.to_owned(),
                    uid: uid.to_owned(),
                    controller: Some(true),
                    // Blocking the owner's deletion would need update on its finalizers.
                    block_owner_deletion: None,
                }]),
                ..ObjectMeta::default()
            },
            ..ServiceAccount::default()
        };
        match api.create(&PostParams::default(), &desired).await {
            Ok(_) => {
                tracing::info!(%namespace, %account, owner = %name, kind = kind.kind, "created the sender's ServiceAccount");
                Ok(())
            }
            // Created by an earlier pass the watch has not shown yet, or someone else's.
            Err(kube::Error::Api(status)) if status.code == 409 => match api.get(account).await {
                Ok(existing) if owned_by(&existing, uid) => Ok(()),
                Ok(_) => Err(not_owned()),
                Err(error) => Err(format!(
                    "cannot read ServiceAccount {namespace}/{account}: {error}"
                )),
            },
            Err(error) => Err(format!(
                "cannot create ServiceAccount {namespace}/{account}: {error}"
            )),
        }
    }
}

/// Writes the sender's identity into its status: `auth.serviceAccountName`, and
/// `OIDCIdentityCreated` True, or False with Knative's reason (then `Ready` is False too,
/// as in Knative, unless it already says why not).
pub fn decorate(status: &mut Value, account: &str, created: &Result<(), String>) {
    let Some(conditions) = status.get_mut("conditions").and_then(Value::as_array_mut) else {
        return;
    };
    let condition = match created {
        Ok(()) => Condition::new("OIDCIdentityCreated", true, None, None),
        Err(why) => Condition::new(
            "OIDCIdentityCreated",
            false,
            Some(NOT_CREATED_REASON),
            Some(why.clone()),
        ),
    };
    let condition = serde_json::to_value(condition).unwrap_or(Value::Null);
    conditions.retain(|c| c["type"] != "OIDCIdentityCreated");
    if let Err(why) = created {
        for ready in conditions.iter_mut() {
            if ready["type"] == "Ready" && ready["status"] == "True" {
                *ready = json!({
                    "type": "Ready", "status": "False",
                    "reason": NOT_CREATED_REASON, "message": why,
                });
            }
        }
    }
    // Before Ready, where the runtime's status puts it.
    let at = conditions
        .iter()
        .position(|c| c["type"] == "Ready")
        .unwrap_or(conditions.len());
    conditions.insert(at, condition);
    status["auth"] = json!({ "serviceAccountName": account });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn senders_have_knatives_account_names() {
        assert_eq!(
            sender_account(&kinds::TRIGGER, "t").as_deref(),
            Some("t-oidc-eventing.knative.dev-trigger")
        );
        assert_eq!(
            sender_account(&kinds::SUBSCRIPTION, "s").as_deref(),
            Some("s-oidc-messaging.knative.dev-subscription")
        );
        assert_eq!(
            sender_account(&kinds::PING_SOURCE, "p").as_deref(),
            Some("p-oidc-sources.knative.dev-pingsource")
        );
        assert_eq!(sender_account(&kinds::BROKER, "b"), None);
        assert_eq!(
            sender_account(&kinds::CONTAINER_SOURCE, "c").as_deref(),
            Some("c-oidc-sources.knative.dev-containersource")
        );
        assert_eq!(
            sender_account(&kinds::SINK_BINDING, "b").as_deref(),
            Some("b-oidc-sources.knative.dev-sinkbinding")
        );
    }

    #[test]
    fn a_missing_account_makes_the_sender_not_ready() {
        let mut status = json!({"conditions": [
            {"type": "BrokerReady", "status": "True"}, {"type": "Ready", "status": "True"}]});
        decorate(&mut status, "sa", &Err("forbidden".into()));
        assert_eq!(status["auth"]["serviceAccountName"], "sa");
        assert_eq!(status["conditions"][1]["type"], "OIDCIdentityCreated");
        assert_eq!(status["conditions"][1]["status"], "False");
        assert_eq!(status["conditions"][1]["reason"], NOT_CREATED_REASON);
        assert_eq!(status["conditions"][2]["status"], "False");
        assert_eq!(status["conditions"][2]["message"], "forbidden");

        decorate(&mut status, "sa", &Ok(()));
        let created = status["conditions"].as_array().unwrap();
        assert_eq!(created.len(), 3);
        assert_eq!(created[1]["status"], "True");
    }
}
