//! One logical operation's retry budget: the attempts made by its requests
//! and by the resumptions of its body, counted together, and one backoff
//! sequence for them all (as `object_store`'s `RetryContext`).
//!
//! A GET whose requests fail twice and whose body is cut three times has
//! made five attempts of its `max_attempts`, and the next sleep is the
//! sixth step of the sequence, not the first of a fresh one.

use std::time::Duration;

use super::error::S3Error;
use super::retry::{full_jitter, RetryConfig};

/// Draws the sleep before the next attempt from `0 ..= cap`.
pub(crate) type Jitter = fn(Duration) -> Duration;

/// The attempts of one logical operation and where it is in its backoff sequence.
#[derive(Debug, Clone)]
pub(crate) struct RetryContext {
    config: RetryConfig,
    /// Attempts begun so far.
    attempts: u32,
    jitter: Jitter,
}

impl RetryContext {
    /// A fresh budget of `config.max_attempts`.
    pub(crate) fn new(config: &RetryConfig) -> Self {
        Self::with_jitter(config, full_jitter)
    }

    /// A fresh budget drawing its sleeps with `jitter`.
    pub(crate) fn with_jitter(config: &RetryConfig, jitter: Jitter) -> Self {
        RetryContext {
            config: config.clone(),
            attempts: 0,
            jitter,
        }
    }

    /// Counts the start of an attempt (a request sent); returns its number, from 1.
    pub(crate) fn begin(&mut self) -> u32 {
        self.attempts += 1;
        self.attempts
    }

    /// Un-counts the attempt just begun: its failure was put right
    /// without spending the budget (a region learned, credentials
    /// refreshed, the clock corrected).
    pub(crate) fn refund(&mut self) {
        self.attempts = self.attempts.saturating_sub(1);
    }

    /// Attempts begun so far.
    pub(crate) fn attempts(&self) -> u32 {
        self.attempts
    }

    /// After the current attempt failed with the transient `err`: the
    /// sleep before the next attempt, or, with the budget spent, the final
    /// error (naming the attempts made and the last failure when there
    /// was more than one).
    pub(crate) fn next_delay(&mut self, err: S3Error) -> Result<Duration, S3Error> {
        if self.attempts >= self.config.max_attempts {
            return Err(self.give_up(err));
        }
        Ok((self.jitter)(self.config.backoff_cap(self.attempts.max(1))))
    }

    /// `err` as the operation's final error: wrapped in
    /// [`S3Error::RetriesExhausted`] when more than one attempt was made.
    pub(crate) fn give_up(&self, err: S3Error) -> S3Error {
        match err {
            e @ S3Error::RetriesExhausted { .. } => e,
            e if self.attempts > 1 => S3Error::RetriesExhausted {
                attempts: self.attempts,
                last: Box::new(e),
            },
            e => e,
        }
    }

    /// Sleeps before the next attempt, or returns the final error (see [`Self::next_delay`]).
    pub(crate) async fn back_off(&mut self, err: S3Error) -> Result<(), S3Error> {
        let delay = self.next_delay(err)?;
        tokio::time::sleep(delay).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(max_attempts: u32) -> RetryConfig {
        RetryConfig {
            max_attempts,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(500),
        }
    }

    fn short(got: u64) -> S3Error {
        S3Error::ShortBody {
            op: "GET \"k\"".into(),
            expected: 10,
            got,
        }
    }

    fn slow_down() -> S3Error {
        S3Error::Service {
            status: 503,
            code: "SlowDown".into(),
            message: String::new(),
            request_id: None,
            key: Some("k".into()),
        }
    }

    #[test]
    fn one_backoff_sequence_across_kinds_of_failure() {
        let mut ctx = RetryContext::with_jitter(&config(6), |cap| cap);
        let mut delays = Vec::new();
        // Requests fail, bodies are cut: each is one more step of the same sequence.
        for err in [slow_down(), short(1), slow_down(), short(4), short(7)] {
            ctx.begin();
            delays.push(ctx.next_delay(err).unwrap().as_millis());
        }
        assert_eq!(delays, [100, 200, 400, 500, 500]);
        assert_eq!(ctx.attempts(), 5);
        ctx.begin();
        let err = ctx.next_delay(short(9)).unwrap_err();
        match err {
            S3Error::RetriesExhausted { attempts, last } => {
                assert_eq!(attempts, 6);
                assert!(
                    matches!(*last, S3Error::ShortBody { got: 9, .. }),
                    "{last:?}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn full_jitter_stays_under_the_cap() {
        let mut ctx = RetryContext::new(&config(100));
        for n in 1..100 {
            ctx.begin();
            let cap = config(100).backoff_cap(n);
            assert!(ctx.next_delay(short(0)).unwrap() <= cap);
        }
    }

    #[test]
    fn refunded_attempts_do_not_spend_the_budget() {
        let mut ctx = RetryContext::with_jitter(&config(2), |cap| cap);
        ctx.begin();
        ctx.refund();
        ctx.begin();
        assert_eq!(ctx.next_delay(slow_down()).unwrap().as_millis(), 100);
        ctx.begin();
        assert!(matches!(
            ctx.next_delay(slow_down()),
            Err(S3Error::RetriesExhausted { attempts: 2, .. })
        ));
    }

    #[test]
    fn a_single_attempt_fails_with_its_own_error() {
        let mut ctx = RetryContext::with_jitter(&config(1), |cap| cap);
        ctx.begin();
        assert!(matches!(
            ctx.next_delay(slow_down()),
            Err(S3Error::Service { status: 503, .. })
        ));
        // An error already final is not wrapped twice.
        let mut ctx = RetryContext::with_jitter(&config(3), |cap| cap);
        for _ in 0..3 {
            ctx.begin();
        }
        let inner = ctx.give_up(slow_down());
        assert!(matches!(
            ctx.give_up(inner),
            S3Error::RetriesExhausted { attempts: 3, ref last } if matches!(**last, S3Error::Service { .. })
        ));
    }
}
