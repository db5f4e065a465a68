//! The policy rules on desired states built from YAML: which policies apply, the ingress
//! decision, the default modes, validation and status.
#![allow(clippy::unwrap_used, reason = "tests")]

use herald_broker::{BrokerKey, CloudEvent};

use super::{Authorizer, DefaultMode, Denied, PolicySettings};
use crate::config::testing::{desired, trigger, BROKER};
use crate::config::{build_desired, parse_documents, RefMap};

const ON: PolicySettings = PolicySettings {
    authentication: true,
    default_mode: DefaultMode::AllowSameNamespace,
};

fn policy(name: &str, spec: &str) -> String {
    format!("---\napiVersion: eventing.knative.dev/v1alpha1\nkind: EventPolicy\nmetadata: {{name: {name}}}\nspec: {spec}\n")
}

fn event(event_type: &str) -> CloudEvent {
    let mut event = CloudEvent::new();
    for (name, value) in [("specversion", "1.0"), ("id", "1"), ("source", "/s")] {
        event.set(name, value);
    }
    event.set("type", event_type);
    event
}

fn authorizer(yaml: &str, settings: PolicySettings) -> Authorizer {
    let authorizer = Authorizer::default();
    authorizer.set(&desired(yaml), settings);
    authorizer
}

fn broker() -> BrokerKey {
    BrokerKey::new("default", "b")
}

const ALICE: &str = "system:serviceaccount:default:alice";
const BOB: &str = "system:serviceaccount:default:bob";

/// `from.sub` lets one subject in and keeps another out; a policy's filter refuses the
/// types it does not pass; a request without a verified subject is not checked.
#[test]
fn from_and_filters_decide() {
    let yaml = format!(
        "{BROKER}{}",
        policy(
            "p",
            "{to: [{ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: b}}], from: [{sub: 'system:serviceaccount:default:al*'}], filters: [{prefix: {type: ok.}}]}"
        )
    );
    let authorizer = authorizer(&yaml, ON);
    assert_eq!(
        authorizer.check(&broker(), Some(ALICE), &[event("ok.1")]),
        Ok(())
    );
    let denied = authorizer
        .check(&broker(), Some(BOB), &[event("ok.1")])
        .unwrap_err();
    assert!(matches!(denied, Denied::NotInFrom { .. }), "{denied}");
    assert!(denied.to_string().contains(BOB), "{denied}");
    let denied = authorizer
        .check(&broker(), Some(ALICE), &[event("ok.1"), event("bad")])
        .unwrap_err();
    assert!(matches!(denied, Denied::Filtered { .. }), "{denied}");
    assert!(
        denied.to_string().contains("event 1 of type \"bad\""),
        "{denied}"
    );
    assert_eq!(authorizer.check(&broker(), None, &[event("bad")]), Ok(()));
    // OIDC off: policies are not enforced, whoever sends.
    let off = PolicySettings {
        authentication: false,
        ..ON
    };
    // (the ingress asks with no subject then; a subject would still not be checked
    // against unready policies, and the default mode applies)
    let authorizer_off = self::authorizer(&yaml, off);
    assert_eq!(
        authorizer_off.check(&broker(), Some(ALICE), &[event("bad")]),
        Ok(())
    );
}

/// Herald's rule is Knative's documented one: allowed when ANY policy naming the subject
/// passes the event. Knative's code would stop at the first policy in name order (`a-only`,
/// whose filter refuses `b`).
#[test]
fn any_admitting_policy_allows() {
    let yaml = format!(
        "{BROKER}{}{}",
        policy(
            "a-only",
            &format!("{{from: [{{sub: '{ALICE}'}}], filters: [{{exact: {{type: a}}}}]}}")
        ),
        policy(
            "b-only",
            &format!("{{from: [{{sub: '{ALICE}'}}], filters: [{{exact: {{type: b}}}}]}}")
        ),
    );
    let authorizer = authorizer(&yaml, ON);
    assert_eq!(
        authorizer.check(&broker(), Some(ALICE), &[event("a")]),
        Ok(())
    );
    assert_eq!(
        authorizer.check(&broker(), Some(ALICE), &[event("b")]),
        Ok(())
    );
    assert!(authorizer
        .check(&broker(), Some(ALICE), &[event("c")])
        .is_err());
}

