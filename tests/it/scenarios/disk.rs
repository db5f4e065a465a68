//! A full data directory: on a real small filesystem (a tmpfs) filled by a filler file while
//! producers send, then freed. Herald refuses cleanly while full and recovers by itself.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::*;
use crate::common::admin::{message, AdminClient, BROKERS};
use crate::common::disk::small_disk_or_skip;
use crate::common::load::{arrivals, Answer, Load};
use crate::common::{wait_for_async, wait_until, Backend, Herald, HeraldDirs};

/// Room for the embedded log's files at start, small enough to fill in a moment.
const DISK_BYTES: u64 = 32 * 1024 * 1024;
/// How soon after the space is freed ingress must accept again: the log retries reopening
/// at least once a second.
const RECOVERY_DEADLINE: Duration = Duration::from_secs(10);
/// How long every accepted event may take to arrive at the end.
const DELIVERY_DEADLINE: Duration = Duration::from_secs(60);

async fn readyz(herald: &Herald) -> (u16, serde_json::Value) {
    let response = client()
        .get(format!("{}/readyz", herald.admin))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    #[allow(
        clippy::disallowed_methods,
        reason = "a test reading its own server's answer"
    )]
    let body = response.bytes().await.unwrap();
    (status, serde_json::from_slice(&body).unwrap_or_default())
}

/// For a backend that keeps its log in the data dir (the embedded log): while the disk is
/// full ingress answers 503 with Retry-After and `/readyz` 503; once space is freed both
/// come back by themselves, and every event that got a 202, before or after, is delivered.
pub async fn full_disk_refuses_then_recovers(backend: &dyn Backend) {
    let subscriber = Subscriber::start().await;
    let dirs = one_trigger(
        &subscriber.url(),
        "delivery: {retry: 100, backoffPolicy: linear, backoffDelay: PT0.05S}",
    );
    let Some(disk) = small_disk_or_skip(
        dirs.data.path(),
        DISK_BYTES,
        "full_disk_refuses_then_recovers",
    ) else {
        return;
    };
    let herald = Herald::start(backend, &dirs, &[]).await;
    let producers = Load::start(&herald.broker_url(NS, "b"), 4);
    let load = &producers;
    wait_until("the first events to be accepted", || {
        load.accepted().len() >= 50
    })
    .await;

    let herald = &herald;
    // Twice: recovering once must leave the log able to fail and recover again.
    for round in 1..=2 {
        let failed_reopens = herald.log_count("the embedded log cannot be reopened yet");
        let filled_at = Instant::now();
        let filler = disk.fill();
        wait_for_async(
            "ingress to answer 503 and /readyz 503 on the full disk",
            || async move {
                load.got_since(filled_at, &Answer::Refused { retry_after: true })
                    && readyz(herald).await.0 == 503
            },
        )
        .await;
        // Reopening on the still-full disk fails, and changes nothing for clients.
        wait_until("an attempt to reopen the log on the full disk", || {
            herald.log_count("the embedded log cannot be reopened yet") > failed_reopens
        })
        .await;
        let (status, body) = readyz(herald).await;
        assert_eq!(status, 503, "still full: {body}");
        assert!(
            body.to_string().contains("cannot persist"),
            "/readyz says why: {body}"
        );
        println!(
            "round {round}: filled {filler} bytes; refused after {:?}; {:?}",
            filled_at.elapsed(),
            load.summary()
        );

        let freed_at = Instant::now();
        disk.free();
        wait_for_async(
            "ingress to answer 202 and /readyz 200 after space was freed",
            || async move {
                load.got_since(freed_at, &Answer::Accepted) && readyz(herald).await.0 == 200
            },
        )
        .await;
        let recovered_in = freed_at.elapsed();
        println!("round {round}: recovered {recovered_in:?} after the space was freed");
        assert!(
            recovered_in < RECOVERY_DEADLINE,
            "recovery took {recovered_in:?}"
        );
        let accepted_then = load.accepted().len();
        wait_until("events to be accepted after the recovery", || {
            load.accepted().len() >= accepted_then + 50
        })
        .await;
    }
    for said in [
        "appends are refused until it is reopened",
        "the embedded log was reopened and accepts appends again",
    ] {
        assert_eq!(
            herald.log_count(said),
            2,
            "Herald's log says {said:?} each time"
        );
    }

    let sent = producers.stop().await;
    let unexpected: Vec<_> = sent
        .iter()
        .filter(|s| {
            !matches!(
                s.answer,
                Answer::Accepted | Answer::Refused { retry_after: true }
            )
        })
        .take(5)
        .collect();
    assert!(
        unexpected.is_empty(),
        "only 202, or 503 with Retry-After: {unexpected:?}"
    );
    let accepted: BTreeSet<String> = sent
        .iter()
        .filter(|s| s.answer == Answer::Accepted)
        .map(|s| s.id.clone())
        .collect();
    wait_for_all(&subscriber, &accepted, herald).await;
    let duplicates: usize = arrivals(&subscriber.ids()).values().map(|n| n - 1).sum();
    println!(
        "{} accepted, all delivered; {duplicates} delivered more than once",
        accepted.len()
    );
}

/// Waits until every id in `accepted` reached the subscriber; names what is missing if not.
pub async fn wait_for_all(subscriber: &Subscriber, accepted: &BTreeSet<String>, herald: &Herald) {
    let deadline = Instant::now() + DELIVERY_DEADLINE;
    loop {
        let got: BTreeSet<String> = subscriber.ids().into_iter().collect();
        let missing: Vec<_> = accepted.difference(&got).collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} accepted events never arrived, e.g. {:?}\n{}",
            missing.len(),
            &missing[..missing.len().min(10)],
            herald.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// For a backend whose server owns the log's storage (NATS, Kafka): a full data dir only
/// stops changes to stored resources. They answer 503 with Retry-After and change nothing,
/// ingress and `/readyz` are unaffected, and once space is freed changes are stored again.
pub async fn full_data_dir_refuses_changes_then_recovers(backend: &dyn Backend) {
    let dirs = HeraldDirs::new(&broker_yaml("b", None));
    let Some(disk) = small_disk_or_skip(
        dirs.data.path(),
        1024 * 1024,
        "full_data_dir_refuses_changes_then_recovers",
    ) else {
        return;
    };
    let herald = Herald::start(backend, &dirs, &[]).await;
    let admin = AdminClient::new(&herald.admin);
    let broker =
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: made-by-api}\n";
    disk.fill();

    let (status, body) = admin.post_yaml(BROKERS, broker).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["reason"], "ServiceUnavailable", "{body}");
    assert!(message(&body).contains("disk is full"), "{body}");
    let (status, _) = admin.get(&format!("{BROKERS}/made-by-api")).await;
    assert_eq!(status, 404, "nothing was changed");
    let resources = dirs.data.path().join("resources");
    assert!(
        leftovers(&resources).is_empty(),
        "no half-written file is left: {:?}",
        leftovers(&resources)
    );
    accept(&herald, "while-full", "t", &[]).await;
    assert_eq!(readyz(&herald).await.0, 200, "the log is not on this disk");

    disk.free();
    admin.create(BROKERS, broker).await;
    assert!(resources.join("brokers/default/made-by-api.json").is_file());
    let (status, _) = admin.get(&format!("{BROKERS}/made-by-api")).await;
    assert_eq!(status, 200);
}

/// Temporary files under `dir`.
fn leftovers(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(leftovers(&path));
        } else if path.extension().is_some_and(|e| e == "tmp") {
            out.push(path);
        }
    }
    out
}
