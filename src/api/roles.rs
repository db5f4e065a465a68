//! `--admin-roles FILE`: who may do what through the admin API with an OIDC token, per
//! namespace, in the manner of Kubernetes RoleBindings but minimal: three roles, each
//! including the one before, bound to a token subject in some namespaces (`*`: all, and the
//! paths that span namespaces). Deny by default: a subject without a binding may do nothing.

use std::path::Path;

use axum::http::Method;
use serde::Deserialize;

/// The audience admin tokens must carry when the file names none.
pub const DEFAULT_AUDIENCE: &str = "herald-admin";
/// The file is read up to this size.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// Most bindings in the file.
pub const MAX_BINDINGS: usize = 1024;
/// The namespace that stands for every namespace.
pub const ALL_NAMESPACES: &str = "*";

/// What a role allows; each includes the ones before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads: lists, objects with status, dead letters, tails, statistics.
    Viewer,
    /// Reads, and creating, replacing and deleting resources.
    Editor,
    /// Also EventPolicies, dead-letter redrives and purges, and (in `*`) minting tokens.
    Admin,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Editor => "editor",
            Role::Admin => "admin",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RolesFile {
    audience: Option<String>,
    bindings: Vec<Binding>,
}

/// One subject's role in some namespaces.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Binding {
    /// The token's `sub`, exactly.
    pub subject: String,
    /// The token's `iss`, when the subject is only meant from one issuer.
    pub issuer: Option<String>,
    pub role: Role,
    /// Namespaces, or `*` for all.
    pub namespaces: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RolesError {
    #[error("--admin-roles {path}: {message}")]
    Invalid { path: String, message: String },
}

/// The bindings of `--admin-roles`.
#[derive(Debug)]
pub struct AdminRoles {
    audience: String,
    bindings: Vec<Binding>,
}

/// What a request needs: a role, in a namespace (`None`: across namespaces, i.e. `*`).
#[derive(Debug, PartialEq, Eq)]
pub struct Needed {
    pub role: Role,
    pub namespace: Option<String>,
    /// The action, for the refusal's message ("create triggers").
    pub action: String,
}

impl AdminRoles {
    /// Reads and checks the file (YAML or JSON): unknown fields, an empty subject or
    /// namespace list, or more than [`MAX_BINDINGS`] bindings are errors.
    pub fn load(path: &Path) -> Result<Self, RolesError> {
        let invalid = |message: String| RolesError::Invalid {
            path: path.display().to_string(),
            message,
        };
        let size = std::fs::metadata(path)
            .map_err(|e| invalid(e.to_string()))?
            .len();
        if size > MAX_FILE_BYTES {
            return Err(invalid(format!("larger than {MAX_FILE_BYTES} bytes")));
        }
        let text = std::fs::read_to_string(path).map_err(|e| invalid(e.to_string()))?;
        Self::parse(&text).map_err(invalid)
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let file: RolesFile = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
        if file.bindings.len() > MAX_BINDINGS {
            return Err(format!("more than {MAX_BINDINGS} bindings"));
        }
        for (index, binding) in file.bindings.iter().enumerate() {
            if binding.subject.trim().is_empty() {
                return Err(format!("bindings[{index}].subject is empty"));
            }
            if binding.namespaces.is_empty() || binding.namespaces.iter().any(|n| n.is_empty()) {
                return Err(format!(
                    "bindings[{index}].namespaces must list namespaces (or \"*\")"
                ));
            }
        }
        let audience = file.audience.unwrap_or_else(|| DEFAULT_AUDIENCE.to_owned());
        if audience.is_empty() {
            return Err("audience is empty".into());
        }
        Ok(Self {
            audience,
            bindings: file.bindings,
        })
    }

    /// The audience admin tokens must carry.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// The highest role of `subject` (from `issuer`) in `namespace` (`None`: across
    /// namespaces, which only `*` bindings cover).
    pub fn role(&self, subject: &str, issuer: &str, namespace: Option<&str>) -> Option<Role> {
        self.bindings
            .iter()
            .filter(|b| b.subject == subject)
            .filter(|b| {
                b.issuer
                    .as_deref()
                    .is_none_or(|i| i.trim_end_matches('/') == issuer.trim_end_matches('/'))
            })
            .filter(|b| {
                b.namespaces
                    .iter()
                    .any(|n| n == ALL_NAMESPACES || Some(n.as_str()) == namespace)
            })
            .map(|b| b.role)
            .max()
    }

    /// Allows the request, or says why not (the message of a 403).
    pub fn authorize(
        &self,
        subject: &str,
        issuer: &str,
        method: &Method,
        path: &str,
    ) -> Result<(), String> {
        let needed = needed(method, path);
        let has = self.role(subject, issuer, needed.namespace.as_deref());
        if has.is_some_and(|role| role >= needed.role) {
            return Ok(());
        }
        let place = match &needed.namespace {
            Some(namespace) => format!("in namespace {namespace:?}"),
            None => "across namespaces (namespace \"*\")".to_owned(),
        };
        let has = match has {
            Some(role) => format!("its role there is {}", role.name()),
            None => "it has no role there".to_owned(),
        };
        Err(format!(
            "{subject:?} may not {} {place}: {has}, and this needs {} (--admin-roles)",
            needed.action,
            needed.role.name()
        ))
    }
}

