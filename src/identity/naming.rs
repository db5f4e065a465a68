//! Knative's names for sender identity: token subjects, the per-sender ServiceAccount and
//! audiences. A leaf: the control plane (status, EventPolicy subjects) and the data plane
//! (tokens, verification) both name identities through here.

use md5::{Digest, Md5};

/// The prefix of every ServiceAccount subject.
pub const SUBJECT_PREFIX: &str = "system:serviceaccount:";

/// The label Knative puts on the ServiceAccounts it creates for senders.
pub const OIDC_LABEL: (&str, &str) = ("eventing.knative.dev/oidc", "enabled");

/// The token subject of a ServiceAccount: `system:serviceaccount:{namespace}:{name}`.
pub fn subject(namespace: &str, service_account: &str) -> String {
    format!("{SUBJECT_PREFIX}{namespace}:{service_account}")
}

/// The namespace and ServiceAccount of a ServiceAccount subject, or `None` for any other
/// subject (e.g. an external issuer's user).
pub fn parse_subject(subject: &str) -> Option<(&str, &str)> {
    let rest = subject.strip_prefix(SUBJECT_PREFIX)?;
    let (namespace, name) = rest.split_once(':')?;
    (!namespace.is_empty() && !name.is_empty() && !name.contains(':')).then_some((namespace, name))
}

/// The ServiceAccount Knative creates for a sending resource (Trigger, Subscription, source):
/// `{name}-oidc-{group}-{kind}`, hash-shortened to 63 characters as Knative's `kmeta.ChildName`
/// does, then lowercased (`GetOIDCServiceAccountNameForResource`).
pub fn service_account_name(group: &str, kind: &str, name: &str) -> String {
    child_name(name, &format!("-oidc-{group}-{kind}")).to_lowercase()
}

/// The subject a sending resource's tokens carry.
pub fn sender_subject(group: &str, kind: &str, namespace: &str, name: &str) -> String {
    subject(namespace, &service_account_name(group, kind, name))
}

/// The audience of an addressable: lowercased `{group}/{kind}/{namespace}/{name}`
/// (Knative's `GetAudience`), e.g. `eventing.knative.dev/broker/ns/br`.
pub fn audience(group: &str, kind: &str, namespace: &str, name: &str) -> String {
    format!("{group}/{kind}/{namespace}/{name}").to_lowercase()
}

/// The audience the ingress requires of a request to a log stream: a broker's
/// (`eventing.knative.dev/broker/{ns}/{name}`), or a channel's
/// (`messaging.knative.dev/channel/{ns}/{name}`; Sequences and Parallels are reached through
/// their first channel, as in Knative).
pub fn stream_audience(stream: &herald_broker::BrokerKey) -> String {
    match stream
        .name
        .strip_prefix(herald_broker::log::CHANNEL_STREAM_PREFIX)
    {
        Some(channel) => audience("messaging.knative.dev", "Channel", &stream.namespace, channel),
        None => audience("eventing.knative.dev", "Broker", &stream.namespace, &stream.name),
    }
}

/// The longest Kubernetes name, and the length of an MD5 hex digest.
const LONGEST: usize = 63;
const MD5_HEX: usize = 32;
/// How much of the parent is kept when its hash is inserted.
const HEAD: usize = LONGEST - MD5_HEX;

/// `parent + suffix` when it fits in 63 bytes; otherwise the parent is cut and its MD5 inserted
/// before the suffix, and a suffix too long for that replaces both by the MD5 of the whole
/// (Knative's `kmeta.ChildName`).
fn child_name(parent: &str, suffix: &str) -> String {
    if parent.len() + suffix.len() <= LONGEST {
        return format!("{parent}{suffix}");
    }
    if suffix.len() >= HEAD {
        let hash = md5_hex(&format!("{parent}{suffix}"));
        let mut name = format!("{}{hash}", prefix(parent, HEAD));
        if name.len() < LONGEST {
            name.push_str(prefix(suffix, LONGEST - name.len()));
        }
        return name.trim_end_matches('-').to_owned();
    }
    format!(
        "{}{}{suffix}",
        prefix(parent, HEAD - suffix.len()),
        md5_hex(parent)
    )
}

/// At most `len` bytes of `s`, cut at a character boundary (names are ASCII; this only keeps
/// other input from panicking).
fn prefix(s: &str, len: usize) -> &str {
    let mut end = len.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn md5_hex(input: &str) -> String {
    Md5::digest(input.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_round_trip() {
        let sub = subject("ns", "sa");
        assert_eq!(sub, "system:serviceaccount:ns:sa");
        assert_eq!(parse_subject(&sub), Some(("ns", "sa")));
        for other in [
            "alice",
            "system:serviceaccount:ns",
            "system:serviceaccount::sa",
            "system:serviceaccount:ns:",
            "system:serviceaccount:ns:a:b",
        ] {
            assert_eq!(parse_subject(other), None, "{other}");
        }
    }

    #[test]
    fn short_names_are_concatenated_and_lowercased() {
        assert_eq!(
            service_account_name("eventing.knative.dev", "Trigger", "My-T"),
            "my-t-oidc-eventing.knative.dev-trigger"
        );
        assert_eq!(
            sender_subject("messaging.knative.dev", "Subscription", "ns", "s"),
            "system:serviceaccount:ns:s-oidc-messaging.knative.dev-subscription"
        );
        assert_eq!(
            audience("eventing.knative.dev", "Broker", "NS", "br"),
            "eventing.knative.dev/broker/ns/br"
        );
    }

    #[test]
    fn long_names_are_hash_shortened_to_63() {
        let suffix_long = "-oidc-eventing.knative.dev-Trigger"; // 34 bytes: whole-hash form
        let parent = "t".repeat(40);
        let name = service_account_name("eventing.knative.dev", "Trigger", &parent);
        let hash = md5_hex(&format!("{parent}{suffix_long}"));
        assert_eq!(name.len(), 63, "{name}");
        assert_eq!(&name[..31], &parent[..31]);
        assert_eq!(&name[31..], hash);

        // A short suffix keeps it: parent cut, hash of the parent, suffix.
        let parent = "p".repeat(61);
        let child = child_name(&parent, "-ab");
        assert_eq!(child, format!("{}{}-ab", &parent[..28], md5_hex(&parent)));
        assert_eq!(child.len(), 63);

        // A short parent with a long suffix is padded with the suffix's start, no trailing '-'.
        let child = child_name("p", &format!("-{}", "s".repeat(70)));
        assert!(child.len() <= 63 && !child.ends_with('-'), "{child}");
        assert!(child.starts_with(&format!("p{}", md5_hex(&format!("p-{}", "s".repeat(70))))));
    }
}
