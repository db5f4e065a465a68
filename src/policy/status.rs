//! Status of EventPolicies (`AuthenticationEnabled`, `SubjectsResolved`, `Ready`,
//! `status.from`) and of the addressables they apply to (`status.policies` and
//! `EventPoliciesReady`, Knative's `UpdateStatusWithProvidedEventPolicies`).

use herald_crds::{AppliedEventPolicy, Condition, EventPolicyStatus, OwnAddressable};

use super::PolicySettings;
use crate::config::policy_plan::{Policies, PolicyPlan, PolicyTarget};

pub const API_VERSION: &str = "eventing.knative.dev/v1alpha1";

/// A policy's status; Ready when authentication is on and every `from.ref` resolved.
pub fn policy_status(
    plan: &PolicyPlan,
    policies: &Policies,
    settings: PolicySettings,
) -> EventPolicyStatus {
    let (from, unresolved) = super::subject::resolve(&plan.from, policies);
    let authentication = if settings.authentication {
        Condition::new("AuthenticationEnabled", true, None, None)
    } else {
        Condition::new(
            "AuthenticationEnabled",
            false,
            Some("OIDCAuthenticationDisabled"),
            Some("OIDC authentication is not enabled: start Herald with OIDC authentication of ingress for EventPolicies to take effect".into()),
        )
    };
    let subjects = if unresolved.is_empty() {
        Condition::new("SubjectsResolved", true, None, None)
    } else {
        Condition::new(
            "SubjectsResolved",
            false,
            Some("SubjectsNotResolved"),
            Some(format!(
                "no sender with an identity: {}",
                unresolved.join(", ")
            )),
        )
    };
    let ready = match (settings.authentication, unresolved.is_empty()) {
        (true, true) => Condition::new("Ready", true, None, None),
        (false, _) => Condition::new(
            "Ready",
            false,
            authentication.reason.as_deref(),
            authentication.message.clone(),
        ),
        (true, false) => Condition::new(
            "Ready",
            false,
            subjects.reason.as_deref(),
            subjects.message.clone(),
        ),
    };
    EventPolicyStatus {
        observed_generation: plan.generation,
        conditions: vec![authentication, subjects, ready],
        from,
    }
}

/// Whether a policy is Ready.
pub fn is_ready(plan: &PolicyPlan, policies: &Policies, settings: PolicySettings) -> bool {
    settings.authentication && super::subject::resolve(&plan.from, policies).1.is_empty()
}

/// The addressable whose status `kind` (a Herald kind name) describes, if policies apply to
/// that kind.
pub fn target_of(kind: &str, namespace: &str, name: &str) -> Option<PolicyTarget> {
    use crate::kinds;
    let address = match kind {
        k if k == kinds::BROKER.kind => OwnAddressable::Broker,
        k if k == kinds::SEQUENCE.kind => OwnAddressable::Sequence,
        k if k == kinds::PARALLEL.kind => OwnAddressable::Parallel,
        k if k == kinds::EVENT_TRANSFORM.kind => OwnAddressable::EventTransform,
        k if [
            kinds::CHANNEL.kind,
            kinds::IN_MEMORY_CHANNEL.kind,
            kinds::KAFKA_CHANNEL.kind,
        ]
        .contains(&k) =>
        {
            OwnAddressable::Channel
        }
        _ => return None,
    };
    Some(PolicyTarget {
        address,
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    })
}

/// Adds `status.policies` (the Ready policies applying) and `EventPoliciesReady` to the
/// status of an addressable of `kind`; when that condition is False, `Ready` is too (it is
/// one of the conditions Ready depends on, as in Knative). Other kinds are left as they are.
pub fn decorate(
    policies: &Policies,
    settings: PolicySettings,
    kind: &str,
    namespace: &str,
    name: &str,
    status: &mut serde_json::Value,
) {
    let Some(target) = target_of(kind, namespace, name) else {
        return;
    };
    let Some(object) = status.as_object_mut() else {
        return;
    };
    let applying = super::apply::policies_for(policies, &target);
    let (ready, not_ready): (Vec<_>, Vec<_>) = applying
        .iter()
        .partition(|plan| is_ready(plan, policies, settings));
    let condition = if applying.is_empty() {
        if settings.authentication {
            Condition::new(
                "EventPoliciesReady",
                true,
                Some("DefaultAuthorizationMode"),
                Some(format!(
                    "Default authz mode is {:?}",
                    settings.default_mode.name()
                )),
            )
        } else {
            Condition::new(
                "EventPoliciesReady",
                true,
                Some("OIDCDisabled"),
                Some(
                    "Feature \"authentication-oidc\" must be enabled to support Authorization"
                        .into(),
                ),
            )
        }
    } else if not_ready.is_empty() {
        Condition::new("EventPoliciesReady", true, None, None)
    } else {
        let names: Vec<&str> = not_ready
            .iter()
            .map(|p: &&&std::sync::Arc<PolicyPlan>| p.name.as_str())
            .collect();
        Condition::new(
            "EventPoliciesReady",
            false,
            Some("EventPoliciesNotReady"),
            Some(format!("event policies {} are not ready", names.join(", "))),
        )
    };
    let listed: Vec<AppliedEventPolicy> = ready
        .iter()
        .map(|plan| AppliedEventPolicy {
            api_version: API_VERSION.to_owned(),
            name: plan.name.clone(),
        })
        .collect();
    if !listed.is_empty() {
        object.insert(
            "policies".into(),
            serde_json::to_value(listed).unwrap_or_default(),
        );
    }
    let failed = condition.status == "False";
    let conditions = object
        .entry("conditions")
        .or_insert_with(|| serde_json::Value::Array(Vec::new()));
    let Some(conditions) = conditions.as_array_mut() else {
        return;
    };
    if failed {
        for existing in conditions.iter_mut() {
            if existing["type"] == "Ready" && existing["status"] == "True" {
                existing["status"] = "False".into();
                existing["reason"] = "EventPoliciesNotReady".into();
                existing["message"] = condition.message.clone().unwrap_or_default().into();
            }
        }
    }
    // Before Ready, as Knative sorts conditions by type.
    let at = conditions
        .iter()
        .position(|c| c["type"] == "Ready")
        .unwrap_or(conditions.len());
    conditions.insert(at, serde_json::to_value(condition).unwrap_or_default());
}
