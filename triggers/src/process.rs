//! Finishing one record for one trigger: deliver with retries, take a reply, dead-letter,
//! or park. A record is acknowledged only after one of these has happened.

use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use base64::Engine;
use bytes::Bytes;
use herald_broker::binding::{decode_request, has_cloudevent_markers};
use herald_broker::ingress::TTL_EXTENSION;
use herald_broker::log::{Failure, ParkedRecord};
use herald_broker::{CloudEvent, EventLog, Ingress, IngressError, LogRecord};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::attempt::{Answer, Sender, Target};
use crate::retry::{classify, parse_retry_after, StatusClass};
use crate::stats::{RecentError, TriggerStats};
use crate::{ReplyTarget, TriggerPlan};

/// Knative's limit on `knativeerrordata`: the base64 text of the response, cut to 1024
/// characters (the MT broker encodes, then cuts).
const ERROR_DATA_CHARS: usize = 1024;
/// The longest wait between two tries to park an event.
const PARK_RETRY_MAX: Duration = Duration::from_secs(5);

/// How much of a failed answer's body a recorded failure keeps.
const ERROR_TEXT_BYTES: usize = 1024;

/// How a record left the trigger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    DeadLettered,
    Parked,
    /// Shutdown cut the work short: not acknowledged, redelivered after restart.
    Aborted,
}

/// What a dispatcher needs to finish records.
#[derive(Clone)]
pub struct Deps {
    pub sender: Sender,
    pub log: Arc<dyn EventLog>,
    pub ingress: Arc<Ingress>,
    /// Where senders' tokens come from; `None` while sender identity is off.
    pub tokens: Option<Arc<dyn crate::auth::TokenSource>>,
}

/// A failed attempt, as much as is known of it.
#[derive(Debug, Clone)]
struct AttemptFailure {
    status: Option<u16>,
    /// Response body, or the transport error text.
    body: Bytes,
    retry_after: Option<Duration>,
    retryable: bool,
    /// The URL that failed when it was not the subscriber's (a reply target's), for
    /// `knativeerrordest`.
    dest: Option<String>,
}

impl AttemptFailure {
    fn transport(message: String) -> Self {
        Self {
            status: None,
            body: Bytes::from(format!("dispatch error: {message}")),
            retry_after: None,
            retryable: true,
            dest: None,
        }
    }

    fn http(
        status: u16,
        headers: &reqwest::header::HeaderMap,
        body: Bytes,
        retryable: bool,
    ) -> Self {
        let retry_after = (status == 429 || status == 503)
            .then(|| {
                headers
                    .get("retry-after")?
                    .to_str()
                    .ok()
                    .and_then(parse_retry_after)
            })
            .flatten();
        Self {
            status: Some(status),
            body,
            retry_after,
            retryable,
            dest: None,
        }
    }

    fn excerpt(&self) -> String {
        String::from_utf8_lossy(&self.body[..self.body.len().min(ERROR_TEXT_BYTES)]).into_owned()
    }
}

enum RetryResult {
    Succeeded,
    Failed { attempts: u32, last: AttemptFailure },
    Aborted,
}

/// What every attempt for one record shares: the trigger, its statistics, the abort signal.
#[derive(Clone, Copy)]
struct Scope<'a> {
    plan: &'a TriggerPlan,
    stats: &'a TriggerStats,
    abort: &'a CancellationToken,
}

