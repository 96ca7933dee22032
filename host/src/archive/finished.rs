//! A reader that ends only if its producer finished: the rule of
//! [`Ending`] on the reading side of any byte stream whose producer runs
//! elsewhere, such as a pack streamed straight into an upload.
//!
//! ```no_run
//! # async fn example(archiver: ccws::archive::Archiver, store: ccws::store::Store) -> Result<(), Box<dyn std::error::Error>> {
//! use ccws::archive::{Ending, Finished, PackOptions};
//! let (writer, reader) = tokio::io::duplex(1 << 20);
//! let ending = Ending::new();
//! let producer = ending.producer();
//! let packer = archiver.clone();
//! tokio::spawn(async move {
//!     match packer.pack("/some/dir".as_ref(), writer, &PackOptions::default(), None).await {
//!         Ok(_) => producer.finish(),
//!         Err(e) => producer.fail(e.to_string()),
//!     }
//! });
//! // The upload sees the end of the body only if the pack succeeded; a
//! // failed (or dropped) pack fails the body instead.
//! let body = Finished::new(reader, ending);
//! store.put_stream("key", body, ccws::s3::PutCondition::None).await?;
//! # Ok(())
//! # }
//! ```

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use ccws_archive::Ending;
use tokio::io::{AsyncRead, ReadBuf};

/// `inner`'s bytes, whose end is an end only once `ending` says the
/// producer finished, and an error if it says the producer failed.
pub struct Finished<R> {
    inner: R,
    ending: Ending,
}

impl<R> Finished<R> {
    /// Read `inner`, ending as `ending` says.
    pub fn new(inner: R, ending: Ending) -> Self {
        Finished { inner, ending }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Finished<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        if buf.filled().len() > before || buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        match ready!(self.ending.poll_word(cx)) {
            Ok(()) => Poll::Ready(Ok(())),
            Err(why) => Poll::Ready(Err(io::Error::other(format!(
                "the stream's producer failed: {why}"
            )))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn read_all(finish: Option<Result<(), &'static str>>) -> (Vec<u8>, io::Result<usize>) {
        let (mut w, r) = tokio::io::duplex(64);
        let ending = Ending::new();
        let producer = ending.producer();
        let writer = tokio::spawn(async move {
            w.write_all(b"some bytes").await.unwrap();
            drop(w);
            // The word comes after the pipe's end: the reader waits for it.
            tokio::task::yield_now().await;
            match finish {
                Some(Ok(())) => producer.finish(),
                Some(Err(why)) => producer.fail(why),
                None => drop(producer),
            }
        });
        let mut got = Vec::new();
        let read = Finished::new(r, ending).read_to_end(&mut got).await;
        writer.await.unwrap();
        (got, read)
    }

    #[tokio::test]
    async fn the_end_is_clean_only_when_the_producer_finished() {
        let (got, read) = read_all(Some(Ok(()))).await;
        assert_eq!(got, b"some bytes");
        assert_eq!(read.unwrap(), 10);
        let (got, read) = read_all(Some(Err("disk full"))).await;
        assert_eq!(got, b"some bytes");
        assert!(read.unwrap_err().to_string().contains("disk full"));
        let (_, read) = read_all(None).await;
        let e = read.unwrap_err().to_string();
        assert!(e.contains("without finishing"), "{e}");
    }
}
