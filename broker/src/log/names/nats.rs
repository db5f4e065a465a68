//! NATS JetStream names, after Knative's JetStream broker: stream `KN_BROKER_{NS}__{NAME}` on
//! subject `{ns}.{name}._knative_broker`, parked records in `KN_BROKER_DLQ_{NS}__{NAME}`,
//! durable consumer `KN_{CONSUMER}` (`KN_TRIGGER_{NAME}` for a trigger), where `{NS}`, `{NAME}`
//! and `{CONSUMER}` are upper case with `-` as `_`.
//!
//! Knative also writes `.` as `_`, so `a-b` and `a.b` would share a stream; `__` between
//! namespace and name is ambiguous when the namespace holds `--`; and the stream of a
//! namespace starting with `dlq-` would be the parked stream of the namespace without it.
//! Those names, and names longer than JetStream's 255 bytes, get the hash suffix (see
//! [`super`]); Knative's names never contain `-`, so they cannot meet a hashed one. Subjects keep Knative's form for every valid name: namespaces have no `.` and
//! names no `_`, so `{ns}.{name}._knative_broker` can be read back.

use super::{digest, hashed, is_dns_label, is_dns_subdomain};
use crate::log::{BrokerKey, RecordId};

/// JetStream's limit on stream and consumer names (`JSMaxNameLen`), also the longest file
/// name most file systems take (streams and consumers are directories).
pub const MAX_NAME_LEN: usize = 255;

/// Knative's upper-case form: `-` as `_`.
fn upper(text: &str) -> String {
    text.to_ascii_uppercase().replace('-', "_")
}

/// The readable part of a hashed name: upper case, anything but letters and digits as `_`,
/// which keeps it a legal stream, consumer and subject-token name.
fn readable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// A namespace whose upper-case form Knative's `__` can be split after: no `--` in it.
fn plain_namespace(namespace: &str) -> bool {
    is_dns_label(namespace) && !namespace.contains("--")
}

/// A name whose upper-case form tells it apart: no `.` (Knative writes it as `_` too).
fn plain_name(name: &str) -> bool {
    is_dns_subdomain(name) && !name.contains('.')
}

/// A stream name `{kind}{NS}__{NAME}`, Knative's when it tells the broker apart.
fn stream_name(kind: &str, broker: &BrokerKey, plain: bool) -> String {
    let knative = format!(
        "{kind}{}__{}",
        upper(&broker.namespace),
        upper(&broker.name)
    );
    if plain && knative.len() <= MAX_NAME_LEN {
        knative
    } else {
        let readable = format!(
            "{kind}{}__{}",
            readable(&broker.namespace),
            readable(&broker.name)
        );
        hashed(
            &readable,
            MAX_NAME_LEN,
            kind,
            &[&broker.namespace, &broker.name],
        )
    }
}

/// The broker's stream: `KN_BROKER_{NS}__{NAME}`. A namespace starting with `dlq-` is not
/// plain here: it would give the parked stream of the namespace without it.
pub fn stream(broker: &BrokerKey) -> String {
    let plain = plain_namespace(&broker.namespace)
        && !broker.namespace.starts_with("dlq-")
        && plain_name(&broker.name);
    stream_name("KN_BROKER_", broker, plain)
}

/// The broker's stream of parked records: `KN_BROKER_DLQ_{NS}__{NAME}`.
pub fn parked_stream(broker: &BrokerKey) -> String {
    let plain = plain_namespace(&broker.namespace) && plain_name(&broker.name);
    stream_name("KN_BROKER_DLQ_", broker, plain)
}

/// The stream of the broker's trigger positions (see [`crate::log::nats`]):
/// `HERALD_POSITIONS_{NS}__{NAME}`. Its prefix is not Knative's `KN_BROKER_`, so no broker's
/// stream or parked stream can take its name.
pub fn positions_stream(broker: &BrokerKey) -> String {
    let plain = plain_namespace(&broker.namespace) && plain_name(&broker.name);
    stream_name("HERALD_POSITIONS_", broker, plain)
}

