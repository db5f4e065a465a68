//! The per-event cost of sender identity at ingress (issue 21): the same events sent
//! closed-loop, in the same run, to a broker on a Herald without authentication, and on a
//! Herald with `--authentication-oidc enabled` to a broker that only checks the token
//! (no EventPolicy: the default mode, allow-same-namespace, decides) and to one an
//! EventPolicy guards (a `from.sub` pattern and a `filters` prefix on the event's type).
//!
//! The producer reuses one token from Herald's token endpoint, as real producers do until
//! it expires, so the rows measure what a steady stream pays: the verified-token cache,
//! the audience check and the policy decision. A first sight of a token (a signature
//! check) is paid once per token, not per event.

use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;

use crate::processes::Herald;
use crate::throughput::{throughput, Throughput};
use crate::Settings;

/// Closed-loop ingress without a trigger, by what ingress checks.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AccessPoint {
    pub connections: usize,
    /// No authentication (another Herald, same run, same arguments otherwise).
    pub plain: Throughput,
    /// A token verified against the broker's audience; no policy.
    pub token: Throughput,
    /// A token verified, then an EventPolicy's `from` and `filters` checked.
    pub policy: Throughput,
}

/// The subject the benchmark's producer sends as.
const PRODUCER: &str = "system:serviceaccount:default:bench-producer";

fn config(with_policy: bool) -> String {
    let broker = |name: &str| {
        format!(
            "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {{name: {name}}}\n---\n"
        )
    };
    let mut config = broker("open") + &broker("guarded");
    if with_policy {
        config += "apiVersion: eventing.knative.dev/v1alpha1\nkind: EventPolicy\nmetadata: {name: bench}\nspec:\n  to: [{ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: guarded}}]\n  from: [{sub: 'system:serviceaccount:default:bench-*'}]\n  filters: [{prefix: {type: dev.herald.}}]\n";
    }
    config
}

/// Measures the plain Herald, then the token-only and the policy-guarded brokers of one
/// Herald with OIDC on.
pub async fn measure(
    settings: &Settings,
    args: &[String],
    payload: &Bytes,
    plain_pool: &[reqwest::Client],
    connections: usize,
) -> anyhow::Result<AccessPoint> {
    let mut point = AccessPoint {
        connections,
        ..AccessPoint::default()
    };
    {
        let herald = Herald::start(&settings.herald, &config(false), args)?;
        let url = format!("{}/default/open", herald.ingress);
        point.plain = throughput(&herald, &url, plain_pool, payload, settings, None).await;
    }
    let mut args = args.to_vec();
    args.extend(["--authentication-oidc".into(), "enabled".into()]);
    let herald = Herald::start(&settings.herald, &config(true), &args)?;
    for (broker, slot) in [("open", &mut point.token), ("guarded", &mut point.policy)] {
        let audience = format!("eventing.knative.dev/broker/default/{broker}");
        let token = producer_token(&herald, &audience).await?;
        let pool = authorized_clients(connections, &token)?;
        let url = format!("{}/default/{broker}", herald.ingress);
        *slot = throughput(&herald, &url, &pool, payload, settings, None).await;
        anyhow::ensure!(
            slot.events_per_second > 0.0,
            "no event accepted on {broker} with a token (401/403?)"
        );
    }
    Ok(point)
}

/// A token for [`PRODUCER`] and `audience` from Herald's token endpoint on the admin port.
async fn producer_token(herald: &Herald, audience: &str) -> anyhow::Result<String> {
    let mut response = reqwest::Client::new()
        .post(format!("{}/apis/herald.dev/v1/oidc/token", herald.admin))
        .header("content-type", "application/json")
        .body(serde_json::json!({ "subject": PRODUCER, "audience": audience }).to_string())
        .timeout(Duration::from_secs(10))
        .send()
        .await?;
    anyhow::ensure!(
        response.status().is_success(),
        "token endpoint answered {}",
        response.status()
    );
    // A token answer is a few hundred bytes; anything over 64 KiB is not one.
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        body.extend_from_slice(&chunk);
        anyhow::ensure!(body.len() <= 64 * 1024, "token answer over 64 KiB");
    }
    let answer: serde_json::Value = serde_json::from_slice(&body)?;
    answer["token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("token endpoint answered without a token"))
}

/// Keep-alive clients, one connection each, that send `token` as a Bearer header.
fn authorized_clients(connections: usize, token: &str) -> anyhow::Result<Vec<reqwest::Client>> {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse()?,
    );
    (0..connections.max(1))
        .map(|_| {
            reqwest::Client::builder()
                .default_headers(headers.clone())
                .pool_max_idle_per_host(1)
                .timeout(Duration::from_secs(30))
                .build()
                .map_err(anyhow::Error::from)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_names_the_producer_and_admits_the_benchmark_type() {
        let config = config(true);
        assert!(config.contains("name: guarded"));
        let pattern = "system:serviceaccount:default:bench-";
        assert!(config.contains(pattern) && PRODUCER.starts_with(pattern));
        assert!("dev.herald.bench".starts_with("dev.herald."));
        assert!(!super::config(false).contains("EventPolicy"));
    }
}
