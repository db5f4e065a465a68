//! A real headless Chromium driven over WebDriver (Debian's `chromium` and `chromedriver`),
//! for the console's tests. The few WebDriver commands the tests need are written here over
//! reqwest (already a dev-dependency): a WebDriver crate would add its own HTTP stack to build
//! on a machine shared by several builds.

use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use super::{free_port, wait_for_value, DEADLINE};

/// The element key of the W3C WebDriver protocol.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub fn chromium() -> String {
    std::env::var("HERALD_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

pub fn chromedriver() -> String {
    std::env::var("HERALD_CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into())
}

/// `false` (the test returns) when Chromium or ChromeDriver is missing outside `scripts/test`.
pub fn available() -> bool {
    let missing: Vec<String> = [chromium(), chromedriver()]
        .into_iter()
        .filter(|path| !std::path::Path::new(path).is_file())
        .collect();
    herald_broker::testing::servers::present_or_skip(
        "Chromium and ChromeDriver",
        missing.is_empty(),
        &missing.join(", "),
    )
}

/// The largest WebDriver answer read (a 1280×800 screenshot in base64 is a few MiB).
const MAX_ANSWER: usize = 32 * 1024 * 1024;

async fn read_json(mut response: reqwest::Response) -> Result<Value, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_ANSWER {
            return Err(format!("a WebDriver answer over {MAX_ANSWER} bytes"));
        }
    }
    serde_json::from_slice(&body).map_err(|e| e.to_string())
}

pub struct Browser {
    driver: Child,
    base: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a fresh profile, its window
    /// `width`×`height` CSS pixels.
    pub async fn start(width: u32, height: u32) -> Browser {
        let port = free_port();
        // Its own process group, with the Chromium it starts: a failed test ends them all.
        let driver = Command::new(chromedriver())
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let profile = tempfile::tempdir().unwrap();
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let mut browser = Browser {
            driver,
            base,
            http,
            _profile: profile,
        };
        let status = format!("{}/status", browser.base);
        wait_for_value("chromedriver to listen", || {
            let request = browser.http.get(&status).send();
            async move {
                let response = request.await.map_err(|e| e.to_string())?;
                let body = read_json(response).await?;
                match body["value"]["ready"].as_bool() {
                    Some(true) => Ok(()),
                    _ => Err(body.to_string()),
                }
            }
        })
        .await;
        let profile = browser._profile.path().display().to_string();
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium(),
                // As the machine's notes say: no sandbox as root, nothing that reaches out.
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--hide-scrollbars",
                    "--disable-crash-reporter", "--disable-breakpad",
                    format!("--user-data-dir={profile}"),
                    format!("--window-size={width},{height}"),
                ],
            },
        }}});
        let session = browser.call("POST", "/session", Some(capabilities)).await;
        let id = session["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {session}"))
            .to_owned();
        browser.base = format!("{}/session/{id}", browser.base);
        browser.resize(width, height).await;
        browser
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let request = match method {
            "GET" => self.http.get(&url),
            "DELETE" => self.http.delete(&url),
            _ => self
                .http
                .post(&url)
                .header("content-type", "application/json")
                .body(body.unwrap_or_else(|| json!({})).to_string()),
        };
        let response = tokio::time::timeout(DEADLINE, request.send())
            .await
            .expect("WebDriver answers")
            .expect("WebDriver reachable");
        let status = response.status();
        let body = read_json(response).await.expect("WebDriver answers JSON");
        assert!(status.is_success(), "WebDriver {method} {path}: {body}");
        body["value"].clone()
    }

    /// Sets the viewport (the inner size) to `width`×`height`.
    pub async fn resize(&self, width: u32, height: u32) {
        let chrome = self
            .script(
                "return [window.outerWidth - window.innerWidth, window.outerHeight - window.innerHeight]",
                json!([]),
            )
            .await;
        let extra = |i: usize| chrome[i].as_u64().unwrap_or(0) as u32;
        self.call(
            "POST",
            "/window/rect",
            Some(json!({"width": width + extra(0), "height": height + extra(1)})),
        )
        .await;
    }

    pub async fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url }))).await;
    }

    /// Runs `script` in the page (its `arguments` are `args`) and returns what it returns.
    pub async fn script(&self, script: &str, args: Value) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// The element `css` matches, waiting until there is one that is shown.
    pub async fn find(&self, css: &str) -> String {
        let this = self;
        wait_for_value(&format!("an element shown at {css}"), || async move {
            let shown = this
                .script(
                    "const e = document.querySelector(arguments[0]); return !!e && e.getClientRects().length > 0",
                    json!([css]),
                )
                .await;
            if shown != json!(true) {
                return Err("not there or hidden".into());
            }
            let found = this
                .call("POST", "/element", Some(json!({"using": "css selector", "value": css})))
                .await;
            found[ELEMENT]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| found.to_string())
        })
        .await
    }

    pub async fn click(&self, css: &str) {
        let id = self.find(css).await;
        self.call("POST", &format!("/element/{id}/click"), None)
            .await;
    }

    /// Clears the field and types `text` into it, as a user would.
    pub async fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.call("POST", &format!("/element/{id}/clear"), None)
            .await;
        self.call(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    /// The rendered text of the element `css` matches (empty when there is none).
    pub async fn text(&self, css: &str) -> String {
        self.script(
            "const e = document.querySelector(arguments[0]); return e ? e.innerText : ''",
            json!([css]),
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// Waits until the text at `css` contains `wanted`; returns it.
    pub async fn wait_text(&self, css: &str, wanted: &str) -> String {
        wait_for_value(&format!("{wanted:?} at {css}"), || async move {
            let text = self.text(css).await;
            if text.contains(wanted) {
                Ok(text)
            } else {
                Err(text)
            }
        })
        .await
    }

    /// Whether an element matches `css` and is shown.
    pub async fn shown(&self, css: &str) -> bool {
        self.script(
            "const e = document.querySelector(arguments[0]); return !!e && e.getClientRects().length > 0",
            json!([css]),
        )
        .await
            == json!(true)
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&self) -> Vec<u8> {
        use base64::Engine as _;
        let png = self.call("GET", "/screenshot", None).await;
        base64::engine::general_purpose::STANDARD
            .decode(png.as_str().expect("a base64 screenshot"))
            .expect("valid base64")
    }

    /// Ends the session and chromedriver.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(10), async {
            let url = self.base.clone();
            self.http.delete(url).send().await
        })
        .await;
        self.end_group();
    }

    /// Kills chromedriver and every Chromium process it started.
    fn end_group(&mut self) {
        if let Some(group) = rustix::process::Pid::from_raw(self.driver.id() as i32) {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A failed test still ends its chromedriver and browser.
        self.end_group();
    }
}
