//! `apply`, `get`, `describe` and `delete`.

use reqwest::Method;
use serde_json::{json, Value};

use super::{print_structured, ready, table, text, Api, ClientError};
use crate::cli::{ApplyArgs, DeleteArgs, DescribeArgs, GetArgs, Output};
use crate::kinds::{self, Kind};

/// The kinds a `get` argument names: `sources` is every source kind.
fn kinds_named(name: &str) -> Result<Vec<&'static Kind>, ClientError> {
    if name == "sources" || name == "source" {
        return Ok(kinds::KINDS.into_iter().filter(|k| k.source).collect());
    }
    kinds::by_name(name).map(|k| vec![k]).ok_or_else(|| {
        ClientError::Usage(format!(
            "unknown resource kind {name:?}: use brokers, triggers, sources or one of {}",
            kinds::KINDS.map(|k| k.plural).join(", ")
        ))
    })
}

fn one_kind(name: &str) -> Result<&'static Kind, ClientError> {
    kinds::by_name(name).ok_or_else(|| {
        ClientError::Usage(format!(
            "unknown resource kind {name:?}: use broker, trigger or one of {}",
            kinds::KINDS.map(|k| k.kind.to_ascii_lowercase()).join(", ")
        ))
    })
}

fn singular(kind: &Kind) -> String {
    format!("{}.{}", kind.kind.to_ascii_lowercase(), kind.group)
}

pub async fn apply(args: ApplyArgs) -> Result<(), ClientError> {
    let api = Api::new(&args.server)?;
    // The same checks as `herald serve --config`, before anything is sent.
    let mut loaded =
        crate::config::load_paths(&args.files).map_err(|e| ClientError::Usage(e.to_string()))?;
    loaded.sort_by_key(|l| {
        kinds::KINDS
            .iter()
            .position(|k| *k == l.resource.kind())
            .unwrap_or(usize::MAX)
    });
    for item in loaded {
        let mut resource = item.resource;
        let kind = resource.kind();
        let meta = resource.meta_mut();
        let namespace = meta
            .namespace
            .get_or_insert_with(|| api.namespace.clone())
            .clone();
        let name = meta.name.clone().unwrap_or_default();
        let path = kind.object_path(&namespace, &name);
        let verb = match api.call(Method::GET, &path).await {
            Ok(current) => {
                resource.meta_mut().resource_version = current
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                api.call_json(Method::PUT, &path, &resource.to_json())
                    .await?;
                "configured"
            }
            Err(error) if error.is_not_found() => {
                api.call_json(
                    Method::POST,
                    &kind.collection_path(&namespace),
                    &resource.to_json(),
                )
                .await?;
                "created"
            }
            Err(error) => return Err(error),
        };
        println!("{}/{name} {verb}", singular(kind));
    }
    Ok(())
}

pub async fn get(args: GetArgs) -> Result<(), ClientError> {
    let api = Api::new(&args.server)?;
    let kinds = kinds_named(&args.kind)?;
    if let Some(name) = &args.name {
        let mut found = None;
        for kind in &kinds {
            match api
                .call(Method::GET, &kind.object_path(&api.namespace, name))
                .await
            {
                Ok(object) => {
                    found = Some((*kind, object));
                    break;
                }
                Err(error) if error.is_not_found() && kinds.len() > 1 => continue,
                Err(error) => return Err(error),
            }
        }
        let Some((kind, object)) = found else {
            return Err(ClientError::Refused {
                code: 404,
                message: format!("no source named {name} in namespace {}", api.namespace),
            });
        };
        return match args.output {
            Output::Table => {
                print_table(kind, &[object], false);
                Ok(())
            }
            output => print_structured(output, &object),
        };
    }
    let mut all = Vec::new();
    for kind in &kinds {
        let path = if args.all_namespaces {
            format!("/apis/{}/{}/{}", kind.group, kind.version, kind.plural)
        } else {
            kind.collection_path(&api.namespace)
        };
        let list = api.call(Method::GET, &path).await?;
        let items = list
            .get("items")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        all.push((*kind, list, items));
    }
    match args.output {
        Output::Table => {
            let mut any = false;
            for (kind, _, items) in &all {
                if !items.is_empty() {
                    print_table(kind, items, args.all_namespaces);
                    any = true;
                }
            }
            if !any {
                eprintln!("No resources found.");
            }
            Ok(())
        }
        output => {
            let value = match all.as_slice() {
                [(_, list, _)] => list.clone(),
                _ => json!({
                    "apiVersion": "v1",
                    "kind": "List",
                    "items": all.iter().flat_map(|(_, _, items)| items.clone()).collect::<Vec<_>>(),
                }),
            };
            print_structured(output, &value)
        }
    }
}

