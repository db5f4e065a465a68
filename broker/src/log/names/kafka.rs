//! Kafka names, after Knative's Kafka broker: topic `knative-broker-{namespace}-{name}`,
//! consumer group `knative-trigger-{namespace}-{name}`, and Herald's compacted topic of parked
//! records `{topic}-herald-parked`; all behind `--kafka-prefix`.
//!
//! `{namespace}-{name}` cannot be split when the namespace holds a `-` (`a-b` + `c` and `a` +
//! `b-c` meet), so Knative's names are kept only for namespaces without `-`; the rest, a
//! broker whose name ends in `-herald-parked` (its topic would be another broker's parked
//! topic), and topics longer than Kafka's 249 characters get the hash suffix (see [`super`]).
//! Knative's names are lower case, so none meets a hashed name (`-H`). Herald adds no `_`, so
//! no two of its topics differ only in `.` against `_` (Kafka refuses such pairs: they share
//! metric names).

use super::{hashed, is_dns_label, is_dns_subdomain};
use crate::log::{BrokerKey, RecordId};

/// Kafka's limit on topic names (consumer groups have none).
pub const MAX_TOPIC_LEN: usize = 249;
/// The longest `--kafka-prefix`: what is left must hold the start of a name and its hash.
pub const MAX_PREFIX_LEN: usize = 100;
const PARKED_SUFFIX: &str = "-herald-parked";
const POSITIONS_SUFFIX: &str = "-herald-positions";

/// Why a topic prefix cannot be used.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    #[error("is {0} characters long; at most {MAX_PREFIX_LEN} are allowed")]
    TooLong(usize),
    #[error("contains {0:?}; only ASCII letters, digits, '.', '_' and '-' are allowed in Kafka topic names")]
    IllegalCharacter(char),
}

/// Checks a `--kafka-prefix`: Kafka topic characters, at most [`MAX_PREFIX_LEN`].
pub fn validate_prefix(prefix: &str) -> Result<(), PrefixError> {
    if prefix.len() > MAX_PREFIX_LEN {
        return Err(PrefixError::TooLong(prefix.len()));
    }
    match prefix.chars().find(|c| !is_topic_char(*c)) {
        Some(c) => Err(PrefixError::IllegalCharacter(c)),
        None => Ok(()),
    }
}

fn is_topic_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// A namespace and name whose `{namespace}-{name}` can be split: no `-` in the namespace.
fn plain(namespace: &str, name: &str) -> bool {
    is_dns_label(namespace) && !namespace.contains('-') && is_dns_subdomain(name)
}

/// The limits of a name.
#[derive(Clone, Copy)]
struct Kind {
    /// Tells the hashes of different things apart.
    tag: &'static str,
    max_len: usize,
}

const TOPIC: Kind = Kind {
    tag: "topic",
    max_len: MAX_TOPIC_LEN,
};
const PARKED_TOPIC: Kind = Kind {
    tag: "parked-topic",
    max_len: MAX_TOPIC_LEN,
};
const POSITIONS_TOPIC: Kind = Kind {
    tag: "positions-topic",
    max_len: MAX_TOPIC_LEN,
};
const TRIGGER_GROUP: Kind = Kind {
    tag: "trigger-group",
    max_len: usize::MAX,
};
const GROUP: Kind = Kind {
    tag: "group",
    max_len: usize::MAX,
};
const SOURCE_GROUP: Kind = Kind {
    tag: "source-group",
    max_len: usize::MAX,
};

/// `{prefix}{knative}` when `plain` and short enough; otherwise the readable part of it
/// (illegal characters as `-`) with the hash of the kind and `parts`.
fn name(prefix: &str, knative: String, plain: bool, kind: Kind, parts: &[&str]) -> String {
    if plain && prefix.len() + knative.len() <= kind.max_len {
        return format!("{prefix}{knative}");
    }
    let readable: String = knative
        .chars()
        .map(|c| if is_topic_char(c) && c != '_' { c } else { '-' })
        .collect();
    let room = kind.max_len.saturating_sub(prefix.len());
    format!("{prefix}{}", hashed(&readable, room, kind.tag, parts))
}

