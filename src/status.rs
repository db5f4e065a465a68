//! Knative-shaped status of what Herald runs: the admin API and the controller report the
//! same conditions from the same runtime.

use herald_broker::BrokerKey;
use herald_crds::status::AuthStatus;
use herald_crds::{BrokerStatus, Condition, SourceStatus, TriggerStatus};

use crate::config::{BrokerPlan, Rejected};
use crate::kinds::{self, ObjectKey};
use crate::runtime::Runtime;

/// A Broker's status: `Ready` while its log is open, and its address under `base_url`
/// (Herald's own listener, or the controller's `--external-url`).
pub fn broker(
    runtime: &Runtime,
    base_url: &str,
    key: &BrokerKey,
    broker: &BrokerPlan,
) -> BrokerStatus {
    let running = runtime.deps().ingress.brokers().contains(key);
    let BrokerKey { namespace, name } = key;
    let (mut address, mut addresses) = runtime
        .transport()
        .addresses(base_url, &format!("/{namespace}/{name}"));
    // Knative writes the audience into `address` and every `addresses` entry.
    if runtime.sender_identity_enabled() {
        let audience = crate::identity::naming::stream_audience(key);
        for each in std::iter::once(&mut address).chain(addresses.iter_mut()) {
            each.audience = Some(audience.clone());
        }
    }
    BrokerStatus {
        observed_generation: broker.generation,
        conditions: vec![ready(
            running,
            "BrokerNotRunning",
            "the broker's log is not open",
        )],
        address: Some(address),
        addresses,
        dead_letter_sink_uri: broker.dead_letter_sink.as_ref().map(|d| runtime.url(d)),
        // Filled in by `policy::status::decorate`.
        policies: Vec::new(),
    }
}

/// A Trigger's status: `BrokerReady`, `SubscriberResolved`, `DeadLetterSinkResolved` (with
/// a dead-letter sink) and `Ready`, with the URIs its dispatcher uses. No statistics.
pub fn trigger(
    runtime: &Runtime,
    namespace: &str,
    name: &str,
    generation: Option<i64>,
) -> TriggerStatus {
    match runtime.trigger(&(namespace.to_owned(), name.to_owned())) {
        Some((plan, _)) => {
            let mut conditions = vec![
                Condition::new("BrokerReady", true, None, None),
                Condition::new("SubscriberResolved", true, None, None),
            ];
            if plan.dead_letter_sink.is_some() {
                conditions.push(Condition::new("DeadLetterSinkResolved", true, None, None));
            }
            let (identity, auth) = oidc_identity(
                plan.auth
                    .identity
                    .as_ref()
                    .map(|identity| identity.service_account.clone()),
            );
            conditions.push(identity);
            conditions.push(Condition::new("Ready", true, None, None));
            TriggerStatus {
                observed_generation: generation,
                conditions,
                subscriber_uri: Some(plan.subscriber.clone()),
                dead_letter_sink_uri: plan.dead_letter_sink.clone(),
                auth,
                ..TriggerStatus::default()
            }
        }
        None => TriggerStatus {
            observed_generation: generation,
            conditions: vec![ready(
                false,
                "DispatcherNotRunning",
                "the trigger's dispatcher is not running",
            )],
            ..TriggerStatus::default()
        },
    }
}

/// Knative's `OIDCIdentityCreated` and `status.auth` of a sender: its ServiceAccount when
/// sender identity is on; True with the reason Knative gives while it is off.
pub fn oidc_identity(service_account: Option<String>) -> (Condition, Option<AuthStatus>) {
    match service_account {
        Some(name) => (
            Condition::new("OIDCIdentityCreated", true, None, None),
            Some(AuthStatus {
                service_account_name: Some(name),
                service_account_names: Vec::new(),
            }),
        ),
        None => (
            Condition::new(
                "OIDCIdentityCreated",
                true,
                Some("authentication-oidc feature disabled"),
                None,
            ),
            None,
        ),
    }
}

