//! Knative's `eventtype-auto-create` for a broker: every distinct (type, source, dataschema)
//! it accepts is recorded with first-seen, last-seen and a count, up to a cap.
//!
//! Ingress calls [`DiscoveredTypes::record`] after each accepted event. A known key costs a
//! hash, a read lock (never held across an await) and two atomic updates; only a new key takes
//! the write lock. Past the cap nothing new is recorded and `herald_eventtypes_not_recorded_total`
//! counts what was left out.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use md5::{Digest, Md5};

use crate::event::CloudEvent;
use crate::log::BrokerKey;

/// Default cap on the types recorded per broker (`--eventtype-auto-create-max`).
pub const DEFAULT_MAX_DISCOVERED: usize = 1000;
/// Counter of accepted events whose new type was not recorded because the broker's cap was
/// reached, by namespace and broker.
pub const NOT_RECORDED: &str = "herald_eventtypes_not_recorded_total";

/// One recorded type, with what ingress saw of it.
#[derive(Debug)]
pub struct Entry {
    event_type: String,
    source: String,
    schema: String,
    name: String,
    first_seen_ms: i64,
    last_seen_ms: AtomicI64,
    count: AtomicU64,
}

impl Entry {
    fn is(&self, parts: [&str; 3]) -> bool {
        self.event_type == parts[0] && self.source == parts[1] && self.schema == parts[2]
    }

    fn seen(&self, now_ms: i64) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.last_seen_ms.fetch_max(now_ms, Ordering::Relaxed);
    }
}

/// An event's type as looked up before its append.
#[derive(Debug)]
pub enum Noted {
    Known(Arc<Entry>),
    New {
        hash: u64,
        parts: [String; 3],
    },
    /// New, and the cap is reached.
    OverCap,
}

/// A recorded type as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiscoveredType {
    /// Knative's name for it (see [`knative_name`]).
    pub name: String,
    pub event_type: String,
    pub source: String,
    /// The events' `dataschema`, empty when they had none.
    pub schema: String,
    pub first_seen: SystemTime,
    pub last_seen: SystemTime,
    pub count: u64,
}

/// The types one broker accepted.
#[derive(Debug)]
pub struct DiscoveredTypes {
    broker: BrokerKey,
    max: usize,
    hasher: RandomState,
    /// By a hash of the key; a bucket holds the rare keys whose hashes collide.
    entries: RwLock<HashMap<u64, Vec<Arc<Entry>>>>,
    len: AtomicU64,
}

fn millis(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn from_millis(ms: i64) -> SystemTime {
    UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64)
}

/// Knative's name of an auto-created EventType: `et-{broker}-{md5 hex of type, source,
/// namespace and broker}`, made a DNS-1123 subdomain. Herald keys by the data schema too: an
/// event with a `dataschema` has it appended to the hashed text, so that two schemas of one
/// type get two names.
pub fn knative_name(broker: &BrokerKey, event_type: &str, source: &str, schema: &str) -> String {
    let mut md5 = Md5::new();
    md5.update(event_type.as_bytes());
    md5.update(source.as_bytes());
    md5.update(broker.namespace.as_bytes());
    md5.update(broker.name.as_bytes());
    md5.update(schema.as_bytes());
    let digest = md5.finalize();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    herald_crds::event_type::auto_created_name(&broker.name, &hex)
}

impl DiscoveredTypes {
    pub fn new(broker: BrokerKey, max: usize) -> Self {
        Self {
            broker,
            max,
            hasher: RandomState::new(),
            entries: RwLock::new(HashMap::new()),
            len: AtomicU64::new(0),
        }
    }

    pub fn max(&self) -> usize {
        self.max
    }

    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn hash(&self, parts: [&str; 3]) -> u64 {
        let mut hasher = self.hasher.build_hasher();
        for part in parts {
            hasher.write_usize(part.len());
            hasher.write(part.as_bytes());
        }
        hasher.finish()
    }

    /// Notes one accepted event (both steps at once).
    pub fn record(&self, event: &CloudEvent, now: SystemTime) {
        let noted = self.note(event);
        self.confirm(noted, now);
    }

    /// Looks an event's type up before its append: a known type costs a read lock and no
    /// allocation; [`DiscoveredTypes::confirm`] counts it once the event is accepted.
    pub fn note(&self, event: &CloudEvent) -> Noted {
        let event_type = event.event_type();
        let source = event.text("source").unwrap_or_default();
        let schema = event.text("dataschema").unwrap_or_default();
        let parts = [event_type.as_ref(), source.as_ref(), schema.as_ref()];
        let hash = self.hash(parts);
        if let Ok(entries) = self.entries.read() {
            if let Some(entry) = entries
                .get(&hash)
                .and_then(|b| b.iter().find(|e| e.is(parts)))
            {
                return Noted::Known(entry.clone());
            }
        }
        if self.len() >= self.max {
            return Noted::OverCap;
        }
        Noted::New {
            hash,
            parts: parts.map(str::to_owned),
        }
    }

