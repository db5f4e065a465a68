//! Several backends at once: each broker's log lives on the backend its class chooses
//! (`eventing.knative.dev/broker.class`), the others on the default backend.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;

use super::{
    BrokerKey, BrokerSettings, EventLog, LogConsumer, LogError, ParkedRecord, RecordId, StartFrom,
};
use crate::record::Record;

/// Knative's class for brokers on NATS JetStream.
pub const NATS_BROKER_CLASS: &str = "NatsJetStreamBroker";
/// Knative's class for brokers on Apache Kafka.
pub const KAFKA_BROKER_CLASS: &str = "Kafka";
/// Knative's class for Kafka brokers whose data plane runs in the broker's namespace; the
/// events are the same, so Herald serves it as `Kafka`.
pub const KAFKA_NAMESPACED_BROKER_CLASS: &str = "KafkaNamespaced";
/// Knative's default class: Herald runs it on its default backend.
pub const DEFAULT_BROKER_CLASS: &str = "MTChannelBasedBroker";

/// Which backends are configured and which is the default: enough to decide a broker
/// class's backend before any backend is opened, so a configuration that names an unknown
/// or unconfigured class is refused before the data directory is touched.
#[derive(Clone, Debug)]
pub struct BackendChoice {
    default: String,
    configured: Vec<String>,
}

impl BackendChoice {
    /// `configured` names every backend that will be opened (`sled`, `nats`, `kafka`);
    /// `default` is one of them.
    pub fn new(default: &str, configured: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            default: default.to_owned(),
            configured: configured.into_iter().map(Into::into).collect(),
        }
    }

    /// The backend a broker class asks for, or why it cannot be had.
    pub fn backend_for_class(&self, class: Option<&str>) -> Result<&str, ClassError> {
        let wanted = match class {
            None | Some(DEFAULT_BROKER_CLASS) => return Ok(&self.default),
            Some(NATS_BROKER_CLASS) => "nats",
            Some(KAFKA_BROKER_CLASS | KAFKA_NAMESPACED_BROKER_CLASS) => "kafka",
            Some(other) => return Err(ClassError::NotServed(other.to_owned())),
        };
        if let Some(name) = self.configured.iter().find(|name| *name == wanted) {
            Ok(name)
        } else {
            let flag = if wanted == "kafka" {
                "--kafka-bootstrap"
            } else {
                "--nats-url"
            };
            Err(ClassError::NotConfigured {
                class: class.unwrap_or_default().to_owned(),
                backend: wanted,
                flag,
            })
        }
    }
}

/// Why a broker class cannot be served.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClassError {
    #[error("broker class {0:?} is not served by Herald: use {DEFAULT_BROKER_CLASS} (the default backend), {KAFKA_BROKER_CLASS} ({KAFKA_NAMESPACED_BROKER_CLASS} is served as {KAFKA_BROKER_CLASS}) or {NATS_BROKER_CLASS}")]
    NotServed(String),
    #[error("broker class {class} needs the {backend} backend, which is not configured ({flag})")]
    NotConfigured {
        class: String,
        backend: &'static str,
        /// The flag that configures the backend.
        flag: &'static str,
    },
}

/// Logs by backend name (`sled`, `nats`), one of them the default.
pub struct RoutedLog {
    choice: BackendChoice,
    backends: HashMap<String, Arc<dyn EventLog>>,
    routes: RwLock<HashMap<BrokerKey, Arc<dyn EventLog>>>,
}

impl RoutedLog {
    pub fn new(default: &str, backends: HashMap<String, Arc<dyn EventLog>>) -> Self {
        Self {
            choice: BackendChoice::new(default, backends.keys().cloned()),
            backends,
            routes: RwLock::new(HashMap::new()),
        }
    }

    /// The backend a broker class asks for, or why it cannot be had.
    pub fn backend_for_class(&self, class: Option<&str>) -> Result<&str, ClassError> {
        self.choice.backend_for_class(class)
    }

    /// Places a broker's log on the backend its class chooses.
    pub fn assign(
        &self,
        broker: &BrokerKey,
        class: Option<&str>,
    ) -> Result<Arc<dyn EventLog>, LogError> {
        let name = self
            .backend_for_class(class)
            .map_err(|e| LogError::storage(e.to_string()))?;
        let log = self
            .backends
            .get(name)
            .cloned()
            .ok_or_else(|| LogError::storage(format!("no {name} backend")))?;
        if let Ok(mut routes) = self.routes.write() {
            routes.insert(broker.clone(), log.clone());
        }
        Ok(log)
    }

    fn log(&self, broker: &BrokerKey) -> Result<Arc<dyn EventLog>, LogError> {
        let routed = self
            .routes
            .read()
            .ok()
            .and_then(|routes| routes.get(broker).cloned());
        match routed {
            Some(log) => Ok(log),
            None => self
                .backends
                .get(&self.choice.default)
                .cloned()
                .ok_or_else(|| LogError::UnknownBroker(broker.clone())),
        }
    }
}

#[async_trait]
impl EventLog for RoutedLog {
    async fn ensure_broker(
        &self,
        broker: &BrokerKey,
        settings: &BrokerSettings,
    ) -> Result<(), LogError> {
        self.log(broker)?.ensure_broker(broker, settings).await
    }

    async fn append(&self, broker: &BrokerKey, records: Vec<Record>) -> Result<(), LogError> {
        self.log(broker)?.append(broker, records).await
    }

    fn drops_duplicates(&self, broker: &BrokerKey) -> bool {
        self.log(broker)
            .is_ok_and(|log| log.drops_duplicates(broker))
    }

    async fn recent_ids(
        &self,
        broker: &BrokerKey,
        since: std::time::SystemTime,
        max: usize,
    ) -> Result<Vec<super::RecentId>, LogError> {
        self.log(broker)?.recent_ids(broker, since, max).await
    }

    /// Every backend can: one that cannot takes the whole process out of traffic.
    fn can_persist(&self) -> bool {
        self.backends.values().all(|log| log.can_persist())
    }

    async fn consumer(
        &self,
        broker: &BrokerKey,
        name: &str,
        start: StartFrom,
    ) -> Result<Box<dyn LogConsumer>, LogError> {
        self.log(broker)?.consumer(broker, name, start).await
    }

    async fn park(
        &self,
        broker: &BrokerKey,
        consumer: &str,
        parked: ParkedRecord,
    ) -> Result<(), LogError> {
        self.log(broker)?.park(broker, consumer, parked).await
    }

    async fn parked(
        &self,
        broker: &BrokerKey,
        consumer: &str,
    ) -> Result<Vec<ParkedRecord>, LogError> {
        self.log(broker)?.parked(broker, consumer).await
    }

    async fn unpark(
        &self,
        broker: &BrokerKey,
        consumer: &str,
        ids: &[RecordId],
    ) -> Result<usize, LogError> {
        self.log(broker)?.unpark(broker, consumer, ids).await
    }

    async fn delete_consumer(&self, broker: &BrokerKey, consumer: &str) -> Result<(), LogError> {
        self.log(broker)?.delete_consumer(broker, consumer).await
    }

    async fn delete_broker(&self, broker: &BrokerKey) -> Result<(), LogError> {
        self.log(broker)?.delete_broker(broker).await
    }

    async fn close(&self) -> Result<(), LogError> {
        for log in self.backends.values() {
            log.close().await?;
        }
        Ok(())
    }
}
