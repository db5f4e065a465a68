//! How Herald names what it creates in a backend: streams, subjects and durable consumers on
//! NATS, topics and consumer groups on Kafka, keys and segment directories of the embedded
//! log. All of it is here, pure, so that the one property that matters can be checked: a
//! name is a function of the exact Kubernetes names and no two brokers (or triggers) ever
//! get the same one. Two brokers sharing a stream, or two triggers sharing a consumer,
//! silently lose events.
//!
//! Knative's names are kept for every name the backend's rules allow without two names
//! meeting, so logs that exist keep being used. For the others (Knative writes `-` and `.`
//! alike as `_` on NATS; on Kafka `{namespace}-{name}` cannot be split when the namespace holds
//! a `-`), and where the name would be longer than the backend allows, the name gets a hash
//! suffix instead: the
//! readable part (shortened to fit) and [`HASH_MARK`] with 16 hex digits of a SHA-256 of the
//! exact names. Each backend's module says when.
//!
//! Inputs that are not valid Kubernetes names (the log API takes any string) always get the
//! hashed form, so every name stays legal for its backend.

// Pure names, in every build: the CLI and config validation check them whichever backends
// the build has.
pub mod kafka;
pub mod nats;
pub mod sled;

/// Put between the readable part of a name and its hash. No name that keeps Knative's form
/// contains it: Knative's NATS names have no `-`, its Kafka names no upper-case letter.
pub const HASH_MARK: &str = "-H";
/// Hex digits of the hash: 64 bits, so two hashed names of one kind meet with a chance below
/// 1 in 10^7 even among a million of them.
const HASH_DIGITS: usize = 16;
/// Length of what a hashed name adds to its readable part.
pub const HASH_SUFFIX_LEN: usize = HASH_MARK.len() + HASH_DIGITS;

/// Kubernetes' name rules, from the resource model that validates every object.
pub use herald_crds::validation::{
    is_dns1123_label as is_dns_label, is_dns1123_subdomain as is_dns_subdomain,
};

