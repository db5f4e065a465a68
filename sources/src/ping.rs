//! PingSource (`sources.knative.dev/v1`): the event Knative's ping adapter emits, on a cron
//! schedule. Missed ticks are not caught up; each tick sends one event with a new id.

use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use croner::parser::{CronParser, Seconds};
use croner::Cron;
use herald_broker::CloudEvent;
use herald_crds::{FieldError, PingSourceSpec};
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::{SinkClient, Source, SourceError};

/// Knative's default schedule: every minute.
pub const DEFAULT_SCHEDULE: &str = "* * * * *";
/// The type of every ping event.
pub const PING_EVENT_TYPE: &str = "dev.knative.sources.ping";
/// Ticks whose events may still be being sent; a tick beyond this is skipped (and logged).
const MAX_SENDS_IN_FLIGHT: usize = 8;

/// When a PingSource fires.
#[derive(Debug, Clone)]
pub struct Schedule {
    timing: Timing,
    zone: TimeZone,
}

#[derive(Debug, Clone)]
enum Timing {
    Cron(Box<Cron>),
    /// Herald's `@every <duration>`.
    Every(Duration),
}

impl Schedule {
    /// Parses Knative's forms (5 fields, 6 with seconds, `@hourly`-style descriptors,
    /// a `CRON_TZ=` prefix) and `@every <duration>`, read in `timezone` (default UTC).
    pub fn parse(schedule: &str, timezone: Option<&str>) -> Result<Self, FieldError> {
        let mut text = schedule.trim();
        let mut zone_name = None;
        for prefix in ["CRON_TZ=", "TZ="] {
            if let Some(rest) = text.strip_prefix(prefix) {
                let (zone, rest) = rest.split_once(char::is_whitespace).ok_or_else(|| {
                    FieldError::new(
                        "spec.schedule",
                        format!("{schedule:?}: a schedule must follow {prefix}"),
                    )
                })?;
                zone_name = Some(zone.to_owned());
                text = rest.trim();
            }
        }
        let zone = match (timezone, zone_name.as_deref()) {
            (Some(_), Some(_)) => return Err(FieldError::new(
                "spec.timezone",
                "set the time zone either here or as a CRON_TZ= prefix of spec.schedule, not both",
            )),
            (Some(name), None) => TimeZone::get(name).map_err(|e| {
                FieldError::new(
                    "spec.timezone",
                    format!("{name:?} is not an IANA time zone: {e}"),
                )
            })?,
            (None, Some(name)) => TimeZone::get(name).map_err(|e| {
                FieldError::new(
                    "spec.schedule",
                    format!("CRON_TZ={name}: not an IANA time zone: {e}"),
                )
            })?,
            (None, None) => TimeZone::UTC,
        };
        let timing = if let Some(every) = text.strip_prefix("@every") {
            let every = every.trim();
            let period = humantime::parse_duration(every).map_err(|e| {
                FieldError::new(
                    "spec.schedule",
                    format!("@every {every:?}: {e} (use e.g. @every 30s or @every 1m30s)"),
                )
            })?;
            if period < Duration::from_secs(1) {
                return Err(FieldError::new("spec.schedule", "@every needs at least 1s"));
            }
            Timing::Every(period)
        } else {
            let cron = CronParser::builder()
                .seconds(Seconds::Optional)
                .build()
                .parse(text)
                .map_err(|e| {
                    FieldError::new(
                        "spec.schedule",
                        format!("{schedule:?} is not a cron schedule: {e} (5 fields, 6 with seconds first, or @hourly, @daily, @every 10s, ...)"),
                    )
                })?;
            Timing::Cron(Box::new(cron))
        };
        Ok(Self { timing, zone })
    }

    /// The first tick strictly after `now`.
    pub fn next_after(&self, now: Timestamp) -> Option<Timestamp> {
        match &self.timing {
            Timing::Every(period) => {
                let period = jiff::SignedDuration::try_from(*period).ok()?;
                now.checked_add(period).ok()
            }
            Timing::Cron(cron) => {
                let local: Zoned = now.to_zoned(self.zone.clone());
                cron.find_next_occurrence(&local, false)
                    .ok()
                    .map(|z| z.timestamp())
            }
        }
    }
}

