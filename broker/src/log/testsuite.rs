//! The conformance suite every [`EventLog`] backend must pass.
//!
//! A backend's test calls [`run_all`] with a factory of [`LogHarness`]es; each harness stands
//! for one storage (a directory, a Kafka cluster, a JetStream server) that can be reopened, so
//! the suite can check that state survives a close and reopen.
#![allow(
    clippy::unwrap_used,
    reason = "test support: a failed step is a failed test"
)]

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;

use super::{
    BrokerKey, BrokerSettings, EventLog, Failure, LogConsumer, LogRecord, ParkedRecord, RecordId,
    StartFrom,
};
use crate::event::CloudEvent;
use crate::record::Record;

/// One backend storage that the suite can open, close and open again.
#[async_trait]
pub trait LogHarness: Send + Sync {
    /// Opens a new handle on the same storage. The suite closes and drops earlier handles first.
    async fn open(&self) -> Arc<dyn EventLog>;
}

/// How long the suite waits for records that must arrive.
const DEADLINE: Duration = Duration::from_secs(20);

/// Runs every check, each on a fresh harness.
pub async fn run_all<F, Fut>(new_harness: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Box<dyn LogHarness>>,
{
    appends_are_read_in_order(&*new_harness().await).await;
    latest_skips_earlier_records(&*new_harness().await).await;
    consumers_are_independent(&*new_harness().await).await;
    commit_is_a_contiguous_low_water_mark(&*new_harness().await).await;
    parked_records_are_durable(&*new_harness().await).await;
    poll_waits_for_appends(&*new_harness().await).await;
    concurrent_appends_are_all_kept(&*new_harness().await).await;
    unknown_broker_is_an_error(&*new_harness().await).await;
    parking_again_replaces_and_unpark_removes(&*new_harness().await).await;
    deleting_a_consumer_forgets_it(&*new_harness().await).await;
    deleting_a_broker_forgets_everything(&*new_harness().await).await;
    start_from_a_time(&*new_harness().await).await;
    similar_names_stay_apart(&*new_harness().await).await;
    recent_ids_survive_a_reopen(&*new_harness().await).await;
}

/// A new handle on the harness's storage with a new broker in it.
async fn fresh(harness: &dyn LogHarness, test: &str) -> (Arc<dyn EventLog>, BrokerKey) {
    let log = harness.open().await;
    let broker = unique_broker(test);
    log.ensure_broker(&broker, &BrokerSettings::default())
        .await
        .unwrap();
    (log, broker)
}

async fn consumer(
    log: &dyn EventLog,
    broker: &BrokerKey,
    name: &str,
    start: StartFrom,
) -> Box<dyn LogConsumer> {
    log.consumer(broker, name, start).await.unwrap()
}

fn unique_broker(test: &str) -> BrokerKey {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    BrokerKey::new("suite", format!("{test}-{nanos}"))
}

/// A record whose id is `id` and whose data holds arbitrary bytes.
pub fn sample(id: &str) -> Record {
    let mut event = CloudEvent::new();
    event.set("specversion", "1.0");
    event.set("id", id);
    event.set("source", "/suite");
    event.set("type", "dev.herald.suite");
    event.set("datacontenttype", "application/octet-stream");
    event.set_data(Some(Bytes::from(vec![0u8, 0xff, b'x', b'\n'])));
    Record {
        event,
        headers: vec![("traceparent".into(), format!("00-{id}"))],
    }
}

async fn poll_exactly(consumer: &mut dyn LogConsumer, n: usize) -> Vec<LogRecord> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while out.len() < n {
        let batch = tokio::time::timeout_at(deadline, consumer.poll(n - out.len()))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "only {} of {n} records arrived before the deadline",
                    out.len()
                )
            })
            .expect("poll");
        out.extend(batch);
    }
    assert_eq!(out.len(), n, "poll returned more records than asked for");
    out
}

async fn assert_nothing_more(consumer: &mut dyn LogConsumer) {
    if let Ok(result) = tokio::time::timeout(Duration::from_millis(300), consumer.poll(10)).await {
        let ids: Vec<String> = result
            .expect("poll")
            .iter()
            .map(|r| r.record.event.id().into_owned())
            .collect();
        panic!("expected no more records, got {ids:?}");
    }
}