/// `SinkProvided` (its broker exists), `Ready` (it runs, and its last run did not fail)
/// and `sinkUri`.
pub fn source(runtime: &Runtime, key: &ObjectKey, generation: Option<i64>) -> SourceStatus {
    let state = runtime.source_state(key);
    let (sink, running, last_error) = match state {
        Some(state) => (state.sink, state.running, state.last_error),
        None => (Err("not reconciled yet".to_owned()), false, None),
    };
    let sink_provided = match &sink {
        Ok(_) => Condition::new("SinkProvided", true, None, None),
        Err(why) => Condition::new("SinkProvided", false, Some("NotFound"), Some(why.clone())),
    };
    let ready = match (&sink, running, &last_error) {
        (Err(why), _, _) => Condition::new(
            "Ready",
            false,
            Some("SinkNotProvided"),
            Some(format!("waiting for the sink: {why}")),
        ),
        (Ok(_), false, _) => Condition::new(
            "Ready",
            false,
            Some("NotRunning"),
            Some("the source is not running".into()),
        ),
        (Ok(_), true, Some(failure)) => Condition::new(
            "Ready",
            false,
            Some(failure.reason),
            Some(failure.message.clone()),
        ),
        (Ok(_), true, None) => Condition::new("Ready", true, None, None),
    };
    let mut conditions = vec![sink_provided, ready];
    if key.kind == kinds::API_SERVER_SOURCE.kind {
        // Knative's ApiServerSource says whether its ServiceAccount may read what it watches.
        conditions.push(match &last_error {
            Some(failure) if failure.reason == herald_sources::INSUFFICIENT_PERMISSION => {
                Condition::new(
                    "SufficientPermissions",
                    false,
                    Some(failure.reason),
                    Some(failure.message.clone()),
                )
            }
            _ => Condition::new("SufficientPermissions", true, None, None),
        });
    }
    let (identity, auth) = oidc_identity(
        runtime
            .sender_identity_enabled()
            .then(|| source_service_account(key)),
    );
    conditions.push(identity);
    SourceStatus {
        observed_generation: generation,
        conditions,
        sink_uri: sink.ok(),
        auth,
    }
}

/// The ServiceAccount a source's tokens name (`{name}-oidc-{group}-{kind}`).
pub fn source_service_account(key: &ObjectKey) -> String {
    crate::sources::service_account(key)
}

/// The status of an object left out of the desired state: `Ready=False` saying why; a
/// trigger whose broker is missing says `BrokerDoesNotExist`, as Knative's does.
pub fn rejected(rejected: &Rejected, generation: Option<i64>) -> serde_json::Value {
    let message = match &rejected.error.field {
        Some(field) => format!("{field}: {}", rejected.error.message),
        None => rejected.error.message.clone(),
    };
    match &rejected.missing_broker {
        Some(broker) => waiting_for_broker(broker, generation),
        None => not_running(generation, vec![failed("Ready", "InvalidSpec", message)]),
    }
}

/// The status of a trigger whose broker does not exist (yet): `BrokerReady` and `Ready`
/// false with reason `BrokerDoesNotExist`, as Knative's.
pub fn waiting_for_broker(broker: &BrokerKey, generation: Option<i64>) -> serde_json::Value {
    let message = format!("Broker {:?} does not exist", broker.name);
    not_running(
        generation,
        vec![
            failed("BrokerReady", "BrokerDoesNotExist", message.clone()),
            failed("Ready", "BrokerDoesNotExist", message),
        ],
    )
}

/// A condition that does not hold, and why.
pub fn failed(type_: &str, reason: &str, message: impl Into<String>) -> Condition {
    Condition::new(type_, false, Some(reason), Some(message.into()))
}

/// The status of an object Herald does not run: only why.
pub fn not_running(generation: Option<i64>, conditions: Vec<Condition>) -> serde_json::Value {
    serde_json::json!({
        "observedGeneration": generation,
        "conditions": conditions,
    })
}

fn ready(ok: bool, reason: &str, message: &str) -> Condition {
    if ok {
        Condition::new("Ready", true, None, None)
    } else {
        failed("Ready", reason, message)
    }
}
