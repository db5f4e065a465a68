//! The NATS JetStream backend: a stream per broker, read once for all of its triggers.
//!
//! Names follow Knative's JetStream broker (stream `KN_BROKER_{NS}__{NAME}` on subject
//! `{ns}.{name}._knative_broker`, parked records in `KN_BROKER_DLQ_{NS}__{NAME}`), made unique
//! where Knative's are not: see [`crate::log::names::nats`]. Each message
//! carries a stored [`Record`] and a `Nats-Msg-Id` built from the event's `source` and `id`, so
//! JetStream's duplicate window drops retried publishes. Publishes of one append are pipelined:
//! all are sent, then all acks are awaited.
//!
//! Triggers read a broker's stream through one shared reader ([`shared`]) and keep their
//! positions in the broker's positions stream ([`positions`]); of several Herald processes on
//! one NATS, the holder of the broker's lease ([`lease`]) is its reader. A broker with interest
//! retention is the exception: JetStream drops a message there once every consumer acked it,
//! so each of its triggers keeps a durable consumer of its own (`KN_{CONSUMER}`, Knative's
//! name), which acknowledges each message when its event is finished and keeps unfinished
//! ones from being redelivered with progress acks.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::{self, stream, AckKind};
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{FutureExt, StreamExt};

use super::names::nats as names;
use super::{
    BrokerKey, BrokerSettings, Cause, EventLog, LogConsumer, LogError, LogRecord, ParkedRecord,
    RecordId, StartFrom,
};
use crate::record::Record;

mod lease;
mod positions;
mod shared;

/// How long a published event may wait for JetStream's ack before ingress answers 503.
pub const DEFAULT_PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);
/// Redelivery happens only after this long without an ack or a progress ack: also how long
/// unfinished events wait to be redelivered after a crash.
const ACK_WAIT: Duration = Duration::from_secs(10);
/// Messages a consumer pulls ahead of what it hands out.
const PULL_BATCH: usize = 128;

/// How to reach NATS.
#[derive(Clone, Debug, Default)]
pub struct NatsOptions {
    pub url: String,
    pub credentials_file: Option<PathBuf>,
    pub token: Option<String>,
    /// PEM file of CA certificates; setting it requires TLS.
    pub tls_ca_file: Option<PathBuf>,
    /// Triggers read their broker's stream through one shared reader ([`shared`]) instead of
    /// a durable consumer each. Of several Herald processes on one NATS, one at a time reads
    /// a broker this way (the holder of its [`lease`]); the others stand by.
    pub shared_reader: bool,
    /// This process's name in the shared reader's leases: unique among the live Herald
    /// processes on one NATS, and the same after a restart, so that a restarted process takes
    /// its leases back at once (`herald serve` uses the host name and the data directory).
    /// `None`: a random name, and a restart waits for the old leases to expire.
    pub instance: Option<String>,
}

pub struct NatsLog {
    jetstream: jetstream::Context,
    /// See [`NatsOptions::shared_reader`].
    shared_reader: bool,
    tails: shared::Tails,
    positions: std::sync::Arc<positions::Positions>,
    /// The task writing positions: ends with the log.
    positions_writer: tokio::task::AbortHandle,
}

impl Drop for NatsLog {
    fn drop(&mut self) {
        self.positions_writer.abort();
    }
}

