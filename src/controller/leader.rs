//! Leader election with a coordination.k8s.io Lease: every replica runs the data plane, only
//! the Lease holder writes status and finalizers.

use std::time::Duration;

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;

/// How long start-up waits for the API server before it gives up.
const START_PATIENCE: Duration = Duration::from_secs(60);

/// Who holds the Lease, as this replica sees it.
pub struct Leadership {
    /// `true` while this replica holds the Lease.
    pub is_leader: watch::Receiver<bool>,
    /// Dropping `is_leader` ends the task, which releases the Lease.
    task: tokio::task::JoinHandle<()>,
}

/// Starts competing for the Lease `name` in `namespace` as `identity`.
pub async fn elect(
    client: Client,
    namespace: &str,
    name: &str,
    identity: &str,
    duration: Duration,
) -> anyhow::Result<Leadership> {
    let seconds = duration.as_secs().max(2);
    // Renew a third of the way before expiry, so one slow renewal does not lose the Lease.
    let grace = (seconds / 3).max(1);
    // The API server may not answer yet (a pod starting with its cluster): keep trying for
    // a while before giving up.
    let deadline = tokio::time::Instant::now() + START_PATIENCE;
    let manager = loop {
        let built = LeaseManagerBuilder::new(client.clone(), name)
            .with_namespace(namespace)
            .with_identity(identity)
            .with_duration(seconds)
            .with_grace(grace)
            .build()
            .await;
        match built {
            Ok(manager) => break manager,
            Err(error) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(%error, "cannot reach the Lease yet; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(error) => return Err(error.into()),
        }
    };
    let (is_leader, handle) = manager.watch().await;
    let task = tokio::spawn(async move {
        match handle.await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::warn!(%error, "leader election ended"),
            Err(error) => tracing::warn!(%error, "leader election task failed"),
        }
    });
    Ok(Leadership { is_leader, task })
}

impl Leadership {
    /// Gives the Lease up (when held) so that another replica takes over at once.
    pub async fn release(self) {
        drop(self.is_leader);
        if tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .is_err()
        {
            tracing::warn!("the Lease was not released within 5 s");
        }
    }
}
