//! KafkaSource `spec.net` (Knative's SASL and TLS settings) as librdkafka settings:
//! `security.protocol` from which of SASL and TLS are enabled, `sasl.mechanisms` from the
//! `type` value (default `PLAIN`), PEM values as `ssl.*.pem`. Every value comes from a key of a
//! Secret in the source's namespace, read through a [`SecretReader`].

use herald_crds::validation::validate_name;
use herald_crds::{FieldError, KafkaNetSpec, SecretKeySelector, SecretValueFromSource};

use crate::secrets::{SecretError, SecretKeyRef, SecretReader};

/// The SASL mechanisms Herald's Kafka client speaks (Knative's `type` values but OAUTHBEARER).
pub const SASL_MECHANISMS: [&str; 3] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

/// One value `spec.net` asks for, by field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Value {
    User,
    Password,
    Mechanism,
    CaCert,
    Cert,
    Key,
}

impl Value {
    fn path(self) -> &'static str {
        match self {
            Value::User => "spec.net.sasl.user.secretKeyRef",
            Value::Password => "spec.net.sasl.password.secretKeyRef",
            Value::Mechanism => "spec.net.sasl.type.secretKeyRef",
            Value::CaCert => "spec.net.tls.caCert.secretKeyRef",
            Value::Cert => "spec.net.tls.cert.secretKeyRef",
            Value::Key => "spec.net.tls.key.secretKeyRef",
        }
    }

    /// The librdkafka setting it becomes (the mechanism is checked first).
    fn setting(self) -> &'static str {
        match self {
            Value::User => "sasl.username",
            Value::Password => "sasl.password",
            Value::Mechanism => "sasl.mechanisms",
            Value::CaCert => "ssl.ca.pem",
            Value::Cert => "ssl.certificate.pem",
            Value::Key => "ssl.key.pem",
        }
    }

    /// Short values typed by hand: a trailing line break (from `echo` into a file) is cut.
    fn is_short_text(self) -> bool {
        matches!(self, Value::User | Value::Password | Value::Mechanism)
    }
}

fn selector(from: &Option<SecretValueFromSource>) -> Option<&SecretKeySelector> {
    from.as_ref()?.secret_key_ref.as_ref()
}

/// The values the enabled parts of `net` ask for. Disabled parts are ignored, as by Knative.
fn wanted(net: &KafkaNetSpec) -> Vec<(Value, &SecretKeySelector)> {
    let mut wanted = Vec::new();
    if let Some(sasl) = net.sasl.as_ref().filter(|s| s.enable) {
        for (value, from) in [
            (Value::User, &sasl.user),
            (Value::Password, &sasl.password),
            (Value::Mechanism, &sasl.mechanism),
        ] {
            if let Some(selector) = selector(from) {
                wanted.push((value, selector));
            }
        }
    }
    if let Some(tls) = net.tls.as_ref().filter(|t| t.enable) {
        for (value, from) in [
            (Value::CaCert, &tls.ca_cert),
            (Value::Cert, &tls.cert),
            (Value::Key, &tls.key),
        ] {
            if let Some(selector) = selector(from) {
                wanted.push((value, selector));
            }
        }
    }
    wanted
}

/// Whether `key` can be a Secret's key (Kubernetes' rule): letters, digits, `-`, `_`, `.`,
/// at most 253 characters, not `.` or `..`.
fn is_secret_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key != "."
        && key != ".."
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Checks `spec.net` without reading any Secret: what SASL and TLS need is referenced, and
/// every reference names a Secret and a key.
pub fn validate(net: &KafkaNetSpec) -> Result<(), FieldError> {
    if let Some(sasl) = net.sasl.as_ref().filter(|s| s.enable) {
        for (field, set) in [
            ("spec.net.sasl.roleARN", sasl.role_arn.is_some()),
            ("spec.net.sasl.tokenProvider", sasl.token_provider.is_some()),
        ] {
            if set {
                return Err(FieldError::new(
                    field,
                    "SASL OAUTHBEARER (roleARN, tokenProvider) is not supported: use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
                ));
            }
        }
        for (field, from) in [
            ("spec.net.sasl.user", &sasl.user),
            ("spec.net.sasl.password", &sasl.password),
        ] {
            if selector(from).is_none() {
                return Err(FieldError::new(
                    format!("{field}.secretKeyRef"),
                    "SASL is enabled: name the Secret and key that hold it",
                ));
            }
        }
    }
    if let Some(tls) = net.tls.as_ref().filter(|t| t.enable) {
        if selector(&tls.cert).is_some() != selector(&tls.key).is_some() {
            return Err(FieldError::new(
                "spec.net.tls",
                "a client certificate needs its key and a key its certificate: give both cert and key, or neither",
            ));
        }
    }
    for (value, selector) in wanted(net) {
        validate_name(&format!("{}.name", value.path()), &selector.name)?;
        if !is_secret_key(&selector.key) {
            return Err(FieldError::new(
                format!("{}.key", value.path()),
                format!(
                    "{:?} is not a Secret key: letters, digits, '-', '_' and '.', at most 253 characters",
                    selector.key
                ),
            ));
        }
    }
    Ok(())
}

