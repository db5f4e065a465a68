//! Channels and flows beyond the per-backend scenarios: `examples/flows` run unchanged,
//! KafkaChannel on and off the Kafka backend, and the admin API's checks.

use std::time::Duration;

use crate::common;
use crate::scenarios::flows::{wait_ready, FlowService};
use common::admin::AdminClient;
use common::herald::{Kafka, Sled};
use common::{Herald, HeraldDirs, Subscriber};

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/flows");

/// Sends one binary-mode event; returns the status.
async fn send(url: &str, id: &str, event_type: &str) -> u16 {
    reqwest::Client::new()
        .post(url)
        .header("ce-specversion", "1.0")
        .header("ce-id", id)
        .header("ce-source", "/examples")
        .header("ce-type", event_type)
        .header("content-type", "text/plain")
        .body(id.to_owned())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn service(name: &str, url: &str) -> String {
    format!("serving.knative.dev/v1/Service/{name}={url}")
}

/// `examples/flows` (Knative's shapes, Services mapped with `--resolve`) loads and each
/// example runs: the Sequence, the Trigger into it, the Parallel, the Subscription.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flows_examples_run_unchanged() {
    let steps = [
        FlowService::appender("-1").await,
        FlowService::appender("-2").await,
        FlowService::appender("-3").await,
    ];
    let even_filter = FlowService::filter("even").await;
    let odd_filter = FlowService::filter("odd").await;
    let even = FlowService::appender("-even").await;
    let odd = FlowService::appender("-odd").await;
    let audit = FlowService::appender("-audit").await;
    let billing = FlowService::appender("-billed").await;
    let display = Subscriber::start().await;
    let dead_letters = Subscriber::start().await;
    let mut args = vec!["--config".to_owned(), EXAMPLES.to_owned()];
    for (name, url) in [
        ("first", steps[0].url()),
        ("second", steps[1].url()),
        ("third", steps[2].url()),
        ("even-filter", even_filter.url()),
        ("odd-filter", odd_filter.url()),
        ("even-transformer", even.url()),
        ("odd-transformer", odd.url()),
        ("audit", audit.url()),
        ("billing", billing.url()),
        ("event-display", display.url()),
        ("dead-letters", dead_letters.url()),
    ] {
        args.extend(["--resolve".to_owned(), service(name, &url)]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let herald = Herald::start(&Sled, &HeraldDirs::new(""), &args).await;
    for path in [
        "/apis/flows.knative.dev/v1/namespaces/default/sequences/sequence",
        "/apis/flows.knative.dev/v1/namespaces/default/parallels/odd-even",
        "/apis/messaging.knative.dev/v1/namespaces/default/inmemorychannels/orders",
        "/apis/messaging.knative.dev/v1/namespaces/default/subscriptions/orders-to-billing",
        "/apis/eventing.knative.dev/v1/namespaces/default/triggers/orders-through-sequence",
    ] {
        wait_ready(&herald, path).await;
    }

    let ingress = &herald.ingress;
    assert_eq!(
        send(&format!("{ingress}/sequences/default/sequence"), "s", "t").await,
        202
    );
    assert_eq!(
        send(
            &format!("{ingress}/default/shop"),
            "o",
            "com.example.order.created"
        )
        .await,
        202
    );
    assert_eq!(
        send(
            &format!("{ingress}/parallels/default/odd-even"),
            "e",
            "even"
        )
        .await,
        202
    );
    assert_eq!(
        send(&format!("{ingress}/channels/default/orders"), "c", "t").await,
        202
    );
    // Nothing promises an order between the four flows: collect, then compare sorted.
    let got = display.wait_for(5).await;
    let mut data: Vec<String> = got
        .iter()
        .map(|r| String::from_utf8(r.body.to_vec()).unwrap())
        .collect();
    data.sort();
    assert_eq!(
        data,
        ["c-billed", "e-audit", "e-even", "o-1-2-3", "s-1-2-3"]
    );
    assert!(
        odd.ids().is_empty(),
        "the odd branch's filter kept the event out"
    );
    assert!(dead_letters.received().is_empty());
}

/// KafkaChannel (and a Channel or flow templated on it) needs the Kafka backend: off it,
/// Herald refuses the file at start, naming the resource and the field.
#[test]
fn kafka_channels_need_the_kafka_backend() {
    let dirs = HeraldDirs::new("");
    let (status, stderr) = common::herald::run_invalid_with(
        &dirs.config_file(),
        dirs.data.path(),
        &[
            "--config",
            &format!("{EXAMPLES}/kafka"),
            "--resolve",
            "serving.knative.dev/v1/Service/ledger=http://127.0.0.1:9",
        ],
    );
    assert!(!status.success());
    // The first of the two it meets: the KafkaChannel, or the Channel templated on one.
    let named = (stderr.contains("KafkaChannel default/payments") && stderr.contains("field kind"))
        || (stderr.contains("Channel default/refunds")
            && stderr.contains("field spec.channelTemplate.kind"));
    assert!(
        named && stderr.contains("needs the Kafka backend") && stderr.contains("--kafka-bootstrap"),
        "{stderr}"
    );
}

/// On the Kafka backend a KafkaChannel is a topic of its own with the spec's partitions,
/// and its Subscription delivers what the channel accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_channels_run_on_kafka() {
    let kafka = Kafka::shared();
    let ledger = Subscriber::start().await;
    let herald = Herald::start(
        &Sled,
        &HeraldDirs::new(""),
        &[
            "--config",
            &format!("{EXAMPLES}/kafka"),
            "--resolve",
            &service("ledger", &ledger.url()),
            "--kafka-bootstrap",
            &kafka.bootstrap,
            "--kafka-prefix",
            &kafka.prefix,
        ],
    )
    .await;
    wait_ready(
        &herald,
        "/apis/messaging.knative.dev/v1/namespaces/default/subscriptions/payments-to-ledger",
    )
    .await;
    let url = format!("{}/channels/default/payments", herald.ingress);
    assert_eq!(send(&url, "paid", "t").await, 202);
    ledger.wait_for_id("paid").await;

    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &kafka.bootstrap)
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .unwrap();
    let topic = metadata
        .topics()
        .iter()
        .find(|t| {
            let name = t.name();
            name.starts_with(&kafka.prefix)
                && name.contains("channel-payments")
                && !name.contains("herald-parked")
        })
        .map(|t| (t.name().to_owned(), t.partitions().len()));
    let (name, partitions) = topic.expect("the KafkaChannel's topic");
    assert_eq!(partitions, 3, "{name}: numPartitions of the KafkaChannel");
}

