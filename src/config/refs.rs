//! `ref`s off the cluster: `herald serve --resolve` maps a Kubernetes object (a Service, a
//! Knative Service, any addressable) to the URL it answers at, so Knative's YAML runs
//! unchanged on a laptop. Refs to Brokers, channels, Sequences and Parallels need no
//! mapping: they are Herald's own.

use std::collections::BTreeMap;
use std::fmt;

use herald_crds::validation::{validate_destination, validate_name, validate_namespace};
use herald_crds::{Destination, FieldError, KReference, DEFAULT_NAMESPACE};

use super::Resource;

/// The flag and environment variable users are pointed to.
pub const RESOLVE_FLAG: &str = "--resolve";
pub const RESOLVE_ENV: &str = "HERALD_RESOLVE";

/// Which object a mapping is for: the API group (empty for the core group of `v1`), kind,
/// namespace and name. The version is not part of it: every served version of a kind names
/// the same object, as in Kubernetes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct ObjectRef {
    group: String,
    kind: String,
    namespace: String,
    name: String,
}

impl ObjectRef {
    fn of(reference: &KReference, default_namespace: &str) -> Self {
        let group = match reference.api_version.split_once('/') {
            Some((group, _)) => group,
            None => "",
        };
        Self {
            group: group.to_owned(),
            kind: reference.kind.clone(),
            namespace: reference
                .namespace
                .clone()
                .unwrap_or_else(|| default_namespace.to_owned()),
            name: reference.name.clone(),
        }
    }
}

/// Every `--resolve` mapping.
#[derive(Clone, Debug, Default)]
pub struct RefMap {
    urls: BTreeMap<ObjectRef, String>,
}

/// A `--resolve` value that cannot be read, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{RESOLVE_FLAG} {spec:?}: {message}")]
pub struct RefMapError {
    pub spec: String,
    pub message: String,
}

const SYNTAX: &str =
    "expected API_VERSION/KIND/[NAMESPACE/]NAME=URL, e.g. v1/Service/default/display=http://127.0.0.1:9000";

impl RefMap {
    /// Reads `API_VERSION/KIND/[NAMESPACE/]NAME=URL` mappings; the namespace defaults to
    /// `default`; the same object twice is an error.
    pub fn parse<S: AsRef<str>>(specs: &[S]) -> Result<Self, RefMapError> {
        let mut urls = BTreeMap::new();
        for spec in specs {
            let spec = spec.as_ref().trim();
            let error = |message: String| RefMapError {
                spec: spec.to_owned(),
                message,
            };
            let (object, url) = parse_one(spec).map_err(error)?;
            if let Some(first) = urls.insert(object, url) {
                return Err(error(format!(
                    "the same object is already mapped to {first}"
                )));
            }
        }
        Ok(Self { urls })
    }

