//! The ingress decision: compiled from the desired state once per control-plane change
//! (subjects resolved, filters compiled, policies grouped per addressable), read per request
//! per request through the ingress's access hook.
//!
//! Rule (README "EventPolicy"): with at least one Ready policy applying to the addressable,
//! an event is allowed when **any** of them names the caller's subject in its `from` and the
//! event passes all of that policy's filters (Knative's documented rule; its code stops at the
//! first policy, in name order, whose subject matches). Without one, the default mode decides.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use herald_broker::{AccessDenied, AccessRequest, BrokerKey, CloudEvent};
use herald_crds::OwnAddressable;
use herald_triggers::Filter;

use super::{DefaultMode, PolicySettings};
use crate::config::policy_plan::PolicyTarget;
use crate::config::Desired;

/// Why ingress refuses an event (answered 403).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error(
        "no EventPolicy applying to {target} admits subject {subject:?} (policies: {policies})"
    )]
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

/// What applies to one log stream (a broker's, or a channel's: a Sequence or Parallel
/// takes events through its first channel, so that channel's stream has their policies too).
#[derive(Debug, Default)]
struct StreamRules {
    /// How errors name it: `Broker ns/b`, `Sequence ns/s`, ...
    name: String,
    namespace: String,
    /// The Ready policies applying, in name order, each once.
    rules: Vec<Arc<Rule>>,
}

/// What the authorizer knows between two control-plane changes.
#[derive(Debug, Default)]
struct Compiled {
    settings: PolicySettings,
    streams: HashMap<BrokerKey, StreamRules>,
    /// EventTransforms, served in process rather than through a stream, by namespace and name.
    transforms: HashMap<(String, String), StreamRules>,
}

/// The compiled policies of the running desired state, shared by the runtime (which sets
/// them on each change) and the ingress (which asks per request, through
/// [`herald_broker::Authorizer`]).
#[derive(Debug, Default)]
pub struct Authorizer {
    compiled: RwLock<Arc<Compiled>>,
}

impl Authorizer {
    /// Compiles the policies of `desired`: a policy's subjects and filter are built once and
    /// shared by every addressable it applies to.
    pub fn set(&self, desired: &Desired, settings: PolicySettings) {
        let policies = &desired.policies;
        let mut streams: HashMap<BrokerKey, StreamRules> = HashMap::new();
        let mut transforms: HashMap<(String, String), StreamRules> = HashMap::new();
        let mut built: HashMap<(String, String), Arc<Rule>> = HashMap::new();
        for target in policies.targets.keys() {
            let entry = match target.address {
                // EventTransforms are served in process, not through the ingress's streams.
                OwnAddressable::EventTransform => transforms
                    .entry((target.namespace.clone(), target.name.clone()))
                    .or_default(),
                address => streams
                    .entry(crate::config::flows::stream_of(
                        address,
                        &target.namespace,
                        &target.name,
                    ))
                    .or_default(),
            };
            // A Sequence's or Parallel's name wins over its channel's.
            if entry.name.is_empty() || target.address != OwnAddressable::Channel {
                entry.name = describe(target);
                entry.namespace = target.namespace.clone();
            }
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
                if !entry.rules.iter().any(|r| Arc::ptr_eq(r, rule)) {
                    entry.rules.push(rule.clone());
                }
            }
        }
        for entry in streams.values_mut().chain(transforms.values_mut()) {
            entry.rules.sort_by(|a, b| a.policy.cmp(&b.policy));
        }
        let compiled = Arc::new(Compiled {
            settings,
            streams,
            transforms,
        });
        if let Ok(mut current) = self.compiled.write() {
            *current = compiled;
        }
    }

    /// Decides for `events` sent to the EventTransform `namespace/name` by `subject`, as
    /// [`Authorizer::check`] does for a stream.
    pub fn check_transform(
        &self,
        namespace: &str,
        name: &str,
        subject: Option<&str>,
        events: &[CloudEvent],
    ) -> Result<(), Denied> {
        let key = (namespace.to_owned(), name.to_owned());
        self.check_target(
            subject,
            events,
            || format!("EventTransform {namespace}/{name}"),
            namespace,
            |compiled| compiled.transforms.get(&key),
        )
    }

    /// The compiled policies; `None` when the lock is poisoned (callers refuse).
    fn compiled(&self) -> Option<Arc<Compiled>> {
        self.compiled.read().ok().map(|compiled| compiled.clone())
    }

    /// Decides for `events` sent to the log stream `stream` by `subject` (the token's
    /// verified subject). `None`: the request was not authenticated (OIDC off, or not asked
    /// for this broker), and policies do not apply, as without OIDC in Knative.
    pub fn check(
        &self,
        stream: &BrokerKey,
        subject: Option<&str>,
        events: &[CloudEvent],
    ) -> Result<(), Denied> {
        self.check_target(
            subject,
            events,
            || stream.to_string(),
            &stream.namespace,
            |compiled| compiled.streams.get(stream),
        )
    }

    /// Decides by the rules `find` picks out of the compiled policies, or by the default
    /// mode for a target `name`d so in `namespace` that no policy names.
    fn check_target(
        &self,
        subject: Option<&str>,
        events: &[CloudEvent],
        name: impl Fn() -> String,
        namespace: &str,
        find: impl for<'a> FnOnce(&'a Compiled) -> Option<&'a StreamRules>,
    ) -> Result<(), Denied> {
        let Some(subject) = subject else {
            return Ok(());
        };
        let Some(compiled) = self.compiled() else {
            // A poisoned lock: refuse rather than let everything in.
            return Err(Denied::DenyAll { target: name() });
        };
        let fallback;
        let entry = match find(&compiled) {
            Some(entry) => entry,
            None => {
                fallback = StreamRules {
                    name: name(),
                    namespace: namespace.to_owned(),
                    rules: Vec::new(),
                };
                &fallback
            }
        };
        decide(compiled.settings.default_mode, entry, subject, events)
    }
}

