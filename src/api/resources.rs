//! `/apis/{group}/{version}/namespaces/{ns}/{plural}[/{name}]`: list, get, create, replace,
//! delete, in Kubernetes' shapes.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::ApiState;
use crate::config::{parse_documents, Resource};
use crate::control::ControlError;
use crate::kinds::ObjectKey;
use crate::kinds::{self, Kind};

/// Path parameters of a collection.
#[derive(serde::Deserialize)]
pub struct CollectionPath {
    group: String,
    version: String,
    namespace: String,
    plural: String,
}

/// Path parameters of one object.
#[derive(serde::Deserialize)]
pub struct ObjectPath {
    group: String,
    version: String,
    namespace: String,
    plural: String,
    name: String,
}

/// Path parameters of a list across namespaces.
#[derive(serde::Deserialize)]
pub struct AllNamespacesPath {
    group: String,
    version: String,
    plural: String,
}

pub fn kind_of(group: &str, version: &str, plural: &str) -> Result<&'static Kind, ControlError> {
    kinds::by_path(group, version, plural).ok_or_else(|| ControlError::NotFound {
        kind: "resource type",
        namespace: format!("{group}/{version}"),
        name: plural.to_owned(),
    })
}

impl ObjectPath {
    pub fn key(&self) -> Result<(&'static Kind, ObjectKey), ControlError> {
        let kind = kind_of(&self.group, &self.version, &self.plural)?;
        Ok((kind, ObjectKey::new(kind, &self.namespace, &self.name)))
    }
}

fn list_response(kind: &Kind, items: Vec<serde_json::Value>) -> Response {
    Json(json!({
        "apiVersion": kind.api_version(),
        "kind": format!("{}List", kind.kind),
        "metadata": {},
        "items": items,
    }))
    .into_response()
}

pub async fn list(
    State(state): State<ApiState>,
    Path(path): Path<CollectionPath>,
) -> Result<Response, ControlError> {
    let kind = kind_of(&path.group, &path.version, &path.plural)?;
    let items = state
        .control
        .read()
        .await
        .list(kind, Some(&path.namespace))
        .await;
    Ok(list_response(kind, items))
}

pub async fn list_all_namespaces(
    State(state): State<ApiState>,
    Path(path): Path<AllNamespacesPath>,
) -> Result<Response, ControlError> {
    let kind = kind_of(&path.group, &path.version, &path.plural)?;
    let items = state.control.read().await.list(kind, None).await;
    Ok(list_response(kind, items))
}

pub async fn get(
    State(state): State<ApiState>,
    Path(path): Path<ObjectPath>,
) -> Result<Response, ControlError> {
    let (_, key) = path.key()?;
    let object = state.control.read().await.get(&key).await?;
    Ok(Json(object).into_response())
}

pub async fn create(
    State(state): State<ApiState>,
    Path(path): Path<CollectionPath>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ControlError> {
    let kind = kind_of(&path.group, &path.version, &path.plural)?;
    let resource = parse_body(kind, &path.namespace, None, &headers, &body)?;
    let mut control = state.control.write().await;
    let created = control.create(resource).await?;
    let object = control.get(&ObjectKey::of(&created)).await?;
    Ok((StatusCode::CREATED, Json(object)).into_response())
}

pub async fn replace(
    State(state): State<ApiState>,
    Path(path): Path<ObjectPath>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ControlError> {
    let (kind, _) = path.key()?;
    let resource = parse_body(kind, &path.namespace, Some(&path.name), &headers, &body)?;
    let mut control = state.control.write().await;
    let replaced = control.replace(resource).await?;
    let object = control.get(&ObjectKey::of(&replaced)).await?;
    Ok(Json(object).into_response())
}

pub async fn delete(
    State(state): State<ApiState>,
    Path(path): Path<ObjectPath>,
) -> Result<Response, ControlError> {
    let (_, key) = path.key()?;
    let deleted = state.control.write().await.delete(&key).await?;
    Ok(Json(deleted.to_json()).into_response())
}

/// A JSON or YAML body holding one object of `kind`, in `namespace` (and named `name` when the
/// path names it). The checks are those of a config file, plus agreement with the path.
pub(super) fn parse_body(
    kind: &Kind,
    namespace: &str,
    name: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Resource, ControlError> {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let essence = herald_broker::json::media_type_essence(content_type);
    if !matches!(
        essence.as_str(),
        "application/json" | "application/yaml" | "application/x-yaml" | "text/yaml"
    ) {
        return Err(ControlError::BadRequest(format!(
            "unsupported content type {content_type:?}: send application/json or application/yaml"
        )));
    }
    let text = std::str::from_utf8(body)
        .map_err(|e| ControlError::BadRequest(format!("the body is not UTF-8: {e}")))?;
    let mut loaded = parse_documents("request body", text).map_err(|error| {
        if error.field.is_none() && error.message.starts_with("invalid YAML") {
            ControlError::BadRequest(error.to_string())
        } else {
            ControlError::Invalid(error)
        }
    })?;
    if loaded.len() != 1 {
        return Err(ControlError::BadRequest(format!(
            "the body must hold exactly one object, not {}",
            loaded.len()
        )));
    }
    let mut resource = loaded.remove(0).resource;
    if resource.kind() != kind {
        return Err(ControlError::BadRequest(format!(
            "the body is a {} {}, but this path serves {} {}",
            resource.kind().api_version(),
            resource.kind().kind,
            kind.api_version(),
            kind.kind
        )));
    }
    let meta = resource.meta_mut();
    match &meta.namespace {
        Some(given) if given != namespace => {
            return Err(ControlError::BadRequest(format!(
                "metadata.namespace is {given:?} but the path is in namespace {namespace:?}"
            )))
        }
        _ => meta.namespace = Some(namespace.to_owned()),
    }
    match (name, &meta.name) {
        (Some(path_name), Some(given)) if given != path_name => {
            return Err(ControlError::BadRequest(format!(
                "metadata.name is {given:?} but the path names {path_name:?}"
            )))
        }
        (Some(path_name), None) => meta.name = Some(path_name.to_owned()),
        (None, None) => {
            return Err(ControlError::Invalid(crate::config::ConfigError {
                origin: "request body".into(),
                resource: Some(kind.kind.to_owned()),
                field: Some("metadata.name".into()),
                message: "required field is missing".into(),
            }))
        }
        _ => {}
    }
    Ok(resource)
}