/// Runs attempts until success, a permanent failure, or the retries run out.
async fn with_retries<F, Fut>(
    scope: &Scope<'_>,
    event_id: &str,
    target: &Target<'_>,
    trace_parent: Option<&str>,
    mut attempt: F,
) -> RetryResult
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), AttemptFailure>>,
{
    let Scope { plan, stats, abort } = *scope;
    let mut attempts = 0;
    loop {
        attempts += 1;
        // A span per delivery attempt, with the fields operators search by, when someone
        // will see it (exported spans or debug logs; failures are logged with these fields).
        let span = match herald_broker::trace::spans_wanted() {
            true => {
                tracing::info_span!("delivery attempt", trigger = %plan.name, ce.id = event_id, attempt = attempts, target = target.url)
            }
            false => tracing::Span::none(),
        };
        herald_broker::trace::continue_trace(&span, trace_parent);
        let result = tokio::select! {
            result = attempt().instrument(span) => result,
            _ = abort.cancelled() => return RetryResult::Aborted,
        };
        let failure = match result {
            Ok(()) => return RetryResult::Succeeded,
            Err(failure) => failure,
        };
        tracing::warn!(
            trigger = %plan.name,
            ce.id = event_id,
            attempt = attempts,
            status = failure.status.map(i64::from).unwrap_or(-1),
            target = target.url,
            error = %failure.excerpt(),
            "delivery attempt failed"
        );
        stats.record_error(RecentError {
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            event_id: event_id.to_owned(),
            target: target.url.to_owned(),
            attempt: attempts,
            status: failure.status,
            error: failure.excerpt(),
        });
        if !failure.retryable || attempts > plan.policy.retry {
            return RetryResult::Failed {
                attempts,
                last: failure,
            };
        }
        crate::metrics::retry(plan, stats);
        let wait = plan.policy.wait_before(attempts, failure.retry_after);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = abort.cancelled() => return RetryResult::Aborted,
        }
    }
}

/// Delivers one record for `plan` and says how it ended.
pub async fn process(
    plan: &TriggerPlan,
    deps: &Deps,
    record: &LogRecord,
    stats: &TriggerStats,
    abort: &CancellationToken,
) -> Outcome {
    let mut event = record.record.event.clone();
    let ttl = event.remove(TTL_EXTENSION);
    let event_id = event.id().into_owned();
    let headers = &record.record.headers;
    let target = Target {
        url: &plan.subscriber,
        format: plan.format,
        prefer_reply: true,
        namespace: &plan.namespace,
        headers,
        timeout: plan.policy.timeout,
        credentials: plan
            .auth
            .credentials(deps.tokens.as_deref(), &plan.auth.subscriber_audience),
        ca_certs: plan.trust.subscriber.as_ref(),
    };
    let trace_parent = crate::attempt::producer_traceparent(headers, &event);
    let scope = Scope { plan, stats, abort };
    let result = with_retries(
        &scope,
        &event_id,
        &target,
        trace_parent.as_deref(),
        || async {
            let started = std::time::Instant::now();
            let answer = deps.sender.send(&target, &event).await;
            crate::metrics::attempt(plan, stats, "subscriber", &answer, started.elapsed());
            judge_subscriber_answer(plan, deps, answer, ttl.clone()).await
        },
    )
    .await;
    let (attempts, last) = match result {
        RetryResult::Succeeded => {
            crate::metrics::delivered(plan, stats, &record.record.event);
            return Outcome::Delivered;
        }
        RetryResult::Aborted => return Outcome::Aborted,
        RetryResult::Failed { attempts, last } => (attempts, last),
    };
    let reason = match &plan.dead_letter_sink {
        None => "the trigger has no dead-letter sink".to_owned(),
        Some(sink) => match dead_letter(&scope, deps, sink, &event, headers, &last).await {
            RetryResult::Succeeded => {
                crate::metrics::dead_lettered(plan, stats);
                return Outcome::DeadLettered;
            }
            RetryResult::Aborted => return Outcome::Aborted,
            RetryResult::Failed {
                last: dls_failure, ..
            } => format!(
                "the dead-letter sink {sink} failed (status {}): {}",
                dls_failure
                    .status
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "none".into()),
                dls_failure.excerpt()
            ),
        },
    };
    let parked = ParkedRecord {
        id: record.id,
        record: record.record.clone(),
        failure: Failure {
            attempts,
            last_status: last.status,
            last_error: last.excerpt(),
            reason: reason.clone(),
            parked_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        },
    };
    // Parking must succeed before the record may be acknowledged: keep trying until it does
    // or shutdown aborts (then the record is redelivered after restart).
    let mut waits = ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(PARK_RETRY_MAX)
        .without_max_times()
        .build();
    loop {
        match deps
            .log
            .park(&plan.broker, &plan.consumer_name(), parked.clone())
            .await
        {
            Ok(()) => {
                tracing::warn!(trigger = %plan.name, ce.id = %event_id, attempts, %reason, "event parked in the dead-letter store");
                crate::metrics::parked(plan, stats);
                return Outcome::Parked;
            }
            Err(error) => {
                tracing::error!(trigger = %plan.name, ce.id = %event_id, %error, "cannot park event; retrying")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(waits.next().unwrap_or(PARK_RETRY_MAX)) => {}
            _ = abort.cancelled() => return Outcome::Aborted,
        }
    }
}

