//! JSON Schemas of event data, compiled once when an EventType is loaded and checked per event.

use std::borrow::Cow;

use crate::event::CloudEvent;

/// Largest schema document accepted (inline or read from a URL), in bytes.
pub const MAX_SCHEMA_BYTES: usize = 256 * 1024;

/// A schema that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("the schema has {0} bytes, more than the limit of {MAX_SCHEMA_BYTES}")]
    TooLarge(usize),
    #[error("the schema is not JSON: {0}")]
    NotJson(String),
    #[error("the schema is not a valid draft 2020-12 JSON Schema: {0}")]
    Invalid(String),
}

/// Why an event's data does not follow its type's schema.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("data at {pointer:?} violates the schema's {rule:?} rule: {message}")]
pub struct SchemaViolation {
    /// JSON pointer into the data (`""` is the data itself).
    pub pointer: String,
    /// The schema keyword that failed (`required`, `type`, `minimum`, ...).
    pub rule: String,
    pub message: String,
}

/// A compiled draft 2020-12 schema. Remote `$ref`s are refused at compile time: this build of
/// the validator has no network or file access, so nothing is fetched per event.
#[derive(Debug)]
pub struct DataSchema {
    validator: jsonschema::Validator,
}

impl DataSchema {
    /// Compiles a schema document (JSON text).
    pub fn compile(text: &str) -> Result<Self, SchemaError> {
        if text.len() > MAX_SCHEMA_BYTES {
            return Err(SchemaError::TooLarge(text.len()));
        }
        let document: serde_json::Value =
            serde_json::from_str(text).map_err(|e| SchemaError::NotJson(e.to_string()))?;
        Self::compile_value(&document)
    }

    pub fn compile_value(document: &serde_json::Value) -> Result<Self, SchemaError> {
        let validator = jsonschema::draft202012::new(document)
            .map_err(|e| SchemaError::Invalid(e.to_string()))?;
        Ok(Self { validator })
    }

    /// Checks the event's data. Data must be JSON (no `datacontenttype`, `application/json`,
    /// `text/json` or a `+json` type); an event without data is checked as JSON `null`.
    pub fn check(&self, event: &CloudEvent) -> Result<(), SchemaViolation> {
        let data: Cow<'_, serde_json::Value> = match event.data() {
            None => Cow::Owned(serde_json::Value::Null),
            Some(bytes) => {
                if let Some(content_type) = event.data_content_type() {
                    if !is_json(&content_type) {
                        return Err(SchemaViolation {
                            pointer: String::new(),
                            rule: "datacontenttype".into(),
                            message: format!("the schema applies to JSON data, not {content_type}"),
                        });
                    }
                }
                match serde_json::from_slice(bytes) {
                    Ok(value) => Cow::Owned(value),
                    Err(error) => {
                        return Err(SchemaViolation {
                            pointer: String::new(),
                            rule: "json".into(),
                            message: format!("the data is not JSON: {error}"),
                        })
                    }
                }
            }
        };
        self.validator
            .validate(&data)
            .map_err(|error| SchemaViolation {
                pointer: error.instance_path().as_str().to_owned(),
                rule: error.kind().keyword().to_owned(),
                message: error.to_string(),
            })
    }
}

fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || essence == "text/json" || essence.ends_with("+json")
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn event(data: &str, content_type: Option<&str>) -> CloudEvent {
        let mut event = CloudEvent::new();
        event.set("specversion", "1.0");
        event.set("id", "1");
        event.set("source", "/s");
        event.set("type", "t");
        if let Some(content_type) = content_type {
            event.set("datacontenttype", content_type);
        }
        event.set_data(Some(Bytes::copy_from_slice(data.as_bytes())));
        event
    }

    const ORDER: &str = r#"{"type":"object","required":["id","items"],
        "properties":{"id":{"type":"string"},"items":{"type":"array","items":{"type":"object",
        "properties":{"qty":{"type":"integer","minimum":1}}}}}}"#;

    #[test]
    fn good_data_passes_and_bad_data_names_pointer_and_rule() {
        let schema = DataSchema::compile(ORDER).unwrap();
        assert!(schema
            .check(&event(r#"{"id":"a","items":[{"qty":2}]}"#, None))
            .is_ok());
        let violation = schema
            .check(&event(
                r#"{"id":"a","items":[{"qty":2},{"qty":0}]}"#,
                Some("application/json"),
            ))
            .unwrap_err();
        assert_eq!(violation.pointer, "/items/1/qty");
        assert_eq!(violation.rule, "minimum");
        let violation = schema.check(&event(r#"{"id":"a"}"#, None)).unwrap_err();
        assert_eq!(
            (violation.pointer.as_str(), violation.rule.as_str()),
            ("", "required")
        );
    }

    #[test]
    fn non_json_data_is_a_violation() {
        let schema = DataSchema::compile(ORDER).unwrap();
        assert_eq!(
            schema
                .check(&event("<a/>", Some("application/xml")))
                .unwrap_err()
                .rule,
            "datacontenttype"
        );
        assert_eq!(schema.check(&event("{", None)).unwrap_err().rule, "json");
        assert!(schema
            .check(&event(
                r#"{"id":"a","items":[]}"#,
                Some("application/vnd.x+json; charset=utf-8")
            ))
            .is_ok());
    }

    #[test]
    fn bad_schemas_are_refused_when_compiled() {
        assert!(matches!(
            DataSchema::compile("{"),
            Err(SchemaError::NotJson(_))
        ));
        assert!(matches!(
            DataSchema::compile(r#"{"type": 5}"#),
            Err(SchemaError::Invalid(_))
        ));
        // Nothing is fetched: a remote reference fails at compile time.
        assert!(matches!(
            DataSchema::compile(r#"{"$ref": "https://example.invalid/s.json"}"#),
            Err(SchemaError::Invalid(_))
        ));
        let huge = format!("{{\"description\": \"{}\"}}", "x".repeat(MAX_SCHEMA_BYTES));
        assert!(matches!(
            DataSchema::compile(&huge),
            Err(SchemaError::TooLarge(_))
        ));
    }
}
