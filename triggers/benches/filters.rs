//! Filter evaluation cost: one exact filter, a CESQL LIKE, a JSONPath query, and one event
//! through 1,000 triggers with and without the type index.
//!
//! `cargo bench -p herald-triggers --bench filters`

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use herald_broker::CloudEvent;
use herald_broker::RecordId;
use herald_crds::TriggerSpec;
use herald_triggers::filter::compile;
use herald_triggers::index::TriggerIndex;
use herald_triggers::router::TriggerRouter;
use herald_triggers::Filter;

fn event() -> CloudEvent {
    let mut e = CloudEvent::new();
    e.set("specversion", "1.0");
    e.set("id", "bench-1");
    e.set("source", "/shop/eu");
    e.set("type", "com.example.order.created");
    e.set("region", "eu");
    e.set("datacontenttype", "application/json");
    e.set_data(Some(Bytes::from_static(
        br#"{"items":[{"sku":"book","qty":12},{"sku":"pen","qty":1}],"customer":{"tier":"gold"}}"#,
    )));
    e
}

fn filter(filters_yaml: &str) -> Filter {
    let yaml = format!("broker: b\nsubscriber: {{uri: 'http://x/'}}\nfilters: {filters_yaml}\n");
    let spec: TriggerSpec = serde_yaml_ng::from_str(&yaml).expect("bench trigger spec");
    compile(&spec).expect("bench filter compiles")
}

fn single_filters(c: &mut Criterion) {
    let e = event();
    let cases = [
        ("exact", "[{exact: {type: com.example.order.created}}]"),
        (
            "cesql_like",
            "[{cesql: \"type LIKE 'com.example.%.created' AND region = 'eu'\"}]",
        ),
        ("jsonpath", "[{jsonpath: '$.items[?(@.qty > 10)]'}]"),
    ];
    for (name, yaml) in cases {
        let f = filter(yaml);
        assert!(f.matches(&e), "{name} must match the bench event");
        c.bench_function(name, |b| b.iter(|| black_box(&f).matches(black_box(&e))));
    }
}

fn thousand_triggers(c: &mut Criterion) {
    let e = event();
    // 1,000 triggers on 1,000 distinct types; one of them is the event's.
    let filters: Vec<Filter> = (0..1000)
        .map(|i| {
            let ty = if i == 500 {
                "com.example.order.created".to_owned()
            } else {
                format!("com.example.t{i}")
            };
            filter(&format!("[{{exact: {{type: {ty}}}}}]"))
        })
        .collect();
    let index = TriggerIndex::new(filters.iter().cloned().enumerate());
    assert_eq!(index.matching(&e), vec![500]);
    c.bench_function("1000_triggers_every_filter", |b| {
        b.iter(|| filters.iter().filter(|f| f.matches(black_box(&e))).count())
    });
    c.bench_function("1000_triggers_indexed", |b| {
        b.iter(|| index.matching(black_box(&e)).len())
    });
    // What the dispatchers do: each of the 1,000 triggers asks the shared router about the
    // same new record; the first computes the decision, the rest read it.
    let names: Vec<String> = (0..1000).map(|i| format!("t{i}")).collect();
    let router = TriggerRouter::new(names.iter().cloned().zip(filters.iter().cloned()));
    let slots: Vec<Option<usize>> = names.iter().map(|n| router.slot(n)).collect();
    let mut offset = 0u64;
    c.bench_function("1000_triggers_router_per_event", |b| {
        b.iter(|| {
            offset += 1;
            let id = RecordId {
                partition: 0,
                offset,
            };
            slots
                .iter()
                .zip(&filters)
                .filter(|(slot, f)| router.takes(**slot, f, id, black_box(&e)))
                .count()
        })
    });
}

criterion_group!(benches, single_filters, thousand_triggers);
criterion_main!(benches);
