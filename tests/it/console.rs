//! The operator console (`/ui/`) in a real headless Chromium against the real `herald`
//! binary: the token gate, the overview, a parked event redriven, the live tail's CESQL
//! filter. Skipped without Chromium and ChromeDriver outside `scripts/test`.

use crate::common::browser::{self, Browser};
use crate::common::herald::Sled;
use crate::common::{wait_for, Herald, HeraldDirs, Reply, Subscriber};
use crate::scenarios::{broker_yaml, send_binary, trigger_yaml};

const TOKEN: &str = "console-s3cret";

/// A broker `b` with trigger `orders` (type `order.created`) to `orders_url` with one retry,
/// and trigger `audit` (every event) to `audit_url`.
fn config(orders_url: &str, audit_url: &str) -> String {
    let delivery = "delivery: {retry: 1, backoffPolicy: linear, backoffDelay: PT0.01S}";
    format!(
        "{}{}{}",
        broker_yaml("b", None),
        trigger_yaml(
            "orders",
            "b",
            orders_url,
            &format!("filter: {{attributes: {{type: order.created}}}}, {delivery}")
        ),
        trigger_yaml("audit", "b", audit_url, "")
    )
}

async fn herald_with_console(orders: &Subscriber, audit: &Subscriber) -> (Herald, HeraldDirs) {
    let dirs = HeraldDirs::new(&config(&orders.url(), &audit.url()));
    let herald = Herald::start(&Sled, &dirs, &["--admin-token", TOKEN]).await;
    (herald, dirs)
}