/// The key-value bucket of shared-reader leases (see [`crate::log::nats`]): one key per
/// broker, its stream's name (letters, digits and `_`, which keys allow).
pub const LEASES_BUCKET: &str = "HERALD_READER_LEASES";

/// Every subject of the broker's positions stream.
pub fn positions_subjects(broker: &BrokerKey) -> String {
    format!("{}._herald_position.*", subject_base(broker))
}

/// The subject holding one consumer's position (the stream keeps the last message of each):
/// `{ns}.{name}._herald_position.{CONSUMER}`.
pub fn position_subject(broker: &BrokerKey, consumer: &str) -> String {
    format!(
        "{}._herald_position.{}",
        subject_base(broker),
        consumer_token(consumer, "parked", "")
    )
}

/// `{ns}.{name}` for valid names; otherwise one token that no namespace can be (`_H` and the
/// hash), so that every subject stays legal.
fn subject_base(broker: &BrokerKey) -> String {
    if is_dns_label(&broker.namespace) && is_dns_subdomain(&broker.name) {
        format!("{}.{}", broker.namespace, broker.name)
    } else {
        format!(
            "_H{}",
            digest("subject", &[&broker.namespace, &broker.name])
        )
    }
}

/// The subject of the broker's stream: `{ns}.{name}._knative_broker`.
pub fn subject(broker: &BrokerKey) -> String {
    format!("{}._knative_broker", subject_base(broker))
}

/// Every subject of the broker's parked stream.
pub fn parked_subjects(broker: &BrokerKey) -> String {
    format!("{}._knative_broker_dlq.>", subject_base(broker))
}

/// The subject under which a consumer's parked records are kept (one more token per record,
/// see [`parked_record_subject`]): `{ns}.{name}._knative_broker_dlq.{CONSUMER}`.
pub fn parked_subject(broker: &BrokerKey, consumer: &str) -> String {
    format!(
        "{}._knative_broker_dlq.{}",
        subject_base(broker),
        consumer_token(consumer, "parked", "")
    )
}

/// One parked record's subject: `{parked_subject}.{partition}.{offset}`. One subject per
/// record lets the parked stream keep one message per record (parking again replaces it) and
/// makes removing one a purge of its subject.
pub fn parked_record_subject(broker: &BrokerKey, consumer: &str, id: RecordId) -> String {
    format!(
        "{}.{}.{}",
        parked_subject(broker, consumer),
        id.partition,
        id.offset
    )
}

/// The durable consumer of a broker's stream: `KN_{CONSUMER}`, e.g. `KN_TRIGGER_{NAME}` for
/// the consumer `trigger-{name}`.
pub fn durable(consumer: &str) -> String {
    consumer_token(consumer, "durable", "KN_")
}

/// `{prefix}{CONSUMER}` when the consumer is lower-case letters, digits and `-` (upper case
/// is then one to one), else hashed.
fn consumer_token(consumer: &str, kind: &str, prefix: &str) -> String {
    let plain = !consumer.is_empty()
        && consumer
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-'));
    let knative = format!("{prefix}{}", upper(consumer));
    if plain && knative.len() <= MAX_NAME_LEN {
        knative
    } else {
        let readable = format!("{prefix}{}", readable(consumer));
        hashed(&readable, MAX_NAME_LEN, kind, &[consumer])
    }
}

