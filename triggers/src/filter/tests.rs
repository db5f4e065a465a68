use proptest::prelude::*;

use super::*;
use herald_broker::AttrValue;

pub(crate) fn spec(filters_yaml: &str) -> TriggerSpec {
    let yaml = format!("broker: b\nsubscriber: {{uri: 'http://x/'}}\nfilters: {filters_yaml}\n");
    serde_yaml_ng::from_str(&yaml).unwrap()
}

fn event(pairs: &[(&str, &str)]) -> CloudEvent {
    let mut e = CloudEvent::new();
    e.set("specversion", "1.0");
    e.set("id", "1");
    for (k, v) in pairs {
        e.set(*k, *v);
    }
    e
}

fn verdict(filters_yaml: &str, pairs: &[(&str, &str)]) -> Verdict {
    compile(&spec(filters_yaml))
        .unwrap()
        .evaluate(&event(pairs))
}

#[test]
fn dialects() {
    let e = [
        ("type", "com.shop.order.created"),
        ("source", "/shop/eu"),
        ("region", "eu"),
    ];
    assert_eq!(
        verdict("[{exact: {type: com.shop.order.created}}]", &e),
        Verdict::Pass
    );
    assert_eq!(
        verdict("[{exact: {type: com.shop.order}}]", &e),
        Verdict::Fail
    );
    assert_eq!(verdict("[{prefix: {type: com.shop.}}]", &e), Verdict::Pass);
    assert_eq!(verdict("[{suffix: {source: /eu}}]", &e), Verdict::Pass);
    assert_eq!(verdict("[{suffix: {missing: x}}]", &e), Verdict::Fail);
    assert_eq!(
        verdict(
            "[{all: [{prefix: {type: com.}}, {exact: {region: us}}]}]",
            &e
        ),
        Verdict::Fail
    );
    assert_eq!(
        verdict(
            "[{any: [{exact: {region: us}}, {exact: {region: eu}}]}]",
            &e
        ),
        Verdict::Pass
    );
    assert_eq!(verdict("[{not: {exact: {region: eu}}}]", &e), Verdict::Fail);
    assert_eq!(
        verdict(
            "[{cesql: \"region IN ('eu', 'uk') AND type LIKE '%.created'\"}]",
            &e
        ),
        Verdict::Pass
    );
    assert_eq!(
        verdict("[{cesql: \"nosuch = 'x'\"}]", &e),
        Verdict::Fail,
        "evaluation errors fail"
    );
    assert_eq!(
        verdict("[{cesql: \"1 + 1\"}]", &e),
        Verdict::Fail,
        "non-boolean results fail"
    );
}

#[test]
fn tri_state() {
    let e = [("type", "t")];
    assert_eq!(verdict("[{}]", &e), Verdict::NoFilter);
    assert_eq!(
        verdict("[{not: {}}]", &e),
        Verdict::NoFilter,
        "not of nothing filters nothing"
    );
    assert_eq!(verdict("[{all: []}]", &e), Verdict::NoFilter);
    assert_eq!(
        verdict("[{any: [{}, {exact: {type: t}}]}]", &e),
        Verdict::Pass
    );
    assert_eq!(
        verdict("[{any: [{}, {exact: {type: x}}]}]", &e),
        Verdict::Fail
    );
    assert!(
        compile(&spec("[{}]")).unwrap().matches(&event(&e)),
        "NoFilter delivers"
    );
}

#[test]
fn filters_replace_filter_attributes() {
    let mut s = spec("[{exact: {type: a}}]");
    s.filter = Some(herald_crds::TriggerFilter {
        attributes: [("type".to_owned(), "b".to_owned())].into(),
    });
    let filter = compile(&s).unwrap();
    assert!(filter.matches(&event(&[("type", "a")])));
    assert!(!filter.matches(&event(&[("type", "b")])));
}

#[test]
fn load_errors_name_the_element() {
    let cases = [
        (
            "[{exact: {type: a}, prefix: {type: b}}]",
            "spec.filters[0]",
            "multiple dialects",
        ),
        (
            "[{all: [{exact: {Bad: a}}]}]",
            "spec.filters[0].all[0].exact.Bad",
            "attribute name",
        ),
        (
            "[{any: [{}, {suffix: {type: ''}}]}]",
            "spec.filters[0].any[1].suffix.type",
            "empty",
        ),
        (
            "[{not: {cesql: \"type = \"}}]",
            "spec.filters[0].not.cesql",
            "column 8",
        ),
        (
            "[{cesql: \"NOPE(type)\"}]",
            "spec.filters[0].cesql",
            "missingFunction",
        ),
        (
            "[{}, {jsonpath: \"$.[\"}]",
            "spec.filters[1].jsonpath",
            "invalid JSONPath",
        ),
    ];
    for (yaml, path, message) in cases {
        let err = compile(&spec(yaml)).unwrap_err();
        assert_eq!(err.path, path, "{yaml}: {err}");
        assert!(err.message.contains(message), "{yaml}: {err}");
    }
}

#[test]
fn explain_names_the_deciding_element() {
    let filter = compile(&spec(
        "[{exact: {type: t}}, {any: [{exact: {region: us}}, {cesql: \"region = 'eu'\"}]}]",
    ))
    .unwrap();
    let pass = filter.explain(&event(&[("type", "t"), ("region", "eu")]));
    assert_eq!(
        (pass.verdict, pass.path.as_str()),
        (Verdict::Pass, "spec.filters")
    );
    let fail = filter.explain(&event(&[("type", "t"), ("region", "fr")]));
    assert_eq!(
        (fail.verdict, fail.path.as_str()),
        (Verdict::Fail, "spec.filters[1]")
    );
    let fail = filter.explain(&event(&[("type", "x")]));
    assert_eq!(fail.path, "spec.filters[0]", "{fail:?}");
    let any = compile(&spec(
        "[{any: [{exact: {region: us}}, {cesql: \"region = 'eu'\"}]}]",
    ))
    .unwrap();
    let pass = any.explain(&event(&[("region", "eu")]));
    assert_eq!(pass.path, "spec.filters[0].any[1]");
}