fn print_table(kind: &Kind, items: &[Value], with_namespace: bool) {
    let mut headers: Vec<&str> = Vec::new();
    if with_namespace {
        headers.push("NAMESPACE");
    }
    let specific: &[&str] = match kind.kind {
        "Broker" | "Channel" | "InMemoryChannel" | "KafkaChannel" | "Sequence" | "Parallel"
        | "RequestReply" => &["NAME", "URL", "READY", "AGE"],
        "EventTransform" => &["NAME", "URL", "SINK", "READY", "AGE"],
        "EventPolicy" => &["NAME", "FROM", "READY", "REASON", "AGE"],
        "Trigger" => &["NAME", "BROKER", "SUBSCRIBER_URI", "READY", "PARKED", "AGE"],
        "Subscription" => &[
            "NAME",
            "CHANNEL",
            "SUBSCRIBER_URI",
            "REPLY_URI",
            "READY",
            "PARKED",
            "AGE",
        ],
        "EventType" => &[
            "NAME",
            "TYPE",
            "SOURCE",
            "BROKER",
            "COUNT",
            "LAST_SEEN",
            "READY",
        ],
        _ => &["KIND", "NAME", "SINK", "READY", "AGE"],
    };
    headers.extend_from_slice(specific);
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|item| {
            let mut row = Vec::new();
            if with_namespace {
                row.push(text(item, "/metadata/namespace").to_owned());
            }
            let name = text(item, "/metadata/name").to_owned();
            let age = table::age(text(item, "/metadata/creationTimestamp"));
            match kind.kind {
                "EventPolicy" => row.extend([
                    name,
                    item.pointer("/status/from")
                        .and_then(Value::as_array)
                        .map(|subjects| {
                            subjects
                                .iter()
                                .filter_map(Value::as_str)
                                .collect::<Vec<_>>()
                                .join(",")
                        })
                        .unwrap_or_default(),
                    ready(item),
                    item.pointer("/status/conditions")
                        .and_then(Value::as_array)
                        .and_then(|all| all.iter().find(|c| text(c, "/type") == "Ready"))
                        .map(|c| text(c, "/reason").to_owned())
                        .unwrap_or_default(),
                    age,
                ]),
                "EventTransform" => row.extend([
                    name,
                    urls(item),
                    text(item, "/status/sinkUri").into(),
                    ready(item),
                    age,
                ]),
                "Broker" | "Channel" | "InMemoryChannel" | "KafkaChannel" | "Sequence"
                | "Parallel" | "RequestReply" => row.extend([name, urls(item), ready(item), age]),
                "Trigger" => row.extend([
                    name,
                    text(item, "/spec/broker").into(),
                    text(item, "/status/subscriberUri").into(),
                    ready(item),
                    item.pointer("/status/parkedEvents")
                        .and_then(Value::as_u64)
                        .map(|n| n.to_string())
                        .unwrap_or_default(),
                    age,
                ]),
                "Subscription" => row.extend([
                    name,
                    text(item, "/spec/channel/name").into(),
                    text(item, "/status/physicalSubscription/subscriberUri").into(),
                    text(item, "/status/physicalSubscription/replyUri").into(),
                    ready(item),
                    item.pointer("/status/parkedEvents")
                        .and_then(Value::as_u64)
                        .map(|n| n.to_string())
                        .unwrap_or_default(),
                    age,
                ]),
                "EventType" => {
                    let attribute = |wanted: &str| {
                        item.pointer("/spec/attributes")
                            .and_then(Value::as_array)
                            .and_then(|all| all.iter().find(|a| text(a, "/name") == wanted))
                            .map(|a| text(a, "/value").to_owned())
                            .unwrap_or_default()
                    };
                    row.extend([
                        name,
                        attribute("type"),
                        attribute("source"),
                        text(item, "/spec/reference/name").into(),
                        item.pointer("/status/seen/count")
                            .and_then(Value::as_u64)
                            .map(|n| n.to_string())
                            .unwrap_or_default(),
                        text(item, "/status/seen/last").into(),
                        ready(item),
                    ])
                }
                _ => row.extend([
                    kind.kind.to_owned(),
                    name,
                    text(item, "/status/sinkUri").into(),
                    ready(item),
                    age,
                ]),
            }
            row
        })
        .collect();
    table::print(&headers, &rows);
}

