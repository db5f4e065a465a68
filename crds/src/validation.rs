//! Field-level validation of resources, run before anything starts.
//!
//! Every error carries the JSON path of the offending field so that file loading, the admin
//! API and (later) admission can all say exactly what was wrong and where.

use std::fmt;

use crate::duration::parse_iso8601;
use crate::{DeliverySpec, Destination, TriggerSpec};

/// One invalid field: its path (e.g. `spec.delivery.backoffDelay`) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl FieldError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl std::error::Error for FieldError {}

/// Whether `name` is a valid CloudEvents attribute name as Knative filters require it:
/// `^[a-z][a-z0-9]*$`.
pub fn is_filter_attribute_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z')) && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9'))
}

/// Checks that a reference to a Kubernetes kind at `path` gives its `apiVersion` and `kind`.
pub fn validate_api_version_kind(
    path: &str,
    api_version: &str,
    kind: &str,
) -> Result<(), FieldError> {
    for (field, value) in [("apiVersion", api_version), ("kind", kind)] {
        if value.trim().is_empty() {
            return Err(FieldError::new(
                format!("{path}.{field}"),
                "must not be empty",
            ));
        }
    }
    Ok(())
}

/// Longest DNS-1123 subdomain: Kubernetes' limit on `metadata.name`.
pub const MAX_NAME_LEN: usize = 253;
/// Longest DNS-1123 label: Kubernetes' limit on `metadata.namespace`.
pub const MAX_NAMESPACE_LEN: usize = 63;

/// Whether `text` is a DNS-1123 subdomain, as Kubernetes object names are: at most 253
/// characters, dot-separated labels of lower-case letters, digits and `-`, each starting and
/// ending with a letter or digit (a label's own 63-character limit does not apply inside a
/// subdomain, as in Kubernetes' `IsDNS1123Subdomain`).
pub fn is_dns1123_subdomain(text: &str) -> bool {
    text.len() <= MAX_NAME_LEN && text.split('.').all(has_label_characters)
}

/// Whether `text` is a DNS-1123 label, as Kubernetes namespaces are: at most 63 lower-case
/// letters, digits and `-`, starting and ending with a letter or digit.
pub fn is_dns1123_label(text: &str) -> bool {
    text.len() <= MAX_NAMESPACE_LEN && has_label_characters(text)
}

/// A DNS-1123 label's characters, whatever its length.
fn has_label_characters(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-'))
        && !text.starts_with('-')
        && !text.ends_with('-')
}

/// Validates a Kubernetes object name: a DNS-1123 subdomain ([`is_dns1123_subdomain`]).
pub fn validate_name(path: &str, name: &str) -> Result<(), FieldError> {
    if is_dns1123_subdomain(name) {
        Ok(())
    } else {
        Err(FieldError::new(
            path,
            format!("{name:?} is not a valid name: a DNS-1123 subdomain of at most {MAX_NAME_LEN} characters, dot-separated parts of lower-case letters, digits and '-', each starting and ending with a letter or digit"),
        ))
    }
}

/// Validates a namespace: a DNS-1123 label ([`is_dns1123_label`]).
pub fn validate_namespace(path: &str, namespace: &str) -> Result<(), FieldError> {
    if is_dns1123_label(namespace) {
        Ok(())
    } else {
        Err(FieldError::new(
            path,
            format!("{namespace:?} is not a valid namespace: a DNS-1123 label of at most {MAX_NAMESPACE_LEN} characters, lower-case letters, digits and '-', starting and ending with a letter or digit"),
        ))
    }
}

/// The longest Destination `audience`, in characters: an audience is a token's `aud` claim,
/// sent with every request to the destination (Knative sets no bound; Herald's token
/// endpoint takes audiences of at most this length too).
pub const MAX_AUDIENCE_CHARS: usize = 512;

