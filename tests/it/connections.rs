//! The listeners' connection handling through the real binary and raw TCP: header-read and
//! idle timeouts, shutdown with idle and half-sent connections, the connection limit with the
//! admin listener's reserve for probes, and the open-file limit.
#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "test code"
)]

use crate::common;
use crate::scenarios;

use std::time::{Duration, Instant};

use common::herald::Sled;
use common::{wait_until, Herald, HeraldDirs, DEADLINE};
use scenarios::{broker_yaml, client, send_binary};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BROKERS: &str = "/apis/eventing.knative.dev/v1/namespaces/default/brokers";

/// Half a request head: no blank line yet.
const HALF_A_HEAD: &[u8] = b"POST /default/b HTTP/1.1\r\nhost: herald\r\nce-id: half\r\n";

/// Slack for timers that fire a little early by the test's clock.
const SLACK: Duration = Duration::from_millis(50);

async fn herald(extra: &[&str]) -> (Herald, HeraldDirs) {
    let dirs = HeraldDirs::new(&broker_yaml("b", None));
    let herald = Herald::start(&Sled, &dirs, extra).await;
    (herald, dirs)
}

async fn connect(base: &str) -> TcpStream {
    TcpStream::connect(base.trim_start_matches("http://"))
        .await
        .expect("connect")
}

/// A binary-mode event to broker `b`, keep-alive.
fn event_request(id: &str, body: &str, extra_headers: &str) -> String {
    format!(
        "POST /default/b HTTP/1.1\r\nhost: herald\r\nce-specversion: 1.0\r\nce-id: {id}\r\nce-source: /s\r\nce-type: t\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n{extra_headers}\r\n{body}",
        body.len()
    )
}

/// Reads until the server closes the connection; returns what it sent.
async fn until_closed(stream: &mut (impl AsyncReadExt + Unpin)) -> String {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let read = tokio::time::timeout(DEADLINE, stream.read(&mut buf))
            .await
            .expect("the server did not close the connection");
        match read {
            Ok(0) | Err(_) => return String::from_utf8_lossy(&received).into_owned(),
            Ok(n) => received.extend_from_slice(&buf[..n]),
        }
    }
}

/// Reads one answer (its head and a body of its content-length); returns the head.
async fn read_answer(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&received[..end]).into_owned();
            let length = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if received.len() >= end + 4 + length {
                return head;
            }
        }
        let n = tokio::time::timeout(DEADLINE, stream.read(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        assert!(
            n > 0,
            "closed before an answer: {}",
            String::from_utf8_lossy(&received)
        );
        received.extend_from_slice(&buf[..n]);
    }
}

async fn status(url: &str) -> u16 {
    let response = tokio::time::timeout(DEADLINE, client().get(url).send())
        .await
        .unwrap_or_else(|_| panic!("no answer from {url}"));
    response.unwrap().status().as_u16()
}

fn logged_full(herald: &Herald, listener: &str) -> bool {
    herald.logs().lines().any(|line| {
        line.contains("connection limit reached") && line.contains(&format!("\"{listener}\""))
    })
}