/// Through the admin API: a Subscription needs its channel (422 naming `spec.channel`), a
/// channel a Subscription uses cannot be deleted (409), a Sequence answers at its address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_and_flows_through_the_admin_api() {
    let sink = Subscriber::start().await;
    let herald = Herald::start(&Sled, &HeraldDirs::new(""), &[]).await;
    let admin = AdminClient::new(&herald.admin);
    let messaging = "/apis/messaging.knative.dev/v1/namespaces/default";
    let subscription = format!(
        "apiVersion: messaging.knative.dev/v1\nkind: Subscription\nmetadata: {{name: s}}\nspec:\n  channel: {{apiVersion: messaging.knative.dev/v1, kind: InMemoryChannel, name: c}}\n  subscriber: {{uri: '{}'}}\n",
        sink.url()
    );
    let (status, body) = admin
        .post_yaml(&format!("{messaging}/subscriptions"), &subscription)
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("spec.channel"), "{body}");

    admin
        .create(
            &format!("{messaging}/inmemorychannels"),
            "apiVersion: messaging.knative.dev/v1\nkind: InMemoryChannel\nmetadata: {name: c}\n",
        )
        .await;
    admin
        .create(&format!("{messaging}/subscriptions"), &subscription)
        .await;
    wait_ready(&herald, &format!("{messaging}/subscriptions/s")).await;
    let channel = wait_ready(&herald, &format!("{messaging}/inmemorychannels/c")).await;
    let url = channel["status"]["address"]["url"].as_str().unwrap();
    assert_eq!(url, format!("{}/channels/default/c", herald.ingress));
    assert_eq!(
        channel["status"]["subscribers"][0]["name"], "s",
        "{channel}"
    );
    assert_eq!(send(url, "via-admin", "t").await, 202);
    sink.wait_for_id("via-admin").await;

    let (status, body) = admin
        .delete(&format!("{messaging}/inmemorychannels/c"))
        .await;
    assert_eq!(status, 409, "{body}");

    let flows = "/apis/flows.knative.dev/v1/namespaces/default";
    let sequence = format!(
        "apiVersion: flows.knative.dev/v1\nkind: Sequence\nmetadata: {{name: seq}}\nspec:\n  steps: [{{uri: '{}'}}]\n",
        sink.url()
    );
    admin.create(&format!("{flows}/sequences"), &sequence).await;
    let ready = wait_ready(&herald, &format!("{flows}/sequences/seq")).await;
    let url = ready["status"]["address"]["url"].as_str().unwrap();
    assert_eq!(send(url, "via-sequence", "t").await, 202);
    sink.wait_for_id("via-sequence").await;
    // A channel name the Sequence uses is taken.
    let (status, body) = admin
        .post_yaml(
            &format!("{messaging}/inmemorychannels"),
            "apiVersion: messaging.knative.dev/v1\nkind: InMemoryChannel\nmetadata: {name: seq-kn-sequence-0}\n",
        )
        .await;
    assert_eq!(status, 422, "{body}");
}
