//! A small client of Herald's admin API for tests: status codes and JSON bodies as they are.

use reqwest::Method;
use serde_json::Value;

pub const TRIGGERS: &str = "/apis/eventing.knative.dev/v1/namespaces/default/triggers";
pub const BROKERS: &str = "/apis/eventing.knative.dev/v1/namespaces/default/brokers";

pub struct AdminClient {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl AdminClient {
    pub fn new(base: &str) -> Self {
        Self {
            base: base.to_owned(),
            token: None,
            http: reqwest::Client::new(),
        }
    }

    pub fn with_token(mut self, token: &str) -> Self {
        self.token = Some(token.to_owned());
        self
    }

    /// Sends a request; `body` is `(content type, text)`.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, &str)>,
    ) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some((content_type, text)) = body {
            request = request
                .header("content-type", content_type)
                .body(text.to_owned());
        }
        let response = request.send().await.expect("admin API reachable");
        let status = response.status().as_u16();
        #[allow(
            clippy::disallowed_methods,
            reason = "a test reading its own server's answer"
        )]
        let bytes = response.bytes().await.unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call(Method::GET, path, None).await
    }

    pub async fn post_yaml(&self, path: &str, yaml: &str) -> (u16, Value) {
        self.call(Method::POST, path, Some(("application/yaml", yaml)))
            .await
    }

    pub async fn put_json(&self, path: &str, object: &Value) -> (u16, Value) {
        self.call(
            Method::PUT,
            path,
            Some(("application/json", &object.to_string())),
        )
        .await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.call(Method::DELETE, path, None).await
    }

    /// Creates an object and asserts 201.
    pub async fn create(&self, path: &str, yaml: &str) -> Value {
        let (status, body) = self.post_yaml(path, yaml).await;
        assert_eq!(status, 201, "create at {path} answered {body}");
        body
    }
}

/// The message of a Kubernetes `Status` answer.
pub fn message(status: &Value) -> &str {
    status["message"].as_str().unwrap_or_default()
}
