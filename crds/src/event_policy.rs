//! `eventing.knative.dev/v1alpha1` EventPolicy: who (`from`) may send which events
//! (`filters`) to which addressables (`to`), with Knative's field names and its validation
//! vocabulary (`eventpolicy_validation.go`).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::api_server_source::LabelSelectorRequirement;
use crate::status::Condition;
use crate::validation::FieldError;
use crate::SubscriptionsApiFilter;

/// The most `to` or `from` entries one policy may hold: Herald's bound, so that one policy's
/// compiled form (and the work of resolving it) stays small.
pub const MAX_ENTRIES: usize = 256;
/// The longest `from[].sub` pattern, in bytes.
pub const MAX_SUBJECT_BYTES: usize = 1024;

/// An EventPolicy: events sent to the resources of `to` must come from a subject of `from`
/// and pass every filter of `filters`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "eventing.knative.dev",
    version = "v1alpha1",
    kind = "EventPolicy",
    namespaced,
    status = "EventPolicyStatus",
    category = "all",
    category = "knative",
    category = "eventing",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventPolicySpec {
    /// The resources the policy applies to; empty: every resource of its namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<EventPolicySpecTo>,
    /// Who may send; empty: nobody.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<EventPolicySpecFrom>,
    /// Subscriptions API filters every event must pass (all of them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<SubscriptionsApiFilter>,
}

/// One `to` entry: exactly one of `ref` or `selector`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventPolicySpecTo {
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<EventPolicyToReference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<EventPolicySelector>,
}

/// A resource of the policy's namespace, by kind and name.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventPolicyToReference {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub name: String,
}

/// The resources of a kind whose labels match.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventPolicySelector {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub match_labels: std::collections::BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// One `from` entry: exactly one of `ref` (a sending resource) or `sub` (a token subject,
/// `*` allowed as the last character).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventPolicySpecFrom {
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<EventPolicyFromReference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
}

/// A sending resource; `namespace` defaults to the policy's.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventPolicyFromReference {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventPolicyStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The subjects `from` resolves to: each `ref`'s sender identity, each `sub` as written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<String>,
}

/// One policy a resource's `status.policies` lists.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppliedEventPolicy {
    pub api_version: String,
    pub name: String,
}

/// Knative's rules for `to` and `from`; the filters are checked as a Trigger's (dialects,
/// CESQL, nesting) by the caller, which compiles them with the Trigger's compiler.
pub fn validate_event_policy_spec(spec: &EventPolicySpec) -> Result<(), FieldError> {
    for (field, len) in [("spec.to", spec.to.len()), ("spec.from", spec.from.len())] {
        if len > MAX_ENTRIES {
            return Err(FieldError::new(
                field,
                format!("invalid value: {len} entries, more than Herald's bound of {MAX_ENTRIES}"),
            ));
        }
    }
    for (i, to) in spec.to.iter().enumerate() {
        let path = format!("spec.to[{i}]");
        exactly_one(
            &path,
            to.reference.is_some(),
            to.selector.is_some(),
            "ref, selector",
        )?;
        if let Some(r) = &to.reference {
            required(
                &format!("{path}.ref"),
                &r.api_version,
                &r.kind,
                Some(&r.name),
            )?;
        }
        if let Some(s) = &to.selector {
            required(&format!("{path}.selector"), &s.api_version, &s.kind, None)?;
        }
    }
    for (i, from) in spec.from.iter().enumerate() {
        let path = format!("spec.from[{i}]");
        exactly_one(
            &path,
            from.reference.is_some(),
            from.sub.is_some(),
            "ref, sub",
        )?;
        if let Some(r) = &from.reference {
            required(
                &format!("{path}.ref"),
                &r.api_version,
                &r.kind,
                Some(&r.name),
            )?;
        }
        if let Some(sub) = &from.sub {
            validate_subject_pattern(&format!("{path}.sub"), sub)?;
        }
    }
    Ok(())
}