/// A PingSource's spec, checked: the schedule and the data to send.
#[derive(Debug, Clone)]
pub struct PingSource {
    pub namespace: String,
    pub name: String,
    schedule: Schedule,
    content_type: Option<String>,
    data: Option<Bytes>,
}

/// Every rule of Knative's PingSource validation, each error naming its field.
pub fn validate(spec: &PingSourceSpec) -> Result<(), FieldError> {
    PingSource::new("", "", spec).map(|_| ())
}

impl PingSource {
    pub fn new(namespace: &str, name: &str, spec: &PingSourceSpec) -> Result<Self, FieldError> {
        let schedule = Schedule::parse(
            spec.schedule.as_deref().unwrap_or(DEFAULT_SCHEDULE),
            spec.timezone.as_deref(),
        )?;
        let data = match (&spec.data, &spec.data_base64) {
            (Some(_), Some(_)) => {
                return Err(FieldError::new(
                    "spec.dataBase64",
                    "set data or dataBase64, not both",
                ))
            }
            (Some(text), None) => Some((Bytes::from(text.clone()), "spec.data")),
            (None, Some(encoded)) => Some((
                Bytes::from(
                    base64::engine::general_purpose::STANDARD
                        .decode(encoded.trim())
                        .map_err(|e| {
                            FieldError::new("spec.dataBase64", format!("not base64: {e}"))
                        })?,
                ),
                "spec.dataBase64",
            )),
            (None, None) => None,
        };
        if let (Some((bytes, field)), Some(content_type)) = (&data, &spec.content_type) {
            if herald_broker::json::media_type_essence(content_type) == "application/json"
                && !serde_json::from_slice::<serde_json::Value>(bytes).is_ok_and(|v| v.is_object())
            {
                return Err(FieldError::new(
                    *field,
                    "with contentType application/json the data must be a JSON object",
                ));
            }
        }
        Ok(Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            schedule,
            content_type: spec.content_type.clone(),
            data: data.map(|(bytes, _)| bytes),
        })
    }

    /// The event of one tick, as Knative's adapter builds it.
    pub fn event(&self) -> CloudEvent {
        let mut event = CloudEvent::new();
        event.set("specversion", "1.0");
        event.set("id", uuid::Uuid::new_v4().to_string());
        event.set("type", PING_EVENT_TYPE);
        event.set(
            "source",
            format!(
                "/apis/v1/namespaces/{}/pingsources/{}",
                self.namespace, self.name
            ),
        );
        event.set(
            "time",
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        );
        if let Some(data) = &self.data {
            if let Some(content_type) = &self.content_type {
                event.set("datacontenttype", content_type.as_str());
            }
            event.set_data(Some(data.clone()));
        }
        event
    }
}

#[async_trait::async_trait]
impl Source for PingSource {
    fn describe(&self) -> String {
        format!("PingSource {}/{}", self.namespace, self.name)
    }