/// 16 hex digits of a SHA-256 of `kind` and `parts`, each length-prefixed so that no two
/// different lists hash the same input. `kind` keeps names of different things apart.
fn digest(kind: &str, parts: &[&str]) -> String {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    for part in std::iter::once(kind).chain(parts.iter().copied()) {
        context.update(&(part.len() as u64).to_be_bytes());
        context.update(part.as_bytes());
    }
    let hash = context.finish();
    let mut out = String::with_capacity(HASH_DIGITS);
    for byte in &hash.as_ref()[..HASH_DIGITS / 2] {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// `readable` (ASCII), cut so that the whole name has at most `max_len` bytes, then the hash
/// of `kind` and `parts`.
fn hashed(readable: &str, max_len: usize, kind: &str, parts: &[&str]) -> String {
    let keep = readable.len().min(max_len.saturating_sub(HASH_SUFFIX_LEN));
    let readable = readable.get(..keep).unwrap_or_default();
    format!("{readable}{HASH_MARK}{}", digest(kind, parts))
}

/// Generators of names for the property tests of every backend, biased towards collisions:
/// few letters, many `-` and `.`, names at the length limits, and the prefixes and suffixes
/// the rules single out.
#[cfg(test)]
pub(crate) mod strategies {
    use proptest::prelude::*;

    /// A valid namespace: short, or 55 to 63 characters long.
    pub fn namespace() -> impl Strategy<Value = String> {
        prop_oneof![
            r"(dlq-)?[ab1]([ab1\-]{0,4}[ab1])?",
            r"a{55}[ab1\-]{0,6}[ab1]"
        ]
        .prop_filter("a DNS-1123 label", |ns| super::is_dns_label(ns))
    }

    /// A valid object name: short, or 240 to 253 characters long.
    pub fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            r"[ab1]([ab1.\-]{0,6}[ab1])?(-herald-parked)?",
            r"a{240}[ab1.\-]{0,11}[ab1]"
        ]
        .prop_filter("a DNS-1123 subdomain", |name| super::is_dns_subdomain(name))
    }

    /// Many cases, and room for the look-alikes that turn out equal and are skipped.
    pub fn config() -> ProptestConfig {
        ProptestConfig {
            cases: 2000,
            max_global_rejects: 20_000,
            ..ProptestConfig::default()
        }
    }

    /// Two valid (namespace, name) pairs: unrelated, or look-alikes that a careless naming
    /// would confuse (one text split at another `-`, or one `-` written as `.`).
    pub fn pairs() -> impl Strategy<Value = ((String, String), (String, String))> {
        prop_oneof![
            ((namespace(), name()), (namespace(), name())),
            look_alikes()
        ]
    }

    fn look_alikes() -> impl Strategy<Value = ((String, String), (String, String))> {
        let words = proptest::collection::vec("[ab1]{1,2}", 2..6);
        let separators =
            proptest::collection::vec(prop_oneof![Just("-"), Just("."), Just("--")], 5);
        let choices = (
            any::<prop::sample::Index>(),
            any::<prop::sample::Index>(),
            any::<prop::sample::Index>(),
        );
        (words, separators, choices)
            .prop_map(|(words, separators, (first, second, flip))| {
                // The namespace is the words before separator `at`, the name those after.
                let split = |separators: &[&str], at: usize| {
                    let join = |range: std::ops::Range<usize>| {
                        let mut out = words[range.start].clone();
                        for i in range.start + 1..range.end {
                            out.push_str(separators[i - 1]);
                            out.push_str(&words[i]);
                        }
                        out
                    };
                    (join(0..at + 1), join(at + 1..words.len()))
                };
                let gaps = words.len() - 1;
                let a = split(&separators, first.index(gaps));
                let mut flipped = separators.clone();
                let i = flip.index(gaps);
                flipped[i] = if flipped[i] == "." { "-" } else { "." };
                let b = if second.index(2) == 0 {
                    split(&flipped, first.index(gaps))
                } else {
                    split(&separators, second.index(gaps))
                };
                (a, b)
            })
            .prop_filter("valid names", |(a, b)| {
                [a, b]
                    .iter()
                    .all(|(ns, name)| super::is_dns_label(ns) && super::is_dns_subdomain(name))
            })
    }

    /// Any text at all, for inputs that are not Kubernetes names.
    pub fn anything() -> impl Strategy<Value = String> {
        prop_oneof![r"[ab.\-_A*> /\\\x00\u{e9}]{0,8}", namespace(), name()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_names() {
        for valid in ["a", "default", "my-ns", "a--b", "1a", &"a".repeat(63)] {
            assert!(is_dns_label(valid), "{valid}");
            assert!(is_dns_subdomain(valid), "{valid}");
        }
        for invalid in ["", "-a", "a-", "A", "a.b", "a_b", &"a".repeat(64)] {
            assert!(!is_dns_label(invalid), "{invalid}");
        }
        for valid in ["a.b", "a-b.c-d", &"a".repeat(253)] {
            assert!(is_dns_subdomain(valid), "{valid}");
        }
        for invalid in ["a..b", "a.-b", "a-.b", ".a", "a.", "a/b", &"a".repeat(254)] {
            assert!(!is_dns_subdomain(invalid), "{invalid}");
        }
    }

    #[test]
    fn hashed_names_fit_and_depend_on_every_part() {
        let name = hashed(&"x".repeat(300), 100, "k", &["a", "b"]);
        assert_eq!(name.len(), 100);
        assert!(name.starts_with("xxx") && name[82..].starts_with(HASH_MARK));
        assert_ne!(digest("k", &["ab", "c"]), digest("k", &["a", "bc"]));
        assert_ne!(digest("k", &["a"]), digest("l", &["a"]));
        // Fixed for good: existing logs are found by it.
        assert_eq!(digest("k", &["a"]), "21b60476ac261632");
    }
}