fn ids(records: &[LogRecord]) -> Vec<String> {
    records
        .iter()
        .map(|r| r.record.event.id().into_owned())
        .collect()
}

async fn appends_are_read_in_order(harness: &dyn LogHarness) {
    let (log, broker) = fresh(harness, "order").await;
    let mut consumer = consumer(&*log, &broker, "t1", StartFrom::Earliest).await;
    log.append(&broker, vec![sample("a"), sample("b")])
        .await
        .unwrap();
    log.append(&broker, vec![sample("c")]).await.unwrap();
    let records = poll_exactly(&mut *consumer, 3).await;
    assert_eq!(ids(&records), ["a", "b", "c"]);
    assert_eq!(
        records[0].record,
        sample("a"),
        "a record must come back exactly as appended"
    );
    assert!(
        records.windows(2).all(|w| w[0].id < w[1].id),
        "ids must increase along the log"
    );
    log.close().await.unwrap();
}

async fn latest_skips_earlier_records(harness: &dyn LogHarness) {
    let (log, broker) = fresh(harness, "latest").await;
    log.append(&broker, vec![sample("old")]).await.unwrap();
    let mut latest = consumer(&*log, &broker, "late", StartFrom::Latest).await;
    let mut earliest = consumer(&*log, &broker, "early", StartFrom::Earliest).await;
    log.append(&broker, vec![sample("new")]).await.unwrap();
    assert_eq!(ids(&poll_exactly(&mut *latest, 1).await), ["new"]);
    assert_eq!(ids(&poll_exactly(&mut *earliest, 2).await), ["old", "new"]);
    log.close().await.unwrap();
}

async fn consumers_are_independent(harness: &dyn LogHarness) {
    let (log, broker) = fresh(harness, "independent").await;
    let mut one = consumer(&*log, &broker, "one", StartFrom::Earliest).await;
    let mut two = consumer(&*log, &broker, "two", StartFrom::Earliest).await;
    log.append(&broker, vec![sample("x"), sample("y")])
        .await
        .unwrap();
    let first = poll_exactly(&mut *one, 2).await;
    for record in &first {
        one.ack(record.id).await.unwrap();
    }
    one.commit().await.unwrap();
    assert_eq!(ids(&poll_exactly(&mut *two, 2).await), ["x", "y"]);
    log.close().await.unwrap();
}

async fn commit_is_a_contiguous_low_water_mark(harness: &dyn LogHarness) {
    let broker = unique_broker("lowwater");
    {
        let log = harness.open().await;
        log.ensure_broker(&broker, &BrokerSettings::default())
            .await
            .unwrap();
        let mut consumer = consumer(&*log, &broker, "t", StartFrom::Earliest).await;
        log.append(&broker, (0..5).map(|i| sample(&i.to_string())).collect())
            .await
            .unwrap();
        let records = poll_exactly(&mut *consumer, 5).await;
        for index in [0, 1, 3, 4] {
            consumer.ack(records[index].id).await.unwrap();
        }
        consumer.commit().await.unwrap();
        drop(consumer);
        log.close().await.unwrap();
    }
    {
        let log = harness.open().await;
        log.ensure_broker(&broker, &BrokerSettings::default())
            .await
            .unwrap();
        let mut consumer = consumer(&*log, &broker, "t", StartFrom::Latest).await;
        // At least the unacknowledged record comes back first; a log that commits a low-water
        // mark (sled, Kafka) also repeats what follows it, one with per-record acks
        // (JetStream) need not.
        let first = poll_exactly(&mut *consumer, 1).await;
        assert_eq!(
            ids(&first),
            ["2"],
            "resume must start at the first unacknowledged record"
        );
        let mut again = first;
        if let Ok(Ok(more)) =
            tokio::time::timeout(Duration::from_millis(500), consumer.poll(2)).await
        {
            again.extend(more);
        }
        if again.len() == 2 {
            again.extend(poll_exactly(&mut *consumer, 1).await);
        }
        let again_ids = ids(&again);
        assert!(
            again_ids == ["2"] || again_ids == ["2", "3", "4"],
            "after the unacknowledged record, either nothing or the rest in order: {again_ids:?}"
        );
        for record in &again {
            consumer.ack(record.id).await.unwrap();
        }
        consumer.commit().await.unwrap();
        drop(consumer);
        log.close().await.unwrap();
    }
    let log = harness.open().await;
    log.ensure_broker(&broker, &BrokerSettings::default())
        .await
        .unwrap();
    let mut consumer = consumer(&*log, &broker, "t", StartFrom::Earliest).await;
    assert_nothing_more(&mut *consumer).await;
    log.append(&broker, vec![sample("5")]).await.unwrap();
    assert_eq!(ids(&poll_exactly(&mut *consumer, 1).await), ["5"]);
    drop(consumer);
    log.close().await.unwrap();
}

