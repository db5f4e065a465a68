//! sled names: consumer keys `{namespace}\0{name}\0{consumer}\0` in the trees of offsets and
//! parked records (a parked record's key adds its offset), and the broker prefix
//! `{namespace}\0{name}\0` as the key of a broker's first kept offset. Kubernetes names and
//! consumer names never hold a NUL, so the parts can always be read back: no consumer's keys
//! start with another's (prefix scans of one consumer, or of one broker, see only its own).
//!
//! A broker's events live in segment files in a directory of its own, `{namespace}/{name}`
//! (both are valid file names: a DNS label and a DNS subdomain, at most 253 characters, never
//! `.` or `..`). Names that are not Kubernetes names get `_/{hash}` instead: `_` is no DNS
//! label, so it never meets a namespace. Earlier versions kept events in the sled tree
//! [`tree`], which is still read once to move them over.

use std::path::PathBuf;

use super::{digest, is_dns_label, is_dns_subdomain};
use crate::log::BrokerKey;

/// The broker's tree of records in earlier versions.
pub fn tree(broker: &BrokerKey) -> String {
    format!("log\0{}\0{}", broker.namespace, broker.name)
}

/// The directory of a broker's segment files, relative to the log's segment directory.
pub fn segment_dir(broker: &BrokerKey) -> PathBuf {
    if is_dns_label(&broker.namespace) && is_dns_subdomain(&broker.name) {
        PathBuf::from(&broker.namespace).join(&broker.name)
    } else {
        PathBuf::from(HASHED_DIR).join(digest("sled-segments", &[&broker.namespace, &broker.name]))
    }
}

/// The directory of brokers whose names are not Kubernetes names: no namespace is called so.
pub const HASHED_DIR: &str = "_";

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
        assert_eq!(segment_dir(&broker), PathBuf::from("default/a-b"));
        let odd = BrokerKey::new("ns", "../x");
        assert_eq!(segment_dir(&odd), PathBuf::from("_/64d5d5b7812fc684"));
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
                prop_assert_ne!(segment_dir(&ka), segment_dir(&kb));
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
                prop_assert_ne!(segment_dir(&ka), segment_dir(&kb));
            }
            // Two plain components, or `_` and a hash: never outside the segment directory.
            let dir = segment_dir(&ka);
            let parts: Vec<_> = dir.components().collect();
            prop_assert_eq!(parts.len(), 2);
            prop_assert!(parts.iter().all(|p| matches!(p, std::path::Component::Normal(_))));
            prop_assert!(!consumer_key(&kb, &b.2).starts_with(&consumer_key(&ka, &a.2)));
        }
    }
}