/// The rule for one addressable's policies (or, without any, the default mode).
fn decide(
    mode: DefaultMode,
    entry: &StreamRules,
    subject: &str,
    events: &[CloudEvent],
) -> Result<(), Denied> {
    if entry.rules.is_empty() {
        return default_mode(mode, entry, subject);
    }
    let admitting: Vec<&Rule> = entry
        .rules
        .iter()
        .filter(|rule| super::subject::contained(subject, &rule.subjects))
        .map(Arc::as_ref)
        .collect();
    let names = |rules: &mut dyn Iterator<Item = &str>| rules.collect::<Vec<_>>().join(", ");
    if admitting.is_empty() {
        return Err(Denied::NotInFrom {
            target: entry.name.clone(),
            subject: subject.to_owned(),
            policies: names(&mut entry.rules.iter().map(|r| r.policy.as_str())),
        });
    }
    let batch = events.len() > 1;
    for (index, event) in events.iter().enumerate() {
        if !admitting.iter().any(|rule| rule.filter.matches(event)) {
            return Err(Denied::Filtered {
                target: entry.name.clone(),
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

/// The ingress's authorization step: a refusal is a 403 with the reason.
#[async_trait::async_trait]
impl herald_broker::Authorizer for Authorizer {
    async fn authorize(&self, request: &AccessRequest<'_>) -> Result<(), AccessDenied> {
        self.check(
            request.broker,
            request.caller.map(|caller| caller.subject.as_str()),
            request.events,
        )
        .map_err(|denied| AccessDenied::Forbidden {
            reason: denied.to_string(),
        })
    }
}

fn default_mode(mode: DefaultMode, entry: &StreamRules, subject: &str) -> Result<(), Denied> {
    match mode {
        DefaultMode::AllowAll => Ok(()),
        DefaultMode::DenyAll => Err(Denied::DenyAll {
            target: entry.name.clone(),
        }),
        DefaultMode::AllowSameNamespace => {
            let same = crate::identity::naming::parse_subject(subject)
                .is_some_and(|(namespace, _)| namespace == entry.namespace);
            if same {
                Ok(())
            } else {
                Err(Denied::OtherNamespace {
                    target: entry.name.clone(),
                    namespace: entry.namespace.clone(),
                    subject: subject.to_owned(),
                })
            }
        }
    }
}

fn describe(target: &PolicyTarget) -> String {
    format!("{:?} {}/{}", target.address, target.namespace, target.name)
}
