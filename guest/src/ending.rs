//! A stream ends cleanly only if its producer succeeded.
//!
//! A byte stream whose producer stopped early (an error, a panic, a
//! cancelled task) must not end like one that is complete: a `gzip` of half
//! a tar would be a well-formed tar.gz, a tar whose writer was dropped gets
//! an end-of-archive marker. [`Ending`] is the one record of how the
//! producer ended that every such stream here consults: the guest's
//! `pack-tar` output (`io::Gated`), the host's pipe between two sandbox
//! stages, and the host's `archive::Finished` reader for any other
//! producer.
//!
//! The rules: the first word counts; until a word comes the stream is not
//! over; only [`Ending::finish`] ends it cleanly; a [`Producer`] guard that
//! is dropped without a word fails it.

use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

/// How a stream's producer ended, shared by the producer's side and the
/// stream's. Cheap to clone; every clone is the same record.
#[derive(Clone, Debug, Default)]
pub struct Ending(Arc<Mutex<State>>);

#[derive(Debug, Default)]
struct State {
    word: Option<Result<(), String>>,
    waker: Option<Waker>,
}

impl Ending {
    /// A record with no word yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn say(&self, word: Result<(), String>) {
        let mut state = self.lock();
        if state.word.is_none() {
            state.word = Some(word);
            if let Some(waker) = state.waker.take() {
                waker.wake();
            }
        }
    }

    /// The producer finished: the stream may end cleanly (unless a word
    /// came first).
    pub fn finish(&self) {
        self.say(Ok(()));
    }

    /// The producer failed: the stream ends with `why` (unless a word came
    /// first).
    pub fn fail(&self, why: impl Into<String>) {
        self.say(Err(why.into()));
    }

    /// The word so far: `None` while the producer runs, then `Ok` if it
    /// finished, or why it failed.
    pub fn word(&self) -> Option<Result<(), String>> {
        self.lock().word.clone()
    }

    /// Whether the producer failed.
    pub fn failed(&self) -> bool {
        matches!(self.lock().word, Some(Err(_)))
    }

    /// The word, or `Pending` until it comes (then `cx` is woken: the last
    /// task to poll is the one woken).
    pub fn poll_word(&self, cx: &mut Context<'_>) -> Poll<Result<(), String>> {
        let mut state = self.lock();
        match &state.word {
            Some(word) => Poll::Ready(word.clone()),
            None => {
                state.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    /// A guard for the code that runs the producer: it says how the
    /// producer ended, and failing to (an early return, a panic) fails the
    /// stream.
    pub fn producer(&self) -> Producer {
        Producer(self.clone())
    }
}

/// Says how a producer ended, once; dropped without a word, it says the
/// producer stopped without finishing.
#[derive(Debug)]
pub struct Producer(Ending);

impl Producer {
    /// The producer finished.
    pub fn finish(self) {
        self.0.finish();
    }

    /// The producer failed, for `why`.
    pub fn fail(self, why: impl Into<String>) {
        self.0.fail(why);
    }

    /// The record this guard speaks for.
    pub fn ending(&self) -> &Ending {
        &self.0
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.0.fail(if std::thread::panicking() {
            "the producer of this stream panicked"
        } else {
            "the producer of this stream stopped without finishing"
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn the_first_word_counts() {
        let ending = Ending::new();
        assert_eq!(ending.word(), None);
        ending.fail("broke");
        ending.finish();
        assert_eq!(ending.word(), Some(Err("broke".into())));
        assert!(ending.failed());
        let ending = Ending::new();
        ending.finish();
        ending.fail("too late");
        assert_eq!(ending.word(), Some(Ok(())));
        assert!(!ending.failed());
    }

    #[test]
    fn a_producer_dropped_without_a_word_fails_the_stream() {
        let ending = Ending::new();
        drop(ending.producer());
        let word = ending.word().unwrap().unwrap_err();
        assert!(word.contains("without finishing"), "{word}");
        let ending = Ending::new();
        ending.producer().finish();
        assert_eq!(ending.word(), Some(Ok(())));
    }

    // Threads: not in WASI.
    #[cfg(not(target_os = "wasi"))]
    #[test]
    fn a_panicking_producer_fails_the_stream() {
        let ending = Ending::new();
        let producer = ending.producer();
        let _ = std::thread::spawn(move || {
            let _producer = producer;
            panic!("the producer panicked (test)");
        })
        .join();
        assert!(ending.word().unwrap().unwrap_err().contains("panicked"));
    }

    #[test]
    fn a_poller_is_woken_by_the_word() {
        let ending = Ending::new();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(ending.poll_word(&mut cx).is_pending());
        ending.finish();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert_eq!(ending.poll_word(&mut cx), Poll::Ready(Ok(())));
    }
}
