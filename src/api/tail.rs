//! `GET .../brokers/{name}/events?follow=true[&filter=CESQL]`: the events this process accepts
//! for a broker from now on, as server-sent events (one `cloudevent` event per CloudEvent, its
//! data the event in JSON format).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use herald_broker::BrokerKey;
use herald_triggers::cesql::Expression;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use super::ApiState;
use crate::control::ControlError;
use crate::kinds::ObjectKey;
use crate::kinds::BROKER;

#[derive(Deserialize)]
pub struct BrokerPath {
    namespace: String,
    name: String,
}

#[derive(Deserialize)]
pub struct TailQuery {
    #[serde(default)]
    follow: bool,
    filter: Option<String>,
}

pub async fn events(
    State(state): State<ApiState>,
    Path(path): Path<BrokerPath>,
    Query(query): Query<TailQuery>,
) -> Result<Response, ControlError> {
    if !query.follow {
        return Err(ControlError::BadRequest(
            "only live tails are served: add follow=true".into(),
        ));
    }
    let filter = match &query.filter {
        Some(text) => Some(
            Expression::parse(text)
                .map_err(|e| ControlError::BadRequest(format!("filter: invalid CESQL: {e}")))?,
        ),
        None => None,
    };
    state
        .control
        .read()
        .await
        .get(&ObjectKey::new(&BROKER, &path.namespace, &path.name))
        .await?;
    let broker = BrokerKey::new(path.namespace, path.name);
    let receiver = state.ingress.tap();
    let shutdown = state.shutdown.clone();
    let stream = futures_util::stream::unfold(
        (receiver, broker, filter, shutdown),
        |(mut receiver, broker, filter, shutdown)| async move {
            loop {
                let received = tokio::select! {
                    received = receiver.recv() => received,
                    _ = shutdown.cancelled() => return None,
                };
                let event = match received {
                    Ok(tapped) if tapped.broker != broker => continue,
                    Ok(tapped) if filter.as_ref().is_some_and(|f| !f.matches(&tapped.event)) => {
                        continue
                    }
                    Ok(tapped) => {
                        let json = herald_broker::json::to_json(&tapped.event);
                        Event::default()
                            .event("cloudevent")
                            .data(String::from_utf8_lossy(&json))
                    }
                    // A slow reader is told how much it missed, then goes on.
                    Err(RecvError::Lagged(missed)) => Event::default().event("lagged").data(
                        format!("{missed} events were skipped: the tail fell behind"),
                    ),
                    Err(RecvError::Closed) => return None,
                };
                return Some((
                    Ok::<_, Infallible>(event),
                    (receiver, broker, filter, shutdown),
                ));
            }
        },
    );
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}
