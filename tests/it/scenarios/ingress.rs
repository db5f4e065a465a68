//! Ingress answers and content modes.

use base64::Engine;

use super::*;
use crate::common::{Backend, Herald, HeraldDirs};

pub async fn status_codes(backend: &dyn Backend) {
    let sub = Subscriber::start().await;
    let dirs = one_trigger(&sub.url(), "");
    let herald = Herald::start(backend, &dirs, &["--max-event-bytes", "2048"]).await;
    let url = herald.broker_url(NS, "b");
    let c = client();

    assert_eq!(send_binary(&url, "ok-1", "t", &[]).await, 202);
    assert_eq!(
        send_binary(&format!("{url}/"), "ok-2", "t", &[]).await,
        202,
        "trailing slash is tolerated"
    );

    let missing_id = c
        .post(&url)
        .header("ce-specversion", "1.0")
        .header("ce-source", "/s")
        .header("ce-type", "t");
    let response = missing_id.send().await.unwrap();
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = json_body(response).await;
    assert_eq!(body["attribute"], "id", "{body}");

    let bad_time = binary_request(&url, "x").header("ce-time", "not-a-time");
    let body: serde_json::Value = json_body(bad_time.send().await.unwrap()).await;
    assert_eq!(body["attribute"], "time", "{body}");

    let bad_json = c
        .post(&url)
        .header("content-type", "application/cloudevents+json")
        .body("{not json");
    assert_eq!(bad_json.send().await.unwrap().status(), 400);

    let batch = r#"[{"specversion":"1.0","id":"b1","source":"/s","type":"t"},{"specversion":"1.0","id":"b2","type":"t"}]"#;
    let response = post_body(&url, "application/cloudevents-batch+json", batch).await;
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = json_body(response).await;
    assert_eq!(
        (body["index"].as_u64(), body["attribute"].as_str()),
        (Some(1), Some("source")),
        "{body}"
    );

    // CloudEvents strings carry no control characters, in any content mode.
    for (header, value) in [
        ("ce-id", "a%00b"),
        ("ce-myext", "a%0Ab"),
        ("ce-subject", "%C2%85"),
    ] {
        let request = match header {
            "ce-id" => binary_request(&url, value),
            _ => binary_request(&url, "ctl").header(header, value),
        };
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 400, "{header}: {value}");
        let body: serde_json::Value = json_body(response).await;
        assert_eq!(
            body["attribute"],
            header.trim_start_matches("ce-"),
            "{body}"
        );
        assert!(
            body["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("control character"),
            "{body}"
        );
    }
    let structured = r#"{"specversion":"1.0","id":"a\u0000b","source":"/s","type":"t"}"#;
    let response = post_body(&url, "application/cloudevents+json", structured).await;
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = json_body(response).await;
    assert_eq!(body["attribute"], "id", "{body}");
    let batch = r#"[{"specversion":"1.0","id":"c1","source":"/s","type":"t"},{"specversion":"1.0","id":"c2","source":"/s","type":"t","myext":"\u007f"}]"#;
    let response = post_body(&url, "application/cloudevents-batch+json", batch).await;
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = json_body(response).await;
    assert_eq!(
        (body["index"].as_u64(), body["attribute"].as_str()),
        (Some(1), Some("myext")),
        "{body}"
    );

    assert_eq!(
        send_binary(&herald.broker_url(NS, "nope"), "x", "t", &[]).await,
        404
    );
    // As Knative's ingress: `/` is 404, any other path that is not /{namespace}/{broker}
    // is 400 (malformed path).
    assert_eq!(
        send_binary(&format!("{}/", herald.ingress), "x", "t", &[]).await,
        404
    );
    for path in ["/only-one-segment", "/a/b/extra"] {
        let response = binary_request(&format!("{}{path}", herald.ingress), "x")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{path}");
        let body: serde_json::Value = json_body(response).await;
        assert!(
            body["message"]
                .as_str()
                .is_some_and(|m| m.contains("malformed path")),
            "{body}"
        );
    }
    assert_eq!(
        send_binary(&format!("{url}/extra"), "x", "t", &[]).await,
        400
    );

    let get = c.get(&url).send().await.unwrap();
    assert_eq!(get.status(), 405);
    assert_eq!(get.headers()["allow"], "POST, OPTIONS");

    let options = c
        .request(reqwest::Method::OPTIONS, &url)
        .send()
        .await
        .unwrap();
    assert_eq!(options.status(), 200);
    assert_eq!(options.headers()["allow"], "POST, OPTIONS");
    assert_eq!(options.headers()["webhook-allowed-origin"], "*");
    assert_eq!(options.headers()["webhook-allowed-rate"], "*");

    let big = binary_request(&url, "big").body(vec![b'x'; 4096]);
    assert_eq!(big.send().await.unwrap().status(), 413);
    // Without a Content-Length the limit is enforced while reading.
    let chunks = futures_stream(vec![vec![b'y'; 1500], vec![b'y'; 1500]]);
    let streamed = binary_request(&url, "big2").body(reqwest::Body::wrap_stream(chunks));
    assert_eq!(streamed.send().await.unwrap().status(), 413);

    assert_eq!(
        send_binary(&url, "ttl-1", "t", &[("ce-knativebrokerttl", "1")]).await,
        400,
        "TTL 1 is exhausted"
    );

    // Only the accepted events were delivered; rejected ones changed nothing.
    assert_eq!(send_binary(&url, "last", "t", &[]).await, 202);
    // Partitions (Kafka) keep no order between them: wait for all three, not for the last.
    sub.wait_for(3).await;
    assert_eq!(sorted_ids(&sub), ["last", "ok-1", "ok-2"]);
}