/// The role a request needs: reads need `viewer`; changes to resources `editor`; changes to
/// EventPolicies and to dead letters (redrive, purge) `admin`; reads across namespaces and
/// anything else (minting tokens) the same in `*`.
pub fn needed(method: &Method, path: &str) -> Needed {
    let change = super::audit::is_change(method);
    let verb = verb(method);
    let read = |what: String| Needed {
        role: Role::Viewer,
        namespace: None,
        action: format!("{verb} {what}"),
    };
    // Segments as the router's path parameters see them (percent-decoded), so that an
    // encoded `eventpolicies` or namespace is judged as what it names.
    let decoded: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(|segment| {
            percent_encoding::percent_decode_str(segment)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let parts: Vec<&str> = decoded.iter().map(String::as_str).collect();
    match parts.as_slice() {
        ["apis", _group, _version, "namespaces", namespace, resource, rest @ ..] => {
            let subresource = rest.get(1).copied();
            let role = match (change, *resource, subresource) {
                (false, _, _) => Role::Viewer,
                (true, "eventpolicies", _) | (true, _, Some("deadletters")) => Role::Admin,
                (true, _, _) => Role::Editor,
            };
            let what = match subresource {
                Some(sub) => format!("{resource}/{sub}"),
                None => (*resource).to_owned(),
            };
            Needed {
                role,
                namespace: Some((*namespace).to_owned()),
                action: format!("{verb} {what}"),
            }
        }
        _ if !change => read(path.to_owned()),
        _ => Needed {
            role: Role::Admin,
            namespace: None,
            action: format!("{verb} {path}"),
        },
    }
}

fn verb(method: &Method) -> &'static str {
    match *method {
        Method::GET | Method::HEAD => "read",
        Method::POST => "create",
        Method::PUT | Method::PATCH => "change",
        Method::DELETE => "delete",
        _ => "call",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "
bindings:
- {subject: viewer, role: viewer, namespaces: [team-a]}
- {subject: editor, role: editor, namespaces: [team-a]}
- {subject: boss, role: admin, namespaces: ['*'], issuer: https://idp.example}
";

    #[test]
    fn roles_per_namespace_deny_by_default() {
        let roles = AdminRoles::parse(FILE).unwrap();
        assert_eq!(roles.audience(), DEFAULT_AUDIENCE);
        let triggers = "/apis/eventing.knative.dev/v1/namespaces/team-a/triggers";
        let other = "/apis/eventing.knative.dev/v1/namespaces/team-b/triggers";
        let allowed = |who: &str, method: Method, path: &str| {
            roles.authorize(who, "https://idp.example/", &method, path)
        };
        assert!(allowed("viewer", Method::GET, triggers).is_ok());
        let refused = allowed("viewer", Method::POST, triggers).unwrap_err();
        assert!(
            refused.contains("may not create triggers in namespace \"team-a\"")
                && refused.contains("its role there is viewer")
                && refused.contains("needs editor"),
            "{refused}"
        );
        assert!(allowed("editor", Method::POST, triggers).is_ok());
        assert!(allowed("editor", Method::DELETE, &format!("{triggers}/t")).is_ok());
        let refused = allowed("editor", Method::POST, other).unwrap_err();
        assert!(refused.contains("has no role there"), "{refused}");
        assert!(allowed("editor", Method::GET, other).is_err());
        // Dead letters and policies need admin; lists across namespaces need `*`.
        assert!(allowed(
            "editor",
            Method::POST,
            &format!("{triggers}/t/deadletters/redrive")
        )
        .is_err());
        assert!(allowed("editor", Method::GET, &format!("{triggers}/t/deadletters")).is_ok());
        assert!(allowed(
            "editor",
            Method::POST,
            "/apis/eventing.knative.dev/v1alpha1/namespaces/team-a/eventpolicies"
        )
        .is_err());
        // Encoded segments are judged as what they name.
        assert!(allowed(
            "editor",
            Method::POST,
            "/apis/eventing.knative.dev/v1alpha1/namespaces/team-a/eventpolic%69es"
        )
        .is_err());
        assert!(allowed(
            "editor",
            Method::POST,
            "/apis/eventing.knative.dev/v1/namespaces/team%2Da/triggers"
        )
        .is_ok());
        assert!(allowed(
            "editor",
            Method::GET,
            "/apis/eventing.knative.dev/v1/triggers"
        )
        .is_err());
        assert!(allowed(
            "boss",
            Method::GET,
            "/apis/eventing.knative.dev/v1/triggers"
        )
        .is_ok());
        assert!(allowed("boss", Method::POST, "/apis/herald.dev/v1/oidc/token").is_ok());
        assert!(allowed("editor", Method::POST, "/apis/herald.dev/v1/oidc/token").is_err());
        // The issuer of a binding must match.
        assert!(roles
            .authorize("boss", "https://other.example", &Method::GET, triggers)
            .is_err());
        assert!(allowed("nobody", Method::GET, triggers).is_err());
    }

    #[test]
    fn bad_files_are_refused() {
        for bad in [
            "bindings: [{subject: a, role: root, namespaces: [x]}]",
            "bindings: [{subject: a, role: viewer, namespaces: []}]",
            "bindings: [{subject: '', role: viewer, namespaces: [x]}]",
            "bindings: [{subject: a, role: viewer, namespaces: [x], extra: 1}]",
            "audience: ''\nbindings: []",
        ] {
            assert!(AdminRoles::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            AdminRoles::parse("audience: mine\nbindings: []")
                .unwrap()
                .audience(),
            "mine"
        );
    }
}
