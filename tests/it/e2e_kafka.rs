//! The end-to-end scenario list on Apache Kafka (one broker per test process, a topic prefix
//! per test), and Kafka's own checks.
#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "test code"
)]

use crate::common;
use crate::scenarios;

use common::herald::Kafka;
use common::Server;

every_scenario!(Kafka::shared());

// Herald's own data dir full while the log is on Kafka.
on_backend!(Kafka::shared() => disk::full_data_dir_refuses_changes_then_recovers);

/// Every scenario again with triggers reading each broker's topic through one shared reader
/// (`--kafka-shared-reader`), crashes included.
mod shared_reader {
    use super::*;

    every_scenario!(Kafka::shared_reader());
}

// The event catalog (issue 20).
on_backend!(Kafka::shared() =>
    catalog::eventtypes_are_auto_created,
    catalog::schemas_are_enforced,
    catalog::duplicates_are_dropped_across_a_sigkill,
);

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use scenarios::{accept_on, broker_yaml, ids, one_trigger, trigger_yaml, NS};

fn client(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    config
}

/// Every record of `topic` (all partitions), read by a plain consumer outside Herald.
fn read_topic(bootstrap: &str, topic: &str, want: usize) -> Vec<rdkafka::message::OwnedMessage> {
    let consumer: BaseConsumer = client(bootstrap)
        .set("group.id", "plain-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    for partition in metadata.topics()[0].partitions() {
        assignment
            .add_partition_offset(topic, partition.id(), Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let deadline = Instant::now() + common::DEADLINE;
    let mut out = Vec::new();
    while out.len() < want {
        assert!(
            Instant::now() < deadline,
            "only {} records in {topic}",
            out.len()
        );
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            out.push(message.unwrap().detach());
        }
    }
    out
}

/// What Herald writes is a CloudEvent in the Kafka binding's binary mode, keyed by
/// `partitionkey`, that any Kafka consumer can read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_cloudevents_for_any_consumer() {
    if common::skip_without(&[Server::Kafka]) {
        return;
    }
    let kafka = Kafka::shared();
    let dirs = common::HeraldDirs::new(&broker_yaml("b", None));
    let herald = common::Herald::start(&kafka, &dirs, &[]).await;
    let status = reqwest::Client::new()
        .post(herald.broker_url(NS, "b"))
        .header("ce-specversion", "1.0")
        .header("ce-id", "plain-1")
        .header("ce-source", "/shop")
        .header("ce-type", "order.created")
        .header("ce-partitionkey", "customer-7")
        .header("content-type", "application/json")
        .body(r#"{"total": 12.50}"#)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 202);
    let topic = format!("{}knative-broker-default-b", kafka.prefix);
    let records = read_topic(&kafka.bootstrap, &topic, 1);
    let record = &records[0];
    let header = |name: &str| {
        record.headers().and_then(|headers| {
            headers
                .iter()
                .find(|h| h.key == name)
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        })
    };
    assert_eq!(header("ce_specversion").as_deref(), Some("1.0"));
    assert_eq!(header("ce_id").as_deref(), Some("plain-1"));
    assert_eq!(header("ce_source").as_deref(), Some("/shop"));
    assert_eq!(header("ce_type").as_deref(), Some("order.created"));
    assert!(header("ce_knativearrivaltime").is_some());
    assert_eq!(header("content-type").as_deref(), Some("application/json"));
    assert_eq!(record.key(), Some(&b"customer-7"[..]));
    assert_eq!(record.payload(), Some(&br#"{"total": 12.50}"#[..]));
    // Knative's default partition count.
    let consumer: BaseConsumer = client(&kafka.bootstrap).create().unwrap();
    let metadata = consumer
        .fetch_metadata(Some(&topic), Duration::from_secs(10))
        .unwrap();
    assert_eq!(metadata.topics()[0].partitions().len(), 10);
}

/// KafkaSource: a plain record becomes `dev.knative.kafka.event` with Knative's mapping; a
/// record that is a CloudEvent passes through unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_source_maps_records() {
    if common::skip_without(&[Server::Kafka]) {
        return;
    }
    let kafka = Kafka::shared();
    let topic = format!("{}orders", kafka.prefix);
    herald_broker::testing::create_kafka_topic(&kafka.bootstrap, &topic, 1).await;
    let producer: FutureProducer = client(&kafka.bootstrap).create().unwrap();
    let plain = OwnedHeaders::new()
        .insert(Header {
            key: "content-type",
            value: Some("application/json"),
        })
        .insert(Header {
            key: "X-Trace_Id",
            value: Some("abc"),
        });
    producer
        .send(
            FutureRecord::to(&topic)
                .key("customer-1")
                .payload(r#"{"total": 12.50}"#)
                .headers(plain),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    let cloudevent = OwnedHeaders::new()
        .insert(Header {
            key: "ce_specversion",
            value: Some("1.0"),
        })
        .insert(Header {
            key: "ce_id",
            value: Some("ce-1"),
        })
        .insert(Header {
            key: "ce_source",
            value: Some("/legacy"),
        })
        .insert(Header {
            key: "ce_type",
            value: Some("legacy.thing"),
        })
        .insert(Header {
            key: "content-type",
            value: Some("text/plain"),
        });
    producer
        .send(
            FutureRecord::<str, str>::to(&topic)
                .payload("as is")
                .headers(cloudevent),
            Duration::from_secs(10),
        )
        .await
        .unwrap();

    let subscriber = common::Subscriber::start().await;
    let source = format!(
        "apiVersion: sources.knative.dev/v1\nkind: KafkaSource\nmetadata: {{name: orders}}\nspec:\n  bootstrapServers: ['{}']\n  topics: ['{topic}']\n  consumerGroup: {}source\n  initialOffset: earliest\n  sink: {{ref: {{apiVersion: eventing.knative.dev/v1, kind: Broker, name: b}}}}\n",
        kafka.bootstrap, kafka.prefix
    );
    let config = broker_yaml("b", None) + &trigger_yaml("t", "b", &subscriber.url(), "") + &source;
    let dirs = common::HeraldDirs::new(&config);
    let _herald = common::Herald::start(&kafka, &dirs, &[]).await;
    let got = subscriber.wait_for(2).await;
    let mapped = got
        .iter()
        .find(|r| r.ce("type") == Some("dev.knative.kafka.event"))
        .expect("the plain record");
    assert_eq!(
        mapped.ce("source"),
        Some(format!("/apis/v1/namespaces/default/kafkasources/orders#{topic}").as_str())
    );
    assert_eq!(mapped.ce("subject"), Some("partition:0#0"));
    assert_eq!(mapped.ce("id"), Some("partition:0/offset:0"));
    assert_eq!(mapped.ce("key"), Some("customer-1"));
    assert_eq!(mapped.ce("partitionkey"), Some("customer-1"));
    assert_eq!(mapped.ce("kafkaheaderxtraceid"), Some("abc"));
    assert!(mapped.ce("time").is_some());
    assert_eq!(mapped.header("content-type"), Some("application/json"));
    assert_eq!(&mapped.body[..], br#"{"total": 12.50}"#);
    let passed = got
        .iter()
        .find(|r| r.ce("id") == Some("ce-1"))
        .expect("the CloudEvent");
    assert_eq!(passed.ce("type"), Some("legacy.thing"));
    assert_eq!(passed.ce("source"), Some("/legacy"));
    assert_eq!(&passed.body[..], b"as is");
}

/// Two Herald processes share a broker's trigger (its consumer group splits the partitions);
/// one is SIGKILLed mid-stream, and every accepted event still reaches the subscriber.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_heralds_share_a_trigger_and_one_dies() {
    if common::skip_without(&[Server::Kafka]) {
        return;
    }
    heralds_share_a_trigger_and_one_dies(Kafka::shared()).await;
}

/// The same with shared readers: the broker's one group splits the partitions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_heralds_with_shared_readers_share_a_trigger_and_one_dies() {
    if common::skip_without(&[Server::Kafka]) {
        return;
    }
    heralds_share_a_trigger_and_one_dies(Kafka::shared_reader()).await;
}

/// Whether the shared readers' group of broker `b` has `members` members, all assigned.
fn shared_group_is_ready(consumer: &BaseConsumer, prefix: &str, members: usize) -> bool {
    let broker = herald_broker::log::BrokerKey::new(NS, "b");
    let group = herald_broker::log::names::kafka::shared_group(prefix, &broker);
    let Ok(groups) = consumer.fetch_group_list(Some(&group), Duration::from_secs(10)) else {
        return false;
    };
    groups.groups().iter().any(|g| {
        g.state() == "Stable"
            && g.members().len() == members
            && g.members()
                .iter()
                .all(|m| m.assignment().is_some_and(|a| !a.is_empty()))
    })
}

/// Two Herald processes with shared readers on one Kafka and two triggers: the broker's
/// consumer group splits the partitions between the processes, and each event reaches each
/// trigger once (each process reading everything would deliver it twice).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_heralds_with_shared_readers_deliver_each_event_once_per_trigger() {
    if common::skip_without(&[Server::Kafka]) {
        return;
    }
    let kafka = Kafka::shared_reader();
    let (one, two) = (
        common::Subscriber::start().await,
        common::Subscriber::start().await,
    );
    let config = || {
        common::HeraldDirs::new(
            &(broker_yaml("b", None)
                + &trigger_yaml("one", "b", &one.url(), "")
                + &trigger_yaml("two", "b", &two.url(), "")),
        )
    };
    let (first_dirs, second_dirs) = (config(), config());
    let first = common::Herald::start(&kafka, &first_dirs, &[]).await;
    let second = common::Herald::start(&kafka, &second_dirs, &[]).await;
    let consumer: BaseConsumer = client(&kafka.bootstrap).create().unwrap();
    common::wait_until("both processes in the shared readers' group", || {
        shared_group_is_ready(&consumer, &kafka.prefix, 2)
    })
    .await;
    let mut sent = Vec::new();
    for i in 0..60 {
        let herald = if i % 2 == 0 { &first } else { &second };
        let id = format!("once-{i}");
        accept_on(herald, "b", &id).await;
        sent.push(id);
    }
    sent.sort();
    for subscriber in [&one, &two] {
        let deadline = Instant::now() + common::DEADLINE;
        loop {
            let got: BTreeSet<String> = ids(subscriber).into_iter().collect();
            if got.len() >= sent.len() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {} delivered",
                got.len(),
                sent.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Events sent after the first ones arrived; once these are in, a second copy of the
    // first ones would be too.
    for i in 60..80 {
        let id = format!("once-{i}");
        accept_on(&first, "b", &id).await;
        sent.push(id);
    }
    sent.sort();
    for subscriber in [&one, &two] {
        let deadline = Instant::now() + common::DEADLINE;
        loop {
            let mut got = ids(subscriber);
            if got.len() >= sent.len() {
                got.sort();
                assert_eq!(got, sent, "each event once per trigger");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {} delivered",
                got.len(),
                sent.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn heralds_share_a_trigger_and_one_dies(kafka: Kafka) {
    let subscriber = common::Subscriber::start().await;
    let delivery = "delivery: {retry: 20, backoffPolicy: linear, backoffDelay: PT0.05S}";
    let first_dirs = one_trigger(&subscriber.url(), delivery);
    let second_dirs = one_trigger(&subscriber.url(), delivery);
    let first = common::Herald::start(&kafka, &first_dirs, &[]).await;
    let second = common::Herald::start(&kafka, &second_dirs, &[]).await;
    let mut accepted = BTreeSet::new();
    for i in 0..40 {
        let herald = if i % 2 == 0 { &first } else { &second };
        let id = format!("shared-{i}");
        accept_on(herald, "b", &id).await;
        accepted.insert(id);
    }
    first.kill();
    for i in 40..80 {
        let id = format!("shared-{i}");
        accept_on(&second, "b", &id).await;
        accepted.insert(id);
    }
    // The survivor takes over the dead process's partitions once its session times out.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let got: BTreeSet<String> = ids(&subscriber).into_iter().collect();
        if accepted.is_subset(&got) {
            break;
        }
        let missing: Vec<_> = accepted.difference(&got).take(5).collect();
        assert!(Instant::now() < deadline, "never delivered: {missing:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Kafka dies while producers send: ingress answers 503 within a bounded time, and after Kafka
/// is back every event that got a 202 is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_killed_during_ingest_loses_nothing_accepted() {
    if common::skip_without(&[Server::Kafka]) {
        return;
    }
    scenarios::durability::log_server_killed_during_ingest(
        &mut Kafka::start(),
        |kafka| kafka.server.as_mut().unwrap().kill(),
        |kafka| kafka.server.as_mut().unwrap().restart(),
        Duration::from_secs(15),
    )
    .await;
}

/// With sled as the default, a broker of class Kafka lives on Kafka; without
/// `--kafka-bootstrap` the class is refused before binding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_class_kafka_chooses_the_backend() {
    if common::skip_without(&[Server::Kafka]) {
        return;
    }
    let kafka = Kafka::shared();
    let subscriber = common::Subscriber::start().await;
    let on_kafka = format!(
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: onkafka\n  namespace: {NS}\n  annotations:\n    eventing.knative.dev/broker.class: Kafka\n    herald.dev/partitions: \"3\"\n---\n"
    );
    let config = broker_yaml("onsled", None)
        + &on_kafka
        + &trigger_yaml("a", "onsled", &subscriber.url(), "")
        + &trigger_yaml("k", "onkafka", &subscriber.url(), "");
    let dirs = common::HeraldDirs::new(&config);
    let herald = common::Herald::start(
        &common::herald::Sled,
        &dirs,
        &[
            "--kafka-bootstrap",
            &kafka.bootstrap,
            "--kafka-prefix",
            &kafka.prefix,
        ],
    )
    .await;
    accept_on(&herald, "onsled", "via-sled").await;
    accept_on(&herald, "onkafka", "via-kafka").await;
    subscriber.wait_for_id("via-sled").await;
    subscriber.wait_for_id("via-kafka").await;
    let consumer: BaseConsumer = client(&kafka.bootstrap).create().unwrap();
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .unwrap();
    let topics: Vec<&str> = metadata.topics().iter().map(|t| t.name()).collect();
    let on_kafka_topic = format!("{}knative-broker-default-onkafka", kafka.prefix);
    let partitions = metadata
        .topics()
        .iter()
        .find(|t| t.name() == on_kafka_topic)
        .map(|t| t.partitions().len());
    assert_eq!(partitions, Some(3), "herald.dev/partitions: {topics:?}");
    assert!(
        !topics.contains(&format!("{}knative-broker-default-onsled", kafka.prefix).as_str()),
        "the default broker stays on sled"
    );
    drop(herald);
    let (status, stderr) = common::herald::run_invalid(&dirs.config_file(), dirs.data.path());
    assert!(!status.success());
    assert!(stderr.contains("--kafka-bootstrap"), "{stderr}");
}

/// `examples/kafka` loads and its broker gets its topic with the annotated partitions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kafka_example_runs() {
    if common::skip_without(&[Server::Kafka]) {
        return;
    }
    let kafka = Kafka::shared();
    // The example's source reads this topic; it starts once the topic exists.
    herald_broker::testing::create_kafka_topic(&kafka.bootstrap, "legacy-payments", 1).await;
    let dirs = common::HeraldDirs::new("");
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/kafka");
    let herald = common::Herald::start(
        &common::herald::Sled,
        &dirs,
        &[
            "--config",
            example,
            "--kafka-bootstrap",
            &kafka.bootstrap,
            "--kafka-prefix",
            &kafka.prefix,
        ],
    )
    .await;
    accept_on(&herald, "payments", "example-1").await;
    let topic = format!("{}knative-broker-default-payments", kafka.prefix);
    let consumer: BaseConsumer = client(&kafka.bootstrap).create().unwrap();
    let metadata = consumer
        .fetch_metadata(Some(&topic), Duration::from_secs(10))
        .unwrap();
    assert_eq!(metadata.topics()[0].partitions().len(), 6);
    assert_eq!(read_topic(&kafka.bootstrap, &topic, 1).len(), 1);
}

/// A `--kafka-prefix` that would make topic names Kafka refuses is an error at start that
/// says why, before anything is created.
#[test]
fn an_illegal_kafka_prefix_is_refused() {
    for (prefix, why) in [("team/a.", "'/'"), (&*"p".repeat(101), "at most 100")] {
        let dirs = common::HeraldDirs::new("");
        let (status, stderr) = common::herald::run_invalid_with(
            &dirs.config_file(),
            dirs.data.path(),
            &[
                "--backend",
                "kafka",
                "--kafka-bootstrap",
                "127.0.0.1:9",
                "--kafka-prefix",
                prefix,
            ],
        );
        assert!(!status.success(), "{stderr}");
        assert!(
            stderr.contains("--kafka-prefix") && stderr.contains(why),
            "{stderr}"
        );
    }
}
