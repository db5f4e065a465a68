//! Which EventPolicies apply to an addressable (Knative's `GetEventPoliciesForResource`): the
//! policies of its namespace whose `to` is empty or names it, by `ref` (group, kind and name,
//! ignoring case and version) or by `selector` (group and kind, then labels).

use std::collections::BTreeMap;
use std::sync::Arc;

use herald_crds::api_server_source::LabelSelectorRequirement;

use crate::config::policy_plan::{Policies, PolicyPlan, PolicyTarget, TargetFacts, ToPlan};

/// The policies applying to `target`, in name order.
pub fn policies_for<'a>(policies: &'a Policies, target: &PolicyTarget) -> Vec<&'a Arc<PolicyPlan>> {
    let Some(facts) = policies.targets.get(target) else {
        return Vec::new();
    };
    policies
        .policies
        .range((target.namespace.clone(), String::new())..)
        .take_while(|((namespace, _), _)| *namespace == target.namespace)
        .map(|(_, plan)| plan)
        .filter(|plan| applies(plan, target, facts))
        .collect()
}

/// Whether `plan` applies to `target` (same namespace assumed by the caller, checked again).
pub fn applies(plan: &PolicyPlan, target: &PolicyTarget, facts: &TargetFacts) -> bool {
    if plan.namespace != target.namespace {
        return false;
    }
    if plan.to.is_empty() {
        return true;
    }
    plan.to.iter().any(|to| match to {
        ToPlan::Ref { group, kind, name } => {
            name.eq_ignore_ascii_case(&target.name) && has_kind(facts, group, kind)
        }
        ToPlan::Selector {
            group,
            kind,
            match_labels,
            match_expressions,
        } => {
            has_kind(facts, group, kind)
                && labels_match(&facts.labels, match_labels, match_expressions)
        }
    })
}

fn has_kind(facts: &TargetFacts, group: &str, kind: &str) -> bool {
    facts.kinds.iter().any(|(g, k)| g == group && k == kind)
}

/// Kubernetes' label selector: every `matchLabels` pair and every expression holds (an empty
/// selector matches everything).
pub fn labels_match(
    labels: &BTreeMap<String, String>,
    match_labels: &BTreeMap<String, String>,
    expressions: &[LabelSelectorRequirement],
) -> bool {
    match_labels
        .iter()
        .all(|(key, value)| labels.get(key) == Some(value))
        && expressions.iter().all(|e| {
            let value = labels.get(&e.key);
            match e.operator.as_str() {
                "In" => value.is_some_and(|v| e.values.contains(v)),
                "NotIn" => value.is_none_or(|v| !e.values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                // The CRD schema and Kubernetes refuse other operators; match nothing.
                _ => false,
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors() {
        let labels: BTreeMap<String, String> =
            [("team".to_owned(), "a".to_owned())].into_iter().collect();
        let expr = |key: &str, operator: &str, values: &[&str]| LabelSelectorRequirement {
            key: key.into(),
            operator: operator.into(),
            values: values.iter().map(|v| v.to_string()).collect(),
        };
        assert!(labels_match(&labels, &BTreeMap::new(), &[]));
        assert!(labels_match(
            &labels,
            &labels,
            &[expr("team", "In", &["a", "b"])]
        ));
        assert!(!labels_match(
            &labels,
            &BTreeMap::new(),
            &[expr("team", "NotIn", &["a"])]
        ));
        assert!(labels_match(
            &labels,
            &BTreeMap::new(),
            &[expr("x", "DoesNotExist", &[])]
        ));
        assert!(!labels_match(
            &labels,
            &BTreeMap::new(),
            &[expr("x", "Exists", &[])]
        ));
        let other: BTreeMap<String, String> =
            [("team".to_owned(), "b".to_owned())].into_iter().collect();
        assert!(!labels_match(&labels, &other, &[]));
    }
}