/// async-nats has an error type per operation: each is kept as the cause.
fn unavailable(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> LogError {
    LogError::unavailable("").caused_by(Cause::Nats(e.into()))
}

/// `Nats-Msg-Id`: the source's length, the source and the id, so no two pairs collide.
fn message_id(record: &Record) -> String {
    let source = record.event.text("source").unwrap_or_default();
    format!("{}:{}{}", source.len(), source, record.event.id())
}

impl NatsLog {
    pub async fn connect(
        options: &NatsOptions,
        publish_timeout: Duration,
    ) -> Result<Self, LogError> {
        let mut connect = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .retry_on_initial_connect();
        if let Some(path) = &options.credentials_file {
            connect = connect.credentials_file(path).await.map_err(unavailable)?;
        }
        if let Some(token) = &options.token {
            connect = connect.token(token.clone());
        }
        if let Some(ca) = &options.tls_ca_file {
            connect = connect.add_root_certificates(ca.clone()).require_tls(true);
        }
        let client = connect
            .connect(options.url.as_str())
            .await
            .map_err(unavailable)?;
        let mut jetstream = jetstream::new(client);
        jetstream.set_timeout(publish_timeout);
        let (positions, positions_writer) = positions::Positions::start(jetstream.clone());
        let leases = lease::Leases::new(
            jetstream.clone(),
            lease::LEASE_TTL,
            options.instance.as_deref(),
        );
        Ok(Self {
            jetstream,
            shared_reader: options.shared_reader,
            tails: shared::Tails::new(std::sync::Arc::new(leases), shared::WINDOW_RECORDS),
            positions,
            positions_writer,
        })
    }

    /// The same log with tails that keep only `records` records, so that tests can make a
    /// trigger fall behind with a few.
    #[cfg(test)]
    fn with_window(mut self, records: usize) -> Self {
        self.tails = shared::Tails::new(self.tails.leases(), records);
        self
    }

    /// The same log with tails that keep `records` records and leases that live `ttl`, so
    /// that tests can see a lease pass to another process in seconds.
    #[cfg(test)]
    fn with_tails(mut self, records: usize, ttl: Duration, instance: Option<&str>) -> Self {
        let leases = lease::Leases::new(self.jetstream.clone(), ttl, instance);
        self.tails = shared::Tails::new(std::sync::Arc::new(leases), records);
        self
    }

    /// A trigger's durable consumer of its own (without the shared reader, or for a broker
    /// with interest retention). One made where the shared reader kept the trigger's position
    /// starts there, and the position is then forgotten.
    async fn durable_consumer(
        &self,
        broker: &BrokerKey,
        stream: &jetstream::stream::Stream,
        name: &str,
        start: StartFrom,
    ) -> Result<Box<dyn LogConsumer>, LogError> {
        let durable = names::durable(name);
        let handed_over = match stream.consumer_info(&durable).await {
            Ok(_) => None,
            Err(error) if consumer_not_found(error.kind()) => {
                self.positions.read(broker, name).await?
            }
            Err(error) => return Err(unavailable(error)),
        };
        let consumer: async_nats::jetstream::consumer::PullConsumer = stream
            .get_or_create_consumer(
                &durable,
                pull::Config {
                    durable_name: Some(durable.clone()),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: ACK_WAIT,
                    deliver_policy: match (handed_over, start) {
                        (Some(position), _) => DeliverPolicy::ByStartSequence {
                            start_sequence: position.max(1),
                        },
                        (None, StartFrom::Latest) => DeliverPolicy::New,
                        (None, StartFrom::Earliest) => DeliverPolicy::All,
                        (None, StartFrom::Time(time)) => DeliverPolicy::ByStartTime {
                            start_time: time::OffsetDateTime::from(time),
                        },
                    },
                    max_ack_pending: 10_000,
                    ..Default::default()
                },
            )
            .await
            .map_err(unavailable)?;
        if handed_over.is_some() {
            self.positions.forget(broker, name).await?;
        }
        let messages = consumer
            .stream()
            .max_messages_per_batch(PULL_BATCH)
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await
            .map_err(unavailable)?;
        Ok(Box::new(NatsConsumer {
            messages,
            pending: HashMap::new(),
            last_progress: Instant::now(),
        }))
    }

    /// Creates the stream, or updates it to the settings asked for.
    async fn ensure_stream(
        &self,
        name: String,
        subjects: Vec<String>,
        settings: &BrokerSettings,
        max_messages_per_subject: i64,
    ) -> Result<(), LogError> {
        let mut config = stream::Config {
            name,
            subjects,
            storage: stream::StorageType::File,
            num_replicas: settings.replicas.unwrap_or(1),
            max_messages_per_subject,
            ..Default::default()
        };
        if let Some(max_age) = settings.max_age {
            config.max_age = max_age;
        }
        if let Some(max_bytes) = settings.max_bytes {
            config.max_bytes = max_bytes;
        }
        if settings.interest_retention {
            config.retention = stream::RetentionPolicy::Interest;
        }
        if let Some(window) = settings.duplicate_window {
            config.duplicate_window = window;
        }
        self.jetstream
            .create_or_update_stream(config)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// The stream, or `None` when it does not exist.
    async fn existing_stream(
        &self,
        name: String,
    ) -> Result<Option<jetstream::stream::Stream>, LogError> {
        match self.jetstream.get_stream(name).await {
            Ok(stream) => Ok(Some(stream)),
            Err(error) => match error.kind() {
                jetstream::context::GetStreamErrorKind::JetStream(ref e)
                    if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
                {
                    Ok(None)
                }
                _ => Err(unavailable(error)),
            },
        }
    }
}

#[async_trait]
impl EventLog for NatsLog {
    async fn ensure_broker(
        &self,
        broker: &BrokerKey,
        settings: &BrokerSettings,
    ) -> Result<(), LogError> {
        self.ensure_stream(
            names::stream(broker),
            vec![names::subject(broker)],
            settings,
            -1,
        )
        .await?;
        // Parked records are kept until people deal with them: no limits, no interest.
        let dlq_subjects = vec![names::parked_subjects(broker)];
        let parked = BrokerSettings {
            replicas: settings.replicas,
            ..BrokerSettings::default()
        };
        self.ensure_stream(names::parked_stream(broker), dlq_subjects, &parked, 1)
            .await?;
        if self.shared_reader {
            self.positions
                .ensure_stream(broker, settings.replicas.unwrap_or(1))
                .await?;
        }
        Ok(())
    }

    /// `Nats-Msg-Id` and the stream's `duplicate_window` (JetStream's default of two minutes
    /// unless the broker sets one).
    fn drops_duplicates(&self, _broker: &BrokerKey) -> bool {
        true
    }

    async fn append(&self, broker: &BrokerKey, records: Vec<Record>) -> Result<(), LogError> {
        let subject = names::subject(broker);
        let mut acks = Vec::with_capacity(records.len());
        for record in &records {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", message_id(record).as_str());
            let ack = self
                .jetstream
                .publish_with_headers(subject.clone(), headers, Bytes::from(record.encode()))
                .await
                .map_err(|e| match e.kind() {
                    jetstream::context::PublishErrorKind::StreamNotFound => {
                        LogError::UnknownBroker(broker.clone())
                    }
                    _ => unavailable(e),
                })?;
            acks.push(ack);
        }
        let mut last_sequence = 0;
        let mut duplicates = 0;
        for ack in acks {
            let ack = ack.await.map_err(|e| match e.kind() {
                jetstream::context::PublishErrorKind::StreamNotFound => {
                    LogError::UnknownBroker(broker.clone())
                }
                _ => unavailable(e),
            })?;
            last_sequence = last_sequence.max(ack.sequence);
            duplicates += u64::from(ack.duplicate);
        }
        crate::log::identity::count_dropped(broker, duplicates);
        super::record_log_size(broker, last_sequence);
        Ok(())
    }

    async fn consumer(
        &self,
        broker: &BrokerKey,
        name: &str,
        start: StartFrom,
    ) -> Result<Box<dyn LogConsumer>, LogError> {
        let stream = self
            .jetstream
            .get_stream(names::stream(broker))
            .await
            .map_err(unavailable)?;
        let info = stream.cached_info().clone();
        if !self.shared_reader || info.config.retention == stream::RetentionPolicy::Interest {
            return self.durable_consumer(broker, &stream, name, start).await;
        }
        self.positions
            .ensure_stream(broker, info.config.num_replicas)
            .await?;
        let position = match self.positions.read(broker, name).await? {
            Some(position) => position,
            None => {
                let position = starting_point(&stream, &info, name, start).await?;
                // Durable before the first read, so that a crash before the first commit
                // cannot make the trigger skip what was accepted meanwhile.
                self.positions.write_now(broker, name, position).await?;
                // An earlier version's durable consumer has handed over its position.
                delete_durable(&stream, name).await?;
                position
            }
        };
        // Read again whenever this process takes the broker's lease: another holder may have
        // moved the position meanwhile.
        let load_position: shared::LoadPosition = {
            let (positions, broker, name) =
                (self.positions.clone(), broker.clone(), name.to_owned());
            Box::new(move || {
                let (positions, broker, name) = (positions.clone(), broker.clone(), name.clone());
                Box::pin(
                    async move { Ok(positions.read(&broker, &name).await?.unwrap_or(position)) },
                )
            })
        };
        let tail = self
            .tails
            .get_or_start(broker, &stream, info.state.last_sequence + 1)?;
        Ok(Box::new(shared::SharedConsumer::new(
            tail,
            stream,
            self.positions.clone(),
            name,
            load_position,
        )))
    }

    async fn park(
        &self,
        broker: &BrokerKey,
        consumer: &str,
        parked: ParkedRecord,
    ) -> Result<(), LogError> {
        let payload = parked.encode()?;
        // No Nats-Msg-Id: parking the same record again must replace it, not be dropped as a
        // duplicate; the per-subject limit of 1 keeps a single copy.
        self.jetstream
            .publish(
                names::parked_record_subject(broker, consumer, parked.id),
                Bytes::from(payload),
            )
            .await
            .map_err(unavailable)?
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn parked(
        &self,
        broker: &BrokerKey,
        consumer: &str,
    ) -> Result<Vec<ParkedRecord>, LogError> {
        let stream = self
            .jetstream
            .get_stream(names::parked_stream(broker))
            .await
            .map_err(unavailable)?;
        let mut reader: async_nats::jetstream::consumer::PullConsumer = stream
            .create_consumer(pull::Config {
                filter_subject: format!("{}.>", names::parked_subject(broker, consumer)),
                ack_policy: AckPolicy::None,
                deliver_policy: DeliverPolicy::All,
                inactive_threshold: Duration::from_secs(30),
                ..Default::default()
            })
            .await
            .map_err(unavailable)?;
        let mut remaining = reader.info().await.map_err(unavailable)?.num_pending as usize;
        let mut out = Vec::with_capacity(remaining);
        while remaining > 0 {
            let mut batch = reader
                .fetch()
                .max_messages(remaining)
                .expires(Duration::from_secs(2))
                .messages()
                .await
                .map_err(unavailable)?;
            let before = out.len();
            while let Some(message) = batch.next().await {
                let message = message.map_err(unavailable)?;
                out.push(ParkedRecord::decode(&message.payload)?);
            }
            if out.len() == before {
                break;
            }
            remaining -= out.len() - before;
        }
        Ok(out)
    }

    async fn unpark(
        &self,
        broker: &BrokerKey,
        consumer: &str,
        ids: &[RecordId],
    ) -> Result<usize, LogError> {
        let stream = self
            .jetstream
            .get_stream(names::parked_stream(broker))
            .await
            .map_err(unavailable)?;
        let mut removed = 0;
        for id in ids {
            let purged = stream
                .purge()
                .filter(names::parked_record_subject(broker, consumer, *id))
                .await
                .map_err(unavailable)?;
            removed += purged.purged as usize;
        }
        Ok(removed)
    }

    async fn delete_broker(&self, broker: &BrokerKey) -> Result<(), LogError> {
        self.tails.forget(broker)?;
        self.positions.forget_broker(broker).await?;
        for stream in [names::stream(broker), names::parked_stream(broker)] {
            if let Err(error) = self.jetstream.delete_stream(&stream).await {
                let not_found = matches!(
                    error.kind(),
                    jetstream::context::DeleteStreamErrorKind::JetStream(ref e)
                        if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
                );
                if !not_found {
                    return Err(unavailable(error));
                }
            }
        }
        Ok(())
    }

    async fn delete_consumer(&self, broker: &BrokerKey, consumer: &str) -> Result<(), LogError> {
        // A broker whose streams are gone (deleted first, or never created) has nothing
        // left to forget.
        let Some(stream) = self.existing_stream(names::stream(broker)).await? else {
            return Ok(());
        };
        delete_durable(&stream, consumer).await?;
        self.positions.forget(broker, consumer).await?;
        let Some(parked) = self.existing_stream(names::parked_stream(broker)).await? else {
            return Ok(());
        };
        parked
            .purge()
            .filter(format!("{}.>", names::parked_subject(broker, consumer)))
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn close(&self) -> Result<(), LogError> {
        self.positions.flush().await?;
        self.jetstream.client().flush().await.map_err(unavailable)
    }
}

fn consumer_not_found(kind: jetstream::context::ConsumerInfoErrorKind) -> bool {
    use jetstream::context::ConsumerInfoErrorKind as Kind;
    match kind {
        Kind::NotFound => true,
        Kind::JetStream(e) => e.error_code() == jetstream::ErrorCode::CONSUMER_NOT_FOUND,
        _ => false,
    }
}

/// Where a consumer without a position starts: where its durable consumer of an earlier
/// version got to (the first sequence it had not acknowledged), else where asked.
async fn starting_point(
    stream: &jetstream::stream::Stream,
    info: &stream::Info,
    name: &str,
    start: StartFrom,
) -> Result<u64, LogError> {
    match stream.consumer_info(names::durable(name)).await {
        Ok(durable) => return Ok(durable.ack_floor.stream_sequence + 1),
        Err(error) if consumer_not_found(error.kind()) => {}
        Err(error) => return Err(unavailable(error)),
    }
    let next = info.state.last_sequence + 1;
    Ok(match start {
        StartFrom::Latest => next,
        StartFrom::Earliest => info.state.first_sequence.clamp(1, next),
        StartFrom::Time(time) => {
            // The first message stored at or after `time`: an ephemeral consumer from
            // that time finds it. None yet: everything after `next` qualifies.
            let finder: async_nats::jetstream::consumer::PullConsumer = stream
                .create_consumer(pull::Config {
                    ack_policy: AckPolicy::None,
                    deliver_policy: DeliverPolicy::ByStartTime {
                        start_time: time::OffsetDateTime::from(time),
                    },
                    inactive_threshold: Duration::from_secs(30),
                    ..Default::default()
                })
                .await
                .map_err(unavailable)?;
            let mut first = finder
                .fetch()
                .max_messages(1)
                .messages()
                .await
                .map_err(unavailable)?;
            let found = match first.next().await {
                Some(Ok(message)) => Some(message.info().map_err(unavailable)?.stream_sequence),
                Some(Err(error)) => return Err(unavailable(error)),
                None => None,
            };
            let _ = stream.delete_consumer(&finder.cached_info().name).await;
            found.map_or(next, |sequence| sequence.min(next))
        }
    })
}

/// Deletes a trigger's durable consumer, if it has one.
async fn delete_durable(
    stream: &jetstream::stream::Stream,
    consumer: &str,
) -> Result<(), LogError> {
    if let Err(error) = stream.delete_consumer(&names::durable(consumer)).await {
        let not_found = matches!(
            error.kind(),
            jetstream::stream::ConsumerErrorKind::JetStream(ref e)
                if e.error_code() == jetstream::ErrorCode::CONSUMER_NOT_FOUND
        );
        if !not_found {
            return Err(unavailable(error));
        }
    }
    Ok(())
}

struct NatsConsumer {
    messages: pull::Stream,
    /// Handed out, not yet acknowledged: acked by stream sequence.
    pending: HashMap<u64, jetstream::Message>,
    last_progress: Instant,
}

impl NatsConsumer {
    fn take(&mut self, message: jetstream::Message) -> Result<LogRecord, LogError> {
        let offset = message.info().map_err(unavailable)?.stream_sequence;
        let record = Record::decode(message.payload.clone())
            .map_err(|e| LogError::corrupt(format!("stream sequence {offset}")).caused_by(e))?;
        self.pending.insert(offset, message);
        Ok(LogRecord {
            id: RecordId {
                partition: 0,
                offset,
            },
            record,
        })
    }
}

#[async_trait]
impl LogConsumer for NatsConsumer {
    async fn poll(&mut self, max: usize) -> Result<Vec<LogRecord>, LogError> {
        // Waiting for the first message is cancel-safe (`next` on a stream); the rest are
        // taken only if already buffered.
        let first = self
            .messages
            .next()
            .await
            .ok_or_else(|| LogError::unavailable("the consumer stream ended"))?;
        let mut out = vec![self.take(first.map_err(unavailable)?)?];
        while out.len() < max.max(1) {
            match self.messages.next().now_or_never() {
                Some(Some(Ok(message))) => out.push(self.take(message)?),
                Some(Some(Err(error))) => return Err(unavailable(error)),
                _ => break,
            }
        }
        Ok(out)
    }

    async fn ack(&mut self, id: RecordId) -> Result<(), LogError> {
        if let Some(message) = self.pending.remove(&id.offset) {
            message.ack().await.map_err(unavailable)?;
        }
        Ok(())
    }

    /// Acks are per message; here unfinished messages get a progress ack well before the
    /// ack wait runs out, so retries in Herald never race a JetStream redelivery.
    async fn commit(&mut self) -> Result<(), LogError> {
        if self.last_progress.elapsed() < ACK_WAIT / 4 {
            return Ok(());
        }
        for message in self.pending.values() {
            message
                .ack_with(AckKind::Progress)
                .await
                .map_err(unavailable)?;
        }
        self.last_progress = Instant::now();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::log::testsuite::{self, LogHarness};
    use crate::testing::NatsServer;

    struct NatsHarness {
        server: NatsServer,
        shared_reader: bool,
    }

    #[async_trait]
    impl LogHarness for NatsHarness {
        async fn open(&self) -> Arc<dyn EventLog> {
            let options = NatsOptions {
                url: self.server.url(),
                shared_reader: self.shared_reader,
                // One instance, reopened: as a restarted Herald, it takes its leases back.
                instance: Some("conformance".into()),
                ..Default::default()
            };
            Arc::new(
                NatsLog::connect(&options, DEFAULT_PUBLISH_TIMEOUT)
                    .await
                    .expect("connect to nats-server"),
            )
        }
    }

    async fn connect(server: &NatsServer) -> NatsLog {
        connect_as(server, "test").await
    }

    /// A log as the Herald instance `instance` (see [`NatsOptions::instance`]).
    async fn connect_as(server: &NatsServer, instance: &str) -> NatsLog {
        let options = NatsOptions {
            url: server.url(),
            shared_reader: true,
            instance: Some(instance.to_owned()),
            ..Default::default()
        };
        NatsLog::connect(&options, DEFAULT_PUBLISH_TIMEOUT)
            .await
            .expect("connect to nats-server")
    }

    /// Polls until `n` records came, acknowledging each.
    async fn read_acked(consumer: &mut dyn LogConsumer, n: usize) -> Vec<String> {
        let mut ids = Vec::new();
        while ids.len() < n {
            let records =
                tokio::time::timeout(Duration::from_secs(20), consumer.poll(n - ids.len()))
                    .await
                    .expect("records before the deadline")
                    .expect("poll");
            for record in records {
                consumer.ack(record.id).await.expect("ack");
                ids.push(record.record.event.id().into_owned());
            }
        }
        ids
    }

    fn numbered(range: std::ops::Range<usize>) -> Vec<String> {
        range.map(|i| i.to_string()).collect()
    }

    /// A trigger that has not read while its tail's window moved on reads what it missed from
    /// the stream itself, in order, and the trigger that kept up was not held back by it.
    #[tokio::test]
    async fn a_trigger_behind_the_window_reads_from_the_stream() {
        if !crate::testing::available(crate::testing::Server::Nats) {
            return;
        }
        let server = NatsServer::start();
        let log = connect(&server).await.with_window(4);
        let broker = BrokerKey::new("default", "window");
        log.ensure_broker(&broker, &BrokerSettings::default())
            .await
            .unwrap();
        let mut fast = log
            .consumer(&broker, "fast", StartFrom::Earliest)
            .await
            .unwrap();
        let mut slow = log
            .consumer(&broker, "slow", StartFrom::Earliest)
            .await
            .unwrap();
        let records: Vec<Record> = (0..20).map(|i| testsuite::sample(&i.to_string())).collect();
        log.append(&broker, records).await.unwrap();
        // The slow one reads nothing meanwhile: the fast one still gets every record.
        assert_eq!(read_acked(&mut *fast, 20).await, numbered(0..20));
        assert_eq!(read_acked(&mut *slow, 20).await, numbered(0..20));
        // Both are back within the window and read what comes next.
        log.append(&broker, vec![testsuite::sample("20")])
            .await
            .unwrap();
        assert_eq!(read_acked(&mut *fast, 1).await, ["20"]);
        assert_eq!(read_acked(&mut *slow, 1).await, ["20"]);
        log.close().await.unwrap();
    }

    /// A new trigger's starting point is durable before it reads: a crash before its first
    /// commit (the log dropped without `close`, so no position is written) must not make the
    /// trigger start after the records accepted meanwhile.
    #[tokio::test]
    async fn a_starting_point_survives_a_crash_before_the_first_commit() {
        if !crate::testing::available(crate::testing::Server::Nats) {
            return;
        }
        let server = NatsServer::start();
        let broker = BrokerKey::new("default", "start");
        {
            let log = connect(&server).await;
            log.ensure_broker(&broker, &BrokerSettings::default())
                .await
                .unwrap();
            log.append(&broker, vec![testsuite::sample("before")])
                .await
                .unwrap();
            let mut consumer = log.consumer(&broker, "t", StartFrom::Latest).await.unwrap();
            log.append(&broker, vec![testsuite::sample("after")])
                .await
                .unwrap();
            assert_eq!(read_acked(&mut *consumer, 1).await, ["after"]);
            // Acknowledged and committed, but the crash comes before the write.
            consumer.commit().await.unwrap();
        }
        let log = connect(&server).await;
        let mut consumer = log.consumer(&broker, "t", StartFrom::Latest).await.unwrap();
        assert_eq!(read_acked(&mut *consumer, 1).await, ["after"]);
        log.close().await.unwrap();
    }

    /// A trigger whose broker was read by an earlier version through a durable consumer of
    /// its own goes on from that consumer's ack floor, and the durable consumer is removed.
    #[tokio::test]
    async fn a_durable_consumer_of_an_earlier_version_hands_over_its_position() {
        if !crate::testing::available(crate::testing::Server::Nats) {
            return;
        }
        let server = NatsServer::start();
        let log = connect(&server).await;
        let broker = BrokerKey::new("default", "upgrade");
        log.ensure_broker(&broker, &BrokerSettings::default())
            .await
            .unwrap();
        let stream = log
            .jetstream
            .get_stream(names::stream(&broker))
            .await
            .unwrap();
        let mut old = log
            .durable_consumer(&broker, &stream, "t", StartFrom::Earliest)
            .await
            .unwrap();
        let records: Vec<Record> = (0..3).map(|i| testsuite::sample(&i.to_string())).collect();
        log.append(&broker, records).await.unwrap();
        assert_eq!(read_acked(&mut *old, 2).await, numbered(0..2));
        drop(old);
        let durable = names::durable("t");
        // Acks are not awaited by the server's answer: wait until it counted both.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let info = stream.consumer_info(&durable).await.unwrap();
            if info.ack_floor.stream_sequence == 2 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the acks never reached the ack floor"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut consumer = log.consumer(&broker, "t", StartFrom::Latest).await.unwrap();
        assert_eq!(read_acked(&mut *consumer, 1).await, ["2"]);
        assert!(
            stream.consumer_info(&durable).await.is_err(),
            "the earlier version's durable consumer must be gone"
        );
        log.close().await.unwrap();
    }

    /// Turning the shared reader off again: the trigger's durable consumer starts where the
    /// shared reader's position was, and the position is forgotten.
    #[tokio::test]
    async fn a_shared_readers_position_is_handed_to_a_durable_consumer() {
        if !crate::testing::available(crate::testing::Server::Nats) {
            return;
        }
        let server = NatsServer::start();
        let broker = BrokerKey::new("default", "downgrade");
        {
            let log = connect(&server).await;
            log.ensure_broker(&broker, &BrokerSettings::default())
                .await
                .unwrap();
            let mut consumer = log
                .consumer(&broker, "t", StartFrom::Earliest)
                .await
                .unwrap();
            let records: Vec<Record> = (0..3).map(|i| testsuite::sample(&i.to_string())).collect();
            log.append(&broker, records).await.unwrap();
            assert_eq!(read_acked(&mut *consumer, 2).await, numbered(0..2));
            consumer.commit().await.unwrap();
            drop(consumer);
            log.close().await.unwrap();
        }
        let options = NatsOptions {
            url: server.url(),
            ..Default::default()
        };
        let log = NatsLog::connect(&options, DEFAULT_PUBLISH_TIMEOUT)
            .await
            .unwrap();
        let mut consumer = log.consumer(&broker, "t", StartFrom::Latest).await.unwrap();
        assert_eq!(read_acked(&mut *consumer, 1).await, ["2"]);
        assert_eq!(log.positions.read(&broker, "t").await.unwrap(), None);
        log.close().await.unwrap();
    }

    /// Two Herald processes on one NATS (two instances with short leases): one reads the
    /// broker for the trigger and the other stands by, so each record is handed out once;
    /// when the reader dies without letting go, the other takes the lease once it expires and
    /// goes on from the dead one's stored position, not from its own.
    #[tokio::test]
    async fn one_process_at_a_time_reads_a_broker_and_another_takes_over() {
        if !crate::testing::available(crate::testing::Server::Nats) {
            return;
        }
        let server = NatsServer::start();
        let ttl = Duration::from_secs(2);
        let a = connect_as(&server, "a")
            .await
            .with_tails(shared::WINDOW_RECORDS, ttl, Some("a"));
        let b = connect_as(&server, "b")
            .await
            .with_tails(shared::WINDOW_RECORDS, ttl, Some("b"));
        let broker = BrokerKey::new("default", "leased");
        a.ensure_broker(&broker, &BrokerSettings::default())
            .await
            .unwrap();
        let mut on_a = a.consumer(&broker, "t", StartFrom::Earliest).await.unwrap();
        let mut on_b = b.consumer(&broker, "t", StartFrom::Earliest).await.unwrap();
        let records: Vec<Record> = (0..10).map(|i| testsuite::sample(&i.to_string())).collect();
        a.append(&broker, records).await.unwrap();

        // Both poll at once until every record came: all from one of them, each once.
        let (mut from_a, mut from_b) = (Vec::new(), Vec::new());
        while from_a.len() + from_b.len() < 10 {
            let polled = tokio::time::timeout(Duration::from_secs(20), async {
                tokio::select! {
                    records = on_a.poll(10) => (true, records.expect("poll on a")),
                    records = on_b.poll(10) => (false, records.expect("poll on b")),
                }
            })
            .await
            .expect("records before the deadline");
            let (consumer, ids) = match polled.0 {
                true => (&mut on_a, &mut from_a),
                false => (&mut on_b, &mut from_b),
            };
            for record in polled.1 {
                consumer.ack(record.id).await.unwrap();
                ids.push(record.record.event.id().into_owned());
            }
        }
        assert!(
            from_a.is_empty() != from_b.is_empty(),
            "one reader at a time: a read {from_a:?}, b read {from_b:?}"
        );
        let (reader, reader_log, mut standby, standby_log) = match from_a.is_empty() {
            false => (on_a, a, on_b, b),
            true => (on_b, b, on_a, a),
        };
        assert_eq!([from_a, from_b].concat(), numbered(0..10));

        // The reader stores its position and dies without giving the lease back.
        let mut reader = reader;
        reader.commit().await.unwrap();
        reader_log.close().await.unwrap();
        drop(reader);
        drop(reader_log);

        standby_log
            .append(
                &broker,
                (10..13)
                    .map(|i| testsuite::sample(&i.to_string()))
                    .collect(),
            )
            .await
            .unwrap();
        assert_eq!(read_acked(&mut *standby, 3).await, numbered(10..13));
        standby_log.close().await.unwrap();
    }

    #[tokio::test]
    async fn jetstream_passes_the_conformance_suite() {
        if !crate::testing::available(crate::testing::Server::Nats) {
            return;
        }
        testsuite::run_all(&|| async {
            Box::new(NatsHarness {
                server: NatsServer::start(),
                shared_reader: false,
            }) as Box<dyn LogHarness>
        })
        .await;
    }

    #[tokio::test]
    async fn the_shared_reader_passes_the_conformance_suite() {
        if !crate::testing::available(crate::testing::Server::Nats) {
            return;
        }
        testsuite::run_all(&|| async {
            Box::new(NatsHarness {
                server: NatsServer::start(),
                shared_reader: true,
            }) as Box<dyn LogHarness>
        })
        .await;
    }
}
