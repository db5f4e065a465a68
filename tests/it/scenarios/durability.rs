//! Nothing accepted is lost: SIGKILL, restart, and clean restarts that redeliver nothing.

use std::collections::BTreeSet;
use std::time::Duration;

use super::*;
use crate::common::{free_port, Backend, Herald, HeraldDirs};

pub async fn accepted_events_survive_sigkill(backend: &dyn Backend) {
    let port = free_port();
    let subscriber_url = format!("http://127.0.0.1:{port}/");
    // The subscriber is down at first: retries keep the events in flight, never dropped.
    let delivery = "delivery: {retry: 60, backoffPolicy: linear, backoffDelay: PT0.02S}";
    let dirs = one_trigger(&subscriber_url, delivery);
    let herald = Herald::start(backend, &dirs, &[]).await;
    let url = herald.broker_url(NS, "b");
    let mut accepted = BTreeSet::new();
    let sends: Vec<_> = (0..60)
        .map(|i| {
            let url = url.clone();
            tokio::spawn(async move { (i, send_binary(&url, &format!("ev-{i}"), "t", &[]).await) })
        })
        .collect();
    for send in sends {
        let (i, status) = send.await.unwrap();
        assert_eq!(status, 202);
        accepted.insert(format!("ev-{i}"));
    }
    herald.kill();

    let herald = Herald::start(backend, &dirs, &[]).await;
    let subscriber = Subscriber::start_on(port).await;
    crate::common::wait_until("every accepted event to arrive after the restart", || {
        let got: BTreeSet<String> = ids(&subscriber).into_iter().collect();
        accepted.is_subset(&got)
    })
    .await;

    // A clean stop commits; the next start must not redeliver finished events.
    assert_eq!(herald.terminate().await.code(), Some(0), "SIGTERM exits 0");
    let before = subscriber.received().len();
    let herald = Herald::start(backend, &dirs, &[]).await;
    accept(&herald, "after-restart", "t", &[]).await;
    subscriber.wait_for_id("after-restart").await;
    let after: Vec<String> = ids(&subscriber).split_off(before);
    assert_eq!(
        after,
        ["after-restart"],
        "finished events were redelivered after a clean restart"
    );
}

pub async fn readiness_and_health(backend: &dyn Backend) {
    let dirs = HeraldDirs::new(&broker_yaml("b", None));
    let herald = Herald::start(backend, &dirs, &[]).await;
    for probe in ["healthz", "readyz"] {
        let url = format!("{}/{probe}", herald.admin);
        let status = client().get(url).send().await.unwrap().status();
        assert_eq!(status, 200, "/{probe}");
    }
    assert_eq!(herald.terminate().await.code(), Some(0));
}

pub async fn sigterm_finishes_in_flight_deliveries(backend: &dyn Backend) {
    let subscriber = Subscriber::start().await;
    subscriber
        .script([crate::common::Reply::status(200).delay(std::time::Duration::from_millis(1500))]);
    let dirs = one_trigger(&subscriber.url(), "");
    let herald = Herald::start(backend, &dirs, &[]).await;
    accept(&herald, "in-flight", "t", &[]).await;
    subscriber.wait_for_id("in-flight").await;
    // The subscriber is still answering: shutdown must wait for it, then commit.
    assert_eq!(herald.terminate().await.code(), Some(0));

    let herald = Herald::start(backend, &dirs, &[]).await;
    accept(&herald, "next", "t", &[]).await;
    subscriber.wait_for_id("next").await;
    assert_eq!(
        ids(&subscriber),
        ["in-flight", "next"],
        "the finished delivery was repeated"
    );
}