async fn parked_records_are_durable(harness: &dyn LogHarness) {
    let broker = unique_broker("parked");
    let failure = Failure {
        attempts: 3,
        last_status: Some(503),
        last_error: "unavailable".into(),
        reason: "no dead-letter sink".into(),
        parked_at: "2026-01-01T00:00:00Z".into(),
    };
    {
        let log = harness.open().await;
        log.ensure_broker(&broker, &BrokerSettings::default())
            .await
            .unwrap();
        let mut consumer = consumer(&*log, &broker, "t", StartFrom::Earliest).await;
        log.append(&broker, vec![sample("p1"), sample("p2")])
            .await
            .unwrap();
        for record in poll_exactly(&mut *consumer, 2).await {
            let parked = ParkedRecord {
                id: record.id,
                record: record.record,
                failure: failure.clone(),
            };
            log.park(&broker, "t", parked).await.unwrap();
            consumer.ack(record.id).await.unwrap();
        }
        consumer.commit().await.unwrap();
        assert!(
            log.parked(&broker, "other").await.unwrap().is_empty(),
            "parking is per consumer"
        );
        drop(consumer);
        log.close().await.unwrap();
    }
    let log = harness.open().await;
    log.ensure_broker(&broker, &BrokerSettings::default())
        .await
        .unwrap();
    let parked = log.parked(&broker, "t").await.unwrap();
    let parked_ids: Vec<String> = parked
        .iter()
        .map(|p| p.record.event.id().into_owned())
        .collect();
    assert_eq!(parked_ids, ["p1", "p2"]);
    assert_eq!(parked[0].failure, failure);
    assert_eq!(parked[0].record, sample("p1"));
    log.close().await.unwrap();
}

async fn poll_waits_for_appends(harness: &dyn LogHarness) {
    let (log, broker) = fresh(harness, "wait").await;
    let mut consumer = consumer(&*log, &broker, "t", StartFrom::Earliest).await;
    assert_nothing_more(&mut *consumer).await;
    let appender = {
        let log = log.clone();
        let broker = broker.clone();
        tokio::spawn(async move { log.append(&broker, vec![sample("late")]).await })
    };
    assert_eq!(ids(&poll_exactly(&mut *consumer, 1).await), ["late"]);
    appender.await.unwrap().unwrap();
    drop(consumer);
    log.close().await.unwrap();
}

