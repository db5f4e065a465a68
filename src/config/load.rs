//! Files and folders → typed resources.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_yaml_ng::Value;

use super::nesting::{check_flow_nesting, MAX_DOCUMENT_DEPTH};
use super::{ConfigError, Loaded, Resource};

const TOP_LEVEL_FIELDS: [&str; 5] = ["apiVersion", "kind", "metadata", "spec", "status"];
const METADATA_FIELDS: [&str; 10] = [
    "name",
    "namespace",
    "labels",
    "annotations",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "finalizers",
    "ownerReferences",
];

/// Reads every `--config` path: a file, or a folder whose `.yaml`/`.yml`/`.json` files are read
/// in name order.
pub fn load_paths(paths: &[PathBuf]) -> Result<Vec<Loaded>, ConfigError> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let entries = std::fs::read_dir(path).map_err(|e| io_error(path, e))?;
            let mut found: Vec<PathBuf> = entries
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| {
                    p.is_file()
                        && matches!(
                            p.extension().and_then(|e| e.to_str()),
                            Some("yaml" | "yml" | "json")
                        )
                })
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    let mut loaded = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|e| io_error(&file, e))?;
        loaded.extend(documents(
            &file.display().to_string(),
            &text,
            Unserved::Skip,
        )?);
    }
    Ok(loaded)
}

fn io_error(path: &Path, error: std::io::Error) -> ConfigError {
    ConfigError {
        origin: path.display().to_string(),
        resource: None,
        field: None,
        message: format!("cannot read: {error}"),
    }
}

/// What to do with an object of a kind Herald does not serve at all (a Deployment, a
/// Namespace next to the Broker and Trigger in Knative's samples).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Unserved {
    /// Files: leave it out, with one log line naming it.
    Skip,
    /// One object sent on purpose (the admin API, the store): an error.
    Refuse,
}

/// Parses multi-document YAML (JSON is YAML) into resources; documents nest at most
/// [`MAX_DOCUMENT_DEPTH`] levels, and any kind Herald does not serve is an error.
pub fn parse_documents(origin: &str, text: &str) -> Result<Vec<Loaded>, ConfigError> {
    documents(origin, text, Unserved::Refuse)
}

fn documents(origin: &str, text: &str, unserved: Unserved) -> Result<Vec<Loaded>, ConfigError> {
    check_flow_nesting(text).map_err(|too_deep| ConfigError {
        origin: origin.to_owned(),
        resource: None,
        field: None,
        message: format!("invalid YAML: {too_deep}"),
    })?;
    let mut out = Vec::new();
    for (index, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let origin_doc = format!("{origin} (document {})", index + 1);
        let value = Value::deserialize(document).map_err(|e| {
            let mut message = format!("invalid YAML: {e}");
            // serde_yaml_ng's error has no kind to match on, only this text.
            if message.contains("recursion limit exceeded") {
                message.push_str(&format!(
                    " (documents nest at most {MAX_DOCUMENT_DEPTH} levels)"
                ));
            }
            ConfigError {
                origin: origin_doc.clone(),
                resource: None,
                field: None,
                message,
            }
        })?;
        if value.is_null() {
            continue;
        }
        if unserved == Unserved::Skip {
            if let Some(what) = unserved_kind(&value) {
                tracing::warn!("{origin_doc}: skipping {what}: Herald does not serve this kind");
                continue;
            }
        }
        out.push(Loaded {
            origin: origin.to_owned(),
            resource: parse_resource(&origin_doc, value)?,
        });
    }
    Ok(out)
}

/// `apiVersion kind namespace/name` of an object whose kind Herald serves in no version, if
/// it is one. A kind Herald serves in another version is not skipped: that is a mistake
/// worth an error.
fn unserved_kind(value: &Value) -> Option<String> {
    let text = |key: &str| value.get(key).and_then(Value::as_str);
    let (api_version, kind) = (text("apiVersion")?, text("kind")?);
    if crate::kinds::KINDS.iter().any(|k| k.kind == kind) {
        return None;
    }
    let metadata = value.get("metadata");
    let field = |key: &str| metadata.and_then(|m| m.get(key)).and_then(Value::as_str);
    let name = field("name").unwrap_or("<unnamed>");
    Some(match field("namespace") {
        Some(namespace) => format!("{api_version} {kind} {namespace}/{name}"),
        // Cluster-scoped kinds (Namespace, ClusterRole) have no namespace.
        None => format!("{api_version} {kind} {name}"),
    })
}

/// An object as the store writes it: pretty JSON, read back by [`parse_json_document`].
pub fn json_document(resource: &Resource) -> String {
    serde_json::to_string_pretty(&resource.to_json()).unwrap_or_default()
}