/// Random filter trees over a small attribute vocabulary.
fn leaf() -> impl Strategy<Value = SubscriptionsApiFilter> {
    let attr = prop::sample::select(vec!["type", "source", "region"]);
    let value = prop::sample::select(vec!["a", "b", "ab"]);
    (0..5usize, attr, value).prop_map(|(dialect, attr, value)| {
        let map = Some([(attr.to_owned(), value.to_owned())].into());
        match dialect {
            0 => SubscriptionsApiFilter {
                exact: map,
                ..Default::default()
            },
            1 => SubscriptionsApiFilter {
                prefix: map,
                ..Default::default()
            },
            2 => SubscriptionsApiFilter {
                suffix: map,
                ..Default::default()
            },
            3 => SubscriptionsApiFilter {
                cesql: Some(format!("{attr} = '{value}'")),
                ..Default::default()
            },
            _ => SubscriptionsApiFilter::default(),
        }
    })
}

pub(crate) fn tree() -> impl Strategy<Value = SubscriptionsApiFilter> {
    leaf().prop_recursive(3, 16, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(|v| SubscriptionsApiFilter {
                all: Some(v),
                ..Default::default()
            }),
            prop::collection::vec(inner.clone(), 0..3).prop_map(|v| SubscriptionsApiFilter {
                any: Some(v),
                ..Default::default()
            }),
            inner.prop_map(|f| SubscriptionsApiFilter {
                not: Some(Box::new(f)),
                ..Default::default()
            }),
        ]
    })
}

pub(crate) fn any_event() -> impl Strategy<Value = CloudEvent> {
    let value = prop::option::of(prop::sample::select(vec!["a", "b", "ab", "ba"]));
    (value.clone(), value.clone(), value).prop_map(|(t, s, r)| {
        let mut e = event(&[]);
        for (name, v) in [("type", t), ("source", s), ("region", r)] {
            if let Some(v) = v {
                e.set(name, AttrValue::String(v.to_owned()));
            }
        }
        e
    })
}

fn compiled(element: SubscriptionsApiFilter) -> Filter {
    compile(&TriggerSpec {
        filters: vec![element],
        ..spec("[]")
    })
    .unwrap()
}

proptest! {
    #[test]
    fn not_inverts(f in tree(), e in any_event()) {
        let plain = compiled(f.clone()).evaluate(&e);
        let inverted = compiled(SubscriptionsApiFilter { not: Some(Box::new(f)), ..Default::default() }).evaluate(&e);
        let expected = match plain { Verdict::Pass => Verdict::Fail, Verdict::Fail => Verdict::Pass, v => v };
        prop_assert_eq!(inverted, expected);
    }

    #[test]
    fn all_and_any_of_one_equal_the_element(f in tree(), e in any_event()) {
        let plain = compiled(f.clone()).evaluate(&e);
        let all = compiled(SubscriptionsApiFilter { all: Some(vec![f.clone()]), ..Default::default() }).evaluate(&e);
        let any = compiled(SubscriptionsApiFilter { any: Some(vec![f]), ..Default::default() }).evaluate(&e);
        prop_assert_eq!(all, plain);
        prop_assert_eq!(any, plain);
    }

}

/// `levels` elements of `dialect` inside one another around an exact match.
fn nested_filter(dialect: &str, levels: usize) -> SubscriptionsApiFilter {
    let mut element = SubscriptionsApiFilter {
        exact: Some([("type".to_owned(), "a".to_owned())].into()),
        ..Default::default()
    };
    for _ in 1..levels {
        element = match dialect {
            "all" => SubscriptionsApiFilter {
                all: Some(vec![element]),
                ..Default::default()
            },
            "any" => SubscriptionsApiFilter {
                any: Some(vec![element]),
                ..Default::default()
            },
            _ => SubscriptionsApiFilter {
                not: Some(Box::new(element)),
                ..Default::default()
            },
        };
    }
    element
}

#[test]
fn filters_nest_up_to_the_limit() {
    // On a tokio worker's stack size, where dispatchers evaluate filters.
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(|| {
            for dialect in ["all", "any", "not"] {
                let filter = compile(&TriggerSpec {
                    filters: vec![nested_filter(dialect, MAX_DEPTH)],
                    ..spec("[]")
                })
                .unwrap_or_else(|e| panic!("{dialect} at {MAX_DEPTH} levels: {e}"));
                let e = event(&[("type", "a")]);
                let _ = filter.evaluate(&e);
                let _ = filter.explain(&e);
            }
        })
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn filters_nested_deeper_are_refused_naming_the_element() {
    for dialect in ["all", "any", "not"] {
        let err = compile(&TriggerSpec {
            filters: vec![nested_filter(dialect, MAX_DEPTH + 1)],
            ..spec("[]")
        })
        .unwrap_err();
        let step = if dialect == "not" {
            ".not".to_owned()
        } else {
            format!(".{dialect}[0]")
        };
        assert_eq!(
            err.path,
            format!("spec.filters[0]{}", step.repeat(MAX_DEPTH)),
            "{dialect}"
        );
        assert!(
            err.message
                .contains(&format!("deeper than {MAX_DEPTH} levels")),
            "{err:?}"
        );
    }
}