/// `from.ref` resolves to the sender's identity (Knative's ServiceAccount naming); a ref to
/// nothing makes the policy not Ready, and a policy that is not Ready is not used.
#[test]
fn refs_resolve_to_sender_subjects() {
    let yaml = format!(
        "{BROKER}{}{}",
        trigger("t", "subscriber: {uri: 'http://s'}"),
        policy(
            "p",
            "{from: [{ref: {apiVersion: eventing.knative.dev/v1, kind: Trigger, name: t}}]}"
        ),
    );
    let subject = "system:serviceaccount:default:t-oidc-eventing.knative.dev-trigger";
    let authorizer = authorizer(&yaml, ON);
    assert_eq!(
        authorizer.check(&broker(), Some(subject), &[event("x")]),
        Ok(())
    );
    assert!(authorizer
        .check(&broker(), Some(ALICE), &[event("x")])
        .is_err());

    let unresolved = format!(
        "{BROKER}{}",
        policy(
            "p",
            "{from: [{ref: {apiVersion: eventing.knative.dev/v1, kind: Trigger, name: gone}}]}"
        ),
    );
    let desired = desired(&unresolved);
    let plan = desired.policies.policies.values().next().unwrap();
    let status = super::status::policy_status(plan, &desired.policies, ON);
    let condition = |t: &str| {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == t)
            .unwrap()
            .clone()
    };
    assert_eq!(
        condition("SubjectsResolved").reason.as_deref(),
        Some("SubjectsNotResolved")
    );
    assert_eq!(condition("Ready").status, "False");
    // Not Ready: ignored, so the default mode decides (same namespace: allowed).
    let authorizer = self::authorizer(&unresolved, ON);
    assert_eq!(
        authorizer.check(&broker(), Some(ALICE), &[event("x")]),
        Ok(())
    );
}

/// With no policy applying, `--default-authorization-mode` decides.
#[test]
fn default_modes() {
    let other = "system:serviceaccount:other:x";
    let modes = [
        (DefaultMode::AllowAll, [true, true, true]),
        (DefaultMode::DenyAll, [false, false, false]),
        (DefaultMode::AllowSameNamespace, [true, false, false]),
    ];
    // A policy of another broker does not apply to `b`.
    let yaml = format!(
        "{BROKER}---\napiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {{name: c}}\n{}",
        policy("p", "{to: [{ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: c}}], from: [{sub: nobody}]}")
    );
    for (mode, expected) in modes {
        let authorizer = authorizer(
            &yaml,
            PolicySettings {
                authentication: true,
                default_mode: mode,
            },
        );
        for (subject, allowed) in [ALICE, other, "alice@example.com"]
            .into_iter()
            .zip(expected)
        {
            let result = authorizer.check(&broker(), Some(subject), &[event("x")]);
            assert_eq!(result.is_ok(), allowed, "{mode:?} {subject}: {result:?}");
        }
        // `c` has a policy: only `nobody` may send there.
        let c = BrokerKey::new("default", "c");
        assert!(authorizer.check(&c, Some(ALICE), &[event("x")]).is_err());
    }
}

/// Selectors match the target's group, kind and labels.
#[test]
fn selectors_pick_targets_by_label() {
    let yaml = format!(
        "---\napiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {{name: b, labels: {{team: a}}}}\n---\napiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {{name: c, labels: {{team: b}}}}\n{}",
        policy("p", "{to: [{selector: {apiVersion: eventing.knative.dev/v1, kind: broker, matchLabels: {team: a}}}], from: [{sub: nobody}]}")
    );
    let authorizer = authorizer(&yaml, ON);
    assert!(authorizer
        .check(&broker(), Some(ALICE), &[event("x")])
        .is_err());
    let c = BrokerKey::new("default", "c");
    assert_eq!(authorizer.check(&c, Some(ALICE), &[event("x")]), Ok(()));
}

/// Knative's validation, with the field at fault; filters get the Trigger's compiler.
#[test]
fn validation_names_the_field() {
    let cases = [
        (
            "{from: [{}]}",
            "spec.from[0]",
            "expected exactly one, got neither",
        ),
        (
            "{from: [{sub: 'a*b'}]}",
            "spec.from[0].sub",
            "only allowed as the last",
        ),
        (
            "{to: [{ref: {kind: Broker, name: b}}]}",
            "spec.to[0].ref.apiVersion",
            "missing field(s)",
        ),
        (
            "{filters: [{cesql: \"type = \"}]}",
            "spec.filters[0].cesql",
            "invalid CESQL",
        ),
        (
            "{filters: [{exact: {type: a}, prefix: {type: b}}]}",
            "spec.filters[0]",
            "multiple dialects",
        ),
    ];
    for (spec, field, message) in cases {
        let error = build_desired(
            parse_documents("f.yaml", &format!("{BROKER}{}", policy("p", spec))).unwrap(),
            &RefMap::default(),
        )
        .unwrap_err();
        assert_eq!(
            error.resource.as_deref(),
            Some("EventPolicy default/p"),
            "{error}"
        );
        assert_eq!(error.field.as_deref(), Some(field), "{error}");
        assert!(error.message.contains(message), "{error}");
    }
}