    async fn run(&self, sink: SinkClient, shutdown: CancellationToken) -> Result<(), SourceError> {
        let mut sends = JoinSet::new();
        loop {
            let now = Timestamp::now();
            let Some(next) = self.schedule.next_after(now) else {
                return Err(SourceError::Input("the schedule has no next tick".into()));
            };
            let wait = Duration::try_from(next.duration_since(now)).unwrap_or_default();
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.cancelled() => {
                    sends.abort_all();
                    return Ok(());
                }
            }
            while sends.try_join_next().is_some() {}
            if sends.len() >= MAX_SENDS_IN_FLIGHT {
                tracing::warn!(source = %self.describe(), "sink too slow: tick skipped");
                continue;
            }
            let (sink, event, source) = (sink.clone(), self.event(), self.describe());
            sends.spawn(async move {
                if let Err(error) = sink.send(event).await {
                    tracing::warn!(%source, %error, "ping event not delivered");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn cron_forms_and_time_zones() {
        let nine_berlin = Schedule::parse("0 9 * * *", Some("Europe/Berlin")).unwrap();
        // 09:00 in Berlin is 08:00 UTC in winter and 07:00 UTC in summer.
        assert_eq!(
            nine_berlin.next_after(at("2026-01-15T07:00:00Z")),
            Some(at("2026-01-15T08:00:00Z"))
        );
        assert_eq!(
            nine_berlin.next_after(at("2026-07-15T07:30:00Z")),
            Some(at("2026-07-16T07:00:00Z"))
        );
        let prefixed = Schedule::parse("CRON_TZ=Europe/Berlin 0 9 * * *", None).unwrap();
        assert_eq!(
            prefixed.next_after(at("2026-01-15T07:00:00Z")),
            Some(at("2026-01-15T08:00:00Z"))
        );
        let seconds = Schedule::parse("*/10 * * * * *", None).unwrap();
        assert_eq!(
            seconds.next_after(at("2026-01-15T07:00:01Z")),
            Some(at("2026-01-15T07:00:10Z"))
        );
        let hourly = Schedule::parse("@hourly", None).unwrap();
        assert_eq!(
            hourly.next_after(at("2026-01-15T07:00:00Z")),
            Some(at("2026-01-15T08:00:00Z"))
        );
        let every = Schedule::parse("@every 1m30s", None).unwrap();
        assert_eq!(
            every.next_after(at("2026-01-15T07:00:00Z")),
            Some(at("2026-01-15T07:01:30Z"))
        );
    }

    #[test]
    fn errors_name_the_field() {
        let field =
            |schedule: &str, tz: Option<&str>| Schedule::parse(schedule, tz).unwrap_err().path;
        assert_eq!(field("61 * * * *", None), "spec.schedule");
        assert_eq!(field("not cron", None), "spec.schedule");
        assert_eq!(field("@every soon", None), "spec.schedule");
        assert_eq!(field("* * * * *", Some("Mars/Olympus")), "spec.timezone");
        assert_eq!(
            field("CRON_TZ=Mars/Olympus * * * * *", None),
            "spec.schedule"
        );
        assert_eq!(field("CRON_TZ=UTC * * * * *", Some("UTC")), "spec.timezone");
        let spec = |data: Option<&str>, b64: Option<&str>, ct: Option<&str>| PingSourceSpec {
            data: data.map(str::to_owned),
            data_base64: b64.map(str::to_owned),
            content_type: ct.map(str::to_owned),
            ..PingSourceSpec::default()
        };
        assert_eq!(
            validate(&spec(Some("x"), Some("eA=="), None))
                .unwrap_err()
                .path,
            "spec.dataBase64"
        );
        assert_eq!(
            validate(&spec(None, Some("!!"), None)).unwrap_err().path,
            "spec.dataBase64"
        );
        assert_eq!(
            validate(&spec(Some("[1]"), None, Some("application/json")))
                .unwrap_err()
                .path,
            "spec.data"
        );
        assert!(validate(&spec(Some(r#"{"a":1}"#), None, Some("application/json"))).is_ok());
        assert!(validate(&spec(None, Some("aGVsbG8="), Some("text/plain"))).is_ok());
    }

    #[test]
    fn the_event_is_knatives() {
        let spec = PingSourceSpec {
            content_type: Some("application/json".into()),
            data: Some(r#"{"message":"hi"}"#.into()),
            ..PingSourceSpec::default()
        };
        let source = PingSource::new("ns", "p", &spec).unwrap();
        let (one, two) = (source.event(), source.event());
        assert_eq!(one.event_type(), PING_EVENT_TYPE);
        assert_eq!(
            one.text("source").unwrap(),
            "/apis/v1/namespaces/ns/pingsources/p"
        );
        assert_eq!(one.text("datacontenttype").unwrap(), "application/json");
        assert_ne!(one.id(), two.id());
        let empty = PingSource::new("ns", "p", &PingSourceSpec::default())
            .unwrap()
            .event();
        assert!(
            empty.text("datacontenttype").is_none(),
            "no data, no content type"
        );
    }
}
