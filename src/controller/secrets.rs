//! Secrets on the cluster: KafkaSources' `spec.net` values, read through the API server with
//! Herald's own identity (as Knative's Kafka controller does), when the source starts. The
//! API server bounds a Secret to 1 MiB.

use async_trait::async_trait;
use herald_sources::secrets::{SecretError, SecretKeyRef, SecretReader};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::Client;

pub struct ClusterSecrets {
    client: Client,
}

impl ClusterSecrets {
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

#[async_trait]
impl SecretReader for ClusterSecrets {
    async fn read(&self, reference: &SecretKeyRef) -> Result<Vec<u8>, SecretError> {
        let what = reference.to_string();
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &reference.namespace);
        // The error names the request, never the Secret's data.
        let secret = api
            .get_opt(&reference.name)
            .await
            .map_err(|e| SecretError::Unreadable {
                what: what.clone(),
                why: e.to_string(),
            })?
            .ok_or_else(|| SecretError::NotFound {
                what: what.clone(),
                looked: format!(
                    "no Secret {} in namespace {}",
                    reference.name, reference.namespace
                ),
            })?;
        if let Some(value) = secret.data.as_ref().and_then(|d| d.get(&reference.key)) {
            return Ok(value.0.clone());
        }
        if let Some(value) = secret
            .string_data
            .as_ref()
            .and_then(|d| d.get(&reference.key))
        {
            return Ok(value.clone().into_bytes());
        }
        Err(SecretError::NotFound {
            what,
            looked: format!("the Secret has no key {:?}", reference.key),
        })
    }
}
