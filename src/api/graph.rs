//! `GET /stats/v1/graph`: where events flow, as nodes and edges: sources → brokers → triggers
//! → subscribers, and channels → subscriptions, sequences and parallels → their steps. Built
//! from the stored objects and their status, as the resource lists return them.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::ApiState;
use crate::kinds::{self, Kind};

/// Most nodes returned; past it the graph says `truncated`.
pub const MAX_NODES: usize = 2000;

#[derive(Default)]
struct Graph {
    /// By id (`Kind/namespace/name`, or `url/URI`): kind, namespace, name.
    nodes: BTreeMap<String, Value>,
    edges: Vec<(String, String, &'static str)>,
    truncated: bool,
}

impl Graph {
    fn node(&mut self, kind: &str, namespace: &str, name: &str) -> String {
        let id = format!("{kind}/{namespace}/{name}");
        let layer = layer(kind);
        self.add(
            &id,
            json!({"id": id, "kind": kind, "namespace": namespace, "name": name, "layer": layer}),
        );
        id
    }

    fn add(&mut self, id: &str, node: Value) {
        if self.nodes.contains_key(id) {
            return;
        }
        if self.nodes.len() >= MAX_NODES {
            self.truncated = true;
            return;
        }
        self.nodes.insert(id.to_owned(), node);
    }

    /// A destination (`{ref: {kind, name, namespace}, uri}`) as a node; `resolved` is the URI
    /// the status gives for it, used when it has no ref.
    fn destination(
        &mut self,
        namespace: &str,
        dest: &Value,
        resolved: Option<&str>,
    ) -> Option<String> {
        let reference = &dest["ref"];
        if let (Some(kind), Some(name)) = (reference["kind"].as_str(), reference["name"].as_str()) {
            let namespace = reference["namespace"].as_str().unwrap_or(namespace);
            return Some(self.node(kind, namespace, name));
        }
        let uri = dest["uri"].as_str().or(resolved)?;
        let id = format!("url/{uri}");
        self.add(
            &id,
            json!({"id": id, "kind": "URL", "name": uri, "layer": 3}),
        );
        Some(id)
    }

    fn edge(&mut self, from: String, to: Option<String>, label: &'static str) {
        if let Some(to) = to {
            if self.nodes.contains_key(&from) && self.nodes.contains_key(&to) {
                self.edges.push((from, to, label));
            }
        }
    }
}

/// The column a kind is drawn in: 0 sources, 1 brokers, channels and flows, 2 triggers and
/// subscriptions, 3 subscribers and other destinations.
fn layer(kind: &str) -> u8 {
    match kind {
        "Broker" | "Channel" | "InMemoryChannel" | "KafkaChannel" | "Sequence" | "Parallel" => 1,
        "Trigger" | "Subscription" => 2,
        kind if kinds::KINDS.iter().any(|k| k.source && k.kind == kind) => 0,
        _ => 3,
    }
}

fn meta(object: &Value) -> (&str, &str) {
    let meta = &object["metadata"];
    (
        meta["namespace"].as_str().unwrap_or("default"),
        meta["name"].as_str().unwrap_or_default(),
    )
}

fn add_kind(graph: &mut Graph, kind: &Kind, objects: &[Value]) {
    for object in objects {
        let (namespace, name) = meta(object);
        let id = graph.node(kind.kind, namespace, name);
        let spec = &object["spec"];
        let status = &object["status"];
        match kind.kind {
            "Trigger" => {
                if let Some(broker) = spec["broker"].as_str() {
                    let broker = graph.node("Broker", namespace, broker);
                    graph.edge(broker, Some(id.clone()), "trigger");
                }
                let to = graph.destination(
                    namespace,
                    &spec["subscriber"],
                    status["subscriberUri"].as_str(),
                );
                graph.edge(id, to, "subscriber");
            }
            "Subscription" => {
                if let (Some(kind), Some(channel)) = (
                    spec["channel"]["kind"].as_str(),
                    spec["channel"]["name"].as_str(),
                ) {
                    let channel = graph.node(kind, namespace, channel);
                    graph.edge(channel, Some(id.clone()), "subscription");
                }
                let to = graph.destination(
                    namespace,
                    &spec["subscriber"],
                    status["physicalSubscription"]["subscriberUri"].as_str(),
                );
                graph.edge(id.clone(), to, "subscriber");
                let reply = graph.destination(namespace, &spec["reply"], None);
                graph.edge(id, reply, "reply");
            }
            "Sequence" => {
                for step in spec["steps"].as_array().into_iter().flatten() {
                    let to = graph.destination(namespace, step, None);
                    graph.edge(id.clone(), to, "step");
                }
                let reply = graph.destination(namespace, &spec["reply"], None);
                graph.edge(id, reply, "reply");
            }
            "Parallel" => {
                for branch in spec["branches"].as_array().into_iter().flatten() {
                    let to = graph.destination(namespace, &branch["subscriber"], None);
                    graph.edge(id.clone(), to, "branch");
                }
            }
            _ if kind.source => {
                let to = graph.destination(namespace, &spec["sink"], status["sinkUri"].as_str());
                graph.edge(id, to, "sink");
            }
            _ => {}
        }
    }
}

/// The kinds the graph shows, in the order they are added (each after what it points to).
const SHOWN: [&Kind; 10] = [
    &kinds::BROKER,
    &kinds::CHANNEL,
    &kinds::IN_MEMORY_CHANNEL,
    &kinds::KAFKA_CHANNEL,
    &kinds::SEQUENCE,
    &kinds::PARALLEL,
    &kinds::TRIGGER,
    &kinds::SUBSCRIPTION,
    &kinds::PING_SOURCE,
    &kinds::WEBHOOK_SOURCE,
];

pub async fn graph(State(state): State<ApiState>) -> Response {
    let mut objects = Vec::new();
    {
        let control = state.control.read().await;
        for kind in SHOWN.iter().copied().chain(
            kinds::KINDS
                .into_iter()
                .filter(|k| k.source && !SHOWN.contains(k)),
        ) {
            objects.push((kind, control.list(kind, None).await));
        }
    }
    let mut graph = Graph::default();
    for (kind, objects) in &objects {
        add_kind(&mut graph, kind, objects);
    }
    Json(json!({
        "kind": "Graph",
        "nodes": graph.nodes.into_values().collect::<Vec<_>>(),
        "edges": graph.edges.iter().map(|(from, to, label)| json!({"from": from, "to": to, "label": label})).collect::<Vec<_>>(),
        "truncated": graph.truncated,
    }))
    .into_response()
}