/// Knative's "exactly one of" check on an entry with two alternative forms.
fn exactly_one(path: &str, first: bool, second: bool, forms: &str) -> Result<(), FieldError> {
    match (first, second) {
        (true, true) => Err(FieldError::new(
            path.to_owned(),
            format!("expected exactly one, got both: {forms}"),
        )),
        (false, false) => Err(FieldError::new(
            path.to_owned(),
            format!("expected exactly one, got neither: {forms}"),
        )),
        _ => Ok(()),
    }
}

/// `apiVersion`, `kind` (and `name`, for a ref) must be set: Knative's "missing field(s)".
fn required(
    path: &str,
    api_version: &str,
    kind: &str,
    name: Option<&str>,
) -> Result<(), FieldError> {
    let mut fields = vec![("apiVersion", api_version), ("kind", kind)];
    fields.extend(name.map(|name| ("name", name)));
    for (field, value) in fields {
        if value.trim().is_empty() {
            return Err(FieldError::new(
                format!("{path}.{field}"),
                "missing field(s)",
            ));
        }
    }
    Ok(())
}

/// A `sub`: not empty, bounded, and `*` only as its last character.
fn validate_subject_pattern(path: &str, sub: &str) -> Result<(), FieldError> {
    if sub.is_empty() {
        return Err(FieldError::new(path, "missing field(s)"));
    }
    if sub.len() > MAX_SUBJECT_BYTES {
        return Err(FieldError::new(
            path,
            format!(
                "invalid value: {} bytes, more than Herald's bound of {MAX_SUBJECT_BYTES}",
                sub.len()
            ),
        ));
    }
    if sub[..sub.len() - 1].contains('*') {
        return Err(FieldError::new(
            path,
            format!("invalid value: {sub}: '*' is only allowed as the last character of a sub"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> EventPolicySpec {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn knatives_rules() {
        let ok = spec("{to: [{ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: b}}], from: [{sub: 'system:serviceaccount:ns:*'}, {ref: {apiVersion: sources.knative.dev/v1, kind: PingSource, name: p}}]}");
        assert_eq!(validate_event_policy_spec(&ok), Ok(()));
        assert_eq!(validate_event_policy_spec(&spec("{}")), Ok(()));
        let cases = [
            ("{to: [{}]}", "spec.to[0]", "got neither"),
            ("{to: [{ref: {apiVersion: a/v1, kind: Broker, name: b}, selector: {apiVersion: a/v1, kind: Broker}}]}", "spec.to[0]", "got both"),
            ("{to: [{ref: {kind: Broker, name: b}}]}", "spec.to[0].ref.apiVersion", "missing field(s)"),
            ("{to: [{ref: {apiVersion: a/v1, kind: Broker}}]}", "spec.to[0].ref.name", "missing field(s)"),
            ("{to: [{selector: {apiVersion: a/v1}}]}", "spec.to[0].selector.kind", "missing field(s)"),
            ("{from: [{}]}", "spec.from[0]", "got neither"),
            ("{from: [{sub: a, ref: {apiVersion: a/v1, kind: K, name: n}}]}", "spec.from[0]", "got both"),
            ("{from: [{sub: 'a*b'}]}", "spec.from[0].sub", "only allowed as the last"),
            ("{from: [{sub: '**'}]}", "spec.from[0].sub", "only allowed as the last"),
            ("{from: [{sub: ''}]}", "spec.from[0].sub", "missing field(s)"),
            ("{from: [{ref: {apiVersion: a/v1, name: n}}]}", "spec.from[0].ref.kind", "missing field(s)"),
        ];
        for (yaml, path, message) in cases {
            let error = validate_event_policy_spec(&spec(yaml)).unwrap_err();
            assert_eq!(error.path, path, "{yaml}: {error}");
            assert!(error.message.contains(message), "{yaml}: {error}");
        }
    }

    #[test]
    fn entries_are_bounded() {
        let from = vec![
            EventPolicySpecFrom {
                reference: None,
                sub: Some("s".into()),
            };
            MAX_ENTRIES + 1
        ];
        let error = validate_event_policy_spec(&EventPolicySpec {
            from,
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(error.path, "spec.from");
    }
}