fn futures_stream(
    chunks: Vec<Vec<u8>>,
) -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    tokio_stream::iter(chunks.into_iter().map(Ok))
}

pub async fn content_modes_preserve_everything(backend: &dyn Backend) {
    let sub = Subscriber::start().await;
    let structured = Subscriber::start().await;
    let config = broker_yaml("b", None)
        + &trigger_yaml("binary", "b", &sub.url(), "")
        + &trigger_yaml(
            "structured",
            "b",
            &structured.url(),
            "delivery: {format: json}",
        );
    let dirs = HeraldDirs::new(&config);
    let herald = Herald::start(backend, &dirs, &[]).await;
    let url = herald.broker_url(NS, "b");
    let c = client();

    let raw: Vec<u8> = (0..=255u8).collect();
    let response = c
        .post(&url)
        .header("ce-specversion", "1.0")
        .header("ce-id", "bin-1")
        .header("ce-source", "urn:e2e:source")
        .header("ce-type", "com.example.binary")
        .header("ce-subject", "caf%C3%A9%20%22quoted%22")
        .header("ce-raw", "100% sure")
        .header("ce-time", "2024-05-06T07:08:09.123Z")
        .header("ce-myext", "value-1")
        .header("content-type", "application/octet-stream")
        .header(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .header("x-request-id", "req-42")
        .body(raw.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);

    let json_data = r#"{ "b" : 1.50,  "a":[1, 2], "s":"é" }"#;
    let structured_body = format!(
        r#"{{"specversion":"1.0","id":"str-1","source":"/s","type":"com.example.structured","datacontenttype":"application/json","count":7,"flag":true,"data":{json_data}}}"#
    );
    let response = c
        .post(&url)
        .header(
            "content-type",
            "application/cloudevents+json; charset=utf-8",
        )
        .body(structured_body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);

    let batch = r#"[{"specversion":"1.0","id":"batch-1","source":"/s","type":"t","data_base64":"AAEC"},
                   {"specversion":"0.3","id":"batch-2","source":"/s","type":"t","datacontenttype":"text/plain","data":"hello"}]"#;
    let response = post_body(&url, "application/cloudevents-batch+json", batch).await;
    assert_eq!(response.status(), 202);

    let got = sub.wait_for(4).await;
    let by_id = |id: &str| {
        got.iter()
            .find(|r| r.ce("id") == Some(id))
            .unwrap_or_else(|| panic!("{id} missing"))
    };
    let bin = by_id("bin-1");
    assert_eq!(
        bin.body.as_ref(),
        raw.as_slice(),
        "binary data must arrive byte for byte"
    );
    assert_eq!(bin.ce("source"), Some("urn:e2e:source"));
    assert_eq!(bin.ce("type"), Some("com.example.binary"));
    assert_eq!(
        bin.headers.get("ce-subject").map(|v| v.as_bytes()),
        Some("café \"quoted\"".as_bytes()),
        "the binding's percent-encoding is read, and the value goes out as it is (UTF-8)"
    );
    assert_eq!(
        bin.ce("raw"),
        Some("100% sure"),
        "a value that is not percent-encoded is taken as it is"
    );
    assert_eq!(bin.ce("time"), Some("2024-05-06T07:08:09.123Z"));
    assert_eq!(bin.ce("myext"), Some("value-1"));
    assert_eq!(bin.header("content-type"), Some("application/octet-stream"));
    assert_eq!(bin.header("prefer"), Some("reply"));
    assert_eq!(bin.header("kn-namespace"), Some(NS));
    let traceparent = bin.header("traceparent").unwrap_or_default();
    assert!(
        traceparent.starts_with("00-0af7651916cd43dd8448eb211c80319c-")
            && traceparent.ends_with("-01"),
        "the producer's trace continues: {traceparent}"
    );
    assert_eq!(bin.header("x-request-id"), Some("req-42"));
    assert!(
        bin.ce("knativearrivaltime")
            .is_some_and(|t| t.contains('T')),
        "arrival time is stamped"
    );
    assert_eq!(
        bin.ce("knativebrokerttl"),
        None,
        "the TTL never reaches subscribers"
    );

    let st = by_id("str-1");
    assert_eq!(
        st.body.as_ref(),
        json_data.as_bytes(),
        "JSON data must not be re-encoded"
    );
    assert_eq!(st.header("content-type"), Some("application/json"));
    assert_eq!((st.ce("count"), st.ce("flag")), (Some("7"), Some("true")));

    let b1 = by_id("batch-1");
    assert_eq!(b1.body.as_ref(), &[0, 1, 2]);
    let b2 = by_id("batch-2");
    assert_eq!(
        b2.ce("specversion"),
        Some("0.3"),
        "0.3 is delivered unchanged"
    );
    assert_eq!(b2.body.as_ref(), b"hello");

    // Structured delivery: the JSON format with the data inline, untouched.
    let got = structured.wait_for(4).await;
    let st = got
        .iter()
        .find(|r| r.body.windows(7).any(|w| w == b"\"str-1\""))
        .expect("structured copy of str-1");
    assert_eq!(
        st.header("content-type"),
        Some("application/cloudevents+json; charset=utf-8")
    );
    let text = std::str::from_utf8(&st.body).unwrap();
    assert!(text.contains(&format!("\"data\":{json_data}")), "{text}");
    let bin = got
        .iter()
        .map(|r| serde_json::from_slice::<serde_json::Value>(&r.body).unwrap())
        .find(|v| v["id"] == "bin-1")
        .expect("structured copy of bin-1");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(bin["data_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(decoded, raw);
    assert_eq!(bin["subject"], "café \"quoted\"");
    assert!(bin.get("knativebrokerttl").is_none());
}

pub async fn exact_filters(backend: &dyn Backend) {
    let typed = Subscriber::start().await;
    let any_ext = Subscriber::start().await;
    let both = Subscriber::start().await;
    let config = broker_yaml("b", None)
        + &trigger_yaml(
            "typed",
            "b",
            &typed.url(),
            "filter: {attributes: {type: order.created}}",
        )
        + &trigger_yaml(
            "anyext",
            "b",
            &any_ext.url(),
            "filter: {attributes: {region: ''}}",
        )
        + &trigger_yaml(
            "both",
            "b",
            &both.url(),
            "filter: {attributes: {type: order.created, region: eu}}",
        );
    let dirs = HeraldDirs::new(&config);
    let herald = Herald::start(backend, &dirs, &[]).await;
    let url = herald.broker_url(NS, "b");
    for (id, ty, region) in [
        ("1", "order.created", None),
        ("2", "order.created", Some("eu")),
        ("3", "order.deleted", Some("us")),
        ("4", "Order.Created", Some("eu")),
        ("5", "order.created", Some("us")),
    ] {
        // One partition on partitioned logs (Kafka), so the sentinel below comes last.
        let mut ext = vec![("ce-partitionkey", "exact")];
        ext.extend(region.map(|r| ("ce-region", r)));
        assert_eq!(send_binary(&url, id, ty, &ext).await, 202);
    }
    // A last event every trigger takes: once it arrives, everything before it was decided.
    assert_eq!(
        send_binary(
            &url,
            "end",
            "order.created",
            &[("ce-region", "eu"), ("ce-partitionkey", "exact")]
        )
        .await,
        202
    );
    // Deliveries run concurrently, so the sentinel may land a moment before an earlier event:
    // wait for the expected number, then check that exactly those arrived.
    typed.wait_for(4).await;
    any_ext.wait_for(5).await;
    both.wait_for(2).await;
    let sorted = sorted_ids;
    assert_eq!(sorted(&typed), ["1", "2", "5", "end"]);
    assert_eq!(
        sorted(&any_ext),
        ["2", "3", "4", "5", "end"],
        "empty value: attribute present, any value"
    );
    assert_eq!(sorted(&both), ["2", "end"]);
}

pub async fn invalid_config_is_rejected_before_binding(_backend: &dyn Backend) {
    let trigger = "Trigger default/t";
    let class = |class: &str| {
        format!("apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {{name: b, annotations: {{eventing.knative.dev/broker.class: {class}}}}}\n---\n")
    };
    let named = |namespace: &str, name: &str| {
        format!("apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {{name: '{name}', namespace: '{namespace}'}}\n")
    };
    let long_namespace = "n".repeat(64);
    let cases = [
        ("unknown field", broker_yaml("b", None) + &trigger_yaml("t", "b", "http://x/", "delivery: {retyr: 1}"), trigger, "spec.delivery.retyr"),
        ("missing subscriber", broker_yaml("b", None) + "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: t}\nspec: {broker: b}\n", trigger, "subscriber"),
        ("bad duration", broker_yaml("b", None) + &trigger_yaml("t", "b", "http://x/", "delivery: {backoffDelay: 2s}"), trigger, "spec.delivery.backoffDelay"),
        ("bad attribute", broker_yaml("b", None) + &trigger_yaml("t", "b", "http://x/", "filter: {attributes: {My-Attr: x}}"), trigger, "spec.filter.attributes.My-Attr"),
        ("declared twice", broker_yaml("b", None) + &trigger_yaml("t", "b", "http://x/", "") + &trigger_yaml("t", "b", "http://y/", ""), trigger, "declared twice"),
        ("bad yaml", "kind: [unclosed".to_owned(), "", "invalid YAML"),
        // Classes are checked before any backend is opened.
        ("unknown class", class("Mystery"), "Broker default/b", "metadata.annotations[eventing.knative.dev/broker.class]: broker class \"Mystery\" is not served"),
        ("NATS class without NATS", class("NatsJetStreamBroker"), "Broker default/b", "needs the nats backend, which is not configured (--nats-url)"),
        ("Kafka class without Kafka", class("Kafka"), "Broker default/b", "needs the kafka backend, which is not configured (--kafka-bootstrap)"),
        ("KafkaNamespaced is served as Kafka", class("KafkaNamespaced"), "Broker default/b", "needs the kafka backend, which is not configured (--kafka-bootstrap)"),
        // Kubernetes' name rules: a DNS-1123 subdomain, a namespace a DNS-1123 label.
        ("empty label in a name", named("default", "a..b"), "Broker default/a..b", "field metadata.name: \"a..b\" is not a valid name"),
        ("label starting with '-'", named("default", "a.-b"), "Broker default/a.-b", "field metadata.name"),
        ("dotted namespace", named("a.b", "b"), "Broker a.b/b", "field metadata.namespace: \"a.b\" is not a valid namespace"),
        ("64-character namespace", named(&long_namespace, "b"), "Broker nnnn", "field metadata.namespace"),
    ];
    for (what, config, resource, field) in cases {
        let dirs = HeraldDirs::new(&config);
        let (status, stderr) =
            crate::common::herald::run_invalid(&dirs.config_file(), dirs.data.path());
        assert!(!status.success(), "{what}: must exit non-zero");
        assert!(
            stderr.contains("config.yaml"),
            "{what}: must name the file: {stderr}"
        );
        assert!(
            stderr.contains(field),
            "{what}: must name {field}: {stderr}"
        );
        assert!(
            stderr.contains(resource),
            "{what}: must name the resource {resource}: {stderr}"
        );
        assert!(
            !stderr.contains("ingress listening"),
            "{what}: must not bind: {stderr}"
        );
        let written: Vec<_> = std::fs::read_dir(dirs.data.path())
            .map(|entries| entries.map(|e| e.unwrap().file_name()).collect())
            .unwrap_or_default();
        assert!(
            written.is_empty(),
            "{what}: must not touch the data dir, found {written:?}"
        );
    }
}

#[allow(
    clippy::disallowed_methods,
    reason = "a test reading its own server's answer"
)]
async fn json_body(response: reqwest::Response) -> serde_json::Value {
    serde_json::from_slice(&response.bytes().await.unwrap()).expect("error bodies are JSON")
}
