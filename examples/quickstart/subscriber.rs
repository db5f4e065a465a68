//! A tiny subscriber for the quickstart: prints every event it receives.
//!
//! `/flaky` always answers 503 with a short body (to show retries and the dead-letter sink,
//! whose `knativeerrordata` carries that body in base64); every other path
//! answers 200. Run with `cargo run --example subscriber [ADDR]` (default 127.0.0.1:9000).
#![forbid(unsafe_code)]
#![allow(clippy::print_stdout, reason = "printing events is what it is for")]

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9000".to_owned());
    let app =
        axum::Router::new().fallback(|uri: Uri, headers: HeaderMap, body: Bytes| async move {
            let mut attributes: Vec<String> = headers
                .iter()
                .filter(|(name, _)| name.as_str().starts_with("ce-"))
                .map(|(name, value)| {
                    format!("{}={}", &name.as_str()[3..], value.to_str().unwrap_or("?"))
                })
                .collect();
            attributes.sort();
            println!(
                "{} {} data={}",
                uri.path(),
                attributes.join(" "),
                String::from_utf8_lossy(&body)
            );
            if uri.path() == "/flaky" {
                (StatusCode::SERVICE_UNAVAILABLE, "flaky on purpose")
            } else {
                (StatusCode::OK, "")
            }
        });
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("subscriber listening on http://{addr}");
    axum::serve(listener, app).await?;
    Ok(())
}