/// A Destination's `audience`: at most [`MAX_AUDIENCE_CHARS`] characters, no control
/// characters (it travels in a JWT and in logs). Empty means none, as in Knative.
pub fn validate_audience(path: &str, audience: &str) -> Result<(), FieldError> {
    let chars = audience.chars().count();
    if chars > MAX_AUDIENCE_CHARS {
        return Err(FieldError::new(
            path,
            format!(
                "the audience is {chars} characters long; at most {MAX_AUDIENCE_CHARS} are allowed"
            ),
        ));
    }
    if let Some(c) = audience.chars().find(|c| c.is_control()) {
        return Err(FieldError::new(
            path,
            format!("the audience must not contain control characters (found {c:?})"),
        ));
    }
    Ok(())
}

pub fn validate_destination(path: &str, dest: &Destination) -> Result<(), FieldError> {
    if let Some(audience) = &dest.audience {
        validate_audience(&format!("{path}.audience"), audience)?;
    }
    match (&dest.reference, &dest.uri) {
        (None, None) => Err(FieldError::new(path, "one of ref or uri is required")),
        (Some(reference), _) => {
            if crate::destination::OwnAddressable::of(reference).is_none() {
                return Err(FieldError::new(
                    format!("{path}.ref"),
                    format!(
                        "{} {} cannot be resolved outside Kubernetes: only references to Herald's own Brokers, Channels, InMemoryChannels, KafkaChannels, Sequences, Parallels, EventTransforms and RequestReplies are supported; use uri",
                        reference.api_version, reference.kind
                    ),
                ));
            }
            validate_name(&format!("{path}.ref.name"), &reference.name)?;
            if let Some(namespace) = &reference.namespace {
                validate_namespace(&format!("{path}.ref.namespace"), namespace)?;
            }
            if let Some(uri) = &dest.uri {
                if !uri.starts_with('/') {
                    return Err(FieldError::new(
                        format!("{path}.uri"),
                        "with ref, uri must be a path relative to the referenced address (starting with '/')",
                    ));
                }
            }
            Ok(())
        }
        (None, Some(uri)) => validate_absolute_http_uri(&format!("{path}.uri"), uri),
    }
}

fn validate_absolute_http_uri(path: &str, uri: &str) -> Result<(), FieldError> {
    let rest = uri
        .strip_prefix("http://")
        .or_else(|| uri.strip_prefix("https://"))
        .ok_or_else(|| {
            FieldError::new(
                path,
                format!("{uri:?} must be an absolute http:// or https:// URL"),
            )
        })?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || uri.contains(char::is_whitespace) {
        return Err(FieldError::new(path, format!("{uri:?} is not a valid URL")));
    }
    Ok(())
}

pub fn validate_delivery(path: &str, delivery: &DeliverySpec) -> Result<(), FieldError> {
    if let Some(dls) = &delivery.dead_letter_sink {
        validate_destination(&format!("{path}.deadLetterSink"), dls)?;
    }
    if let Some(retry) = delivery.retry {
        if retry < 0 {
            return Err(FieldError::new(
                format!("{path}.retry"),
                format!("must be >= 0, got {retry}"),
            ));
        }
    }
    for (field, value) in [
        ("backoffDelay", &delivery.backoff_delay),
        ("timeout", &delivery.timeout),
        ("retryAfterMax", &delivery.retry_after_max),
    ] {
        if let Some(text) = value {
            let parsed =
                parse_iso8601(text).map_err(|e| FieldError::new(format!("{path}.{field}"), e))?;
            if field == "timeout" && parsed.is_zero() {
                return Err(FieldError::new(
                    format!("{path}.timeout"),
                    "must be greater than zero",
                ));
            }
        }
    }
    Ok(())
}

