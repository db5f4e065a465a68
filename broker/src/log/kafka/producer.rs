//! The Kafka producer: librdkafka's, with delivery reports handed to the appending task.
//!
//! Two librdkafka producers with the same settings but `linger.ms`: an append sent while no
//! other record waits for its report goes out at once (`linger.ms` 0), so a lone request is
//! not held back by a linger that has nothing to batch (p50 of a lone 202 1.75 -> 0.5 ms on
//! a local Kafka); a record sent while others wait joins the batching producer's next batch
//! (`linger.ms` 1 by default), which a closed loop of 32 clients needs (with `linger.ms` 0
//! for all, each record is a request of its own and Herald's CPU per event more than
//! doubles). Order is unaffected: the records of one append go through one producer;
//! requests that overlap in time were never ordered; and a client that waits for its 202
//! before the next request sees the first record durable before the second is sent,
//! whichever producer sends each.
//!
//! rdkafka's `FutureProducer` polls its delivery reports from a thread that wakes every
//! 100 ms, and each wake ends in a busy loop: rdkafka passes the time left to librdkafka in
//! whole milliseconds, so the last fraction of each 100 ms is spent polling without a wait
//! (0.5 CPU-seconds per idle minute, most of what an idle Herald on Kafka cost). Reports
//! are handled as soon as librdkafka queues them, whatever the poll timeout, so this
//! producer polls with a long one: an idle producer wakes once per [`POLL_WAIT`].

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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
pub(super) struct Reports {
    /// Records of both producers sent and not reported yet.
    waiting: Arc<AtomicUsize>,
}

impl ClientContext for Reports {}

impl ProducerContext for Reports {
    type DeliveryOpaque = Box<oneshot::Sender<Written>>;

    fn delivery(&self, result: &DeliveryResult<'_>, answer: Self::DeliveryOpaque) {
        self.waiting.fetch_sub(1, Ordering::SeqCst);
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
    /// Sends with the configured `linger.ms`.
    batching: Polled,
    /// Sends with `linger.ms` 0, for a record sent while no other waits.
    immediate: Polled,
    /// Records sent and not reported yet, by both producers.
    waiting: Arc<AtomicUsize>,
}

/// A producer and the thread that polls its delivery reports.
struct Polled {
    producer: Arc<BaseProducer<Reports>>,
    /// Tells the polling thread to finish at its next wake.
    stop: Arc<AtomicBool>,
}

impl Polled {
    fn start(config: &ClientConfig, waiting: &Arc<AtomicUsize>) -> Result<Self, KafkaError> {
        let producer: Arc<BaseProducer<Reports>> =
            Arc::new(config.create_with_context(Reports {
                waiting: waiting.clone(),
            })?);
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
        Ok(Self { producer, stop })
    }
}

impl Drop for Polled {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl ReportingProducer {
    /// Producers with `config`; the one for lone records with `linger.ms` 0.
    pub(super) fn create(config: &ClientConfig) -> Result<Self, KafkaError> {
        let waiting = Arc::new(AtomicUsize::new(0));
        let batching = Polled::start(config, &waiting)?;
        let mut lone = config.clone();
        lone.set("linger.ms", "0");
        let immediate = Polled::start(&lone, &waiting)?;
        Ok(Self {
            inner: Arc::new(Inner {
                batching,
                immediate,
                waiting,
            }),
        })
    }

    /// A sender of `count` records through one producer (records of one append keep their
    /// order): the immediate one when no other record waits for its report.
    pub(super) fn sender(&self, count: usize) -> Sender<'_> {
        let inner = &*self.inner;
        let alone = inner.waiting.fetch_add(count, Ordering::SeqCst) == 0;
        Sender {
            producer: if alone {
                &inner.immediate.producer
            } else {
                &inner.batching.producer
            },
            waiting: &inner.waiting,
            unsent: count,
        }
    }

    /// Waits up to `timeout` for every queued record's report.
    pub(super) fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.inner.batching.producer.flush(timeout)?;
        self.inner.immediate.producer.flush(timeout)
    }
}

/// Sends the records of one append through one producer; see [`ReportingProducer::sender`].
pub(super) struct Sender<'a> {
    producer: &'a BaseProducer<Reports>,
    waiting: &'a AtomicUsize,
    /// Records counted as waiting that were not queued (yet).
    unsent: usize,
}

impl Sender<'_> {
    /// Queues `record`; the receiver gets its delivery report. An error (queue full, say)
    /// means the record was not queued.
    pub(super) fn send<K, P>(
        &mut self,
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
        let sent = self.producer.send(record);
        if sent.is_ok() {
            // Its report will take it off the count.
            self.unsent = self.unsent.saturating_sub(1);
        }
        sent.map(|()| report).map_err(|(error, _)| error)
    }
}

impl Drop for Sender<'_> {
    /// Records never queued get no report: they stop counting as waiting.
    fn drop(&mut self) {
        self.waiting.fetch_sub(self.unsent, Ordering::SeqCst);
    }
}
