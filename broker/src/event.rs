//! The CloudEvent as Herald keeps it: attributes plus the producer's data bytes, untouched.
//!
//! cloudevents-sdk parses JSON data into a `serde_json::Value` and re-serialises it, which
//! changes the bytes a producer sent (whitespace, number forms, key order); Herald promises
//! subscribers the exact bytes, so it keeps its own small model and validates it against the
//! CloudEvents 1.0 (and 0.3) rules itself.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// A context attribute value in the CloudEvents type system as it travels in JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum AttrValue {
    Boolean(bool),
    Integer(i64),
    String(String),
}

/// Read by hand rather than with `#[serde(untagged)]`: an untagged enum buffers the value and
/// tries each variant in turn, formatting an error message for every miss, which made
/// decoding a stored record (done once per delivery) the largest single cost of dispatch.
/// Accepts what the untagged form accepted: a boolean, an integer within `i64`, a string.
impl<'de> Deserialize<'de> for AttrValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(AttrValueVisitor)
    }
}

struct AttrValueVisitor;

impl serde::de::Visitor<'_> for AttrValueVisitor {
    type Value = AttrValue;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a CloudEvents attribute value: a boolean, an integer or a string")
    }

    fn visit_bool<E: serde::de::Error>(self, value: bool) -> Result<AttrValue, E> {
        Ok(AttrValue::Boolean(value))
    }

    fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<AttrValue, E> {
        Ok(AttrValue::Integer(value))
    }

    fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<AttrValue, E> {
        i64::try_from(value)
            .map(AttrValue::Integer)
            .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(value), &self))
    }

    fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<AttrValue, E> {
        Ok(AttrValue::String(value.to_owned()))
    }

    fn visit_string<E: serde::de::Error>(self, value: String) -> Result<AttrValue, E> {
        Ok(AttrValue::String(value))
    }
}

impl AttrValue {
    /// The canonical string form (what binary mode sends in a header).
    pub fn as_text(&self) -> Cow<'_, str> {
        match self {
            AttrValue::String(s) => Cow::Borrowed(s),
            AttrValue::Integer(i) => Cow::Owned(i.to_string()),
            AttrValue::Boolean(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
        }
    }
}

impl From<&str> for AttrValue {
    fn from(value: &str) -> Self {
        AttrValue::String(value.to_owned())
    }
}

impl From<String> for AttrValue {
    fn from(value: String) -> Self {
        AttrValue::String(value)
    }
}

/// A CloudEvent: every context attribute (core ones included) in one map, and the data bytes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CloudEvent {
    attributes: BTreeMap<String, AttrValue>,
    data: Option<Bytes>,
}

/// Why an event is invalid: the attribute at fault and the rule it broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("attribute {attribute:?}: {reason}")]
pub struct InvalidEvent {
    pub attribute: String,
    pub reason: String,
}

impl InvalidEvent {
    pub fn new(attribute: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            attribute: attribute.into(),
            reason: reason.into(),
        }
    }
}

/// Spec versions Herald accepts; 0.3 is delivered unchanged, never upgraded.
pub const SPEC_VERSIONS: [&str; 2] = ["1.0", "0.3"];

impl CloudEvent {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn attributes(&self) -> &BTreeMap<String, AttrValue> {
        &self.attributes
    }

    pub fn attribute(&self, name: &str) -> Option<&AttrValue> {
        self.attributes.get(name)
    }