    /// Rewrites every non-Broker `ref` of `resource` into the `uri` its mapping gives, a
    /// relative `uri` beside it resolved against that URL as Knative does.
    pub fn resolve(&self, resource: &mut Resource) -> Result<(), FieldError> {
        let (namespace, _) = resource.namespaced_name();
        for (field, destination) in resource.destinations_mut() {
            let Some(reference) = destination.reference.as_ref() else {
                continue;
            };
            if is_herald_own(reference) {
                continue;
            }
            let object = ObjectRef::of(reference, &namespace);
            let Some(base) = self.urls.get(&object) else {
                return Err(FieldError::new(
                    format!("{field}.ref"),
                    format!(
                        "{} {} {}/{} cannot be resolved outside Kubernetes: map it to a URL with {RESOLVE_FLAG} '{}/{}/{}/{}=http://HOST:PORT' (env {RESOLVE_ENV}), or use uri",
                        reference.api_version,
                        reference.kind,
                        object.namespace,
                        object.name,
                        reference.api_version,
                        reference.kind,
                        object.namespace,
                        object.name
                    ),
                ));
            };
            let uri = join(base, destination.uri.as_deref())
                .map_err(|message| FieldError::new(format!("{field}.uri"), message))?;
            *destination = Destination {
                reference: None,
                uri: Some(uri),
                ..destination.clone()
            };
        }
        Ok(())
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

fn parse_one(spec: &str) -> Result<(ObjectRef, String), String> {
    let (object, url) = spec.split_once('=').ok_or_else(|| SYNTAX.to_owned())?;
    let parts: Vec<&str> = object.split('/').collect();
    // The kind is the first part that starts with a capital letter (Kubernetes kinds are
    // CamelCase; groups, versions, namespaces and names are lower-case).
    let kind_at = parts
        .iter()
        .position(|p| p.starts_with(|c: char| c.is_ascii_uppercase()))
        .ok_or_else(|| format!("no kind (a CamelCase word such as Service): {SYNTAX}"))?;
    let group = match &parts[..kind_at] {
        [version] if !version.is_empty() => "",
        [group, version] if !group.is_empty() && !version.is_empty() => group,
        _ => {
            return Err(format!(
                "the API version before the kind must be VERSION or GROUP/VERSION: {SYNTAX}"
            ))
        }
    };
    let (namespace, name) = match &parts[kind_at + 1..] {
        [name] => (DEFAULT_NAMESPACE, *name),
        [namespace, name] => (*namespace, *name),
        _ => return Err(format!("after the kind: [NAMESPACE/]NAME: {SYNTAX}")),
    };
    validate_namespace("namespace", namespace).map_err(|e| e.message)?;
    validate_name("name", name).map_err(|e| e.message)?;
    let kind = parts[kind_at];
    if !kind.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(format!("{kind:?} is not a kind"));
    }
    let url = url.trim();
    validate_destination(
        "url",
        &Destination {
            uri: Some(url.to_owned()),
            ..Destination::default()
        },
    )
    .map_err(|e| e.message)?;
    if kind == "Broker" && group == "eventing.knative.dev" {
        return Err("Broker refs are Herald's own brokers: they need no mapping".into());
    }
    Ok((
        ObjectRef {
            group: group.to_owned(),
            kind: kind.to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        },
        url.to_owned(),
    ))
}

/// Whether a ref names a Broker, channel, Sequence or Parallel (served by Herald itself).
pub fn is_herald_own(reference: &KReference) -> bool {
    herald_crds::OwnAddressable::of(reference).is_some()
}

/// A `uri` beside a `ref`, resolved against the ref's URL as Knative does (RFC 3986
/// reference resolution, Go's `URL.ResolveReference`): `/events` replaces the path,
/// `events` is relative to it. An absolute `uri` beside a `ref` is refused, as Knative does.
pub fn join(base: &str, uri: Option<&str>) -> Result<String, String> {
    let Some(uri) = uri.filter(|u| !u.is_empty()) else {
        return Ok(base.to_owned());
    };
    let base = reqwest::Url::parse(base).map_err(|e| format!("{base:?} is not a URL: {e}"))?;
    if reqwest::Url::parse(uri).is_ok() {
        return Err(format!(
            "{uri:?} is absolute: beside a ref, uri must be relative to the ref's address"
        ));
    }
    base.join(uri)
        .map(String::from)
        .map_err(|e| format!("{uri:?} cannot be resolved against {base}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mappings_are_read_with_clear_errors() {
        let map = RefMap::parse(&[
            "v1/Service/default/display=http://127.0.0.1:9000",
            "serving.knative.dev/v1/Service/shop/orders=http://127.0.0.1:9001/in",
            "v1/Service/bare=http://127.0.0.1:9002",
        ])
        .unwrap();
        let key = |group: &str, kind: &str, ns: &str, name: &str| ObjectRef {
            group: group.into(),
            kind: kind.into(),
            namespace: ns.into(),
            name: name.into(),
        };
        assert_eq!(
            map.urls
                .get(&key("", "Service", "default", "bare"))
                .map(String::as_str),
            Some("http://127.0.0.1:9002")
        );
        assert!(map
            .urls
            .contains_key(&key("serving.knative.dev", "Service", "shop", "orders")));
        for (spec, says) in [
            ("v1/Service/display", "expected"),
            ("v1/service/display=http://h", "no kind"),
            ("a/b/c/Service/x=http://h", "API version"),
            ("/Service/x=http://h", "API version"),
            ("v1/Service=http://h", "[NAMESPACE/]NAME"),
            ("v1/Service/a/b/c=http://h", "[NAMESPACE/]NAME"),
            ("v1/Service/Bad_Name=http://h", "DNS"),
            ("v1/Service/x=localhost:9000", "http"),
            (
                "eventing.knative.dev/v1/Broker/b=http://h",
                "need no mapping",
            ),
        ] {
            let error = RefMap::parse(&[spec]).unwrap_err();
            assert!(error.to_string().contains(says), "{spec}: {error}");
        }
        let twice = RefMap::parse(&["v1/Service/x=http://a", "v1/Service/default/x=http://b"]);
        assert!(twice.unwrap_err().message.contains("already mapped"));
    }

    #[test]
    fn a_relative_uri_is_resolved_as_knative_resolves_it() {
        let join = |base: &str, uri: Option<&str>| join(base, uri).unwrap();
        assert_eq!(join("http://h:1", None), "http://h:1");
        assert_eq!(join("http://h:1", Some("/events")), "http://h:1/events");
        assert_eq!(
            join("http://h:1/in/", Some("events")),
            "http://h:1/in/events"
        );
        assert_eq!(join("http://h:1/in", Some("/events")), "http://h:1/events");
        assert!(super::join("http://h:1", Some("http://other/")).is_err());
    }

    #[test]
    fn refs_resolve_in_every_destination_and_unmapped_ones_say_how() {
        let map = RefMap::parse(&["v1/Service/display=http://127.0.0.1:9000"]).unwrap();
        let text = "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: t}\nspec:\n  broker: b\n  subscriber: {ref: {apiVersion: v1, kind: Service, name: display}, uri: /events}\n  delivery: {deadLetterSink: {ref: {apiVersion: v1, kind: Service, name: display, namespace: default}}}\n";
        let mut resource = crate::config::parse_documents("f", text).unwrap()[0]
            .resource
            .clone();
        map.resolve(&mut resource).unwrap();
        let Resource::Trigger(trigger) = &resource else {
            panic!("a trigger")
        };
        assert_eq!(
            trigger.spec.subscriber.uri.as_deref(),
            Some("http://127.0.0.1:9000/events")
        );
        assert!(trigger.spec.subscriber.reference.is_none());
        let dead_letter = trigger
            .spec
            .delivery
            .as_ref()
            .unwrap()
            .dead_letter_sink
            .as_ref();
        assert_eq!(
            dead_letter.unwrap().uri.as_deref(),
            Some("http://127.0.0.1:9000")
        );
        let mut unmapped = crate::config::parse_documents("f", &text.replace("display", "other"))
            .unwrap()[0]
            .resource
            .clone();
        let error = map.resolve(&mut unmapped).unwrap_err();
        assert_eq!(error.path, "spec.subscriber.ref");
        assert!(
            error
                .message
                .contains("--resolve 'v1/Service/default/other=http://HOST:PORT'"),
            "{}",
            error.message
        );
    }
}