/// Delivers a parked record again through the trigger's normal path (retries, reply,
/// dead-letter sink). Once it is delivered or dead-lettered it leaves the dead-letter store;
/// if it fails again, parking it again replaces its entry with the new failure.
pub async fn redrive(
    plan: &TriggerPlan,
    deps: &Deps,
    parked: &ParkedRecord,
    stats: &TriggerStats,
    abort: &CancellationToken,
) -> Result<Outcome, herald_broker::LogError> {
    let record = LogRecord {
        id: parked.id,
        record: parked.record.clone(),
    };
    let outcome = process(plan, deps, &record, stats, abort).await;
    if matches!(outcome, Outcome::Delivered | Outcome::DeadLettered) {
        deps.log
            .unpark(&plan.broker, &plan.consumer_name(), &[parked.id])
            .await?;
    }
    Ok(outcome)
}

/// Success, reply handling and classification of a subscriber's answer (README "Delivery
/// semantics").
async fn judge_subscriber_answer(
    plan: &TriggerPlan,
    deps: &Deps,
    answer: Answer,
    ttl: Option<herald_broker::AttrValue>,
) -> Result<(), AttemptFailure> {
    let (status, headers, body, truncated) = match answer {
        Answer::Transport(message) => return Err(AttemptFailure::transport(message)),
        Answer::Http {
            status,
            headers,
            body,
            truncated,
        } => (status, headers, body, truncated),
    };
    match classify(status) {
        StatusClass::Retryable => return Err(AttemptFailure::http(status, &headers, body, true)),
        StatusClass::Permanent => return Err(AttemptFailure::http(status, &headers, body, false)),
        StatusClass::Success => {}
    }
    if status == 202 || !has_cloudevent_markers(&headers) {
        return Ok(());
    }
    if truncated {
        let message = Bytes::from("reply event exceeds the maximum event size");
        return Err(AttemptFailure {
            status: Some(status),
            body: message,
            retry_after: None,
            retryable: false,
            dest: None,
        });
    }
    let reply_target = match &plan.reply {
        // Knative drops the replies of a Subscription without `spec.reply` unread.
        ReplyTarget::Drop => return Ok(()),
        target => target,
    };
    let replies = decode_request(&headers, body).map_err(|e| AttemptFailure {
        status: Some(status),
        body: Bytes::from(format!("invalid reply event: {e}")),
        retry_after: None,
        retryable: true,
        dest: None,
    })?;
    let replies: Vec<CloudEvent> = replies
        .into_iter()
        .map(|mut reply: CloudEvent| {
            match &ttl {
                Some(value) => reply.set(TTL_EXTENSION, value.clone()),
                None => {
                    reply.remove(TTL_EXTENSION);
                }
            }
            reply
        })
        .collect();
    let forwarded = herald_broker::ingress::pass_through_headers(&headers);
    match reply_target {
        ReplyTarget::Log(stream) => deps
            .ingress
            .publish(stream, replies, forwarded)
            .await
            .map_err(|e| AttemptFailure {
                status: Some(status),
                body: Bytes::from(format!("storing the reply failed: {e}")),
                retry_after: None,
                retryable: !matches!(e, IngressError::InvalidEvent(_)),
                dest: None,
            }),
        ReplyTarget::Http(url) => {
            for reply in &replies {
                send_reply(plan, deps, url, &forwarded, reply).await?;
            }
            Ok(())
        }
        ReplyTarget::Drop => Ok(()),
    }
}