/// A connection that sends nothing, or half a head, or its head one byte at a time, is
/// closed once the header-read timeout has passed since it opened, on both listeners, without
/// an answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_must_arrive_within_the_header_read_timeout() {
    let timeout = Duration::from_secs(1);
    let (herald, _dirs) = herald(&["--header-read-timeout", "1s", "--idle-timeout", "60s"]).await;
    for base in [&herald.ingress, &herald.admin] {
        let opened = Instant::now();
        let mut silent = connect(base).await;
        let mut half = connect(base).await;
        half.write_all(HALF_A_HEAD).await.unwrap();
        assert_eq!(until_closed(&mut half).await, "", "{base}: no answer");
        assert_eq!(until_closed(&mut silent).await, "", "{base}: no answer");
        let waited = opened.elapsed();
        assert!(waited >= timeout - SLACK, "{base}: closed after {waited:?}");

        // One byte every 50 ms: the whole head would take 10 s; each byte does not restart
        // the timeout.
        let (mut read, mut write) = connect(base).await.into_split();
        let head = format!(
            "POST /default/b HTTP/1.1\r\nx-padding: {}\r\n\r\n",
            "p".repeat(160)
        );
        let trickle = async {
            for byte in head.as_bytes() {
                if write.write_all(&[*byte]).await.is_err() {
                    // Closed: the reading side sees it too.
                    std::future::pending::<()>().await;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::select! {
            _ = until_closed(&mut read) => {}
            () = trickle => panic!("{base}: the whole head trickled in; each byte restarted the timeout"),
        }
    }
}

/// A keep-alive connection is kept for the idle timeout after its answer (not cut by the
/// shorter header-read timeout), then closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let idle = Duration::from_secs(3);
    let (herald, _dirs) = herald(&["--header-read-timeout", "1s", "--idle-timeout", "3s"]).await;
    let ingress = async {
        let mut stream = connect(&herald.ingress).await;
        stream
            .write_all(event_request("kept", "x", "").as_bytes())
            .await
            .unwrap();
        let answer = read_answer(&mut stream).await;
        assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
        let answered = Instant::now();
        assert_eq!(until_closed(&mut stream).await, "");
        answered.elapsed()
    };
    let admin = async {
        let mut stream = connect(&herald.admin).await;
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: herald\r\n\r\n")
            .await
            .unwrap();
        let answer = read_answer(&mut stream).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let answered = Instant::now();
        assert_eq!(until_closed(&mut stream).await, "");
        answered.elapsed()
    };
    let (ingress, admin) = tokio::join!(ingress, admin);
    assert!(ingress >= idle - SLACK, "ingress closed after {ingress:?}");
    assert!(admin >= idle - SLACK, "admin closed after {admin:?}");
}

/// SIGTERM closes connections without a request in flight at once (new, half a head,
/// idle keep-alive) and lets one in flight finish with its answer: Herald exits long before
/// its 60 s grace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_idle_connections_at_once_and_finishes_requests_in_flight() {
    let (herald, _dirs) = herald(&[
        "--shutdown-grace",
        "60s",
        "--header-read-timeout",
        "60s",
        "--idle-timeout",
        "60s",
    ])
    .await;
    let mut silent = connect(&herald.ingress).await;
    let mut half = connect(&herald.ingress).await;
    half.write_all(HALF_A_HEAD).await.unwrap();
    let mut idle = connect(&herald.ingress).await;
    idle.write_all(event_request("before", "x", "").as_bytes())
        .await
        .unwrap();
    assert!(read_answer(&mut idle).await.starts_with("HTTP/1.1 202"));
    let mut idle_admin = connect(&herald.admin).await;
    idle_admin
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: herald\r\n\r\n")
        .await
        .unwrap();
    assert!(read_answer(&mut idle_admin)
        .await
        .starts_with("HTTP/1.1 200"));

    // In flight: the handler asked for the body (100 Continue), which comes after SIGTERM.
    let mut in_flight = connect(&herald.ingress).await;
    let request = event_request("during", "0123456789", "expect: 100-continue\r\n");
    let (head, body) = request.split_at(request.len() - 10);
    in_flight.write_all(head.as_bytes()).await.unwrap();
    let go_on = read_answer(&mut in_flight).await;
    assert!(go_on.starts_with("HTTP/1.1 100"), "{go_on}");

    let signalled = Instant::now();
    herald.sigterm();
    wait_until("Herald to start shutting down", || {
        herald.log_contains("shutting down")
    })
    .await;
    for (name, stream) in [
        ("new", &mut silent),
        ("half a head", &mut half),
        ("idle", &mut idle),
        ("idle admin", &mut idle_admin),
    ] {
        assert_eq!(until_closed(stream).await, "", "{name}");
    }
    in_flight.write_all(body.as_bytes()).await.unwrap();
    let answer = read_answer(&mut in_flight).await;
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");

    let (status, logs) = herald.wait().await;
    let took = signalled.elapsed();
    assert_eq!(status.code(), Some(0), "{logs}");
    assert!(
        took < Duration::from_secs(15),
        "shutdown took {took:?} with a 60 s grace:\n{logs}"
    );
    assert!(
        !logs.contains("did not finish within the grace period"),
        "{logs}"
    );
}