/// Parses one JSON object (what the resource store writes) with JSON's own parser, so that
/// anything serde_json wrote reads back exactly: the YAML parser refuses some of it, such as
/// mapping keys over 1,024 characters or C1 control characters (found by fuzzing). The checks
/// are those of [`parse_documents`].
pub fn parse_json_document(origin: &str, text: &str) -> Result<Loaded, ConfigError> {
    let value: Value = serde_json::from_str(text).map_err(|e| ConfigError {
        origin: origin.to_owned(),
        resource: None,
        field: None,
        message: format!("invalid JSON: {e}"),
    })?;
    Ok(Loaded {
        origin: origin.to_owned(),
        resource: parse_resource(origin, value)?,
    })
}

fn parse_resource(origin: &str, mut value: Value) -> Result<Resource, ConfigError> {
    // A Broker may omit `spec` entirely (Knative defaults it).
    if let Value::Mapping(map) = &mut value {
        if map.get("kind").and_then(Value::as_str) == Some("Broker") && !map.contains_key("spec") {
            map.insert(Value::from("spec"), Value::Mapping(Default::default()));
        }
    }
    let error = |resource: Option<String>, field: Option<&str>, message: String| ConfigError {
        origin: origin.to_owned(),
        resource,
        field: field.map(str::to_owned),
        message,
    };
    let Value::Mapping(map) = &value else {
        return Err(error(
            None,
            None,
            "a resource must be a mapping with apiVersion, kind, metadata and spec".into(),
        ));
    };
    let text = |key: &str| map.get(key).and_then(Value::as_str).map(str::to_owned);
    let api_version = text("apiVersion")
        .ok_or_else(|| error(None, Some("apiVersion"), "required field is missing".into()))?;
    let kind = text("kind")
        .ok_or_else(|| error(None, Some("kind"), "required field is missing".into()))?;
    let metadata = map.get("metadata");
    let name = metadata
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("<unnamed>");
    let namespace = metadata
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
        .unwrap_or(herald_crds::DEFAULT_NAMESPACE);
    let ident = Some(format!("{kind} {namespace}/{name}"));
    for key in map.keys() {
        let key = key.as_str().unwrap_or_default();
        if !TOP_LEVEL_FIELDS.contains(&key) {
            return Err(error(ident, Some(key), format!("unknown field `{key}`")));
        }
    }
    if let Some(Value::Mapping(meta)) = metadata {
        for key in meta.keys() {
            let key = key.as_str().unwrap_or_default();
            if !METADATA_FIELDS.contains(&key) {
                return Err(error(
                    ident,
                    Some(&format!("metadata.{key}")),
                    format!("unknown field `{key}`"),
                ));
            }
        }
    }
    let Some(known) = crate::kinds::KINDS
        .into_iter()
        .find(|k| k.kind == kind && k.serves(&api_version))
    else {
        let served: Vec<String> = crate::kinds::KINDS
            .iter()
            .map(|k| format!("{} {}", k.api_version(), k.kind))
            .collect();
        return Err(error(
            ident,
            Some("kind"),
            format!(
                "unsupported resource {api_version} {kind}: Herald serves {}",
                served.join(", ")
            ),
        ));
    };
    Resource::parse(known, value).map_err(|e| {
        let path = e.path().to_string();
        let field = (path != ".").then_some(path);
        error(ident.clone(), field.as_deref(), e.into_inner().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_document_yaml_and_json() {
        let text = "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: b}\n---\n{\"apiVersion\": \"eventing.knative.dev/v1\", \"kind\": \"Trigger\", \"metadata\": {\"name\": \"t\"}, \"spec\": {\"broker\": \"b\", \"subscriber\": {\"uri\": \"http://x\"}}}\n---\n";
        let loaded = parse_documents("f.yaml", text).unwrap();
        assert_eq!(loaded.len(), 2);
        assert!(matches!(loaded[0].resource, Resource::Broker(_)));
        assert!(matches!(loaded[1].resource, Resource::Trigger(_)));
    }

    #[test]
    fn unknown_fields_name_the_path() {
        let text = "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: t}\nspec:\n  broker: b\n  subscriber: {uri: 'http://x'}\n  delivery: {retyr: 3}\n";
        let err = parse_documents("f.yaml", text).unwrap_err();
        assert_eq!(err.resource.as_deref(), Some("Trigger default/t"));
        assert_eq!(err.field.as_deref(), Some("spec.delivery.retyr"));
        assert!(err.message.contains("retyr"), "{err}");
        let text =
            "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: b, nmespace: x}\n";
        assert_eq!(
            parse_documents("f.yaml", text)
                .unwrap_err()
                .field
                .as_deref(),
            Some("metadata.nmespace")
        );
    }

    #[test]
    fn kafka_sources_are_read_in_knatives_version_too() {
        let source = |version: &str| {
            format!("apiVersion: sources.knative.dev/{version}\nkind: KafkaSource\nmetadata: {{name: k}}\nspec: {{bootstrapServers: ['k:9092'], topics: [t], sink: {{uri: 'http://x'}}}}\n")
        };
        for version in ["v1beta1", "v1"] {
            let loaded = parse_documents("f.yaml", &source(version)).unwrap();
            assert!(
                matches!(loaded[0].resource, Resource::KafkaSource(_)),
                "{version}"
            );
        }
        let err = parse_documents("f.yaml", &source("v1alpha1")).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("kind"));
        let trigger = "apiVersion: eventing.knative.dev/v1beta1\nkind: Trigger\nmetadata: {name: t}\nspec: {broker: b, subscriber: {uri: 'http://x'}}\n";
        assert!(parse_documents("f.yaml", trigger).is_err());
    }

    #[test]
    fn files_skip_kinds_herald_does_not_serve() {
        let text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d, namespace: shop, generateName: x}\nspec: {replicas: 1}\n---\napiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: b, namespace: shop}\n";
        let loaded = documents("f.yaml", text, Unserved::Skip).unwrap();
        assert_eq!(loaded.len(), 1);
        assert!(matches!(loaded[0].resource, Resource::Broker(_)));
        assert_eq!(
            unserved_kind(&serde_yaml_ng::from_str(text.split("---").nth(1).unwrap()).unwrap()),
            Some("apps/v1 Deployment shop/d".to_owned())
        );
        // A served kind in a version Herald does not serve is still an error.
        let trigger = "apiVersion: eventing.knative.dev/v1beta1\nkind: Trigger\nmetadata: {name: t}\nspec: {broker: b, subscriber: {uri: 'http://x'}}\n";
        assert!(documents("f.yaml", trigger, Unserved::Skip).is_err());
        // So is an unknown field in a served kind.
        let typo = "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: b}\nspec: {delivry: {}}\n";
        assert!(documents("f.yaml", typo, Unserved::Skip).is_err());
    }

    #[test]
    fn unknown_kinds_are_rejected() {
        let err = parse_documents(
            "f.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
        )
        .unwrap_err();
        assert!(err.message.contains("unsupported resource"), "{err}");
    }

    const TRIGGER: &str = "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: t}\nspec:\n  broker: b\n  subscriber: {uri: 'http://x'}\n";

    /// A trigger whose `spec.filters[0]` is `value`.
    fn trigger_with_filter(value: &str) -> String {
        format!("{TRIGGER}  filters: [{value}]\n")
    }

    #[test]
    fn deep_documents_are_refused_quickly_naming_the_limit() {
        let limit = format!("{MAX_DOCUMENT_DEPTH} levels");
        for levels in [MAX_DOCUMENT_DEPTH + 1, 100_000] {
            for (open, close) in [("[", "]"), ("{not: ", "}"), ("{\"not\": ", "}")] {
                let text = trigger_with_filter(&format!(
                    "{}{{exact: {{type: a}}}}{}",
                    open.repeat(levels),
                    close.repeat(levels)
                ));
                let started = std::time::Instant::now();
                let err = parse_documents("f.yaml", &text).unwrap_err();
                assert!(err.message.contains(&limit), "{open}: {err}");
                assert!(
                    started.elapsed() < std::time::Duration::from_secs(5),
                    "{open} x {levels}: {:?}",
                    started.elapsed()
                );
            }
        }
        // Block collections: serde_yaml_ng's own limit, with the limit named.
        let mut block = String::from("a:\n");
        for level in 1..=MAX_DOCUMENT_DEPTH + 1 {
            block += &format!("{}b:\n", "  ".repeat(level));
        }
        let err = parse_documents("f.yaml", &block).unwrap_err();
        assert!(err.message.contains("recursion limit exceeded"), "{err}");
        assert!(err.message.contains(&limit), "{err}");
    }

    #[test]
    fn aliases_count_their_depth_and_repetitions() {
        // An alias to a deep anchor nests as deeply as the anchor where it is used.
        let deep = format!(
            "{}1{}",
            "[".repeat(MAX_DOCUMENT_DEPTH - 1),
            "]".repeat(MAX_DOCUMENT_DEPTH - 1)
        );
        let text = format!("a: &deep {deep}\nb: [*deep]\n");
        let err = parse_documents("f.yaml", &text).unwrap_err();
        assert!(err.message.contains("recursion limit exceeded"), "{err}");
        // Aliases of aliases ("billion laughs") stop at serde_yaml_ng's repetition limit.
        let mut laughs = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let alias = format!("*a{}", i - 1);
            laughs += &format!("a{i}: &a{i} [{}]\n", vec![alias; 10].join(", "));
        }
        let err = parse_documents("f.yaml", &laughs).unwrap_err();
        assert!(err.message.contains("repetition limit exceeded"), "{err}");
    }

    #[test]
    fn documents_up_to_the_limit_load_on_a_worker_stack() {
        // The admin API and SIGHUP reloads parse on tokio workers (2 MiB stacks). Filters
        // nest as deeply as the document allows here; compiling them refuses it later.
        let levels = MAX_DOCUMENT_DEPTH - 6;
        let text = trigger_with_filter(&format!(
            "{}{{exact: {{type: a}}}}{}",
            "{not: ".repeat(levels),
            "}".repeat(levels)
        ));
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                let loaded = parse_documents("f.yaml", &text).unwrap();
                assert!(matches!(loaded[0].resource, Resource::Trigger(_)));
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
