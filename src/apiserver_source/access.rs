//! Whether an ApiServerSource's ServiceAccount may read what the source watches.
//!
//! In the controller Herald reads with its own identity, which can read far more than the
//! team that wrote the source. Like Knative's reconciler (its `SufficientPermissions`
//! condition), Herald first asks the API server whether the source's ServiceAccount may
//! `get`, `list` and `watch` each resource in each namespace, and runs the source only if so.
//! Namespaced checks are LocalSubjectAccessReviews, which a RoleBinding can grant, so this
//! works for a controller limited to some namespaces too.

use k8s_openapi::api::authorization::v1::{
    LocalSubjectAccessReview, ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};
use kube::Client;

use herald_sources::SourceError;

/// What a source needs on each resource it watches.
pub const WATCH_VERBS: [&str; 3] = ["get", "list", "watch"];

/// The ServiceAccount a source reads as (Knative's default is `default`).
pub struct ServiceAccount {
    pub namespace: String,
    pub name: String,
}

/// One permission to check: `verb` on `resource` of `group`, in `namespace` (or
/// cluster-wide with `None`).
pub struct Access<'a> {
    pub verb: &'a str,
    pub group: &'a str,
    pub resource: &'a str,
    pub namespace: Option<&'a str>,
}

impl ServiceAccount {
    /// The user name the API server gives the account's tokens.
    fn user(&self) -> String {
        format!("system:serviceaccount:{}:{}", self.namespace, self.name)
    }

    /// The groups the API server gives the account's tokens, so that bindings to them count.
    fn groups(&self) -> Vec<String> {
        vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{}", self.namespace),
            "system:authenticated".into(),
        ]
    }

    /// Fails with [`SourceError::Forbidden`] naming the first permission the account lacks.
    pub async fn require(&self, client: &Client, wanted: &[Access<'_>]) -> Result<(), SourceError> {
        for access in wanted {
            if !self.may(client, access).await? {
                let scope = match access.namespace {
                    Some(namespace) => format!("in namespace {namespace}"),
                    None => "cluster-wide".into(),
                };
                let resource = match access.group {
                    "" => access.resource.to_owned(),
                    group => format!("{}.{group}", access.resource),
                };
                return Err(SourceError::Forbidden(format!(
                    "ServiceAccount {}/{} may not {} {resource} {scope} (set spec.serviceAccountName to an account that may, or grant it with a Role)",
                    self.namespace, self.name, access.verb
                )));
            }
        }
        Ok(())
    }

    async fn may(&self, client: &Client, access: &Access<'_>) -> Result<bool, SourceError> {
        let spec = SubjectAccessReviewSpec {
            user: Some(self.user()),
            groups: Some(self.groups()),
            resource_attributes: Some(ResourceAttributes {
                verb: Some(access.verb.into()),
                group: Some(access.group.into()),
                resource: Some(access.resource.into()),
                namespace: access.namespace.map(Into::into),
                ..Default::default()
            }),
            ..Default::default()
        };
        let cannot_ask = |e: kube::Error| {
            SourceError::Connect(format!(
                "cannot check the ServiceAccount's permissions: {e}"
            ))
        };
        let status = match access.namespace {
            Some(namespace) => {
                let review = LocalSubjectAccessReview {
                    metadata: kube::api::ObjectMeta {
                        namespace: Some(namespace.into()),
                        ..Default::default()
                    },
                    spec,
                    status: None,
                };
                Api::<LocalSubjectAccessReview>::namespaced(client.clone(), namespace)
                    .create(&PostParams::default(), &review)
                    .await
                    .map_err(cannot_ask)?
                    .status
            }
            None => {
                let review = SubjectAccessReview {
                    spec,
                    ..Default::default()
                };
                Api::<SubjectAccessReview>::all(client.clone())
                    .create(&PostParams::default(), &review)
                    .await
                    .map_err(cannot_ask)?
                    .status
            }
        };
        Ok(status.is_some_and(|s| s.allowed))
    }
}

/// The message of a watch error the API server answered with 403, if it was one.
pub fn forbidden(error: &kube::runtime::watcher::Error) -> Option<String> {
    use kube::runtime::watcher::Error;
    let status = match error {
        Error::InitialListFailed(kube::Error::Api(status))
        | Error::WatchStartFailed(kube::Error::Api(status))
        | Error::WatchFailed(kube::Error::Api(status)) => status,
        Error::WatchError(status) => status,
        _ => return None,
    };
    (status.code == 403).then(|| status.message.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::watcher::Error;

    fn status(code: u16) -> Box<kube::core::Status> {
        Box::new(
            serde_json::from_value(serde_json::json!({
                "status": "Failure", "code": code, "reason": "Forbidden",
                "message": "configmaps is forbidden: User \"u\" cannot list resource \"configmaps\""
            }))
            .unwrap(),
        )
    }

    #[test]
    fn only_a_403_is_a_missing_permission() {
        let forbidden_list = Error::InitialListFailed(kube::Error::Api(status(403)));
        assert_eq!(
            forbidden(&forbidden_list).as_deref(),
            Some("configmaps is forbidden: User \"u\" cannot list resource \"configmaps\"")
        );
        assert!(forbidden(&Error::WatchError(status(403))).is_some());
        assert!(forbidden(&Error::WatchFailed(kube::Error::Api(status(500)))).is_none());
        assert!(forbidden(&Error::NoResourceVersion).is_none());
    }
}
