//! sled names: a tree per broker, `log\0{namespace}\0{name}`, and consumer keys
//! `{namespace}\0{name}\0{consumer}\0` in the trees of offsets and parked records (a parked
//! record's key adds its offset). Kubernetes names and consumer names never hold a NUL, so the
//! parts can always be read back: every broker has its own tree, and no consumer's keys start
//! with another's (prefix scans of one consumer, or of one broker, see only its own).

use crate::log::BrokerKey;

/// The broker's tree of records.
pub fn tree(broker: &BrokerKey) -> String {
    format!("log\0{}\0{}", broker.namespace, broker.name)
}

/// The prefix of every consumer key of a broker.
pub fn broker_prefix(broker: &BrokerKey) -> Vec<u8> {
    format!("{}\0{}\0", broker.namespace, broker.name).into_bytes()
}

/// A consumer's key: its committed offset's, and the prefix of its parked records'.
pub fn consumer_key(broker: &BrokerKey, consumer: &str) -> Vec<u8> {
    format!("{}\0{}\0{}\0", broker.namespace, broker.name, consumer).into_bytes()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::strategies::{anything, config, name, pairs};
    use super::*;

    fn text() -> impl Strategy<Value = String> {
        anything().prop_map(|text| text.replace('\0', "?"))
    }

    #[test]
    fn names_are_kept() {
        let broker = BrokerKey::new("default", "a-b");
        assert_eq!(tree(&broker), "log\0default\0a-b");
        assert_eq!(
            consumer_key(&broker, "trigger-t.1"),
            b"default\0a-b\0trigger-t.1\0"
        );
    }

    proptest! {
        #![proptest_config(config())]

        /// Different brokers get different trees and neither's keys start with the other's
        /// prefix; different consumers' keys never start with one another.
        #[test]
        fn brokers_and_consumers_are_apart(
            (a, b) in pairs(),
            consumers in (name(), name()),
        ) {
            let (a, b) = ((a.0, a.1, consumers.0), (b.0, b.1, consumers.1));
            prop_assume!(a != b);
            let (ka, kb) = (BrokerKey::new(&a.0, &a.1), BrokerKey::new(&b.0, &b.1));
            let (ca, cb) = (format!("trigger-{}", a.2), format!("trigger-{}", b.2));
            if ka != kb {
                prop_assert_ne!(tree(&ka), tree(&kb));
                prop_assert!(!consumer_key(&kb, &cb).starts_with(&broker_prefix(&ka)));
            }
            prop_assert!(consumer_key(&ka, &ca).starts_with(&broker_prefix(&ka)));
            prop_assert!(!consumer_key(&kb, &cb).starts_with(&consumer_key(&ka, &ca)));
            prop_assert!(!consumer_key(&ka, &ca).starts_with(&consumer_key(&kb, &cb)));
        }

        /// The same for any text without a NUL.
        #[test]
        fn any_text_without_nul_is_apart(
            a in (text(), text(), text()),
            b in (text(), text(), text()),
        ) {
            prop_assume!(a != b);
            let (ka, kb) = (BrokerKey::new(&a.0, &a.1), BrokerKey::new(&b.0, &b.1));
            if ka != kb {
                prop_assert_ne!(tree(&ka), tree(&kb));
            }
            prop_assert!(!consumer_key(&kb, &b.2).starts_with(&consumer_key(&ka, &a.2)));
        }
    }
}