/// At `--max-connections` a listener says so once and stops accepting: a new ingress request
/// waits and is answered once clients leave; the admin listener still answers /healthz and
/// /readyz from its reserve (other paths 503) and is whole again after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_limit_probes_still_answer_and_new_connections_wait() {
    const LIMIT: usize = 20;
    let (herald, _dirs) =
        herald(&["--max-connections", "20", "--header-read-timeout", "60s"]).await;
    let url = herald.broker_url("default", "b");

    let mut held = Vec::new();
    for _ in 0..LIMIT {
        held.push(connect(&herald.ingress).await);
    }
    wait_until("the ingress limit warning", || {
        logged_full(&herald, "ingress")
    })
    .await;
    let mut waiting = tokio::spawn({
        let url = url.clone();
        async move { send_binary(&url, "waited", "t", &[]).await }
    });
    assert!(
        tokio::time::timeout(Duration::from_millis(500), &mut waiting)
            .await
            .is_err(),
        "a connection beyond the limit was served"
    );
    for probe in ["/healthz", "/readyz"] {
        assert_eq!(
            status(&format!("{}{probe}", herald.admin)).await,
            200,
            "{probe}"
        );
    }
    drop(held);
    assert_eq!(waiting.await.unwrap(), 202, "the waiting request");
    assert_eq!(send_binary(&url, "after", "t", &[]).await, 202);
    assert_eq!(
        herald.log_count("connection limit reached"),
        1,
        "{}",
        herald.logs()
    );

    let mut held = Vec::new();
    for _ in 0..LIMIT {
        held.push(connect(&herald.admin).await);
    }
    wait_until("the admin limit warning", || logged_full(&herald, "admin")).await;
    for probe in ["/healthz", "/readyz"] {
        assert_eq!(
            status(&format!("{}{probe}", herald.admin)).await,
            200,
            "{probe}"
        );
    }
    let refused = client()
        .get(format!("{}{BROKERS}", herald.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    #[allow(
        clippy::disallowed_methods,
        reason = "a test reading its own server's answer"
    )]
    let body: serde_json::Value = serde_json::from_slice(&refused.bytes().await.unwrap()).unwrap();
    assert_eq!(body["reason"], "ServiceUnavailable", "{body}");
    drop(held);
    wait_until_status(&format!("{}{BROKERS}", herald.admin), 200).await;
}

/// The held connections close on Herald's side a moment after the client drops them.
async fn wait_until_status(url: &str, expected: u16) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let got = status(url).await;
        if got == expected {
            return;
        }
        assert!(Instant::now() < deadline, "{url} still answers {got}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The soft open-file limit is raised to the hard one at start, and the default connection
/// limit follows from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(
    unsafe_code,
    reason = "pre_exec: the only way to give the child alone a low limit before it starts"
)]
async fn the_soft_open_file_limit_is_raised_to_the_hard_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    use std::os::unix::process::CommandExt;
    let Some(hard) = getrlimit(Resource::Nofile)
        .maximum
        .filter(|hard| *hard > 256)
    else {
        panic!("the test needs a finite hard limit above 256")
    };
    let dirs = HeraldDirs::new(&broker_yaml("b", None));
    let herald = Herald::start_with(&Sled, &dirs, &[], |command| {
        let low = Rlimit {
            current: Some(256),
            maximum: Some(hard),
        };
        // SAFETY: setrlimit is async-signal-safe and the closure allocates nothing.
        unsafe {
            command.pre_exec(move || setrlimit(Resource::Nofile, low).map_err(Into::into));
        }
    })
    .await;
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", herald.pid())).unwrap();
    let open_files: Vec<&str> = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .unwrap()
        .split_whitespace()
        .collect();
    let hard_text = hard.to_string();
    assert_eq!(
        (open_files[3], open_files[4]),
        (hard_text.as_str(), hard_text.as_str()),
        "soft and hard limits: {open_files:?}"
    );
    let expected = (hard / 4).min(10_000);
    assert!(
        herald.log_contains(&format!("max_connections={expected}")),
        "{}",
        herald.logs()
    );
}

/// A zero timeout would close every connection before its first request: refused at start.
#[test]
fn zero_timeouts_are_refused() {
    for flag in ["--header-read-timeout", "--idle-timeout"] {
        let output = std::process::Command::new(common::herald::herald_binary())
            .args(["serve", flag, "0s"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{flag}: {stderr}");
        assert!(stderr.contains("must be more than 0"), "{flag}: {stderr}");
    }
}
