//! Concurrent producers sending unique events to a broker, recording what each send got.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What one send got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// 202: the event is durable.
    Accepted,
    /// 503; `retry_after` tells whether the header came with it.
    Refused { retry_after: bool },
    /// No HTTP answer (Herald is down or was killed while answering).
    Unanswered,
    /// Anything else: always a failure of the test.
    Other(u16),
}

/// One send, as the producer saw it.
#[derive(Clone, Debug)]
pub struct Sent {
    pub id: String,
    pub answer: Answer,
    /// When the answer came.
    pub at: Instant,
}

#[derive(Default)]
struct Record {
    sent: Mutex<Vec<Sent>>,
}

/// Producers sending binary-mode events with ids `{producer}-{n}` to the URL last given
/// to [`Load::target`], until stopped.
pub struct Load {
    record: Arc<Record>,
    target: watch::Sender<String>,
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

/// Pause after a send that was not accepted, so that a refusing or absent Herald is not
/// hammered in a busy loop.
const PAUSE_AFTER_REFUSAL: Duration = Duration::from_millis(10);

impl Load {
    /// Starts `producers` producers sending to `url`.
    pub fn start(url: &str, producers: usize) -> Load {
        let record = Arc::new(Record::default());
        let (target, _) = watch::channel(url.to_owned());
        let stop = Arc::new(AtomicBool::new(false));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        let tasks = (0..producers)
            .map(|producer| {
                let (record, stop, http) = (record.clone(), stop.clone(), http.clone());
                let target = target.subscribe();
                tokio::spawn(async move {
                    let mut n = 0u64;
                    while !stop.load(Ordering::SeqCst) {
                        let id = format!("p{producer}-{n}");
                        n += 1;
                        let url = target.borrow().clone();
                        let answer = send(&http, &url, &id).await;
                        let accepted = answer == Answer::Accepted;
                        record.sent.lock().unwrap().push(Sent {
                            id,
                            answer,
                            at: Instant::now(),
                        });
                        if !accepted {
                            tokio::time::sleep(PAUSE_AFTER_REFUSAL).await;
                        }
                    }
                })
            })
            .collect();
        Load {
            record,
            target,
            stop,
            tasks,
        }
    }

    /// Sends to `url` from now on (a restarted Herald listens on new ports).
    pub fn target(&self, url: &str) {
        self.target.send_replace(url.to_owned());
    }

    /// Every send so far.
    pub fn sent(&self) -> Vec<Sent> {
        self.record.sent.lock().unwrap().clone()
    }

    /// The ids that got a 202 so far.
    pub fn accepted(&self) -> Vec<String> {
        self.record
            .sent
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.answer == Answer::Accepted)
            .map(|s| s.id.clone())
            .collect()
    }

    /// Whether some send answered at or after `since` got `answer`.
    pub fn got_since(&self, since: Instant, answer: &Answer) -> bool {
        self.record
            .sent
            .lock()
            .unwrap()
            .iter()
            .any(|s| s.at >= since && &s.answer == answer)
    }

    /// Sends that got each kind of answer, for messages.
    pub fn summary(&self) -> BTreeMap<String, usize> {
        summary(&self.record.sent.lock().unwrap())
    }

    /// Stops the producers and waits for their last sends.
    pub async fn stop(self) -> Vec<Sent> {
        self.stop.store(true, Ordering::SeqCst);
        for task in self.tasks {
            task.await.unwrap();
        }
        self.record.sent.lock().unwrap().clone()
    }
}

async fn send(http: &reqwest::Client, url: &str, id: &str) -> Answer {
    let response = http
        .post(url)
        .header("ce-specversion", "1.0")
        .header("ce-id", id)
        .header("ce-source", "/load")
        .header("ce-type", "t")
        .header("content-type", "text/plain")
        .body(format!("data of {id}"))
        .send()
        .await;
    match response {
        Ok(response) => match response.status().as_u16() {
            202 => Answer::Accepted,
            503 => Answer::Refused {
                retry_after: response.headers().contains_key("retry-after"),
            },
            other => Answer::Other(other),
        },
        Err(_) => Answer::Unanswered,
    }
}

/// How many sends got each kind of answer.
pub fn summary(sent: &[Sent]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for sent in sent {
        *out.entry(format!("{:?}", sent.answer)).or_default() += 1;
    }
    out
}

/// How often each id arrived, from a subscriber's received `ce-id`s.
pub fn arrivals(ids: &[String]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for id in ids {
        *out.entry(id.clone()).or_default() += 1;
    }
    out
}
