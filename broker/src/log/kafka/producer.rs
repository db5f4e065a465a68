//! The Kafka producer: librdkafka's, with delivery reports handed to the appending task.
//!
//! rdkafka's `FutureProducer` polls its delivery reports from a thread that wakes every
//! 100 ms, and each wake ends in a busy loop: rdkafka passes the time left to librdkafka in
//! whole milliseconds, so the last fraction of each 100 ms is spent polling without a wait
//! (0.5 CPU-seconds per idle minute, most of what an idle Herald on Kafka cost). Reports
//! are handled as soon as librdkafka queues them, whatever the poll timeout, so this
//! producer polls with a long one: an idle producer wakes once per [`POLL_WAIT`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::util::Timeout;
use rdkafka::ClientContext;
use tokio::sync::oneshot;

/// Longest wait of one poll of the delivery reports. It bounds how long the polling thread
/// outlives the producer, never how long a report waits.
const POLL_WAIT: Duration = Duration::from_secs(10);

/// Where a record was written: partition and offset.
pub(super) type Written = Result<(i32, i64), KafkaError>;

/// Answers each record's sender with its delivery report.
pub(super) struct Reports;

impl ClientContext for Reports {}

impl ProducerContext for Reports {
    type DeliveryOpaque = Box<oneshot::Sender<Written>>;

    fn delivery(&self, result: &DeliveryResult<'_>, answer: Self::DeliveryOpaque) {
        let written = match result {
            Ok(message) => Ok((message.partition(), message.offset())),
            Err((error, _)) => Err(error.clone()),
        };
        // The appending request may have gone (its client hung up): nothing to tell.
        let _ = answer.send(written);
    }
}

/// A producer whose deliveries are awaited; cheap to clone.
#[derive(Clone)]
pub(super) struct ReportingProducer {
    inner: Arc<Inner>,
}

struct Inner {
    producer: Arc<BaseProducer<Reports>>,
    /// Tells the polling thread to finish at its next wake.
    stop: Arc<AtomicBool>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl ReportingProducer {
    pub(super) fn create(config: &ClientConfig) -> Result<Self, KafkaError> {
        let producer: Arc<BaseProducer<Reports>> = Arc::new(config.create_with_context(Reports)?);
        let stop = Arc::new(AtomicBool::new(false));
        let (polled, stopped) = (producer.clone(), stop.clone());
        std::thread::Builder::new()
            .name("herald-kafka-reports".into())
            .spawn(move || {
                while !stopped.load(Ordering::SeqCst) {
                    polled.poll(Timeout::After(POLL_WAIT));
                }
            })
            .map_err(|e| {
                KafkaError::ClientCreation(format!("cannot start the report thread: {e}"))
            })?;
        Ok(Self {
            inner: Arc::new(Inner { producer, stop }),
        })
    }

    /// Queues `record`; the receiver gets its delivery report. An error (queue full, say)
    /// means the record was not queued.
    pub(super) fn send<K, P>(
        &self,
        record: BaseRecord<'_, K, P, ()>,
    ) -> Result<oneshot::Receiver<Written>, KafkaError>
    where
        K: rdkafka::message::ToBytes + ?Sized,
        P: rdkafka::message::ToBytes + ?Sized,
    {
        let (answer, report) = oneshot::channel();
        let record = BaseRecord {
            topic: record.topic,
            partition: record.partition,
            payload: record.payload,
            key: record.key,
            timestamp: record.timestamp,
            headers: record.headers,
            delivery_opaque: Box::new(answer),
        };
        self.inner
            .producer
            .send(record)
            .map(|()| report)
            .map_err(|(error, _)| error)
    }

    /// Waits up to `timeout` for every queued record's report.
    pub(super) fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.inner.producer.flush(timeout)
    }
}
