//! What one trigger's dispatcher knows about itself, for its status and `herald describe`:
//! lag and the last few failed attempts. Updated by the dispatcher, read by the admin API.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

/// How many failed attempts are remembered.
pub const RECENT_ERRORS: usize = 5;

const UNKNOWN: u64 = u64::MAX;

/// A failed delivery attempt, as shown to people.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RecentError {
    /// RFC 3339.
    pub time: String,
    pub event_id: String,
    pub target: String,
    pub attempt: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    pub error: String,
}

#[derive(Debug)]
pub struct TriggerStats {
    lag_events: AtomicU64,
    lag_millis: AtomicU64,
    recent_errors: Mutex<VecDeque<RecentError>>,
    /// The trigger's metric handles.
    pub(crate) metrics: crate::metrics::TriggerMetrics,
}

impl Default for TriggerStats {
    fn default() -> Self {
        Self {
            lag_events: AtomicU64::new(UNKNOWN),
            lag_millis: AtomicU64::new(0),
            recent_errors: Mutex::new(VecDeque::with_capacity(RECENT_ERRORS)),
            metrics: Default::default(),
        }
    }
}

impl TriggerStats {
    pub fn set_lag(&self, events: Option<u64>, oldest: Option<Duration>) {
        self.lag_events
            .store(events.unwrap_or(UNKNOWN), Ordering::Relaxed);
        self.lag_millis.store(
            oldest.map(|d| d.as_millis() as u64).unwrap_or(0),
            Ordering::Relaxed,
        );
    }

    /// Events not finished yet, when the backend knows it.
    pub fn lag_events(&self) -> Option<u64> {
        Some(self.lag_events.load(Ordering::Relaxed)).filter(|&n| n != UNKNOWN)
    }

    /// Age of the oldest unfinished event.
    pub fn lag(&self) -> Duration {
        Duration::from_millis(self.lag_millis.load(Ordering::Relaxed))
    }

    pub fn record_error(&self, error: RecentError) {
        // Never held across an await: push and return.
        if let Ok(mut errors) = self.recent_errors.lock() {
            if errors.len() == RECENT_ERRORS {
                errors.pop_front();
            }
            errors.push_back(error);
        }
    }

    /// Oldest first.
    pub fn recent_errors(&self) -> Vec<RecentError> {
        self.recent_errors
            .lock()
            .map(|errors| errors.iter().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_errors_and_unknown_lag() {
        let stats = TriggerStats::default();
        assert_eq!(stats.lag_events(), None);
        stats.set_lag(Some(3), Some(Duration::from_millis(1500)));
        assert_eq!(stats.lag_events(), Some(3));
        assert_eq!(stats.lag(), Duration::from_millis(1500));
        for attempt in 1..=7 {
            stats.record_error(RecentError {
                time: String::new(),
                event_id: "e".into(),
                target: "t".into(),
                attempt,
                status: Some(500),
                error: String::new(),
            });
        }
        let kept: Vec<u32> = stats.recent_errors().iter().map(|e| e.attempt).collect();
        assert_eq!(kept, [3, 4, 5, 6, 7]);
    }
}
