//! EventPolicies as validation leaves them: `to` and `from` parsed, the filters compiled
//! once with the Trigger's compiler (same dialects, CESQL and nesting bound), and what a
//! policy may name: the addressables it can apply to (with their labels) and the senders
//! that have an identity.

use std::collections::{BTreeMap, BTreeSet};

use herald_crds::api_server_source::LabelSelectorRequirement;
use herald_crds::{EventPolicySpec, FieldError, OwnAddressable};
use herald_triggers::Filter;

use crate::kinds::ObjectKey;

/// One EventPolicy as the authorizer and its status read it.
#[derive(Clone, Debug)]
pub struct PolicyPlan {
    pub generation: Option<i64>,
    pub namespace: String,
    pub name: String,
    /// Empty: every addressable of the namespace.
    pub to: Vec<ToPlan>,
    pub from: Vec<FromPlan>,
    /// `spec.filters`, every element must pass (no filter: everything passes).
    pub filter: Filter,
}

/// A `to` entry: group and kind compare case-insensitively, the version is ignored (as
/// Knative's `GetEventPoliciesForResource`).
#[derive(Clone, Debug, PartialEq)]
pub enum ToPlan {
    Ref {
        group: String,
        kind: String,
        name: String,
    },
    Selector {
        group: String,
        kind: String,
        match_labels: BTreeMap<String, String>,
        match_expressions: Vec<LabelSelectorRequirement>,
    },
}

/// A `from` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FromPlan {
    /// A sending resource (its namespace filled in): resolved to its identity's subject.
    Ref {
        api_version: String,
        kind: String,
        namespace: String,
        name: String,
    },
    /// A subject as written, `*` allowed last.
    Sub(String),
}

/// The group of an `apiVersion` (`eventing.knative.dev/v1` → `eventing.knative.dev`; `v1` → ``).
pub fn group_of(api_version: &str) -> &str {
    api_version.split_once('/').map_or("", |(group, _)| group)
}

impl PolicyPlan {
    /// Parses and compiles a checked spec.
    pub fn of(
        spec: &EventPolicySpec,
        namespace: &str,
        name: &str,
        generation: Option<i64>,
    ) -> Result<Self, FieldError> {
        herald_crds::event_policy::validate_event_policy_spec(spec)?;
        let filter = herald_triggers::filter::compile_filters(&spec.filters)?;
        let to = spec
            .to
            .iter()
            .filter_map(|to| match (&to.reference, &to.selector) {
                (Some(r), _) => Some(ToPlan::Ref {
                    group: group_of(&r.api_version).to_ascii_lowercase(),
                    kind: r.kind.to_ascii_lowercase(),
                    name: r.name.clone(),
                }),
                (None, Some(s)) => Some(ToPlan::Selector {
                    group: group_of(&s.api_version).to_ascii_lowercase(),
                    kind: s.kind.to_ascii_lowercase(),
                    match_labels: s.match_labels.clone(),
                    match_expressions: s.match_expressions.clone(),
                }),
                (None, None) => None,
            })
            .collect();
        let from = spec
            .from
            .iter()
            .filter_map(|from| match (&from.reference, &from.sub) {
                (Some(r), _) => Some(FromPlan::Ref {
                    api_version: r.api_version.clone(),
                    kind: r.kind.clone(),
                    namespace: r.namespace.clone().unwrap_or_else(|| namespace.to_owned()),
                    name: r.name.clone(),
                }),
                (None, Some(sub)) => Some(FromPlan::Sub(sub.clone())),
                (None, None) => None,
            })
            .collect();
        Ok(Self {
            generation,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            to,
            from,
            filter,
        })
    }
}

/// An addressable a policy can apply to: where events enter it, and its namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PolicyTarget {
    pub address: OwnAddressable,
    pub namespace: String,
    pub name: String,
}

/// What a `to` entry compares against: the kinds the addressable answers to (a Channel also
/// as its backing channel's kind), lowercase `(group, kind)`, and its labels.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TargetFacts {
    pub kinds: Vec<(String, String)>,
    pub labels: BTreeMap<String, String>,
}

/// Everything the EventPolicies of a desired state need besides themselves.
#[derive(Clone, Debug, Default)]
pub struct Policies {
    pub policies: BTreeMap<(String, String), std::sync::Arc<PolicyPlan>>,
    pub targets: BTreeMap<PolicyTarget, TargetFacts>,
    /// Objects with a sender identity (Triggers, Subscriptions, sources) that a `from.ref`
    /// may name.
    pub senders: BTreeSet<ObjectKey>,
}

impl Policies {
    /// Notes an addressable a policy may apply to.
    pub fn add_target(
        &mut self,
        address: OwnAddressable,
        namespace: &str,
        name: &str,
        kinds: &[(&str, &str)],
        labels: Option<&BTreeMap<String, String>>,
    ) {
        let facts = self
            .targets
            .entry(PolicyTarget {
                address,
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            })
            .or_default();
        for (group, kind) in kinds {
            let pair = (group.to_ascii_lowercase(), kind.to_ascii_lowercase());
            if !facts.kinds.contains(&pair) {
                facts.kinds.push(pair);
            }
        }
        if let Some(labels) = labels {
            facts.labels.extend(labels.clone());
        }
    }
}
