//! The ingress decision: compiled from the desired state once per control-plane change
//! (subjects resolved, filters compiled, policies grouped per addressable), read per request
//! without allocation beyond the lookup key.
//!
//! Rule (README "EventPolicy"): with at least one Ready policy applying to the addressable,
//! an event is allowed when **any** of them names the caller's subject in its `from` and the
//! event passes all of that policy's filters (Knative's documented rule; its code stops at the
//! first policy, in name order, whose subject matches). Without one, the default mode decides.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use herald_broker::CloudEvent;
use herald_crds::OwnAddressable;
use herald_triggers::Filter;

use super::{DefaultMode, PolicySettings};
use crate::config::policy_plan::PolicyTarget;
use crate::config::Desired;

/// Why ingress refuses an event (answered 403).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("no authenticated subject: {target} requires a token (OIDC authentication)")]
    NoSubject { target: String },
    #[error("no EventPolicy applying to {target} admits subject {subject:?} (policies: {policies})")]
    NotInFrom {
        target: String,
        subject: String,
        policies: String,
    },
    #[error("{event}of type {event_type:?} does not pass the filters of the EventPolicies admitting subject {subject:?} to {target} ({policies})")]
    Filtered {
        target: String,
        subject: String,
        policies: String,
        /// `event N ` in a batch, else empty.
        event: String,
        event_type: String,
    },
    #[error("no EventPolicy applies to {target} and the default authorization mode is deny-all")]
    DenyAll { target: String },
    #[error("no EventPolicy applies to {target} and the default authorization mode allow-same-namespace admits only subjects of namespace {namespace:?} (system:serviceaccount:{namespace}:...), not {subject:?}")]
    OtherNamespace {
        target: String,
        namespace: String,
        subject: String,
    },
}

/// One Ready policy as ingress checks it.
#[derive(Debug)]
struct Rule {
    policy: String,
    subjects: Vec<String>,
    filter: Filter,
}

/// What the authorizer knows between two control-plane changes.
#[derive(Debug, Default)]
struct Compiled {
    settings: PolicySettings,
    /// The Ready policies applying to each addressable, in name order.
    rules: HashMap<PolicyTarget, Vec<Arc<Rule>>>,
}

/// The compiled policies of the running desired state, shared by the runtime (which sets
/// them on each change) and the ingress (which reads them per request).
#[derive(Debug, Default)]
pub struct Authorizer {
    compiled: RwLock<Arc<Compiled>>,
}

impl Authorizer {
    /// Compiles the policies of `desired`: a policy's subjects and filter are built once and
    /// shared by every addressable it applies to.
    pub fn set(&self, desired: &Desired, settings: PolicySettings) {
        let policies = &desired.policies;
        let mut rules: HashMap<PolicyTarget, Vec<Arc<Rule>>> = HashMap::new();
        let mut built: HashMap<(String, String), Arc<Rule>> = HashMap::new();
        for target in policies.targets.keys() {
            for plan in super::apply::policies_for(policies, target) {
                if !super::status::is_ready(plan, policies, settings) {
                    continue;
                }
                let rule = built
                    .entry((plan.namespace.clone(), plan.name.clone()))
                    .or_insert_with(|| {
                        Arc::new(Rule {
                            policy: plan.name.clone(),
                            subjects: super::subject::resolve(&plan.from, policies).0,
                            filter: plan.filter.clone(),
                        })
                    });
                rules.entry(target.clone()).or_default().push(rule.clone());
            }
        }
        let compiled = Arc::new(Compiled { settings, rules });
        if let Ok(mut current) = self.compiled.write() {
            *current = compiled;
        }
    }

    /// Whether ingress checks anything at all (OIDC authentication on).
    pub fn enforcing(&self) -> bool {
        self.compiled
            .read()
            .map(|c| c.settings.authentication)
            .unwrap_or(false)
    }

