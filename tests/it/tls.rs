//! Transport encryption through the real binary: the HTTPS ingress and its addresses,
//! deliveries to HTTPS subscribers (CACerts, trust bundles), `--tls-only`, a certificate
//! rotated under load, and the CLI against an HTTPS admin API. Certificates come from the
//! openssl CLI (`common::certs`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common;
use common::admin::{AdminClient, BROKERS};
use common::certs::{client_trusting, Ca, Leaf};
use common::herald::{herald_binary, run_invalid, Sled};
use common::{free_port, wait_for_async, wait_until, Herald, HeraldDirs, Subscriber, DEADLINE};
use serde_json::Value;

const BROKER: &str =
    "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: default}\n";

/// A trigger of `default` for events of `event_type`, its subscriber and delivery given as
/// JSON (so that PEM text needs no YAML indentation).
fn trigger(name: &str, event_type: &str, subscriber: Value, delivery: Option<Value>) -> String {
    let mut spec = serde_json::json!({
        "broker": "default",
        "filter": {"attributes": {"type": event_type}},
        "subscriber": subscriber,
    });
    if let Some(delivery) = delivery {
        spec["delivery"] = delivery;
    }
    let object = serde_json::json!({
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Trigger",
        "metadata": {"name": name},
        "spec": spec,
    });
    format!("---\n{}\n", serde_json::to_string(&object).unwrap())
}