/// The policy's conditions with OIDC off and on, and what the broker's status says.
#[test]
fn status_conditions() {
    let yaml = format!(
        "{BROKER}{}",
        policy("p", &format!("{{from: [{{sub: '{ALICE}'}}]}}"))
    );
    let desired = desired(&yaml);
    let plan = desired.policies.policies.values().next().unwrap();
    let off = PolicySettings::default();
    let status = super::status::policy_status(plan, &desired.policies, off);
    let types: Vec<(&str, &str, Option<&str>)> = status
        .conditions
        .iter()
        .map(|c| (c.type_.as_str(), c.status.as_str(), c.reason.as_deref()))
        .collect();
    assert_eq!(
        types,
        [
            (
                "AuthenticationEnabled",
                "False",
                Some("OIDCAuthenticationDisabled")
            ),
            ("SubjectsResolved", "True", None),
            ("Ready", "False", Some("OIDCAuthenticationDisabled")),
        ]
    );
    assert_eq!(status.from, [ALICE]);
    let on = super::status::policy_status(plan, &desired.policies, ON);
    assert!(on.conditions.iter().all(|c| c.status == "True"));

    // The broker lists the Ready policy; with OIDC off it lists none, and its
    // EventPoliciesReady is False (an applying policy is not Ready), and so is Ready.
    let broker_status = || serde_json::json!({"conditions": [{"type": "Ready", "status": "True"}]});
    let mut status = broker_status();
    super::status::decorate(&desired.policies, ON, "Broker", "default", "b", &mut status);
    assert_eq!(
        status["policies"],
        serde_json::json!([{"apiVersion": "eventing.knative.dev/v1alpha1", "name": "p"}])
    );
    assert_eq!(status["conditions"][0]["type"], "EventPoliciesReady");
    assert_eq!(status["conditions"][0]["status"], "True");
    let mut status = broker_status();
    super::status::decorate(
        &desired.policies,
        off,
        "Broker",
        "default",
        "b",
        &mut status,
    );
    assert!(status.get("policies").is_none());
    assert_eq!(status["conditions"][0]["reason"], "EventPoliciesNotReady");
    assert_eq!(status["conditions"][1]["status"], "False");
    // No policy: True, with the reason saying what decides.
    let empty = crate::config::policy_plan::Policies::default();
    for (settings, reason) in [(ON, "DefaultAuthorizationMode"), (off, "OIDCDisabled")] {
        let mut status = broker_status();
        super::status::decorate(&empty, settings, "Broker", "default", "b", &mut status);
        assert_eq!(status["conditions"][0]["reason"], reason);
        assert_eq!(status["conditions"][0]["status"], "True");
    }
}

/// The README's example loads, and its policies decide as its comments say.
#[test]
fn the_example_decides_as_documented() {
    let text = include_str!("../../examples/security/event-policy.yaml");
    let desired = desired(text);
    let authorizer = Authorizer::default();
    authorizer.set(&desired, ON);
    let orders = BrokerKey::new("shop", "orders");
    let billing = "system:serviceaccount:billing:invoicer";
    let heartbeat = "system:serviceaccount:shop:heartbeat-oidc-sources.knative.dev-pingsource";
    assert_eq!(
        authorizer.check(&orders, Some(billing), &[event("com.example.order.paid")]),
        Ok(())
    );
    assert!(authorizer
        .check(&orders, Some(billing), &[event("com.example.refund")])
        .is_err());
    assert_eq!(
        authorizer.check(
            &orders,
            Some(heartbeat),
            &[event("dev.knative.sources.ping")]
        ),
        Ok(())
    );
    assert!(authorizer
        .check(
            &orders,
            Some("system:serviceaccount:other:x"),
            &[event("com.example.order.paid")]
        )
        .is_err());
}