/// A NatsSource's durable consumer when it names none: `herald-{namespace}-{name}`, hashed
/// when the namespace holds a `-` (it could not be split off) or the name a `.` (not allowed
/// in a consumer name).
pub fn source_durable(namespace: &str, name: &str) -> String {
    let plain = is_dns_label(namespace)
        && !namespace.contains('-')
        && plain_name(name)
        && name.len() + namespace.len() + "herald--".len() <= MAX_NAME_LEN;
    if plain {
        format!("herald-{namespace}-{name}")
    } else {
        let readable: String = format!("herald-{namespace}-{name}")
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        hashed(&readable, MAX_NAME_LEN, "source", &[namespace, name])
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::super::strategies::{anything, config, pairs};
    use super::*;

    const ID: RecordId = RecordId {
        partition: 0,
        offset: 1,
    };

    /// What JetStream takes as a stream or consumer name.
    fn legal_name(name: &str) -> bool {
        !name.is_empty()
            && name.len() <= MAX_NAME_LEN
            && name
                .bytes()
                .all(|b| b.is_ascii_graphic() && !matches!(b, b'.' | b'*' | b'>' | b'/' | b'\\'))
    }

    /// What NATS takes as a literal subject: non-empty tokens without wildcards or spaces.
    fn legal_subject(subject: &str) -> bool {
        subject.split('.').all(|token| {
            !token.is_empty()
                && token
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && !matches!(b, b'*' | b'>'))
        })
    }

    #[test]
    fn knative_names_are_kept() {
        let broker = BrokerKey::new("my-ns", "default");
        assert_eq!(stream(&broker), "KN_BROKER_MY_NS__DEFAULT");
        assert_eq!(subject(&broker), "my-ns.default._knative_broker");
        assert_eq!(parked_stream(&broker), "KN_BROKER_DLQ_MY_NS__DEFAULT");
        assert_eq!(
            parked_subjects(&broker),
            "my-ns.default._knative_broker_dlq.>"
        );
        let broker = BrokerKey::new("default", "a-b");
        assert_eq!(stream(&broker), "KN_BROKER_DEFAULT__A_B");
        assert_eq!(parked_stream(&broker), "KN_BROKER_DLQ_DEFAULT__A_B");
        assert_eq!(durable("trigger-t-1"), "KN_TRIGGER_T_1");
        assert_eq!(
            parked_record_subject(
                &broker,
                "trigger-t-1",
                RecordId {
                    partition: 0,
                    offset: 7
                }
            ),
            "default.a-b._knative_broker_dlq.TRIGGER_T_1.0.7"
        );
        assert_eq!(source_durable("default", "orders"), "herald-default-orders");
        assert_eq!(positions_stream(&broker), "HERALD_POSITIONS_DEFAULT__A_B");
        assert_eq!(
            position_subject(&broker, "trigger-t-1"),
            "default.a-b._herald_position.TRIGGER_T_1"
        );
        assert_eq!(
            positions_subjects(&broker),
            "default.a-b._herald_position.*"
        );
    }

    #[test]
    fn dots_get_a_hash_suffix() {
        let dash = BrokerKey::new("default", "a-b");
        let dot = BrokerKey::new("default", "a.b");
        // The example of the README.
        assert_eq!(stream(&dot), "KN_BROKER_DEFAULT__A_B-Hf15c362ddbab42c5");
        assert_ne!(stream(&dash), stream(&dot));
        assert_ne!(parked_stream(&dash), parked_stream(&dot));
        assert_eq!(subject(&dot), "default.a.b._knative_broker");
        assert!(durable("trigger-t.1").starts_with("KN_TRIGGER_T_1-H"));
        assert_ne!(
            parked_subject(&dash, "trigger-t-1"),
            parked_subject(&dash, "trigger-t.1")
        );
    }

    #[test]
    fn a_dlq_namespace_does_not_take_another_brokers_parked_stream() {
        let parked = parked_stream(&BrokerKey::new("x", "y"));
        assert_eq!(parked, "KN_BROKER_DLQ_X__Y");
        assert_ne!(stream(&BrokerKey::new("dlq-x", "y")), parked);
        assert_eq!(stream(&BrokerKey::new("dlq", "y")), "KN_BROKER_DLQ__Y");
    }

    #[test]
    fn long_names_fit() {
        let broker = BrokerKey::new("n".repeat(63), "a".repeat(253));
        for name in [
            stream(&broker),
            parked_stream(&broker),
            positions_stream(&broker),
        ] {
            assert_eq!(name.len(), MAX_NAME_LEN, "{name}");
            assert!(legal_name(&name));
        }
        assert!(durable(&format!("trigger-{}", "a".repeat(253))).len() <= MAX_NAME_LEN);
    }

    proptest! {
        #![proptest_config(config())]

        /// Different brokers never share a stream, a parked stream or a subject, and no
        /// broker's stream is another's parked stream.
        #[test]
        fn brokers_get_their_own_streams(
            (a, b) in pairs(),
        ) {
            let (a, b) = (BrokerKey::new(a.0, a.1), BrokerKey::new(b.0, b.1));
            prop_assume!(a != b);
            prop_assert_ne!(stream(&a), stream(&b));
            prop_assert_ne!(parked_stream(&a), parked_stream(&b));
            prop_assert_ne!(stream(&a), parked_stream(&b));
            prop_assert_ne!(positions_stream(&a), positions_stream(&b));
            prop_assert_ne!(positions_subjects(&a), positions_subjects(&b));
            prop_assert_ne!(stream(&a), positions_stream(&b));
            prop_assert_ne!(parked_stream(&a), positions_stream(&b));
            prop_assert_ne!(subject(&a), subject(&b));
            prop_assert_ne!(parked_subjects(&a), parked_subjects(&b));
            for broker in [&a, &b] {
                prop_assert_ne!(stream(broker), parked_stream(broker));
                prop_assert!(legal_name(&stream(broker)), "{}", stream(broker));
                prop_assert!(legal_name(&parked_stream(broker)));
                prop_assert!(legal_name(&positions_stream(broker)));
                prop_assert!(legal_subject(&position_subject(broker, "trigger-t")));
                prop_assert!(legal_subject(&subject(broker)));
                prop_assert!(legal_subject(parked_subjects(broker).trim_end_matches(".>")));
            }
        }

        /// Different triggers never share a durable consumer or parked records.
        #[test]
        fn triggers_get_their_own_consumers((a, b) in pairs()) {
            prop_assume!(a.1 != b.1);
            let (a, b) = (format!("trigger-{}", a.1), format!("trigger-{}", b.1));
            let broker = BrokerKey::new("default", "b");
            prop_assert_ne!(durable(&a), durable(&b));
            prop_assert_ne!(parked_subject(&broker, &a), parked_subject(&broker, &b));
            prop_assert_ne!(position_subject(&broker, &a), position_subject(&broker, &b));
            prop_assert!(legal_name(&durable(&a)), "{}", durable(&a));
            prop_assert!(legal_subject(&parked_record_subject(&broker, &a, ID)));
        }

        #[test]
        fn sources_get_their_own_durables(
            (a, b) in pairs(),
        ) {
            prop_assume!(a != b);
            prop_assert_ne!(source_durable(&a.0, &a.1), source_durable(&b.0, &b.1));
            prop_assert!(legal_name(&source_durable(&a.0, &a.1)));
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
                prop_assert_ne!(stream(&ka), stream(&kb));
                prop_assert_ne!(parked_stream(&ka), parked_stream(&kb));
                prop_assert_ne!(subject(&ka), subject(&kb));
            }
            if a.2 != b.2 {
                prop_assert_ne!(durable(&a.2), durable(&b.2));
            }
            prop_assert!(legal_name(&stream(&ka)), "{}", stream(&ka));
            prop_assert!(legal_name(&parked_stream(&ka)));
            prop_assert!(legal_name(&durable(&a.2)), "{}", durable(&a.2));
            prop_assert!(legal_subject(&parked_record_subject(&ka, &a.2, ID)));
        }
    }

    /// Many generated brokers at once: no two share a stream (a check across more than pairs).
    #[test]
    fn no_stream_is_shared_in_a_crowd() {
        let mut seen: HashMap<String, BrokerKey> = HashMap::new();
        for ns in ["a", "a-b", "a--b", "dlq-a", "dlq", "b"] {
            for name in [
                "a", "a-b", "a.b", "b-a", "b.a", "a-b-c", "a.b-c", "a-b.c", "b--a",
            ] {
                let broker = BrokerKey::new(ns, name);
                for stream in [stream(&broker), parked_stream(&broker)] {
                    if let Some(other) = seen.insert(stream.clone(), broker.clone()) {
                        panic!("{broker} and {other} share {stream}");
                    }
                }
            }
        }
    }
}