/// The flags serving HTTPS with `leaf` and advertising `ca`.
fn tls_flags(leaf: &Leaf, ca: &Ca) -> Vec<String> {
    [
        "--tls-cert",
        leaf.cert.to_str().unwrap(),
        "--tls-key",
        leaf.key.to_str().unwrap(),
        "--tls-listen",
        "127.0.0.1:0",
        "--tls-ca-certs",
        ca.cert.to_str().unwrap(),
    ]
    .map(str::to_owned)
    .to_vec()
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// POSTs a binary-mode event; the status, or the transport error.
async fn send(
    client: &reqwest::Client,
    broker_url: &str,
    id: &str,
    event_type: &str,
) -> Result<u16, reqwest::Error> {
    let response = client
        .post(broker_url)
        .header("ce-specversion", "1.0")
        .header("ce-id", id)
        .header("ce-type", event_type)
        .header("ce-source", "tls-test")
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await?;
    Ok(response.status().as_u16())
}

async fn broker_status(herald: &Herald) -> Value {
    let (code, broker) = AdminClient::new(&herald.admin)
        .get(&format!("{BROKERS}/default"))
        .await;
    assert_eq!(code, 200, "{broker}");
    broker["status"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_https_ingress_accepts_events_and_brokers_advertise_https_first() {
    let ca = Ca::new("herald-test-ca");
    let leaf = ca.issue("herald");
    let subscriber = Subscriber::start().await;
    let dirs = HeraldDirs::new(&format!(
        "{BROKER}{}",
        trigger(
            "t",
            "test.tls",
            serde_json::json!({"uri": subscriber.url()}),
            None
        )
    ));
    let flags = tls_flags(&leaf, &ca);
    let herald = Herald::start(&Sled, &dirs, &strs(&flags)).await;
    let https = herald.https_ingress.clone().expect("an https ingress");

    let trusting = client_trusting(&[&ca]);
    let status = send(
        &trusting,
        &format!("{https}/default/default"),
        "e1",
        "test.tls",
    )
    .await;
    assert_eq!(status.unwrap(), 202);
    subscriber.wait_for_id("e1").await;
    let stranger = client_trusting(&[&Ca::new("another-ca")]);
    let refused = send(
        &stranger,
        &format!("{https}/default/default"),
        "e2",
        "test.tls",
    )
    .await;
    assert!(refused.is_err(), "a client without the CA got {refused:?}");

    // Permissive: https first in `addresses` with the CA bundle, `address` stays http.
    let status = broker_status(&herald).await;
    let http_url = herald.broker_url("default", "default");
    let https_url = format!("{https}/default/default");
    assert_eq!(status["address"]["url"], http_url.as_str(), "{status}");
    assert_eq!(status["addresses"][0]["name"], "https", "{status}");
    assert_eq!(
        status["addresses"][0]["url"],
        https_url.as_str(),
        "{status}"
    );
    assert_eq!(
        status["addresses"][0]["CACerts"],
        ca.pem().as_str(),
        "{status}"
    );
    assert_eq!(status["addresses"][1]["url"], http_url.as_str(), "{status}");
    assert_eq!(status["addresses"].as_array().unwrap().len(), 2, "{status}");

    // `herald get` lists the URLs as senders pick them.
    let output = std::process::Command::new(herald_binary())
        .args(["get", "brokers", "--server", &herald.admin])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(&format!("{https_url},{http_url}")),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_to_https_trust_cacerts_and_trust_bundles_and_dead_letter_the_untrusted() {
    let subscriber_ca = Ca::new("subscriber-ca");
    let secure = Subscriber::start_tls(&subscriber_ca.issue("subscriber")).await;
    let dead_letters = Subscriber::start().await;
    let bundles = tempfile::tempdir().unwrap();
    let once_then_dead_letter = serde_json::json!({
        "retry": 0,
        "deadLetterSink": {"uri": dead_letters.url()},
    });
    let dirs = HeraldDirs::new(&format!(
        "{BROKER}{}{}",
        trigger(
            "trusted",
            "test.trusted",
            serde_json::json!({"uri": secure.url(), "CACerts": subscriber_ca.pem()}),
            Some(once_then_dead_letter.clone()),
        ),
        trigger(
            "untrusted",
            "test.untrusted",
            serde_json::json!({"uri": secure.url()}),
            Some(once_then_dead_letter),
        ),
    ));
    let bundle_flags = [
        "--tls-trust-bundle",
        bundles.path().to_str().unwrap(),
        "--tls-reload-interval",
        "100ms",
    ];
    let herald = Herald::start(&Sled, &dirs, &bundle_flags).await;
    let broker = herald.broker_url("default", "default");
    let http = reqwest::Client::new();

    assert_eq!(
        send(&http, &broker, "t1", "test.trusted").await.unwrap(),
        202
    );
    secure.wait_for_id("t1").await;

    assert_eq!(
        send(&http, &broker, "u1", "test.untrusted").await.unwrap(),
        202
    );
    let dead = dead_letters.wait_for_id("u1").await;
    let u1 = dead.iter().find(|r| r.ce("id") == Some("u1")).unwrap();
    assert_eq!(u1.ce("knativeerrordest"), Some(secure.url().as_str()));
    assert!(!secure.ids().contains(&"u1".to_owned()));

    // The subscriber's CA in a trust bundle: trusted once the folder is read again.
    std::fs::write(
        bundles.path().join("subscriber-ca.pem"),
        subscriber_ca.pem(),
    )
    .unwrap();
    let mut n = 0;
    let (secure, dead_letters) = (&secure, &dead_letters);
    wait_for_async("a delivery trusting the reloaded bundle", || {
        n += 1;
        let (http, broker, id) = (http.clone(), broker.clone(), format!("u-after-{n}"));
        async move {
            assert_eq!(
                send(&http, &broker, &id, "test.untrusted").await.unwrap(),
                202
            );
            // Each event is either delivered or dead-lettered: wait for one of them.
            let deadline = tokio::time::Instant::now() + DEADLINE;
            loop {
                if secure.ids().contains(&id) {
                    return true;
                }
                if dead_letters.ids().contains(&id) {
                    return false;
                }
                assert!(tokio::time::Instant::now() < deadline, "{id} went nowhere");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    })
    .await;
    herald.wait_for_log("TLS trust bundles reloaded").await;
}

#[test]
fn a_destination_with_bad_cacerts_is_a_load_error() {
    let config = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let file = config.path().join("config.yaml");
    std::fs::write(
        &file,
        format!(
            "{BROKER}{}",
            trigger(
                "t",
                "x",
                serde_json::json!({"uri": "https://127.0.0.1:1/", "CACerts": "not a certificate"}),
                None
            )
        ),
    )
    .unwrap();
    let (status, stderr) = run_invalid(&file, data.path());
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("spec.subscriber.CACerts"), "{stderr}");
    assert!(stderr.contains("no PEM certificate"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_only_serves_no_plain_http_and_advertises_https_only() {
    let ca = Ca::new("herald-test-ca");
    let leaf = ca.issue("herald");
    let subscriber = Subscriber::start().await;
    let dirs = HeraldDirs::new(&format!(
        "{BROKER}{}",
        trigger(
            "t",
            "test.tls",
            serde_json::json!({"uri": subscriber.url()}),
            None
        )
    ));
    let mut flags = tls_flags(&leaf, &ca);
    let listen = format!("127.0.0.1:{}", free_port());
    flags.extend(["--tls-only".into(), "--listen".into(), listen.clone()]);
    let herald = Herald::start(&Sled, &dirs, &strs(&flags)).await;
    let https = herald.https_ingress.clone().expect("an https ingress");

    // --listen is not opened at all.
    let connected = tokio::net::TcpStream::connect(&listen).await;
    assert!(connected.is_err(), "something listens on --listen {listen}");

    let status = broker_status(&herald).await;
    let https_url = format!("{https}/default/default");
    assert_eq!(status["address"]["url"], https_url.as_str(), "{status}");
    assert_eq!(status["addresses"].as_array().unwrap().len(), 1, "{status}");
    assert_eq!(
        status["addresses"][0]["url"],
        https_url.as_str(),
        "{status}"
    );

    // Plain HTTP to the ingress port gets no HTTP answer.
    let plain = https_url.replacen("https://", "http://", 1);
    let answer = send(&reqwest::Client::new(), &plain, "p1", "test.tls").await;
    assert!(answer.is_err(), "plain HTTP was answered: {answer:?}");
    // Nothing plain listens outside: the only plain listener is the internal loopback one.
    let logs = herald.logs();
    let plain_listeners: Vec<&str> = logs
        .lines()
        .filter(|line| line.contains("ingress listening addr="))
        .collect();
    assert_eq!(plain_listeners.len(), 1, "{logs}");
    assert!(
        plain_listeners[0].contains("internal ingress listening"),
        "{logs}"
    );
    assert!(plain_listeners[0].contains("tls_only=true"), "{logs}");

    let client = client_trusting(&[&ca]);
    assert_eq!(
        send(&client, &https_url, "s1", "test.tls").await.unwrap(),
        202
    );
    subscriber.wait_for_id("s1").await;
}

/// Producers on new connections each (every request a new handshake) record what they got.
struct Producers {
    stop: Arc<AtomicBool>,
    results: Arc<Mutex<Vec<Result<u16, String>>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Producers {
    fn start(url: &str, cas: &[&Ca], count: usize) -> Producers {
        let stop = Arc::new(AtomicBool::new(false));
        let results = Arc::new(Mutex::new(Vec::new()));
        let mut builder = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(20));
        for ca in cas {
            builder = builder
                .add_root_certificate(reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap());
        }
        let client = builder.build().unwrap();
        let tasks = (0..count)
            .map(|producer| {
                let (stop, results, client, url) = (
                    stop.clone(),
                    results.clone(),
                    client.clone(),
                    url.to_owned(),
                );
                tokio::spawn(async move {
                    let mut n = 0;
                    while !stop.load(Ordering::SeqCst) {
                        n += 1;
                        let id = format!("p{producer}-{n}");
                        let result = send(&client, &url, &id, "test.load")
                            .await
                            .map_err(|error| format!("{id}: {error:?}"));
                        results.lock().unwrap().push(result);
                    }
                })
            })
            .collect();
        Producers {
            stop,
            results,
            tasks,
        }
    }

    fn sent(&self) -> usize {
        self.results.lock().unwrap().len()
    }

    async fn stop(self) -> Vec<Result<u16, String>> {
        self.stop.store(true, Ordering::SeqCst);
        for task in self.tasks {
            task.await.unwrap();
        }
        Arc::try_unwrap(self.results).unwrap().into_inner().unwrap()
    }
}

/// Replaces `to` with `from` in one step (a rename), as a Secret mount or cert-manager does.
fn replace(from: &std::path::Path, to: &std::path::Path) {
    let staged = to.with_extension("new");
    std::fs::copy(from, &staged).unwrap();
    std::fs::rename(&staged, to).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_rotated_under_load_is_served_without_a_failed_request() {
    let (old_ca, new_ca) = (Ca::new("old-ca"), Ca::new("new-ca"));
    let (old, new) = (old_ca.issue("old"), new_ca.issue("new"));
    let files = tempfile::tempdir().unwrap();
    let (cert, key) = (files.path().join("tls.crt"), files.path().join("tls.key"));
    replace(&old.cert, &cert);
    replace(&old.key, &key);
    let dirs = HeraldDirs::new(BROKER);
    let args = [
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--tls-listen",
        "127.0.0.1:0",
        "--tls-reload-interval",
        "100ms",
    ];
    let herald = Herald::start(&Sled, &dirs, &args).await;
    let url = format!("{}/default/default", herald.https_ingress.clone().unwrap());

    // Clients that trust both CAs see no difference; one trusting only the new CA tells
    // when the new certificate is served.
    let load = Producers::start(&url, &[&old_ca, &new_ca], 4);
    wait_until("requests before the rotation", || load.sent() >= 20).await;
    let only_new = client_trusting(&[&new_ca]);
    assert!(send(&only_new, &url, "before", "test.load").await.is_err());
    // The key first: the pair is refused (and the old one kept) until the certificate follows.
    replace(&new.key, &key);
    replace(&new.cert, &cert);
    wait_for_async("the new certificate served", || {
        let (only_new, url) = (only_new.clone(), url.clone());
        async move { send(&only_new, &url, "after", "test.load").await.is_ok() }
    })
    .await;
    let rotated_at = load.sent();
    wait_until("requests after the rotation", || {
        load.sent() >= rotated_at + 20
    })
    .await;
    let results = load.stop().await;
    let failed: Vec<_> = results.iter().filter(|r| **r != Ok(202)).collect();
    assert!(
        failed.is_empty(),
        "{} of {} failed: {failed:?}",
        failed.len(),
        results.len()
    );
    herald.wait_for_log("TLS certificate reloaded").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_talks_to_an_https_admin_api_trusting_its_ca_file() {
    let ca = Ca::new("herald-test-ca");
    let leaf = ca.issue("herald");
    let dirs = HeraldDirs::new(BROKER);
    let mut flags = tls_flags(&leaf, &ca);
    flags.push("--admin-tls".into());
    let herald = Herald::start(&Sled, &dirs, &strs(&flags)).await;
    let admin = herald.admin.replacen("http://", "https://", 1);
    let get = |extra: &[&str]| {
        std::process::Command::new(herald_binary())
            .args(["get", "brokers", "--server", &admin])
            .args(extra)
            .env_remove("HERALD_CA_FILE")
            .output()
            .unwrap()
    };
    let trusted = get(&["--ca-file", ca.cert.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&trusted.stdout);
    assert!(
        trusted.status.success(),
        "{}",
        String::from_utf8_lossy(&trusted.stderr)
    );
    assert!(stdout.contains("default"), "{stdout}");

    let untrusted = get(&[]);
    assert!(!untrusted.status.success());
    let stderr = String::from_utf8_lossy(&untrusted.stderr);
    assert!(stderr.contains("cannot reach Herald"), "{stderr}");
    // Plain HTTP is not served on the admin port.
    let plain = reqwest::Client::new()
        .get(format!("{}/healthz", herald.admin))
        .send()
        .await;
    assert!(plain.is_err(), "{plain:?}");
}

/// Sources honour their sink's `CACerts` (issue 21): a PingSource whose HTTPS sink's CA is
/// in its `sink.CACerts` (and nowhere else: not in the system roots, no trust bundle)
/// delivers; one without it cannot verify the sink's certificate and delivers nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_delivers_to_an_https_sink_trusting_only_its_cacerts_and_fails_against_an_untrusted_one(
) {
    let sink_ca = Ca::new("sink-ca");
    let secure = Subscriber::start_tls(&sink_ca.issue("sink")).await;
    let ping = |name: &str, sink: Value| {
        let object = serde_json::json!({
            "apiVersion": "sources.knative.dev/v1",
            "kind": "PingSource",
            "metadata": {"name": name},
            "spec": {"schedule": "@every 1s", "data": "{}", "sink": sink},
        });
        format!("---\n{}\n", serde_json::to_string(&object).unwrap())
    };
    let dirs = HeraldDirs::new(&format!(
        "{}{}",
        ping(
            "trusting",
            serde_json::json!({"uri": secure.url(), "CACerts": sink_ca.pem()})
        ),
        ping("untrusting", serde_json::json!({"uri": secure.url()})),
    ));
    let herald = Herald::start(&Sled, &dirs, &[]).await;

    let source = |name: &str| format!("/apis/v1/namespaces/default/pingsources/{name}");
    let trusting = source("trusting");
    wait_until("an event of the trusting source", || {
        secure
            .received()
            .iter()
            .any(|r| r.ce("source") == Some(trusting.as_str()))
    })
    .await;
    wait_until("the untrusting source's failure", || {
        herald.logs().lines().any(|line| {
            line.contains("ping event not delivered")
                && line.contains("PingSource default/untrusting")
        })
    })
    .await;
    let untrusting = source("untrusting");
    assert!(
        !secure
            .received()
            .iter()
            .any(|r| r.ce("source") == Some(untrusting.as_str())),
        "the source without the sink's CACerts reached it"
    );
}

/// A client that opens a TCP connection to the HTTPS ingress and sends nothing, or half a
/// ClientHello, is dropped once `--header-read-timeout` has passed since its accept, never
/// before; while it waits, another client is served at once; and with every connection
/// slot (`--max-connections`) held by stalled handshakes, the next client is served as soon
/// as one is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_tls_handshake_is_dropped_at_the_header_timeout_and_blocks_nobody() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const TIMEOUT: Duration = Duration::from_secs(4);
    let ca = Ca::new("herald-test-ca");
    let leaf = ca.issue("herald");
    let mut flags = tls_flags(&leaf, &ca);
    flags.extend(["--header-read-timeout", "4s", "--max-connections", "2"].map(str::to_owned));
    let herald = Herald::start(&Sled, &HeraldDirs::new(BROKER), &strs(&flags)).await;
    let https = herald.https_ingress.clone().expect("an https ingress");
    let address = https.strip_prefix("https://").unwrap().to_owned();
    let broker = format!("{https}/default/default");
    // No keep-alive: a served request gives its connection slot back.
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap())
        .pool_max_idle_per_host(0)
        .timeout(DEADLINE)
        .build()
        .unwrap();

    // Sends nothing at all.
    let mut silent = tokio::net::TcpStream::connect(&address).await.unwrap();
    let silent_opened = tokio::time::Instant::now();
    // One slot is left: a client is served while the silent handshake waits.
    assert_eq!(send(&client, &broker, "e1", "test").await.unwrap(), 202);
    let mut probe = [0u8; 1];
    assert!(
        matches!(silent.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the silent connection was closed before another client was served"
    );

    // Half a ClientHello: a TLS handshake record header announcing 512 bytes, and 6 of them.
    let mut half = tokio::net::TcpStream::connect(&address).await.unwrap();
    let half_opened = tokio::time::Instant::now();
    half.write_all(&[
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ])
    .await
    .unwrap();

    // Both slots are held by stalled handshakes: this client waits for one to be dropped.
    let waiting = {
        let (client, broker) = (client.clone(), broker.clone());
        tokio::spawn(async move { send(&client, &broker, "e2", "test").await })
    };

    for (name, stream, opened) in [
        ("silent", &mut silent, silent_opened),
        ("half a ClientHello", &mut half, half_opened),
    ] {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut rest)).await;
        let closed_after = opened.elapsed();
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "{name}: not closed within {DEADLINE:?}: {read:?}, {rest:?}"
        );
        assert!(
            closed_after >= TIMEOUT - Duration::from_millis(50),
            "{name}: closed after {closed_after:?}, before the header-read timeout"
        );
    }
    assert_eq!(waiting.await.unwrap().unwrap(), 202);
    assert!(herald.log_contains("connection limit reached"));
}
