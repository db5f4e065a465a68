//! The brokers' own clients, with no Herald in the way: raw JetStream publishes and raw
//! Kafka produces to the same server Herald uses, in the bench process.

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::load::{measure_rate, Rate};
use crate::processes::{cpu_per_1000, cpu_seconds};

pub const NATS_SUBJECT: &str = "bench.baseline";

/// JetStream acks the pipelined publisher may have outstanding (its queue's bound).
pub const NATS_PIPELINE_WINDOW: usize = 4096;

/// `linger.ms` of the raw Kafka producer: Herald's own (`PRODUCER_LINGER_MS` in
/// broker/src/log/kafka.rs), so that the ratio shows what Herald adds to its client.
pub const KAFKA_LINGER_MS: &str = "1";

pub async fn jetstream(url: &str) -> anyhow::Result<async_nats::jetstream::Context> {
    let client = async_nats::connect(url).await?;
    let js = async_nats::jetstream::new(client);
    js.get_or_create_stream(async_nats::jetstream::stream::Config {
        name: "BENCH_BASELINE".into(),
        subjects: vec![NATS_SUBJECT.into()],
        ..Default::default()
    })
    .await?;
    Ok(js)
}

/// JetStream publishes per second, `publishers` at a time, each waiting for its own ack
/// before the next: the concurrency of as many HTTP clients each waiting for a 202.
pub async fn nats_awaited_rate(
    url: &str,
    publishers: usize,
    payload: Bytes,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<Rate> {
    let js = jetstream(url).await?;
    let workers: Vec<_> = (0..publishers.max(1))
        .map(|_| {
            let (js, payload) = (js.clone(), payload.clone());
            move || {
                let (js, payload) = (js.clone(), payload.clone());
                async move {
                    match js.publish(NATS_SUBJECT, payload).await {
                        Ok(ack) => ack.await.is_ok(),
                        Err(_) => false,
                    }
                }
            }
        })
        .collect();
    Ok(measure_rate(workers, warmup, duration).await)
}

/// JetStream publishes per second from one publisher that sends without waiting, its acks
/// awaited in order behind it, at most [`NATS_PIPELINE_WINDOW`] outstanding.
pub async fn nats_pipelined_rate(
    url: &str,
    payload: Bytes,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<f64> {
    let js = jetstream(url).await?;
    let (acks, mut pending) = tokio::sync::mpsc::channel(NATS_PIPELINE_WINDOW);
    let measure_from = Instant::now() + warmup;
    let stop_at = measure_from + duration;
    tokio::spawn(async move {
        while Instant::now() < stop_at {
            if let Ok(ack) = js.publish(NATS_SUBJECT, payload.clone()).await {
                if acks.send(ack).await.is_err() {
                    return;
                }
            }
        }
    });
    let mut measured = 0u64;
    while let Some(ack) = pending.recv().await {
        if ack.await.is_ok() && Instant::now() >= measure_from {
            measured += 1;
        }
    }
    Ok(measured as f64 / measure_from.elapsed().as_secs_f64())
}

/// The bench's topic of raw produces (`bench-baseline`) or of the HTTP relay (`bench-relay`),
/// created if missing, and an `acks=all` idempotent producer to it with Herald's linger, past
/// its first send (which waits for the topic's metadata and the producer id of idempotence:
/// start-up, not throughput).
pub async fn kafka_producer(
    bootstrap: &str,
    topic: &str,
    payload: &[u8],
) -> anyhow::Result<rdkafka::producer::FutureProducer> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let mut config = rdkafka::ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    let admin: AdminClient<DefaultClientContext> = config.create()?;
    // An existing topic is reported per topic, not as an error: every run can ask. A Kafka
    // started a moment ago on a busy machine may time the first request out: a few tries.
    let mut tries = 0;
    loop {
        let created = admin
            .create_topics(
                [&NewTopic::new(topic, 10, TopicReplication::Fixed(1))],
                &AdminOptions::new(),
            )
            .await;
        match created {
            Ok(_) => break,
            Err(_) if tries < 5 => tries += 1,
            Err(error) => return Err(error.into()),
        }
    }
    let producer: FutureProducer = config
        .clone()
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", KAFKA_LINGER_MS)
        .create()?;
    let record = FutureRecord::<(), [u8]>::to(topic).payload(payload);
    if let Err((error, _)) = producer.send(record, Duration::from_secs(30)).await {
        anyhow::bail!("the raw producer cannot send to Kafka: {error}");
    }
    Ok(producer)
}

/// Kafka produces per second with `acks=all` and idempotence (as Herald's producer), one
/// producer, `in_flight` sends at a time each awaiting its delivery report; and the CPU time
/// of this process (the producer's) per 1,000 records while it ran.
pub async fn kafka_produce_rate(
    bootstrap: &str,
    in_flight: usize,
    payload: Bytes,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<(Rate, Option<f64>)> {
    use rdkafka::producer::FutureRecord;
    let topic = "bench-baseline";
    let producer = kafka_producer(bootstrap, topic, &payload).await?;
    let workers: Vec<_> = (0..in_flight.max(1))
        .map(|_| {
            let (producer, payload) = (producer.clone(), payload.clone());
            move || {
                let (producer, payload) = (producer.clone(), payload.clone());
                async move {
                    producer
                        .send(
                            FutureRecord::<(), [u8]>::to(topic).payload(payload.as_ref()),
                            Duration::from_secs(5),
                        )
                        .await
                        .is_ok()
                }
            }
        })
        .collect();
    let before = cpu_seconds(std::process::id());
    let rate = measure_rate(workers, warmup, duration).await;
    let cpu = cpu_per_1000(before, cpu_seconds(std::process::id()), rate.total);
    Ok((rate, cpu))
}