/// The log's server dies while producers send: ingress answers 503 within `answer_within`,
/// and once the server is back every event that got a 202 is delivered. For backends with a
/// server of the test's own; `kill` and `restart` act on it.
pub async fn log_server_killed_during_ingest<B: Backend>(
    backend: &mut B,
    kill: impl Fn(&mut B),
    restart: impl Fn(&mut B),
    answer_within: Duration,
) {
    let subscriber = Subscriber::start().await;
    let dirs = one_trigger(
        &subscriber.url(),
        "delivery: {retry: 100, backoffPolicy: linear, backoffDelay: PT0.05S}",
    );
    let herald = Herald::start(&*backend, &dirs, &[]).await;
    let url = herald.broker_url(NS, "b");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let send = |id: String| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let started = std::time::Instant::now();
            let status = http
                .post(&url)
                .header("ce-specversion", "1.0")
                .header("ce-id", &id)
                .header("ce-source", "/chaos")
                .header("ce-type", "t")
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0);
            (id, status, started.elapsed())
        }
    };
    let mut accepted = BTreeSet::new();
    for i in 0..20 {
        let (id, status, _) = send(format!("before-{i}")).await;
        assert_eq!(status, 202);
        accepted.insert(id);
    }
    kill(backend);
    let down: Vec<_> = (0..3)
        .map(|i| tokio::spawn(send(format!("down-{i}"))))
        .collect();
    let mut refused = 0;
    for sent in down {
        let (id, status, took) = sent.await.unwrap();
        assert!(
            took < answer_within,
            "ingress must answer within a bounded time, took {took:?}"
        );
        match status {
            202 => {
                accepted.insert(id);
            }
            503 => refused += 1,
            other => panic!("unexpected status {other} while the log's server is down"),
        }
    }
    assert!(
        refused > 0,
        "with the log down, ingress must refuse with 503"
    );
    restart(backend);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut i = 0;
    while i < 20 {
        let (id, status, _) = send(format!("after-{i}")).await;
        if status == 202 {
            accepted.insert(id);
            i += 1;
        } else {
            assert!(
                std::time::Instant::now() < deadline,
                "ingress did not recover after the log came back: {status}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let got: BTreeSet<String> = ids(&subscriber).into_iter().collect();
        if accepted.is_subset(&got) {
            break;
        }
        let missing: Vec<_> = accepted.difference(&got).take(5).collect();
        assert!(
            std::time::Instant::now() < deadline,
            "never delivered: {missing:?}\n{}",
            herald.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Kills (SIGKILL) between runs of the crash test, unless `HERALD_KILLS` says otherwise.
const DEFAULT_KILLS: usize = 5;
/// Producers sending at once during the crash test.
const CRASH_PRODUCERS: usize = 4;
/// Each kill comes at a random moment up to this long after the Herald took its first event.
const MAX_KILL_DELAY: Duration = Duration::from_millis(1500);
/// How long every accepted event may take to arrive after the last restart (JetStream
/// redelivers what a killed Herald had in flight after its ack wait).
const CRASH_DELIVERY_DEADLINE: Duration = Duration::from_secs(120);

/// Crash durability under load: producers send unique events while Herald is SIGKILLed at
/// random moments `HERALD_KILLS` times (default 5) and restarted on the same data dir each
/// time; every event that got a 202 must reach the subscriber in the end. Duplicates are
/// reported per kill, not asserted (delivery is at-least-once). The kill moments come from
/// a seeded RNG: `HERALD_KILL_SEED` replays a run.
pub async fn accepted_events_survive_repeated_sigkill_under_load(backend: &dyn Backend) {
    use crate::common::load::{arrivals, summary, Answer, Load};

    let kills = std::env::var("HERALD_KILLS")
        .ok()
        .map(|n| n.parse::<usize>().expect("HERALD_KILLS is a number"))
        .unwrap_or(DEFAULT_KILLS);
    let seed = std::env::var("HERALD_KILL_SEED")
        .ok()
        .map(|n| n.parse::<u64>().expect("HERALD_KILL_SEED is a number"))
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!(
        "{}: {kills} kills, seed {seed} (replay with HERALD_KILL_SEED={seed} HERALD_KILLS={kills})",
        backend.name()
    );
    let mut rng = fastrand::Rng::with_seed(seed);

    let subscriber = Subscriber::start().await;
    let dirs = one_trigger(
        &subscriber.url(),
        "delivery: {retry: 100, backoffPolicy: linear, backoffDelay: PT0.05S}",
    );
    let mut herald = Herald::start(backend, &dirs, &[]).await;
    let load = Load::start(&herald.broker_url(NS, "b"), CRASH_PRODUCERS);
    let started = std::time::Instant::now();
    let mut killed_at = Vec::with_capacity(kills);
    for kill in 1..=kills {
        let before = load.accepted().len();
        crate::common::wait_until("the (re)started Herald to accept events", || {
            load.accepted().len() > before
        })
        .await;
        // The random moment is the point of the test, not a wait for a condition.
        let delay = Duration::from_millis(rng.u64(0..MAX_KILL_DELAY.as_millis() as u64));
        tokio::time::sleep(delay).await;
        herald.kill();
        killed_at.push(std::time::Instant::now());
        println!(
            "kill {kill} at {:?} ({delay:?} after its first 202), {} accepted so far",
            started.elapsed(),
            load.accepted().len()
        );
        herald = Herald::start(backend, &dirs, &[]).await;
        load.target(&herald.broker_url(NS, "b"));
    }
    let before = load.accepted().len();
    crate::common::wait_until("the last Herald to accept events", || {
        load.accepted().len() > before
    })
    .await;
    let sent = load.stop().await;

    let unexpected: Vec<_> = sent
        .iter()
        .filter(|s| matches!(s.answer, Answer::Other(_)))
        .take(5)
        .collect();
    assert!(unexpected.is_empty(), "unexpected answers: {unexpected:?}");
    let accepted: BTreeSet<String> = sent
        .iter()
        .filter(|s| s.answer == Answer::Accepted)
        .map(|s| s.id.clone())
        .collect();
    let deadline = std::time::Instant::now() + CRASH_DELIVERY_DEADLINE;
    loop {
        let got: BTreeSet<String> = ids(&subscriber).into_iter().collect();
        let missing: Vec<_> = accepted.difference(&got).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {} accepted events never arrived (seed {seed}), e.g. {:?}\n{}",
            missing.len(),
            accepted.len(),
            &missing[..missing.len().min(10)],
            herald.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Each delivery after an id's first is a duplicate, counted against the first kill
    // between the two (a JetStream redelivery comes an ack wait later, maybe after more
    // kills); index 0 counts duplicates with no kill in between.
    let mut first_arrival = std::collections::HashMap::new();
    let mut duplicates = vec![0usize; kills + 1];
    for received in subscriber.received() {
        let Some(id) = received.ce("id") else {
            continue;
        };
        let Some(first) = first_arrival.get(id) else {
            first_arrival.insert(id.to_owned(), received.at);
            continue;
        };
        let cause = killed_at
            .iter()
            .position(|k| first < k && *k <= received.at)
            .map_or(0, |kill| kill + 1);
        duplicates[cause] += 1;
    }
    let unacknowledged = arrivals(&ids(&subscriber))
        .keys()
        .filter(|id| !accepted.contains(*id))
        .count();
    println!(
        "{}: {} sends, {} accepted, all delivered; {unacknowledged} delivered without a 202 \
         (the answer was lost in a kill); answers {:?}",
        backend.name(),
        sent.len(),
        accepted.len(),
        summary(&sent)
    );
    for (kill, count) in duplicates.iter().enumerate() {
        match kill {
            0 => println!("  without a kill in between: {count} duplicates"),
            _ => println!("  caused by kill {kill}: {count} duplicates"),
        }
    }
}