/// The broker's topic: `{prefix}knative-broker-{namespace}-{name}`.
pub fn topic(prefix: &str, broker: &BrokerKey) -> String {
    let (ns, n) = (&broker.namespace, &broker.name);
    name(
        prefix,
        format!("knative-broker-{ns}-{n}"),
        plain(ns, n) && !n.ends_with(PARKED_SUFFIX) && !n.ends_with(POSITIONS_SUFFIX),
        TOPIC,
        &[ns, n],
    )
}

/// The broker's compacted topic of parked records: `{prefix}knative-broker-{namespace}-{name}-herald-parked`.
pub fn parked_topic(prefix: &str, broker: &BrokerKey) -> String {
    let (ns, n) = (&broker.namespace, &broker.name);
    name(
        prefix,
        format!("knative-broker-{ns}-{n}{PARKED_SUFFIX}"),
        plain(ns, n),
        PARKED_TOPIC,
        &[ns, n],
    )
}

/// The broker's compacted topic of trigger positions (`--kafka-shared-reader`):
/// `{prefix}knative-broker-{namespace}-{name}-herald-positions`.
pub fn positions_topic(prefix: &str, broker: &BrokerKey) -> String {
    let (ns, n) = (&broker.namespace, &broker.name);
    name(
        prefix,
        format!("knative-broker-{ns}-{n}{POSITIONS_SUFFIX}"),
        plain(ns, n),
        POSITIONS_TOPIC,
        &[ns, n],
    )
}

/// The consumer group of the broker's shared reader (`--kafka-shared-reader`), one for every
/// Herald process: `{topic}-herald-shared` (trigger groups start `knative-trigger-`).
pub fn shared_group(prefix: &str, broker: &BrokerKey) -> String {
    format!("{}-herald-shared", topic(prefix, broker))
}

/// A consumer's group. A trigger's (`trigger-{name}`) is Knative's
/// `{prefix}knative-trigger-{namespace}-{name}`: trigger names are unique in a namespace, so
/// the broker is not part of it. Other consumers (tests, tools) always get a hashed name of
/// the broker and the consumer.
pub fn group(prefix: &str, broker: &BrokerKey, consumer: &str) -> String {
    let ns = &broker.namespace;
    match consumer.strip_prefix("trigger-") {
        Some(trigger) => name(
            prefix,
            format!("knative-trigger-{ns}-{trigger}"),
            plain(ns, trigger),
            TRIGGER_GROUP,
            &[ns, trigger],
        ),
        None => name(
            prefix,
            format!("knative-{ns}-{consumer}"),
            false,
            GROUP,
            &[ns, &broker.name, consumer],
        ),
    }
}

/// A KafkaSource's consumer group when it names none: Knative's
/// `knative-kafka-source-{namespace}-{name}` (no prefix: it reads the user's topics).
pub fn source_group(namespace: &str, source: &str) -> String {
    name(
        "",
        format!("knative-kafka-source-{namespace}-{source}"),
        plain(namespace, source),
        SOURCE_GROUP,
        &[namespace, source],
    )
}

/// The key of a parked record in the broker's parked topic: `{consumer}/{partition}/{offset}`.
pub fn parked_key(consumer: &str, id: RecordId) -> String {
    format!("{consumer}/{}/{}", id.partition, id.offset)
}

