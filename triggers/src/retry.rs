//! Retry policy (how long to wait, how often) kept apart from classification (what to retry).

use std::time::{Duration, SystemTime};

use herald_crds::duration::parse_iso8601;
use herald_crds::{BackoffPolicy, DeliverySpec};

/// Knative's per-attempt timeout default in Herald (README "Delivery semantics"): 60 s.
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(60);

/// How many retries and how far apart (README "Delivery semantics").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub retry: u32,
    pub backoff_policy: Option<BackoffPolicy>,
    pub backoff_delay: Duration,
    /// `None`: honour `Retry-After` uncapped; `Some(ZERO)`: ignore it; else cap it.
    pub retry_after_max: Option<Duration>,
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::from_spec(&DeliverySpec::default())
    }
}

impl RetryPolicy {
    /// Builds the policy from a validated `DeliverySpec` (invalid durations count as unset).
    pub fn from_spec(spec: &DeliverySpec) -> Self {
        let duration = |text: &Option<String>| text.as_deref().and_then(|t| parse_iso8601(t).ok());
        Self {
            retry: spec.retry.unwrap_or(0).max(0) as u32,
            backoff_policy: spec.backoff_policy,
            backoff_delay: duration(&spec.backoff_delay).unwrap_or(Duration::ZERO),
            retry_after_max: duration(&spec.retry_after_max),
            timeout: duration(&spec.timeout).unwrap_or(DEFAULT_ATTEMPT_TIMEOUT),
        }
    }

    /// The wait before retry `k` (1-based): linear `delay·k`, exponential `delay·2^(k-1)`,
    /// nothing without a policy.
    pub fn backoff(&self, k: u32) -> Duration {
        match self.backoff_policy {
            None => Duration::ZERO,
            Some(BackoffPolicy::Linear) => self.backoff_delay.saturating_mul(k),
            Some(BackoffPolicy::Exponential) => self
                .backoff_delay
                .saturating_mul(2u32.saturating_pow(k.saturating_sub(1))),
        }
    }

    /// The wait before retry `k` given the subscriber's `Retry-After` (only sent with 429/503):
    /// the larger of the two, the header capped by `retryAfterMax`.
    pub fn wait_before(&self, k: u32, retry_after: Option<Duration>) -> Duration {
        let backoff = self.backoff(k);
        let honoured = match (retry_after, self.retry_after_max) {
            (None, _) => Duration::ZERO,
            (Some(_), Some(max)) if max.is_zero() => Duration::ZERO,
            (Some(ra), Some(max)) => ra.min(max),
            (Some(ra), None) => ra,
        };
        backoff.max(honoured)
    }
}

/// What an HTTP status means for delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusClass {
    Success,
    Retryable,
    Permanent,
}

/// Section 0: 2xx succeed; 404, 408, 409, 429 and 5xx are retried; 3xx and other 4xx are not.
pub fn classify(status: u16) -> StatusClass {
    match status {
        200..=299 => StatusClass::Success,
        404 | 408 | 409 | 429 | 500..=599 => StatusClass::Retryable,
        300..=499 => StatusClass::Permanent,
        // 1xx and codes outside the table: the spec says treat unknown codes as retriable.
        _ => StatusClass::Retryable,
    }
}

/// Parses `Retry-After` as delta-seconds or an HTTP-date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(kind: BackoffPolicy, millis: u64) -> RetryPolicy {
        RetryPolicy {
            retry: 5,
            backoff_policy: Some(kind),
            backoff_delay: Duration::from_millis(millis),
            retry_after_max: None,
            timeout: DEFAULT_ATTEMPT_TIMEOUT,
        }
    }

    #[test]
    fn backoff_formulas() {
        let linear = policy(BackoffPolicy::Linear, 100);
        let exp = policy(BackoffPolicy::Exponential, 100);
        let ms = |d: Duration| d.as_millis();
        assert_eq!([1, 2, 3].map(|k| ms(linear.backoff(k))), [100, 200, 300]);
        assert_eq!(
            [1, 2, 3, 4].map(|k| ms(exp.backoff(k))),
            [100, 200, 400, 800]
        );
        assert_eq!(RetryPolicy::default().backoff(3), Duration::ZERO);
    }

    #[test]
    fn retry_after_is_the_larger_and_capped() {
        let mut p = policy(BackoffPolicy::Linear, 100);
        assert_eq!(
            p.wait_before(1, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(
            p.wait_before(1, Some(Duration::from_millis(10))),
            Duration::from_millis(100)
        );
        p.retry_after_max = Some(Duration::from_millis(500));
        assert_eq!(
            p.wait_before(1, Some(Duration::from_secs(2))),
            Duration::from_millis(500)
        );
        p.retry_after_max = Some(Duration::ZERO);
        assert_eq!(
            p.wait_before(1, Some(Duration::from_secs(2))),
            Duration::from_millis(100)
        );
    }

    #[test]
    fn classification_table() {
        for s in [200, 201, 202, 204] {
            assert_eq!(classify(s), StatusClass::Success);
        }
        for s in [404, 408, 409, 429, 500, 502, 503, 599] {
            assert_eq!(classify(s), StatusClass::Retryable, "{s}");
        }
        for s in [301, 302, 400, 401, 403, 405, 410, 413, 422] {
            assert_eq!(classify(s), StatusClass::Permanent, "{s}");
        }
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn from_spec_defaults() {
        let p = RetryPolicy::from_spec(&DeliverySpec::broker_default());
        assert_eq!(p.retry, 10);
        assert_eq!(p.backoff(1), Duration::from_millis(200));
        assert_eq!(p.timeout, DEFAULT_ATTEMPT_TIMEOUT);
    }
}