    /// The string form of an attribute, if present.
    pub fn text(&self, name: &str) -> Option<Cow<'_, str>> {
        self.attributes.get(name).map(AttrValue::as_text)
    }

    pub fn set(&mut self, name: impl Into<String>, value: impl Into<AttrValue>) {
        self.attributes.insert(name.into(), value.into());
    }

    pub fn remove(&mut self, name: &str) -> Option<AttrValue> {
        self.attributes.remove(name)
    }

    pub fn data(&self) -> Option<&Bytes> {
        self.data.as_ref()
    }

    pub fn set_data(&mut self, data: Option<Bytes>) {
        self.data = data;
    }

    pub fn id(&self) -> Cow<'_, str> {
        self.text("id").unwrap_or_default()
    }

    pub fn event_type(&self) -> Cow<'_, str> {
        self.text("type").unwrap_or_default()
    }

    pub fn spec_version(&self) -> Cow<'_, str> {
        self.text("specversion").unwrap_or_default()
    }

    pub fn data_content_type(&self) -> Option<Cow<'_, str>> {
        self.text("datacontenttype")
    }

    pub(crate) fn from_parts(attributes: BTreeMap<String, AttrValue>, data: Option<Bytes>) -> Self {
        Self { attributes, data }
    }

    /// Checks the CloudEvents rules for the event's spec version.
    pub fn validate(&self) -> Result<(), InvalidEvent> {
        let version = match self.attributes.get("specversion") {
            None => {
                return Err(InvalidEvent::new(
                    "specversion",
                    "required attribute is missing",
                ))
            }
            Some(AttrValue::String(v)) if SPEC_VERSIONS.contains(&v.as_str()) => v.as_str(),
            Some(other) => {
                return Err(InvalidEvent::new(
                    "specversion",
                    format!(
                        "unsupported spec version {:?}: expected 1.0 or 0.3",
                        other.as_text()
                    ),
                ))
            }
        };
        for required in ["id", "source", "type"] {
            match self.attributes.get(required) {
                None => return Err(InvalidEvent::new(required, "required attribute is missing")),
                Some(AttrValue::String(s)) if s.is_empty() => {
                    return Err(InvalidEvent::new(required, "must be a non-empty string"))
                }
                _ => {}
            }
        }
        for (name, value) in &self.attributes {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            {
                return Err(InvalidEvent::new(
                    name.clone(),
                    "attribute names must consist of lower-case ASCII letters and digits",
                ));
            }
            if let AttrValue::String(text) = value {
                check_string_characters(name, text)?;
            }
            let is_core = CORE_STRING_ATTRIBUTES.contains(&name.as_str());
            if is_core && !matches!(value, AttrValue::String(_)) {
                return Err(InvalidEvent::new(name.clone(), "must be a string"));
            }
            if let AttrValue::Integer(i) = value {
                if i32::try_from(*i).is_err() {
                    return Err(InvalidEvent::new(
                        name.clone(),
                        "integer out of the 32-bit signed range",
                    ));
                }
            }
            let text = value.as_text();
            match name.as_str() {
                "source" => check_uri_reference(name, &text, false)?,
                "dataschema" if version == "1.0" => check_uri_reference(name, &text, true)?,
                "schemaurl" => check_uri_reference(name, &text, false)?,
                "time" => {
                    chrono::DateTime::parse_from_rfc3339(&text).map_err(|e| {
                        InvalidEvent::new(
                            "time",
                            format!("{text:?} is not an RFC 3339 timestamp: {e}"),
                        )
                    })?;
                }
                "subject" | "datacontenttype" if text.is_empty() => {
                    return Err(InvalidEvent::new(
                        name.clone(),
                        "must not be empty when present",
                    ));
                }
                // A media type is ASCII, and binary mode carries it as the Content-Type
                // header, which must be: refuse what could not be delivered that way.
                "datacontenttype" if !text.bytes().all(|b| (b' '..=b'~').contains(&b)) => {
                    return Err(InvalidEvent::new(
                        name.clone(),
                        format!("{text:?} is not a media type: only printable ASCII is allowed"),
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Core attributes whose type is String (or URI/URI-reference/Timestamp, which travel as strings).
const CORE_STRING_ATTRIBUTES: [&str; 9] = [
    "specversion",
    "id",
    "source",
    "type",
    "subject",
    "time",
    "datacontenttype",
    "dataschema",
    "schemaurl",
];

/// Whether CloudEvents' String type forbids `c`: the control characters U+0000–U+001F and
/// U+007F–U+009F.
fn is_forbidden_in_strings(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}')
}

/// Arbitrary bytes (a Kafka key, a header) as a valid CloudEvents String: invalid UTF-8 and
/// the control characters the String type forbids become U+FFFD, the replacement character.
pub fn lossy_string(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .map(|c| {
            if is_forbidden_in_strings(c) {
                char::REPLACEMENT_CHARACTER
            } else {
                c
            }
        })
        .collect()
}

/// The String type's character rule, on the value as decoded (after percent-decoding in
/// binary mode, after JSON unescaping in the JSON format), for every String-typed attribute
/// (URI, URI-reference and Timestamp values travel as strings too): the one place it is
/// checked for every content mode.
fn check_string_characters(name: &str, text: &str) -> Result<(), InvalidEvent> {
    match text.chars().enumerate().find(|(_, c)| is_forbidden_in_strings(*c)) {
        None => Ok(()),
        Some((position, c)) => Err(InvalidEvent::new(
            name,
            format!(
                "contains the control character U+{:04X} at character {}: CloudEvents strings must not contain U+0000-U+001F or U+007F-U+009F",
                u32::from(c),
                position + 1
            ),
        )),
    }
}

/// URI-reference syntax check (RFC 3986, with the non-ASCII characters of RFC 3987 IRIs, as
/// sdk-go and so Knative accept them): allowed characters, well-formed percent escapes, and a
/// well-formed scheme when one is present (required when `absolute`).
fn check_uri_reference(name: &str, text: &str, absolute: bool) -> Result<(), InvalidEvent> {
    let bad = |why: &str| {
        Err(InvalidEvent::new(
            name,
            format!(
                "{text:?} is not a valid URI{}: {why}",
                if absolute { "" } else { "-reference" }
            ),
        ))
    };
    if text.is_empty() {
        return bad("empty");
    }
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '%' {
            let hex: String = chars.by_ref().take(2).collect();
            if hex.chars().count() < 2 {
                return bad("incomplete percent escape");
            }
            if !hex.chars().all(|h| h.is_ascii_hexdigit()) {
                return bad("invalid percent escape");
            }
            continue;
        }
        let allowed = c.is_ascii_alphanumeric()
            || "-._~:/?#[]@!$&'()*+,;=".contains(c)
            || (!c.is_ascii() && !c.is_control());
        if !allowed {
            return bad(&format!("character {c:?} is not allowed"));
        }
    }
    let before_delim = text.split(['/', '?', '#']).next().unwrap_or_default();
    match before_delim.split_once(':') {
        Some((scheme, _)) => {
            let ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
            if !ok {
                return bad("malformed scheme");
            }
        }
        None if absolute => return bad("a scheme is required"),
        None => {}
    }
    Ok(())
}

impl fmt::Display for CloudEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.id(), self.event_type())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> CloudEvent {
        let mut e = CloudEvent::new();
        e.set("specversion", "1.0");
        e.set("id", "1");
        e.set("source", "/my/source");
        e.set("type", "com.example");
        e
    }

    #[test]
    fn minimal_event_is_valid() {
        minimal().validate().unwrap();
    }

    #[test]
    fn required_attributes() {
        for name in ["specversion", "id", "source", "type"] {
            let mut e = minimal();
            e.remove(name);
            assert_eq!(e.validate().unwrap_err().attribute, name);
        }
    }

    #[test]
    fn attribute_rules() {
        let cases: [(&str, AttrValue); 8] = [
            ("time", "yesterday".into()),
            ("source", "has space".into()),
            ("source", "%zz".into()),
            ("dataschema", "relative/path".into()),
            ("Bad-Name", "x".into()),
            ("subject", "".into()),
            ("myint", AttrValue::Integer(1 << 40)),
            // Found by fuzzing: accepted in structured mode, undeliverable in binary mode.
            ("datacontenttype", "\u{fffd}application/json".into()),
        ];
        for (name, value) in cases {
            let mut e = minimal();
            e.set(name, value.clone());
            let err = e
                .validate()
                .expect_err(&format!("{name}={value:?} must be rejected"));
            assert_eq!(err.attribute, name);
        }
        let mut e = minimal();
        e.set("time", "2024-01-02T03:04:05.123Z");
        e.set("dataschema", "https://example.com/schema");
        e.set("source", "urn:example:x%20y");
        e.validate().unwrap();
        e.set("source", "/interop/münchen/日本");
        e.set("myext", AttrValue::Integer(42));
        e.validate().unwrap();
    }

    #[test]
    fn iri_characters_are_accepted_and_errors_name_the_character() {
        let mut e = minimal();
        e.set("source", "/ü x");
        let err = e.validate().unwrap_err();
        assert!(err.reason.contains("character ' ' is not allowed"), "{err}");
        // A C1 control is refused by the String rule, which names it by code point.
        e.set("source", "/ü\u{85}");
        let err = e.validate().unwrap_err();
        assert!(err.reason.contains("control character U+0085"), "{err}");
        e.set("source", "%C3%zz");
        assert!(e
            .validate()
            .unwrap_err()
            .reason
            .contains("invalid percent escape"));
        e.set("source", "/ab%4");
        assert!(e.validate().unwrap_err().reason.contains("incomplete"));
        e.set("source", "/grüße%20x");
        e.validate().unwrap();
    }

    #[test]
    fn control_characters_are_refused_in_every_string_attribute() {
        for name in ["id", "source", "type", "subject", "myext", "time"] {
            for c in ['\u{0}', '\n', '\u{1f}', '\u{7f}', '\u{85}', '\u{9f}'] {
                let mut e = minimal();
                let value = match name {
                    "time" => format!("2024-01-02T03:04:05Z{c}"),
                    "source" => format!("/a{c}b"),
                    _ => format!("a{c}b"),
                };
                e.set(name, value);
                let err = e.validate().expect_err(&format!("{name} with {c:?}"));
                assert_eq!(err.attribute, name);
                assert!(
                    err.reason
                        .contains(&format!("control character U+{:04X}", u32::from(c))),
                    "{err}"
                );
            }
        }
        // Just outside the forbidden ranges: space, `~`, U+00A0 and beyond.
        let mut e = minimal();
        e.set("myext", "a b~\u{a0}é😀");
        e.set("subject", " ");
        e.validate().unwrap();
    }

    #[test]
    fn lossy_strings_are_valid_strings() {
        assert_eq!(lossy_string(b"customer-1"), "customer-1");
        assert_eq!(
            lossy_string(b"\x00\x00\x01\x7f\xff a\xc2\x85"),
            "\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd} a\u{fffd}"
        );
    }

    #[test]
    fn spec_version_03_is_accepted() {
        let mut e = minimal();
        e.set("specversion", "0.3");
        e.set("schemaurl", "relative/is/fine");
        e.validate().unwrap();
        e.set("specversion", "2.0");
        assert_eq!(e.validate().unwrap_err().attribute, "specversion");
    }

    /// The hand-written reader takes exactly what the untagged enum took.
    #[test]
    fn attribute_values_read_from_json_as_before() {
        let read = |json: &str| serde_json::from_str::<AttrValue>(json).ok();
        assert_eq!(read("true"), Some(AttrValue::Boolean(true)));
        assert_eq!(read("-7"), Some(AttrValue::Integer(-7)));
        assert_eq!(
            read("9223372036854775807"),
            Some(AttrValue::Integer(i64::MAX))
        );
        assert_eq!(read("9223372036854775808"), None);
        assert_eq!(
            read(r#""a\u00fcb""#),
            Some(AttrValue::String("a\u{fc}b".into()))
        );
        for refused in ["1.5", "null", "[]", "{}"] {
            assert_eq!(read(refused), None, "{refused}");
        }
    }
}