    /// Counts a noted event that was accepted.
    pub fn confirm(&self, noted: Noted, now: SystemTime) {
        let now_ms = millis(now);
        let (hash, parts) = match noted {
            Noted::Known(entry) => return entry.seen(now_ms),
            Noted::OverCap => return self.not_recorded(),
            Noted::New { hash, parts } => (hash, parts),
        };
        let Ok(mut entries) = self.entries.write() else {
            return;
        };
        let bucket = entries.entry(hash).or_default();
        let borrowed = [parts[0].as_str(), parts[1].as_str(), parts[2].as_str()];
        if let Some(entry) = bucket.iter().find(|e| e.is(borrowed)) {
            return entry.seen(now_ms);
        }
        if self.len() >= self.max {
            drop(entries);
            return self.not_recorded();
        }
        let name = knative_name(&self.broker, borrowed[0], borrowed[1], borrowed[2]);
        let [event_type, source, schema] = parts;
        bucket.push(Arc::new(Entry {
            name,
            event_type,
            source,
            schema,
            first_seen_ms: now_ms,
            last_seen_ms: AtomicI64::new(now_ms),
            count: AtomicU64::new(1),
        }));
        self.len.fetch_add(1, Ordering::Relaxed);
    }

    fn not_recorded(&self) {
        metrics::counter!(NOT_RECORDED, "namespace" => self.broker.namespace.clone(), "broker" => self.broker.name.clone())
            .increment(1);
    }

    /// Every recorded type, by name.
    pub fn list(&self) -> Vec<DiscoveredType> {
        let Ok(entries) = self.entries.read() else {
            return Vec::new();
        };
        let mut all: Vec<DiscoveredType> = entries
            .values()
            .flatten()
            .map(|entry| DiscoveredType {
                name: entry.name.clone(),
                event_type: entry.event_type.clone(),
                source: entry.source.clone(),
                schema: entry.schema.clone(),
                first_seen: from_millis(entry.first_seen_ms),
                last_seen: from_millis(entry.last_seen_ms.load(Ordering::Relaxed)),
                count: entry.count.load(Ordering::Relaxed),
            })
            .collect();
        drop(entries);
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn event(event_type: &str, source: &str) -> CloudEvent {
        let mut event = CloudEvent::new();
        event.set("type", event_type);
        event.set("source", source);
        event.set("id", "1");
        event
    }

    #[test]
    fn records_each_distinct_type_with_times_and_counts() {
        let types = DiscoveredTypes::new(BrokerKey::new("ns", "b"), 10);
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000);
        types.record(&event("a", "/s"), t0);
        types.record(&event("a", "/s"), t0 + Duration::from_secs(5));
        types.record(&event("a", "/other"), t0);
        let mut with_schema = event("a", "/s");
        with_schema.set("dataschema", "https://s/v2");
        types.record(&with_schema, t0);
        let list = types.list();
        assert_eq!(list.len(), 3);
        let first = list
            .iter()
            .find(|t| t.source == "/s" && t.schema.is_empty())
            .unwrap();
        assert_eq!(first.count, 2);
        assert_eq!(first.first_seen, t0);
        assert_eq!(first.last_seen, t0 + Duration::from_secs(5));
        assert!(first.name.starts_with("et-b-"));
        let names: std::collections::HashSet<_> = list.iter().map(|t| &t.name).collect();
        assert_eq!(names.len(), 3, "distinct names");
    }

    #[test]
    fn knative_names_hash_type_source_namespace_and_broker() {
        // md5("com.example/sourcensb") computed independently.
        let name = knative_name(&BrokerKey::new("ns", "b"), "com.example", "/source", "");
        let expected = format!("{:x}", Md5::digest(b"com.example/sourcensb"));
        assert_eq!(name, format!("et-b-{expected}"));
    }

    #[test]
    fn the_cap_bounds_what_is_recorded() {
        let types = DiscoveredTypes::new(BrokerKey::new("ns", "b"), 100);
        let now = SystemTime::now();
        for i in 0..10_000 {
            types.record(&event(&format!("t{i}"), "/s"), now);
        }
        assert_eq!(types.len(), 100);
        assert_eq!(types.list().len(), 100);
        // Known types still count past the cap.
        types.record(&event("t0", "/s"), now);
        assert_eq!(
            types
                .list()
                .iter()
                .find(|t| t.event_type == "t0")
                .unwrap()
                .count,
            2
        );
    }
}
