//! Retry policy: exponential backoff with full jitter, and the clock-skew correction.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use rand::Rng;
use time::OffsetDateTime;

use super::config::ConfigError;

/// How often and how patiently transient failures are retried.
///
/// Attempt `n` (counting from 1) that fails transiently is followed by a sleep drawn uniformly
/// from `0 ..= min(max_delay, base_delay * 2^(n-1))` ("full jitter").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryConfig {
    /// Total attempts per request, the first one included (1 = no retries).
    pub max_attempts: u32,
    /// Backoff cap for the first retry.
    pub base_delay: Duration,
    /// Largest backoff between two attempts.
    pub max_delay: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: 5,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl RetryConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_attempts == 0 {
            return Err(ConfigError::InvalidRetry("max_attempts must be at least 1"));
        }
        if self.max_attempts > 100 {
            return Err(ConfigError::InvalidRetry(
                "max_attempts must be at most 100",
            ));
        }
        if self.base_delay > self.max_delay {
            return Err(ConfigError::InvalidRetry(
                "base_delay must not exceed max_delay",
            ));
        }
        Ok(())
    }

    /// The upper bound of the sleep after failed attempt `attempt` (1-based).
    pub fn backoff_cap(&self, attempt: u32) -> Duration {
        let shift = attempt.saturating_sub(1).min(20);
        self.base_delay
            .saturating_mul(1u32 << shift)
            .min(self.max_delay)
    }

    /// A random sleep (full jitter) after failed attempt `attempt` (1-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        full_jitter(self.backoff_cap(attempt))
    }
}

/// Full jitter: a sleep drawn uniformly from `0 ..= cap`.
pub(crate) fn full_jitter(cap: Duration) -> Duration {
    let cap = cap.as_micros() as u64;
    Duration::from_micros(rand::rng().random_range(0..=cap))
}

/// Offset, in seconds, added to the local clock when signing; learned from the server's
/// `Date` header after a `RequestTimeTooSkewed` answer.
#[derive(Debug, Default)]
pub(crate) struct ClockSkew(AtomicI64);

/// Skew beyond which a signature failure is blamed on the clock.
pub(crate) const SKEW_TOLERANCE_SECS: i64 = 5 * 60;

impl ClockSkew {
    pub(crate) fn offset(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }

    pub(crate) fn set(&self, secs: i64) {
        self.0.store(secs, Ordering::Relaxed)
    }

    /// The time to sign with: local time plus the learned offset.
    pub(crate) fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc() + time::Duration::seconds(self.offset())
    }

    /// Given the server's `Date` header value and the time a request was signed with, adjusts
    /// the offset if the two differ by more than the tolerance. Returns whether it changed.
    pub(crate) fn correct_from(&self, server_date: &str, signed_at: OffsetDateTime) -> bool {
        let Ok(server) = httpdate::parse_http_date(server_date) else {
            return false;
        };
        let server = OffsetDateTime::from(server);
        let diff = (server - signed_at).whole_seconds();
        if diff.abs() <= SKEW_TOLERANCE_SECS {
            return false;
        }
        let local = OffsetDateTime::now_utc();
        self.set((server - local).whole_seconds());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_and_grows() {
        let r = RetryConfig {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        assert_eq!(r.backoff_cap(1), Duration::from_millis(100));
        assert_eq!(r.backoff_cap(2), Duration::from_millis(200));
        assert_eq!(r.backoff_cap(4), Duration::from_millis(800));
        assert_eq!(r.backoff_cap(5), Duration::from_secs(1));
        assert_eq!(r.backoff_cap(u32::MAX), Duration::from_secs(1));
        for attempt in 1..12 {
            for _ in 0..50 {
                assert!(r.backoff(attempt) <= r.backoff_cap(attempt));
            }
        }
    }

    #[test]
    fn validate_rejects_nonsense() {
        let mut r = RetryConfig::default();
        r.validate().unwrap();
        r.max_attempts = 0;
        assert!(r.validate().is_err());
        let r = RetryConfig {
            base_delay: Duration::from_secs(5),
            max_delay: Duration::from_secs(1),
            ..RetryConfig::default()
        };
        assert!(r.validate().is_err());
    }

    #[test]
    fn skew_correction() {
        let skew = ClockSkew::default();
        let now = OffsetDateTime::now_utc();
        let server = httpdate::fmt_http_date((now + time::Duration::hours(1)).into());
        // A request signed an hour behind the server: corrected to about +3600 s.
        assert!(skew.correct_from(&server, now));
        assert!((skew.offset() - 3600).abs() <= 5, "{}", skew.offset());
        // Within tolerance: unchanged.
        assert!(!skew.correct_from(&server, skew.now()));
        assert!(!skew.correct_from("garbage", now));
    }
}
