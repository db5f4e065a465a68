//! The Secrets that resources name, read when they load: a KafkaSource whose `spec.net`
//! Secrets cannot be read is refused with the rest of its change, naming the field, the
//! Secret and the key (never a value).

use herald_sources::secrets::SecretReader;

use super::{ConfigError, Loaded, Resource};

/// Reads every Secret value the resources of `loaded` need; the first one missing fails.
pub async fn check_secrets(
    loaded: &[Loaded],
    secrets: &dyn SecretReader,
) -> Result<(), ConfigError> {
    for Loaded { origin, resource } in loaded {
        let Resource::KafkaSource(source) = resource else {
            continue;
        };
        let Some(net) = &source.spec.net else {
            continue;
        };
        let (namespace, name) = resource.namespaced_name();
        herald_sources::kafka_net::client_settings(&namespace, net, secrets)
            .await
            .map_err(|error| ConfigError {
                origin: origin.clone(),
                resource: Some(format!("KafkaSource {namespace}/{name}")),
                field: Some(error.path),
                message: error.message,
            })?;
    }
    Ok(())
}
