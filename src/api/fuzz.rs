//! Fuzz target `admin_body` (see `herald_broker::fuzz`): admin API request bodies, JSON and
//! YAML, through the same parsing and validation as a create. No input panics, overflows a
//! worker's stack or takes long; an accepted body is an object of the path's kind, in its
//! namespace, with a name.

use axum::http::{HeaderMap, HeaderValue};
use herald_broker::fuzz::{inputs, run};

use super::resources::parse_body;
use crate::config::{build_desired, Loaded};
use crate::kinds;

const BODY_TOKENS: &[&str] = &[
    "\"metadata\":{\"name\":\"x\"}",
    "\"namespace\":\"other\"",
    "\"kind\":\"Trigger\"",
    "\"kind\":\"Broker\"",
    "\"apiVersion\":\"eventing.knative.dev/v1\"",
    "\"spec\":{",
    "\"filters\":[",
    "{\"not\":",
    "{\"all\":[",
    "\"cesql\":\"",
    "\"jsonpath\":\"$",
    "\"status\":{}",
    "\"delivery\":{\"retry\":",
    "\n---\n",
    "name: y\n",
];

#[test]
fn fuzz_admin_body() {
    let kinds = [&kinds::TRIGGER, &kinds::BROKER, &kinds::PING_SOURCE];
    run(
        "admin_body",
        inputs("admin_body", BODY_TOKENS),
        move |body| {
            for (i, kind) in kinds.iter().enumerate() {
                let mut headers = HeaderMap::new();
                let content_type = ["application/json", "application/yaml"][i % 2];
                headers.insert("content-type", HeaderValue::from_static(content_type));
                let name = (i == 0).then_some("t");
                let Ok(resource) = parse_body(kind, "default", name, &headers, body) else {
                    continue;
                };
                let meta = resource.meta();
                if resource.kind() != *kind
                    || meta.namespace.as_deref() != Some("default")
                    || meta.name.is_none()
                    || name.is_some_and(|n| meta.name.as_deref() != Some(n))
                {
                    return Err(format!("{content_type} accepted as {}", resource.to_json()));
                }
                let _ = build_desired(
                    vec![Loaded {
                        origin: "request body".into(),
                        resource,
                    }],
                    &crate::config::RefMap::default(),
                );
            }
            Ok(())
        },
    );
}