/// Validates a trigger's spec on its own (cross-resource checks, like the broker existing, are
/// the loader's job).
pub fn validate_trigger_spec(spec: &TriggerSpec) -> Result<(), FieldError> {
    validate_name("spec.broker", &spec.broker)?;
    if let Some(filter) = &spec.filter {
        for name in filter.attributes.keys() {
            if !is_filter_attribute_name(name) {
                return Err(FieldError::new(
                    format!("spec.filter.attributes.{name}"),
                    format!("invalid attribute name {name:?}: must match ^[a-z][a-z0-9]*$"),
                ));
            }
        }
    }
    validate_destination("spec.subscriber", &spec.subscriber)?;
    if let Some(delivery) = &spec.delivery {
        validate_delivery("spec.delivery", delivery)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns1123_subdomains() {
        for good in ["a", "a-b", "a.b", "a1.b-2.c", "0", &"a".repeat(253)] {
            assert!(validate_name("metadata.name", good).is_ok(), "{good:?}");
        }
        for bad in [
            "",
            "a..b",
            "a.-b",
            "a-.b",
            ".a",
            "a.",
            "-a",
            "a-",
            "A",
            "a_b",
            "a b",
            "ü",
            &"a".repeat(254),
        ] {
            let error = validate_name("metadata.name", bad).unwrap_err();
            assert_eq!(error.path, "metadata.name", "{bad:?}");
        }
    }

    #[test]
    fn namespaces_are_dns1123_labels() {
        for good in ["default", "a-b", "x", &"n".repeat(63)] {
            assert!(
                validate_namespace("metadata.namespace", good).is_ok(),
                "{good:?}"
            );
        }
        for bad in ["", "a.b", "-a", "a-", "A", &"n".repeat(64)] {
            let error = validate_namespace("metadata.namespace", bad).unwrap_err();
            assert!(error.message.contains("DNS-1123 label"), "{bad:?}: {error}");
        }
    }

    #[test]
    fn attribute_names() {
        assert!(is_filter_attribute_name("type"));
        assert!(is_filter_attribute_name("myext1"));
        for bad in ["", "Type", "1abc", "my-ext", "my_ext"] {
            assert!(!is_filter_attribute_name(bad), "{bad}");
        }
    }

    #[test]
    fn delivery_paths_name_the_field() {
        let delivery = DeliverySpec {
            backoff_delay: Some("5s".into()),
            ..Default::default()
        };
        let err = validate_delivery("spec.delivery", &delivery).unwrap_err();
        assert_eq!(err.path, "spec.delivery.backoffDelay");
        let delivery = DeliverySpec {
            retry: Some(-1),
            ..Default::default()
        };
        assert_eq!(
            validate_delivery("spec.delivery", &delivery)
                .unwrap_err()
                .path,
            "spec.delivery.retry"
        );
    }

    #[test]
    fn destinations() {
        let uri = |u: &str| Destination {
            uri: Some(u.into()),
            ..Default::default()
        };
        assert!(validate_destination("d", &uri("http://localhost:8080/x")).is_ok());
        assert!(validate_destination("d", &uri("localhost:8080")).is_err());
        assert!(validate_destination("d", &Destination::default()).is_err());
    }

    #[test]
    fn audiences_are_bounded_and_printable() {
        let with = |audience: String| Destination {
            uri: Some("http://localhost:8080/x".into()),
            audience: Some(audience),
            ..Default::default()
        };
        for ok in [
            String::new(),
            "a".repeat(MAX_AUDIENCE_CHARS),
            "é".repeat(MAX_AUDIENCE_CHARS),
        ] {
            assert!(validate_destination("d", &with(ok)).is_ok());
        }
        let long =
            validate_destination("d", &with("a".repeat(MAX_AUDIENCE_CHARS + 1))).unwrap_err();
        assert_eq!(long.path, "d.audience");
        assert!(long.message.contains("at most 512"), "{}", long.message);
        let control = validate_destination("d", &with("aud\nience".into())).unwrap_err();
        assert_eq!(control.path, "d.audience");
        assert!(control.message.contains("control"), "{}", control.message);
    }
}
