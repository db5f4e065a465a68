//! The admin API's errors as Kubernetes `Status` objects, so kubectl-minded clients read
//! them as usual.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::ControlError;

impl ControlError {
    fn code_and_reason(&self) -> (StatusCode, &'static str) {
        match self {
            ControlError::NotFound { .. } => (StatusCode::NOT_FOUND, "NotFound"),
            ControlError::AlreadyExists { .. } => (StatusCode::CONFLICT, "AlreadyExists"),
            ControlError::Conflict(_) => (StatusCode::CONFLICT, "Conflict"),
            ControlError::BadRequest(_) => (StatusCode::BAD_REQUEST, "BadRequest"),
            ControlError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "Invalid"),
            ControlError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable"),
            ControlError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
        }
    }
}

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        let (code, reason) = self.code_and_reason();
        let mut status = json!({
            "apiVersion": "v1",
            "kind": "Status",
            "status": "Failure",
            "message": self.to_string(),
            "reason": reason,
            "code": code.as_u16(),
        });
        let details = match &self {
            ControlError::NotFound {
                kind,
                namespace,
                name,
            }
            | ControlError::AlreadyExists {
                kind,
                namespace,
                name,
            } => Some(json!({"kind": kind, "namespace": namespace, "name": name})),
            ControlError::Invalid(error) => Some(json!({
                "name": error.resource,
                "causes": [{
                    "field": error.field,
                    "message": error.message,
                }],
            })),
            _ => None,
        };
        if let Some(details) = details {
            status["details"] = details;
        }
        let mut response = (code, Json(status)).into_response();
        if code == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("1"));
        }
        response
    }
}