/// POSTs one reply event to a Subscription's `spec.reply` URL; a failure fails the whole
/// delivery, which is retried (Knative's spec: "a failed reply retries the whole delivery").
async fn send_reply(
    plan: &TriggerPlan,
    deps: &Deps,
    url: &str,
    headers: &[(String, String)],
    reply: &CloudEvent,
) -> Result<(), AttemptFailure> {
    let target = Target {
        url,
        format: plan.format,
        prefer_reply: false,
        namespace: &plan.namespace,
        headers,
        timeout: plan.policy.timeout,
        credentials: plan
            .auth
            .credentials(deps.tokens.as_deref(), &plan.auth.reply_audience),
        ca_certs: plan.trust.reply.as_ref(),
    };
    let failed = |mut failure: AttemptFailure| {
        failure.dest = Some(url.to_owned());
        failure
    };
    match deps.sender.send(&target, reply).await {
        Answer::Transport(message) => Err(failed(AttemptFailure::transport(message))),
        Answer::Http {
            status,
            headers,
            body,
            ..
        } => match classify(status) {
            StatusClass::Success => Ok(()),
            class => Err(failed(AttemptFailure::http(
                status,
                &headers,
                body,
                class == StatusClass::Retryable,
            ))),
        },
    }
}

/// `knativeerrordata`: the base64 of the response body cut to 1024 characters, empty
/// without a body, as Knative's MT broker sets it. Only the bytes that reach the cut are
/// encoded: base64 turns each 3 bytes into 4 characters, so 768 bytes make exactly 1024.
fn error_data(body: &[u8]) -> String {
    let bytes = &body[..body.len().min(ERROR_DATA_CHARS / 4 * 3)];
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Sends the original event with Knative's `knativeerror*` extensions to the sink.
async fn dead_letter(
    scope: &Scope<'_>,
    deps: &Deps,
    sink: &str,
    event: &CloudEvent,
    headers: &[(String, String)],
    failure: &AttemptFailure,
) -> RetryResult {
    let plan = scope.plan;
    let mut event = event.clone();
    let dest = failure.dest.as_deref().unwrap_or(&plan.subscriber);
    event.set("knativeerrordest", dest);
    event.set(
        "knativeerrorcode",
        failure.status.unwrap_or(500).to_string(),
    );
    event.set("knativeerrordata", error_data(&failure.body));
    let target = Target {
        url: sink,
        format: plan.format,
        prefer_reply: false,
        namespace: &plan.namespace,
        headers,
        timeout: plan.policy.timeout,
        credentials: plan
            .auth
            .credentials(deps.tokens.as_deref(), &plan.auth.dead_letter_audience),
        ca_certs: plan.trust.dead_letter_sink.as_ref(),
    };
    let event_id = event.id().into_owned();
    let trace_parent = crate::attempt::producer_traceparent(headers, &event);
    with_retries(
        scope,
        &event_id,
        &target,
        trace_parent.as_deref(),
        || async {
            let started = std::time::Instant::now();
            let answer = deps.sender.send(&target, &event).await;
            crate::metrics::attempt(
                plan,
                scope.stats,
                "dead_letter_sink",
                &answer,
                started.elapsed(),
            );
            match answer {
                Answer::Transport(message) => Err(AttemptFailure::transport(message)),
                Answer::Http {
                    status,
                    headers,
                    body,
                    ..
                } => match classify(status) {
                    StatusClass::Success => Ok(()),
                    class => Err(AttemptFailure::http(
                        status,
                        &headers,
                        body,
                        class == StatusClass::Retryable,
                    )),
                },
            }
        },
    )
    .await
}

#[cfg(test)]
mod tests;