/// The consumer a parked record's key belongs to (the key read back, whatever the consumer's
/// name holds).
pub fn parked_key_consumer(key: &str) -> Option<&str> {
    let mut parts = key.rsplitn(3, '/');
    let (_offset, _partition) = (parts.next()?, parts.next()?);
    parts.next()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::strategies::{anything, config, pairs};
    use super::*;

    fn legal_topic(topic: &str) -> bool {
        topic.len() <= MAX_TOPIC_LEN && legal_group(topic)
    }

    /// Groups take any text; Herald's keep to topic characters.
    fn legal_group(group: &str) -> bool {
        !group.is_empty() && group != "." && group != ".." && group.chars().all(is_topic_char)
    }

    /// Kafka's own collision rule: topics equal once `.` is written as `_` cannot coexist.
    fn metric_name(topic: &str) -> String {
        topic.replace('.', "_")
    }

    #[test]
    fn knative_names_are_kept() {
        let broker = BrokerKey::new("shop", "orders");
        assert_eq!(topic("", &broker), "knative-broker-shop-orders");
        assert_eq!(
            parked_topic("", &broker),
            "knative-broker-shop-orders-herald-parked"
        );
        assert_eq!(
            group("", &broker, "trigger-audit"),
            "knative-trigger-shop-audit"
        );
        assert_eq!(
            topic("team-a.", &broker),
            "team-a.knative-broker-shop-orders"
        );
        let broker = BrokerKey::new("default", "a.b");
        assert_eq!(topic("", &broker), "knative-broker-default-a.b");
        assert_eq!(
            group("", &broker, "trigger-my-trigger.v2"),
            "knative-trigger-default-my-trigger.v2"
        );
        assert_eq!(
            source_group("default", "orders"),
            "knative-kafka-source-default-orders"
        );
    }

    #[test]
    fn namespaces_with_a_dash_get_a_hash_suffix() {
        let a = BrokerKey::new("a-b", "c");
        let b = BrokerKey::new("a", "b-c");
        assert_eq!(topic("", &b), "knative-broker-a-b-c");
        assert!(topic("", &a).starts_with("knative-broker-a-b-c-H"));
        assert_ne!(group("", &a, "trigger-c"), group("", &b, "trigger-b-c"));
    }

    #[test]
    fn a_broker_named_like_a_parked_topic_gets_its_own() {
        let parked = parked_topic("", &BrokerKey::new("a", "b"));
        assert_ne!(topic("", &BrokerKey::new("a", "b-herald-parked")), parked);
    }

    #[test]
    fn a_broker_named_like_a_positions_topic_gets_its_own() {
        let positions = positions_topic("", &BrokerKey::new("a", "b"));
        assert_eq!(positions, "knative-broker-a-b-herald-positions");
        assert_ne!(
            topic("", &BrokerKey::new("a", "b-herald-positions")),
            positions
        );
        let long = BrokerKey::new("n".repeat(63), "a".repeat(253));
        let name = positions_topic(&"p".repeat(MAX_PREFIX_LEN), &long);
        assert!(name.len() <= MAX_TOPIC_LEN && legal_topic(&name), "{name}");
    }

    #[test]
    fn long_names_fit() {
        let broker = BrokerKey::new("n".repeat(63), "a".repeat(253));
        let prefix = "p".repeat(MAX_PREFIX_LEN);
        for name in [topic(&prefix, &broker), parked_topic(&prefix, &broker)] {
            assert_eq!(name.len(), MAX_TOPIC_LEN, "{name}");
            assert!(name.starts_with(&prefix) && legal_topic(&name));
        }
        // Groups have no length limit: a long trigger keeps Knative's.
        let trigger = "a".repeat(253);
        assert_eq!(
            group(
                "",
                &BrokerKey::new("ns", "b"),
                &format!("trigger-{trigger}")
            ),
            format!("knative-trigger-ns-{trigger}")
        );
        // The longest topic Knative's form allows keeps it; its parked topic cannot.
        let broker = BrokerKey::new("ns", "a".repeat(MAX_TOPIC_LEN - "knative-broker-ns-".len()));
        assert_eq!(topic("", &broker).len(), MAX_TOPIC_LEN);
        assert!(!topic("", &broker).contains("-H"));
        assert_eq!(parked_topic("", &broker).len(), MAX_TOPIC_LEN);
    }

    #[test]
    fn prefixes_are_checked() {
        assert_eq!(validate_prefix(""), Ok(()));
        assert_eq!(validate_prefix("team_a.x-1"), Ok(()));
        assert_eq!(
            validate_prefix("a/b"),
            Err(PrefixError::IllegalCharacter('/'))
        );
        assert_eq!(
            validate_prefix(&"p".repeat(101)),
            Err(PrefixError::TooLong(101))
        );
    }

    #[test]
    fn parked_keys_name_their_consumer_exactly() {
        let id = RecordId {
            partition: 3,
            offset: 9,
        };
        assert_eq!(parked_key("trigger-a", id), "trigger-a/3/9");
        assert_eq!(parked_key_consumer("trigger-a/3/9"), Some("trigger-a"));
        assert_eq!(parked_key_consumer("a/b/3/9"), Some("a/b"));
        assert_eq!(parked_key_consumer("3/9"), None);
    }

    proptest! {
        #![proptest_config(config())]

        /// Different brokers never share a topic, no broker's topic is another's parked
        /// topic, and none collide by Kafka's `.`/`_` rule.
        #[test]
        fn brokers_get_their_own_topics(
            (a, b) in pairs(),
            prefix in prop_oneof![Just(String::new()), Just("p_1.".to_owned()), Just("p".repeat(MAX_PREFIX_LEN))],
        ) {
            let (a, b) = (BrokerKey::new(a.0, a.1), BrokerKey::new(b.0, b.1));
            prop_assume!(a != b);
            let topics = |broker: &BrokerKey| [topic(&prefix, broker), parked_topic(&prefix, broker)];
            let (ours, theirs) = (topics(&a), topics(&b));
            prop_assert_ne!(metric_name(&ours[0]), metric_name(&ours[1]));
            for mine in &ours {
                prop_assert!(legal_topic(mine), "{}", mine);
                prop_assert!(mine.starts_with(&prefix));
                for other in &theirs {
                    prop_assert_ne!(metric_name(mine), metric_name(other));
                }
            }
        }

        /// Different triggers (unique per namespace) never share a consumer group.
        #[test]
        fn triggers_get_their_own_groups(
            (a, b) in pairs(),
        ) {
            prop_assume!(a != b);
            let group_of = |(ns, trigger): &(String, String)| {
                group("", &BrokerKey::new(ns, "b"), &format!("trigger-{trigger}"))
            };
            prop_assert_ne!(group_of(&a), group_of(&b));
            prop_assert!(legal_group(&group_of(&a)));
            prop_assert_ne!(source_group(&a.0, &a.1), source_group(&b.0, &b.1));
        }

        /// Whatever the log API is given, the names are legal and still distinct.
        #[test]
        fn any_input_gives_legal_distinct_names(
            a in (anything(), anything(), anything()),
            b in (anything(), anything(), anything()),
        ) {
            prop_assume!(a != b);
            let (ka, kb) = (BrokerKey::new(&a.0, &a.1), BrokerKey::new(&b.0, &b.1));
            if ka != kb {
                prop_assert_ne!(metric_name(&topic("", &ka)), metric_name(&topic("", &kb)));
                prop_assert_ne!(metric_name(&parked_topic("", &ka)), metric_name(&parked_topic("", &kb)));
            }
            // A trigger's group is its namespace's and name's; any other consumer's is also
            // its broker's.
            let owner = |(ns, broker, consumer): &(String, String, String)| {
                match consumer.strip_prefix("trigger-") {
                    Some(_) => (ns.clone(), None, consumer.clone()),
                    None => (ns.clone(), Some(broker.clone()), consumer.clone()),
                }
            };
            if owner(&a) != owner(&b) {
                prop_assert_ne!(group("", &ka, &a.2), group("", &kb, &b.2));
            }
            prop_assert!(legal_topic(&topic("", &ka)), "{}", topic("", &ka));
            prop_assert!(legal_topic(&parked_topic("", &ka)));
            prop_assert!(legal_group(&group("", &ka, &a.2)));
            let key = parked_key(&a.2, RecordId { partition: 1, offset: 2 });
            prop_assert_eq!(parked_key_consumer(&key), Some(a.2.as_str()));
        }
    }
}