async fn concurrent_appends_are_all_kept(harness: &dyn LogHarness) {
    let (log, broker) = fresh(harness, "concurrent").await;
    let mut consumer = consumer(&*log, &broker, "t", StartFrom::Earliest).await;
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let log = log.clone();
            let broker = broker.clone();
            tokio::spawn(async move { log.append(&broker, vec![sample(&format!("c{i}"))]).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let mut got = ids(&poll_exactly(&mut *consumer, 50).await);
    got.sort();
    let mut want: Vec<String> = (0..50).map(|i| format!("c{i}")).collect();
    want.sort();
    assert_eq!(got, want);
    drop(consumer);
    log.close().await.unwrap();
}

async fn unknown_broker_is_an_error(harness: &dyn LogHarness) {
    let log = harness.open().await;
    let result = log
        .append(&unique_broker("missing"), vec![sample("x")])
        .await;
    assert!(
        result.is_err(),
        "appending to a broker that was never created must fail"
    );
    log.close().await.unwrap();
}

fn failure(attempts: u32) -> Failure {
    Failure {
        attempts,
        last_status: Some(500),
        last_error: format!("attempt {attempts}"),
        reason: "no dead-letter sink".into(),
        parked_at: "2026-01-01T00:00:00Z".into(),
    }
}

async fn parking_again_replaces_and_unpark_removes(harness: &dyn LogHarness) {
    let (log, broker) = fresh(harness, "unpark").await;
    let mut consumer = consumer(&*log, &broker, "t", StartFrom::Earliest).await;
    log.append(&broker, vec![sample("u1"), sample("u2"), sample("u3")])
        .await
        .unwrap();
    let records = poll_exactly(&mut *consumer, 3).await;
    for record in &records {
        let parked = ParkedRecord {
            id: record.id,
            record: record.record.clone(),
            failure: failure(1),
        };
        log.park(&broker, "t", parked).await.unwrap();
    }
    // A redriven record that fails again is parked again: one entry, the new failure.
    let again = ParkedRecord {
        id: records[0].id,
        record: records[0].record.clone(),
        failure: failure(2),
    };
    log.park(&broker, "t", again).await.unwrap();
    let parked = log.parked(&broker, "t").await.unwrap();
    let parked_ids: Vec<String> = parked
        .iter()
        .map(|p| p.record.event.id().into_owned())
        .collect();
    let mut sorted = parked_ids.clone();
    sorted.sort();
    assert_eq!(sorted, ["u1", "u2", "u3"], "one entry per record");
    let u1 = parked.iter().find(|p| p.id == records[0].id).unwrap();
    assert_eq!(u1.failure, failure(2));

    let removed = log
        .unpark(&broker, "t", &[records[0].id, records[2].id])
        .await
        .unwrap();
    assert_eq!(removed, 2);
    let left: Vec<RecordId> = log
        .parked(&broker, "t")
        .await
        .unwrap()
        .iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(left, [records[1].id]);
    assert_eq!(
        log.unpark(&broker, "t", &[records[0].id]).await.unwrap(),
        0,
        "removing twice removes nothing"
    );
    drop(consumer);
    log.close().await.unwrap();
}

async fn deleting_a_consumer_forgets_it(harness: &dyn LogHarness) {
    let (log, broker) = fresh(harness, "delete").await;
    let mut first = consumer(&*log, &broker, "t", StartFrom::Earliest).await;
    log.append(&broker, vec![sample("d1"), sample("d2")])
        .await
        .unwrap();
    let records = poll_exactly(&mut *first, 2).await;
    for record in &records {
        first.ack(record.id).await.unwrap();
    }
    first.commit().await.unwrap();
    park_first(&*log, &broker, &records).await;
    drop(first);
    log.delete_consumer(&broker, "t").await.unwrap();
    assert!(log.parked(&broker, "t").await.unwrap().is_empty());
    // Its committed position is gone too: a new consumer of that name starts where asked.
    let mut second = consumer(&*log, &broker, "t", StartFrom::Earliest).await;
    assert_eq!(ids(&poll_exactly(&mut *second, 2).await), ["d1", "d2"]);
    drop(second);
    log.delete_consumer(&broker, "never-existed").await.unwrap();
    log.close().await.unwrap();
}

/// Parks the first of `records` for consumer `t`, as a failed delivery would.
async fn park_first(log: &dyn EventLog, broker: &BrokerKey, records: &[LogRecord]) {
    let parked = ParkedRecord {
        id: records[0].id,
        record: records[0].record.clone(),
        failure: failure(1),
    };
    log.park(broker, "t", parked).await.unwrap();
}

async fn deleting_a_broker_forgets_everything(harness: &dyn LogHarness) {
    let (log, broker) = fresh(harness, "delete-broker").await;
    let mut first = consumer(&*log, &broker, "t", StartFrom::Earliest).await;
    log.append(&broker, vec![sample("old")]).await.unwrap();
    let records = poll_exactly(&mut *first, 1).await;
    first.ack(records[0].id).await.unwrap();
    first.commit().await.unwrap();
    park_first(&*log, &broker, &records).await;
    drop(first);
    log.delete_broker(&broker).await.unwrap();
    log.delete_broker(&broker).await.unwrap();
    // A trigger deleted after its broker's log (its finalizer runs last) has nothing left to
    // forget, and neither has one whose broker never existed: both must succeed, or the
    // trigger would stay Terminating forever.
    log.delete_consumer(&broker, "t").await.unwrap();
    let never = BrokerKey::new(broker.namespace.clone(), format!("{}-never", broker.name));
    log.delete_consumer(&never, "t").await.unwrap();
    // A broker of the same name starts empty: no records, no position, nothing parked.
    log.ensure_broker(&broker, &BrokerSettings::default())
        .await
        .unwrap();
    assert!(log.parked(&broker, "t").await.unwrap().is_empty());
    let mut second = consumer(&*log, &broker, "t", StartFrom::Earliest).await;
    log.append(&broker, vec![sample("new")]).await.unwrap();
    assert_eq!(ids(&poll_exactly(&mut *second, 1).await), ["new"]);
    drop(second);
    log.close().await.unwrap();
}

/// A record stamped with an arrival time now, as ingress stamps every record.
fn arrived_now(id: &str) -> Record {
    let mut record = sample(id);
    record.event.set(
        crate::record::ARRIVAL_TIME_EXTENSION,
        chrono::Utc::now()
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
            .as_str(),
    );
    record
}

async fn start_from_a_time(harness: &dyn LogHarness) {
    let (log, broker) = fresh(harness, "since").await;
    log.append(
        &broker,
        vec![arrived_now("before-1"), arrived_now("before-2")],
    )
    .await
    .unwrap();
    // Both were stamped and stored before this instant; the next one after it. Backends keep
    // times in milliseconds (Kafka): leave a few between the records and the boundary.
    settle_clock().await;
    let since = SystemTime::now();
    settle_clock().await;
    log.append(&broker, vec![arrived_now("after-1")])
        .await
        .unwrap();
    let mut replay = consumer(&*log, &broker, "replay", StartFrom::Time(since)).await;
    assert_eq!(ids(&poll_exactly(&mut *replay, 1).await), ["after-1"]);
    assert_nothing_more(&mut *replay).await;
    log.append(&broker, vec![arrived_now("after-2")])
        .await
        .unwrap();
    assert_eq!(ids(&poll_exactly(&mut *replay, 1).await), ["after-2"]);
    drop(replay);
    log.close().await.unwrap();
}

/// What ingress rebuilds its duplicate window from: the ids that arrived since a time, from
/// every partition, read back after a reopen, the newest `max` of them. Backends with their own
/// duplicate window (JetStream) need not list them.
async fn recent_ids_survive_a_reopen(harness: &dyn LogHarness) {
    use crate::log::identity::event_key;
    let (log, broker) = fresh(harness, "recent").await;
    if log.drops_duplicates(&broker) {
        log.close().await.unwrap();
        return;
    }
    log.append(&broker, vec![arrived_now("old")]).await.unwrap();
    settle_clock().await;
    let since = SystemTime::now();
    settle_clock().await;
    let fresh_ids: Vec<String> = (0..20).map(|i| format!("new-{i}")).collect();
    for chunk in fresh_ids.chunks(5) {
        let records = chunk.iter().map(|id| arrived_now(id)).collect();
        log.append(&broker, records).await.unwrap();
    }
    log.close().await.unwrap();
    drop(log);
    let log = harness.open().await;
    log.ensure_broker(&broker, &BrokerSettings::default())
        .await
        .unwrap();
    let keys = |ids: &[String]| -> std::collections::HashSet<_> {
        ids.iter()
            .map(|id| event_key(&arrived_now(id).event))
            .collect()
    };
    let recent = log.recent_ids(&broker, since, 100).await.unwrap();
    let got: std::collections::HashSet<_> = recent.iter().map(|(key, _)| *key).collect();
    assert_eq!(
        got,
        keys(&fresh_ids),
        "the ids since the time, and no older one"
    );
    assert!(recent.windows(2).all(|w| w[0].1 <= w[1].1), "oldest first");
    let newest = log.recent_ids(&broker, since, 5).await.unwrap();
    assert_eq!(newest.len(), 5);
    assert!(newest.iter().all(|(key, _)| got.contains(key)));
    log.close().await.unwrap();
}

/// Waits until the clock has moved a few milliseconds on (a condition, not a fixed sleep).
async fn settle_clock() {
    let from = SystemTime::now();
    while SystemTime::now().duration_since(from).unwrap_or_default() < Duration::from_millis(3) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Brokers and consumers whose names differ only where a backend's naming could lose the
/// difference (`-` against `.`, where the namespace ends, names too long for the backend)
/// each keep their own records, consumer positions and parked records.
async fn similar_names_stay_apart(harness: &dyn LogHarness) {
    let log = harness.open().await;
    let run = unique_broker("names").name;
    let (dash, dot) = ("trigger-t-1", "trigger-t.1");
    let brokers = [
        BrokerKey::new("suite", format!("{run}-a-b")),
        BrokerKey::new("suite", format!("{run}-a.b")),
        // `{namespace}-{name}` alike.
        BrokerKey::new(format!("suite-{run}"), "b"),
        BrokerKey::new("suite", format!("{run}-b")),
        // At the limits of Kubernetes names.
        BrokerKey::new(
            format!("{run}-{}", "n".repeat(62 - run.len())),
            format!("{}-{run}", "a".repeat(252 - run.len())),
        ),
    ];
    // Trigger names are unique in a namespace (Kafka's consumer groups rely on it).
    let others: Vec<String> = (1..4).map(|i| format!("trigger-u{i}")).collect();
    let long_trigger = format!("trigger-{}", "c".repeat(245));
    let mut consumers = Vec::new();
    for (i, broker) in brokers.iter().enumerate() {
        log.ensure_broker(broker, &BrokerSettings::default())
            .await
            .unwrap_or_else(|e| panic!("ensure {broker}: {e}"));
        let names = match i {
            0 => vec![dash, dot],
            4 => vec![long_trigger.as_str()],
            _ => vec![others[i - 1].as_str()],
        };
        for name in names {
            consumers.push((
                i,
                name,
                consumer(&*log, broker, name, StartFrom::Earliest).await,
            ));
        }
    }
    for (i, broker) in brokers.iter().enumerate() {
        log.append(
            broker,
            vec![sample(&format!("{i}-x")), sample(&format!("{i}-y"))],
        )
        .await
        .unwrap_or_else(|e| panic!("append to {broker}: {e}"));
    }
    let mut first_records = Vec::new();
    for (i, name, consumer) in &mut consumers {
        let records = poll_exactly(&mut **consumer, 2).await;
        assert_eq!(
            ids(&records),
            [format!("{i}-x"), format!("{i}-y")],
            "consumer {name} of broker {}",
            brokers[*i]
        );
        assert_nothing_more(&mut **consumer).await;
        first_records.push((*i, name.to_owned(), records[0].clone()));
    }
    // Each consumer parks its first record: every one sees only its own.
    for (i, name, record) in &first_records {
        let parked = ParkedRecord {
            id: record.id,
            record: record.record.clone(),
            failure: failure(1),
        };
        log.park(&brokers[*i], name, parked).await.unwrap();
    }
    for (i, name, record) in &first_records {
        let parked = log.parked(&brokers[*i], name).await.unwrap();
        let parked: Vec<String> = parked
            .iter()
            .map(|p| p.record.event.id().into_owned())
            .collect();
        assert_eq!(
            parked,
            [record.record.event.id().into_owned()],
            "parked for {name} of {}",
            brokers[*i]
        );
    }
    // Forgetting one consumer leaves its look-alike's parked records.
    drop(consumers);
    log.delete_consumer(&brokers[0], dash).await.unwrap();
    assert!(log.parked(&brokers[0], dash).await.unwrap().is_empty());
    assert_eq!(log.parked(&brokers[0], dot).await.unwrap().len(), 1);
    log.close().await.unwrap();
}
