//! A trigger's dead-letter store: `.../triggers/{name}/deadletters` lists (GET) and purges
//! (DELETE), `.../deadletters/{id}` shows one, `.../deadletters/redrive` (POST) delivers again.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use herald_broker::log::ParkedRecord;
use serde::Deserialize;
use serde_json::json;

use super::ApiState;
use crate::control::{parse_record_id, record_id_text, ControlError, RedriveContext, Selection};
use crate::kinds::TRIGGER;

#[derive(Deserialize)]
pub struct TriggerPath {
    namespace: String,
    name: String,
}

#[derive(Deserialize)]
pub struct ParkedPath {
    namespace: String,
    name: String,
    id: String,
}

/// `?ids=0-12,0-13` or `?all=true`.
#[derive(Deserialize, Default)]
pub struct SelectionQuery {
    #[serde(default)]
    all: bool,
    #[serde(default)]
    ids: Option<String>,
}

/// The body of a redrive: `{"ids": ["0-12"]}` or `{"all": true}`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SelectionBody {
    #[serde(default)]
    all: bool,
    #[serde(default)]
    ids: Vec<String>,
}

fn selection(all: bool, ids: &[String]) -> Result<Selection, ControlError> {
    match (all, ids.is_empty()) {
        (true, true) => Ok(Selection::All),
        (false, false) => ids
            .iter()
            .map(|text| {
                parse_record_id(text).ok_or_else(|| {
                    ControlError::BadRequest(format!(
                        "{text:?} is not a parked event id (PARTITION-OFFSET, as listed)"
                    ))
                })
            })
            .collect::<Result<_, _>>()
            .map(Selection::Ids),
        (true, false) => Err(ControlError::BadRequest("give ids or all, not both".into())),
        (false, true) => Err(ControlError::BadRequest(
            "say which parked events: ids, or all=true".into(),
        )),
    }
}

async fn context(
    state: &ApiState,
    namespace: &str,
    name: &str,
) -> Result<RedriveContext, ControlError> {
    state
        .control
        .read()
        .await
        .redrive_context(&(namespace.to_owned(), name.to_owned()))
}

/// A parked event as people read it: the event in JSON form, its failure and headers.
fn describe(parked: &ParkedRecord) -> serde_json::Value {
    // The JSON format always yields JSON (binary data as `data_base64`).
    let event: serde_json::Value =
        serde_json::from_slice(&herald_broker::json::to_json(&parked.record.event))
            .unwrap_or_default();
    json!({
        "id": record_id_text(parked.id),
        "failure": parked.failure,
        "event": event,
        "headers": parked.record.headers.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
    })
}

/// Longest `?search=` text.
pub const MAX_SEARCH: usize = 256;

/// `?search=TEXT`: only the parked events whose JSON form or failure contains it.
#[derive(Deserialize, Default)]
pub struct ListQuery {
    search: Option<String>,
}

pub async fn list(
    State(state): State<ApiState>,
    Path(path): Path<TriggerPath>,
    Query(query): Query<ListQuery>,
) -> Result<Response, ControlError> {
    let search = query
        .search
        .map(|text| text.trim().to_lowercase())
        .filter(|text| !text.is_empty());
    if search.as_ref().is_some_and(|text| text.len() > MAX_SEARCH) {
        return Err(ControlError::BadRequest(format!(
            "search is longer than {MAX_SEARCH} bytes"
        )));
    }
    let parked = context(&state, &path.namespace, &path.name)
        .await?
        .parked()
        .await?;
    let items: Vec<serde_json::Value> = parked
        .iter()
        .map(describe)
        .filter(|item| {
            search
                .as_ref()
                .is_none_or(|text| item.to_string().to_lowercase().contains(text))
        })
        .collect();
    Ok(Json(json!({
        "apiVersion": TRIGGER.api_version(),
        "kind": "DeadLetterList",
        "trigger": format!("{}/{}", path.namespace, path.name),
        "items": items,
    }))
    .into_response())
}

pub async fn show(
    State(state): State<ApiState>,
    Path(path): Path<ParkedPath>,
) -> Result<Response, ControlError> {
    let wanted = parse_record_id(&path.id).ok_or_else(|| {
        ControlError::BadRequest(format!("{:?} is not a parked event id", path.id))
    })?;
    let context = context(&state, &path.namespace, &path.name).await?;
    let parked = context.parked().await?;
    let found = parked
        .iter()
        .find(|p| p.id == wanted)
        .ok_or_else(|| ControlError::NotFound {
            kind: "parked event",
            namespace: path.namespace.clone(),
            name: format!("{}/{}", path.name, path.id),
        })?;
    let mut shown = describe(found);
    // The failed attempts this process still remembers for the event (the last few of the
    // trigger's, `recentErrors` in its status), after the failure it was parked with.
    let event_id = found.record.event.id().into_owned();
    let attempts: Vec<_> = context
        .stats
        .recent_errors()
        .into_iter()
        .filter(|error| error.event_id == event_id)
        .collect();
    shown["recentAttempts"] = json!(attempts);
    Ok(Json(shown).into_response())
}

pub async fn redrive(
    State(state): State<ApiState>,
    Path(path): Path<TriggerPath>,
    body: axum::body::Bytes,
) -> Result<Response, ControlError> {
    let body: SelectionBody = if body.is_empty() {
        SelectionBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ControlError::BadRequest(format!("invalid redrive body: {e}")))?
    };
    let selection = selection(body.all, &body.ids)?;
    // The control plane is not held while events are delivered.
    let context = context(&state, &path.namespace, &path.name).await?;
    let report = context.redrive(&selection).await?;
    Ok(Json(report).into_response())
}

pub async fn purge(
    State(state): State<ApiState>,
    Path(path): Path<TriggerPath>,
    Query(query): Query<SelectionQuery>,
) -> Result<Response, ControlError> {
    let ids: Vec<String> = query
        .ids
        .iter()
        .flat_map(|ids| ids.split(','))
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .collect();
    let selection = selection(query.all, &ids)?;
    let context = context(&state, &path.namespace, &path.name).await?;
    let (purged, not_found) = context.purge(&selection).await?;
    Ok(Json(json!({"purged": purged, "notFound": not_found})).into_response())
}