    /// Decides for `events` sent to the addressable at the ingress `path` by `subject` (the
    /// token's verified subject; `None` when the request carried none).
    pub fn check_path(
        &self,
        path: &str,
        subject: Option<&str>,
        events: &[CloudEvent],
    ) -> Result<(), Denied> {
        match target_of_path(path) {
            Some(target) => self.check(&target, subject, events),
            // Not an addressable's path: ingress answers 404/400 on its own.
            None => Ok(()),
        }
    }

    /// Decides for `events` sent to `target` by `subject`.
    pub fn check(
        &self,
        target: &PolicyTarget,
        subject: Option<&str>,
        events: &[CloudEvent],
    ) -> Result<(), Denied> {
        let compiled = match self.compiled.read() {
            Ok(compiled) => compiled.clone(),
            // A poisoned lock: refuse rather than let everything in.
            Err(_) => {
                return Err(Denied::DenyAll {
                    target: describe(target),
                })
            }
        };
        if !compiled.settings.authentication {
            return Ok(());
        }
        let Some(subject) = subject else {
            return Err(Denied::NoSubject {
                target: describe(target),
            });
        };
        let Some(rules) = compiled.rules.get(target).filter(|r| !r.is_empty()) else {
            return default_mode(compiled.settings.default_mode, target, subject);
        };
        let admitting: Vec<&Rule> = rules
            .iter()
            .filter(|rule| super::subject::contained(subject, &rule.subjects))
            .map(Arc::as_ref)
            .collect();
        let names = |rules: &mut dyn Iterator<Item = &str>| rules.collect::<Vec<_>>().join(", ");
        if admitting.is_empty() {
            return Err(Denied::NotInFrom {
                target: describe(target),
                subject: subject.to_owned(),
                policies: names(&mut rules.iter().map(|r| r.policy.as_str())),
            });
        }
        let batch = events.len() > 1;
        for (index, event) in events.iter().enumerate() {
            if !admitting.iter().any(|rule| rule.filter.matches(event)) {
                return Err(Denied::Filtered {
                    target: describe(target),
                    subject: subject.to_owned(),
                    policies: names(&mut admitting.iter().map(|r| r.policy.as_str())),
                    event: if batch {
                        format!("event {index} ")
                    } else {
                        "the event ".to_owned()
                    },
                    event_type: event.event_type().into_owned(),
                });
            }
        }
        Ok(())
    }
}

fn default_mode(mode: DefaultMode, target: &PolicyTarget, subject: &str) -> Result<(), Denied> {
    match mode {
        DefaultMode::AllowAll => Ok(()),
        DefaultMode::DenyAll => Err(Denied::DenyAll {
            target: describe(target),
        }),
        DefaultMode::AllowSameNamespace => {
            let prefix = format!("system:serviceaccount:{}:", target.namespace);
            if subject.starts_with(&prefix) {
                Ok(())
            } else {
                Err(Denied::OtherNamespace {
                    target: describe(target),
                    namespace: target.namespace.clone(),
                    subject: subject.to_owned(),
                })
            }
        }
    }
}

fn describe(target: &PolicyTarget) -> String {
    format!(
        "{:?} {}/{}",
        target.address, target.namespace, target.name
    )
}

/// The addressable served at an ingress path: `/{ns}/{broker}`, `/channels/{ns}/{name}`,
/// `/sequences/...`, `/parallels/...`, `/eventtransforms/...`.
pub fn target_of_path(path: &str) -> Option<PolicyTarget> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (address, namespace, name) = match parts.as_slice() {
        [namespace, name] => (OwnAddressable::Broker, *namespace, *name),
        ["channels", namespace, name] => (OwnAddressable::Channel, *namespace, *name),
        ["sequences", namespace, name] => (OwnAddressable::Sequence, *namespace, *name),
        ["parallels", namespace, name] => (OwnAddressable::Parallel, *namespace, *name),
        ["eventtransforms", namespace, name] => {
            (OwnAddressable::EventTransform, *namespace, *name)
        }
        _ => return None,
    };
    Some(PolicyTarget {
        address,
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    })
}
