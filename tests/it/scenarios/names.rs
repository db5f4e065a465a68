//! Names a backend could confuse: `-` against `.` (one stream or durable consumer for both on
//! NATS, by Knative's naming) and where the namespace ends (`team-a` + `b` against `team` +
//! `a-b`: one topic and consumer group on Kafka). Each broker and trigger keeps its own events.

use super::*;
use crate::common::{Backend, Herald, HeraldDirs};

fn broker_in(namespace: &str, name: &str) -> String {
    format!("apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: {name}\n  namespace: {namespace}\n---\n")
}

fn trigger_in(namespace: &str, name: &str, broker: &str, subscriber: &Subscriber) -> String {
    format!(
        "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata:\n  name: {name}\n  namespace: {namespace}\nspec: {{broker: {broker}, subscriber: {{uri: '{}'}}}}\n---\n",
        subscriber.url()
    )
}

pub async fn look_alike_names_keep_their_own_events(backend: &dyn Backend) {
    // (namespace, broker, trigger) for each subscriber.
    let routes = [
        (NS, "a-b", "t-1"),
        (NS, "a-b", "t.1"),
        (NS, "a.b", "u"),
        ("team-a", "b", "t"),
        ("team", "a-b", "a-t"),
    ];
    let mut subscribers = Vec::new();
    let mut config = String::new();
    for (namespace, broker) in [(NS, "a-b"), (NS, "a.b"), ("team-a", "b"), ("team", "a-b")] {
        config += &broker_in(namespace, broker);
    }
    for (namespace, broker, trigger) in routes {
        let subscriber = Subscriber::start().await;
        config += &trigger_in(namespace, trigger, broker, &subscriber);
        subscribers.push(subscriber);
    }
    let dirs = HeraldDirs::new(&config);
    let herald = Herald::start(backend, &dirs, &[]).await;

    // Five events per broker, each id naming its broker.
    let events = |namespace: &str, broker: &str| -> Vec<String> {
        (0..5)
            .map(|i| format!("{namespace}/{broker}/{i}"))
            .collect()
    };
    for (namespace, broker) in [(NS, "a-b"), (NS, "a.b"), ("team-a", "b"), ("team", "a-b")] {
        for id in events(namespace, broker) {
            let status = send_binary(&herald.broker_url(namespace, broker), &id, "t", &[]).await;
            assert_eq!(
                status, 202,
                "event {id} was not accepted by {namespace}/{broker}"
            );
        }
    }
    for (subscriber, (namespace, broker, trigger)) in subscribers.iter().zip(routes) {
        subscriber.wait_for(5).await;
        assert_eq!(
            sorted_ids(subscriber),
            events(namespace, broker),
            "trigger {namespace}/{trigger} gets exactly the events of its broker {broker}"
        );
    }
}