/// Opens the console and signs in with `token`.
async fn sign_in(browser: &Browser, herald: &Herald, token: &str) {
    browser.goto(&format!("{}/ui/", herald.admin)).await;
    browser.type_into("#token", token).await;
    browser.click("#login-form button[type=submit]").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_without_or_with_a_wrong_token_then_lists_brokers_and_triggers() {
    if !browser::available() {
        return;
    }
    let orders = Subscriber::start().await;
    let audit = Subscriber::start().await;
    let (herald, _dirs) = herald_with_console(&orders, &audit).await;
    let browser = Browser::start(1280, 800).await;

    // Without a token: the form, and nothing of Herald's.
    browser.goto(&format!("{}/ui/", herald.admin)).await;
    browser.find("#token").await;
    assert!(!browser.shown("#nav").await);
    assert!(!browser.text("body").await.contains("default/orders"));

    // A wrong token is refused and not kept.
    sign_in(&browser, &herald, "wrong").await;
    browser.wait_text("#login-error", "refused").await;
    assert!(!browser.shown("#view-overview").await);
    let kept = browser
        .script(
            "return sessionStorage.getItem('herald.adminToken')",
            serde_json::json!([]),
        )
        .await;
    assert_eq!(kept, serde_json::Value::Null);

    // The right one opens the overview: the broker and both triggers with filter and subscriber.
    sign_in(&browser, &herald, TOKEN).await;
    let brokers = browser.wait_text("#brokers", "default/b").await;
    assert!(brokers.contains("Ready"), "{brokers}");
    let row = browser
        .wait_text(
            "#triggers tr[data-key='default/orders']",
            "type=order.created",
        )
        .await;
    assert!(row.contains(&orders.url()), "{row}");
    browser
        .wait_text("#triggers tr[data-key='default/audit']", "(all events)")
        .await;
    // The token is never in a URL.
    let url = browser
        .script("return location.href", serde_json::json!([]))
        .await;
    assert!(!url.to_string().contains(TOKEN), "{url}");
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_event_is_shown_then_redriven_and_delivered() {
    if !browser::available() {
        return;
    }
    let orders = Subscriber::start().await;
    orders.set_default(Reply::status(500));
    let audit = Subscriber::start().await;
    let (herald, _dirs) = herald_with_console(&orders, &audit).await;
    let browser = Browser::start(1280, 800).await;
    sign_in(&browser, &herald, TOKEN).await;
    browser.wait_text("#brokers", "default/b").await;

    let url = herald.broker_url("default", "b");
    assert_eq!(
        send_binary(&url, "order-1", "order.created", &[]).await,
        202
    );

    // The overview counts it parked (live, from the stream), and its button opens the list.
    browser
        .wait_text(
            "#triggers tr[data-key='default/orders'] td:nth-child(9)",
            "1",
        )
        .await;
    browser
        .click("#triggers tr[data-key='default/orders'] td:nth-child(9) button")
        .await;
    let row = browser.wait_text("#parked tbody", "order-1").await;
    assert!(row.contains("order.created"), "{row}");
    assert!(row.contains("500"), "{row}");
    browser.click("#parked tbody button").await;
    let detail = browser
        .wait_text("#dl-detail-body", "\"attempts\": 2")
        .await;
    assert!(detail.contains("data of order-1"), "{detail}");

    // The subscriber recovers; redrive the selection, confirmed in the dialog.
    orders.set_default(Reply::status(200));
    let before = orders.received().len();
    browser.click("#parked tbody input[type=checkbox]").await;
    browser.click("#dl-redrive-selected").await;
    browser
        .wait_text("#confirm-text", "Redrive 1 parked event")
        .await;
    browser.click("#confirm-yes").await;
    browser.wait_text("#dl-result", "1 delivered").await;
    browser.wait_text("#parked tbody", "No parked events").await;
    let got = wait_for(&orders, |r| r.ce("id") == Some("order-1")).await;
    assert!(got.len() > before);
    browser
        .wait_text(
            "#triggers tr[data-key='default/orders'] td:nth-child(9)",
            "0",
        )
        .await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_tail_shows_only_what_its_cesql_filter_matches() {
    if !browser::available() {
        return;
    }
    let orders = Subscriber::start().await;
    let audit = Subscriber::start().await;
    let (herald, _dirs) = herald_with_console(&orders, &audit).await;
    let browser = Browser::start(1280, 800).await;
    sign_in(&browser, &herald, TOKEN).await;
    browser.wait_text("#brokers", "default/b").await;

    browser.click("#nav [data-view=tail]").await;
    // A bad expression is refused with the API's reason.
    browser.type_into("#tail-filter", "type LIKE").await;
    browser.click("#tail-start").await;
    browser.wait_text("#tail-status", "Refused").await;

    browser
        .type_into("#tail-filter", "type LIKE 'order.%' AND source = '/e2e'")
        .await;
    browser.click("#tail-start").await;
    browser.wait_text("#tail-status", "Tailing default/b").await;
    let url = herald.broker_url("default", "b");
    assert_eq!(send_binary(&url, "noise-1", "user.created", &[]).await, 202);
    assert_eq!(
        send_binary(&url, "order-7", "order.created", &[]).await,
        202
    );
    // The tail shows events in the order they were accepted: once the second is there, the
    // first was filtered out, not late.
    let shown = browser.wait_text("#tail-events", "order-7").await;
    assert!(shown.contains("order.created"), "{shown}");
    assert!(!shown.contains("noise-1"), "{shown}");
    wait_for(&audit, |r| r.ce("id") == Some("noise-1")).await;
    browser.close().await;
}

/// Writes the README's screenshots (docs/console-*.png) from a Herald with some traffic:
/// `cargo test --test it console::screenshots -- --ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes docs/console-*.png; run by hand when the console changes"]
async fn screenshots() {
    if !browser::available() {
        return;
    }
    let orders = Subscriber::start().await;
    // Every order fails at first (and is parked), then the subscriber recovers.
    orders.set_default(Reply::status(500));
    let audit = Subscriber::start().await;
    let ping = "apiVersion: sources.knative.dev/v1\nkind: PingSource\nmetadata: {name: heartbeat, namespace: default}\nspec: {schedule: '@every 2s', data: '{\"beat\": true}', sink: {ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: b}}}\n---\n";
    let dirs = HeraldDirs::new(&format!("{}{ping}", config(&orders.url(), &audit.url())));
    let herald = Herald::start(&Sled, &dirs, &["--admin-token", TOKEN]).await;
    let url = herald.broker_url("default", "b");
    for i in 0..40 {
        let kind = if i % 3 == 0 {
            "user.created"
        } else {
            "order.created"
        };
        send_binary(&url, &format!("ev-{i}"), kind, &[]).await;
    }
    let admin = crate::common::admin::AdminClient::new(&herald.admin).with_token(TOKEN);
    // Enough samples for a line in each chart.
    crate::common::wait_for_value("three samples of history", || async {
        let (_, history) = admin.get("/stats/v1/history").await;
        let points = history["triggers"][0]["points"]
            .as_array()
            .map_or(0, Vec::len);
        if points >= 3 {
            Ok(())
        } else {
            Err(history.to_string())
        }
    })
    .await;
    orders.set_default(Reply::status(200));
    for i in 40..60 {
        send_binary(&url, &format!("ev-{i}"), "order.created", &[]).await;
    }
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    let browser = Browser::start(1280, 800).await;
    sign_in(&browser, &herald, TOKEN).await;
    browser.wait_text("#triggers", "default/orders").await;
    browser
        .wait_text(
            "#triggers tr[data-key='default/orders'] td:nth-child(9)",
            "26",
        )
        .await;
    let save = |name: &str, png: Vec<u8>| std::fs::write(docs.join(name), png).unwrap();
    save("console-overview.png", browser.screenshot().await);
    browser.click("#nav [data-view=graph]").await;
    browser.wait_text("#edges", "PingSource").await;
    save("console-graph.png", browser.screenshot().await);
    browser.click("#nav [data-view=overview]").await;
    browser
        .click("#triggers tr[data-key='default/orders'] td:nth-child(9) button")
        .await;
    browser.wait_text("#parked tbody", "order.created").await;
    browser.click("#parked tbody button").await;
    browser.wait_text("#dl-detail-body", "attempts").await;
    save("console-deadletters.png", browser.screenshot().await);
    browser.click("#nav [data-view=tail]").await;
    browser
        .type_into("#tail-filter", "type LIKE 'order.%'")
        .await;
    browser.click("#tail-start").await;
    browser.wait_text("#tail-status", "Tailing").await;
    for i in 60..64 {
        send_binary(&url, &format!("ev-{i}"), "order.created", &[]).await;
    }
    browser.wait_text("#tail-events", "ev-63").await;
    save("console-tail.png", browser.screenshot().await);
    browser.click("#nav [data-view=charts]").await;
    browser.wait_text("#charts", "default/orders").await;
    save("console-charts.png", browser.screenshot().await);
    browser.click("#nav [data-view=overview]").await;
    browser.resize(390, 844).await;
    browser.wait_text("#triggers", "default/orders").await;
    save("console-phone.png", browser.screenshot().await);
    browser.close().await;
}