/// An addressable's URLs as senders pick them: `status.addresses` (https first when TLS is
/// on), else `status.address`.
fn urls(item: &Value) -> String {
    let all: Vec<&str> = item
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|address| address.get("url").and_then(Value::as_str))
        .collect();
    match all.is_empty() {
        true => text(item, "/status/address/url").into(),
        false => all.join(","),
    }
}

pub async fn describe(args: DescribeArgs) -> Result<(), ClientError> {
    let api = Api::new(&args.server)?;
    let kind = one_kind(&args.kind)?;
    let object = api
        .call(Method::GET, &kind.object_path(&api.namespace, &args.name))
        .await?;
    if kind.kind != "Trigger" {
        return print_structured(Output::Yaml, &object);
    }
    let yaml = |value: Option<&Value>| match value {
        Some(value) if !value.is_null() => serde_yaml_ng::to_string(value)
            .unwrap_or_default()
            .lines()
            .map(|line| format!("  {line}\n"))
            .collect::<String>(),
        _ => "  (none)\n".to_owned(),
    };
    println!("Name:           {}", text(&object, "/metadata/name"));
    println!("Namespace:      {}", text(&object, "/metadata/namespace"));
    println!("Broker:         {}", text(&object, "/spec/broker"));
    println!("Subscriber:     {}", text(&object, "/status/subscriberUri"));
    if let Some(sink) = object
        .pointer("/status/deadLetterSinkUri")
        .and_then(Value::as_str)
    {
        println!("Dead letters:   {sink}");
    }
    println!("Ready:          {}", ready(&object));
    println!(
        "Generation:     {}",
        object
            .pointer("/metadata/generation")
            .unwrap_or(&Value::Null)
    );
    let lag_events = object
        .pointer("/status/lagEvents")
        .and_then(Value::as_u64)
        .map(|n| format!("{n} events, "))
        .unwrap_or_default();
    let lag_seconds = object
        .pointer("/status/lagSeconds")
        .and_then(Value::as_f64)
        .unwrap_or(0.0);
    println!("Lag:            {lag_events}oldest unfinished {lag_seconds:.1}s");
    println!(
        "Parked events:  {}",
        object
            .pointer("/status/parkedEvents")
            .and_then(Value::as_u64)
            .unwrap_or(0)
    );
    let filter = object
        .pointer("/spec/filters")
        .or_else(|| object.pointer("/spec/filter"));
    print!("Filters:\n{}", yaml(filter));
    print!("Delivery:\n{}", yaml(object.pointer("/spec/delivery")));
    let errors = object
        .pointer("/status/recentErrors")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if errors.is_empty() {
        println!("Last errors:    (none)");
    } else {
        println!("Last errors:");
        let rows: Vec<Vec<String>> = errors
            .iter()
            .map(|e| {
                vec![
                    text(e, "/time").to_owned(),
                    text(e, "/eventId").to_owned(),
                    e.get("attempt").map(|a| a.to_string()).unwrap_or_default(),
                    e.get("status")
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| "-".into()),
                    text(e, "/error").chars().take(80).collect(),
                ]
            })
            .collect();
        table::print(&["TIME", "EVENT", "ATTEMPT", "STATUS", "ERROR"], &rows);
    }
    Ok(())
}

pub async fn delete(args: DeleteArgs) -> Result<(), ClientError> {
    let api = Api::new(&args.server)?;
    let kind = one_kind(&args.kind)?;
    api.call(
        Method::DELETE,
        &kind.object_path(&api.namespace, &args.name),
    )
    .await?;
    println!("{}/{} deleted", singular(kind), args.name);
    Ok(())
}
