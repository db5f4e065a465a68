//! Subjects: what a policy's `from` resolves to, and whether a token's subject matches.

use crate::config::policy_plan::{group_of, FromPlan, Policies};
use crate::kinds::{self, ObjectKey};

/// Whether `subject` is one of `allowed`: equal ignoring case, or starting with the part of
/// a pattern before its trailing `*` (Knative's `SubjectContained`).
pub fn contained(subject: &str, allowed: &[String]) -> bool {
    allowed.iter().any(|pattern| matches(subject, pattern))
}

/// One pattern.
pub fn matches(subject: &str, pattern: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => subject.starts_with(prefix),
        None => pattern.eq_ignore_ascii_case(subject),
    }
}

/// The subjects of a policy's `from`, and the refs that name no sender Herald knows (those
/// make `SubjectsResolved=False`).
pub fn resolve(from: &[FromPlan], policies: &Policies) -> (Vec<String>, Vec<String>) {
    let mut subjects = Vec::with_capacity(from.len());
    let mut unresolved = Vec::new();
    for entry in from {
        match entry {
            FromPlan::Sub(sub) => subjects.push(sub.clone()),
            FromPlan::Ref {
                api_version,
                kind,
                namespace,
                name,
            } => match sender_kind(api_version, kind) {
                Some(known)
                    if policies
                        .senders
                        .contains(&ObjectKey::new(known, namespace, name)) =>
                {
                    subjects.push(crate::identity::naming::sender_subject(
                        known.group,
                        known.kind,
                        namespace,
                        name,
                    ))
                }
                _ => unresolved.push(format!("{kind} {namespace}/{name}")),
            },
        }
    }
    (subjects, unresolved)
}

/// The kind of a sender a `from.ref` names (group and kind, version ignored).
fn sender_kind(api_version: &str, kind: &str) -> Option<&'static kinds::Kind> {
    let group = group_of(api_version);
    kinds::KINDS.into_iter().find(|k| {
        k.group.eq_ignore_ascii_case(group)
            && k.kind.eq_ignore_ascii_case(kind)
            && (k.source || **k == kinds::TRIGGER || **k == kinds::SUBSCRIPTION)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(matches(
            "system:serviceaccount:ns:a",
            "system:serviceaccount:ns:*"
        ));
        assert!(matches(
            "system:serviceaccount:ns:a",
            "SYSTEM:serviceaccount:ns:A"
        ));
        assert!(!matches(
            "system:serviceaccount:ns2:a",
            "system:serviceaccount:ns:*"
        ));
        assert!(matches("anything", "*"));
        assert!(!matches("a", "ab"));
    }
}