/// The librdkafka settings of `net` for a source in `namespace`, its values read through
/// `secrets`. Errors name the field and the Secret's key, never a value.
pub async fn client_settings(
    namespace: &str,
    net: &KafkaNetSpec,
    secrets: &dyn SecretReader,
) -> Result<Vec<(&'static str, String)>, FieldError> {
    validate(net)?;
    let sasl = net.sasl.as_ref().is_some_and(|s| s.enable);
    let tls = net.tls.as_ref().is_some_and(|t| t.enable);
    let protocol = match (sasl, tls) {
        (false, false) => "PLAINTEXT",
        (true, false) => "SASL_PLAINTEXT",
        (false, true) => "SSL",
        (true, true) => "SASL_SSL",
    };
    let mut settings = vec![("security.protocol", protocol.to_owned())];
    let mut mechanism = sasl.then(|| "PLAIN".to_owned());
    for (value, selector) in wanted(net) {
        let reference = SecretKeyRef {
            namespace: namespace.to_owned(),
            name: selector.name.clone(),
            key: selector.key.clone(),
        };
        let bytes = match secrets.read(&reference).await {
            Ok(bytes) => bytes,
            // Knative's `optional`: a missing Secret or key leaves the value unset.
            Err(SecretError::NotFound { .. }) if selector.optional == Some(true) => {
                if matches!(value, Value::User | Value::Password) {
                    return Err(FieldError::new(
                        value.path(),
                        format!("{reference} does not exist: SASL needs it even when optional"),
                    ));
                }
                continue;
            }
            Err(error) => return Err(FieldError::new(value.path(), error.to_string())),
        };
        let Ok(mut text) = String::from_utf8(bytes) else {
            return Err(FieldError::new(
                value.path(),
                format!("the value of {reference} is not UTF-8 text"),
            ));
        };
        if value.is_short_text() {
            let trimmed = text.trim_end_matches(['\r', '\n']).len();
            text.truncate(trimmed);
        }
        if value == Value::Mechanism {
            let known = SASL_MECHANISMS
                .iter()
                .find(|m| m.eq_ignore_ascii_case(text.trim()));
            match known {
                Some(known) => mechanism = Some((*known).to_owned()),
                // The value is not shown: it comes from a Secret.
                None => {
                    return Err(FieldError::new(
                        value.path(),
                        format!(
                            "{reference} does not hold a SASL mechanism Herald supports: {}",
                            SASL_MECHANISMS.join(", ")
                        ),
                    ))
                }
            }
            continue;
        }
        settings.push((value.setting(), text));
    }
    if let Some(mechanism) = mechanism {
        settings.push((Value::Mechanism.setting(), mechanism));
    }
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// Secrets in memory: `name/key` → value.
    struct Memory(HashMap<String, &'static str>);

    #[async_trait::async_trait]
    impl SecretReader for Memory {
        async fn read(&self, reference: &SecretKeyRef) -> Result<Vec<u8>, SecretError> {
            self.0
                .get(&format!("{}/{}", reference.name, reference.key))
                .map(|v| v.as_bytes().to_vec())
                .ok_or_else(|| SecretError::NotFound {
                    what: reference.to_string(),
                    looked: "memory".into(),
                })
        }
    }

    fn secrets() -> Memory {
        Memory(HashMap::from([
            ("auth/user".to_owned(), "alice\n"),
            ("auth/password".to_owned(), "s3cret"),
            ("auth/scram".to_owned(), "scram-sha-512"),
            ("auth/oauth".to_owned(), "OAUTHBEARER"),
            ("tls/ca.crt".to_owned(), "-----BEGIN CERTIFICATE-----\nCA\n"),
            ("tls/tls.crt".to_owned(), "CERT\n"),
            ("tls/tls.key".to_owned(), "KEY\n"),
        ]))
    }

    fn net(value: serde_json::Value) -> KafkaNetSpec {
        serde_json::from_value(value).unwrap()
    }

    fn r(name: &str, key: &str) -> serde_json::Value {
        serde_json::json!({"secretKeyRef": {"name": name, "key": key}})
    }

    async fn settings(net: &KafkaNetSpec) -> Result<HashMap<&'static str, String>, FieldError> {
        client_settings("ns", net, &secrets())
            .await
            .map(|s| s.into_iter().collect())
    }

    #[tokio::test]
    async fn protocols_and_mechanisms() {
        let plain = settings(&net(serde_json::json!({}))).await.unwrap();
        assert_eq!(
            plain,
            HashMap::from([("security.protocol", "PLAINTEXT".into())])
        );
        let disabled = net(serde_json::json!({
            "sasl": {"enable": false, "user": r("nope", "nope")},
            "tls": {"enable": false}
        }));
        assert_eq!(
            settings(&disabled).await.unwrap()["security.protocol"],
            "PLAINTEXT"
        );
        let sasl = settings(&net(serde_json::json!({
            "sasl": {"enable": true, "user": r("auth", "user"), "password": r("auth", "password")}
        })))
        .await
        .unwrap();
        assert_eq!(sasl["security.protocol"], "SASL_PLAINTEXT");
        assert_eq!(sasl["sasl.mechanisms"], "PLAIN");
        assert_eq!(sasl["sasl.username"], "alice", "the line break is cut");
        assert_eq!(sasl["sasl.password"], "s3cret");
        let both = settings(&net(serde_json::json!({
            "sasl": {"enable": true, "user": r("auth", "user"), "password": r("auth", "password"),
                     "type": r("auth", "scram")},
            "tls": {"enable": true, "caCert": r("tls", "ca.crt"), "cert": r("tls", "tls.crt"),
                    "key": r("tls", "tls.key")}
        })))
        .await
        .unwrap();
        assert_eq!(both["security.protocol"], "SASL_SSL");
        assert_eq!(both["sasl.mechanisms"], "SCRAM-SHA-512");
        assert_eq!(both["ssl.ca.pem"], "-----BEGIN CERTIFICATE-----\nCA\n");
        assert_eq!(
            both["ssl.certificate.pem"], "CERT\n",
            "PEM is kept as it is"
        );
        assert_eq!(both["ssl.key.pem"], "KEY\n");
        let tls = settings(&net(serde_json::json!({"tls": {"enable": true}})))
            .await
            .unwrap();
        assert_eq!(tls, HashMap::from([("security.protocol", "SSL".into())]));
    }

    #[tokio::test]
    async fn errors_name_the_field_and_the_secret_but_no_value() {
        let cases = [
            (
                serde_json::json!({"sasl": {"enable": true, "user": r("auth", "user"),
                                            "password": r("auth", "missing")}}),
                "spec.net.sasl.password.secretKeyRef",
                "key \"missing\" of Secret ns/auth does not exist",
            ),
            (
                serde_json::json!({"sasl": {"enable": true, "user": r("auth", "user")}}),
                "spec.net.sasl.password.secretKeyRef",
                "SASL is enabled",
            ),
            (
                serde_json::json!({"sasl": {"enable": true, "user": r("auth", "user"),
                                            "password": r("auth", "password"), "type": r("auth", "oauth")}}),
                "spec.net.sasl.type.secretKeyRef",
                "does not hold a SASL mechanism Herald supports",
            ),
            (
                serde_json::json!({"sasl": {"enable": true, "user": r("auth", "user"),
                                            "password": r("auth", "password"), "roleARN": r("auth", "x")}}),
                "spec.net.sasl.roleARN",
                "OAUTHBEARER",
            ),
            (
                serde_json::json!({"tls": {"enable": true, "cert": r("tls", "tls.crt")}}),
                "spec.net.tls",
                "give both cert and key",
            ),
            (
                serde_json::json!({"tls": {"enable": true, "caCert": r("Bad_Name", "ca.crt")}}),
                "spec.net.tls.caCert.secretKeyRef.name",
                "not a valid name",
            ),
            (
                serde_json::json!({"tls": {"enable": true, "caCert": r("tls", "../ca")}}),
                "spec.net.tls.caCert.secretKeyRef.key",
                "not a Secret key",
            ),
        ];
        for (spec, path, message) in cases {
            let error = settings(&net(spec.clone())).await.unwrap_err();
            assert_eq!(error.path, path, "{spec}");
            assert!(error.message.contains(message), "{spec}: {error}");
            assert!(!error.message.contains("s3cret"), "{error}");
        }
    }

    #[tokio::test]
    async fn an_optional_value_may_be_missing_but_not_the_credentials() {
        let mut ca = r("tls", "absent");
        ca["secretKeyRef"]["optional"] = true.into();
        let tls = settings(&net(
            serde_json::json!({"tls": {"enable": true, "caCert": ca}}),
        ))
        .await
        .unwrap();
        assert!(!tls.contains_key("ssl.ca.pem"));
        let mut password = r("auth", "absent");
        password["secretKeyRef"]["optional"] = true.into();
        let error = settings(&net(serde_json::json!({
            "sasl": {"enable": true, "user": r("auth", "user"), "password": password}
        })))
        .await
        .unwrap_err();
        assert_eq!(error.path, "spec.net.sasl.password.secretKeyRef");
    }
}
