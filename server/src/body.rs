//! Request bodies read with timeouts, so that a client that stops sending a body in the middle
//! cannot hold its connection, or a blob's temporary file, for longer than the timeouts allow.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::error::PayloadError;
use bytes::Bytes;
use futures_util::Stream;
use tokio::time::{Instant, Sleep};

/// Error from reading a request body.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error(
        "no byte of the request body arrived for {}; send the body without pausing",
        humantime::format_duration(*idle)
    )]
    Idle { idle: Duration },

    #[error(
        "the request body took longer than {}, the limit for this request",
        humantime::format_duration(*limit)
    )]
    TooSlow { limit: Duration },

    #[error("failed to read the request body: {reason}")]
    Read { reason: String },
}

impl BodyError {
    /// Returns whether the body failed to arrive in time, rather than failed to be read.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Idle { .. } | Self::TooSlow { .. })
    }
}

/// A body stream that fails with [`BodyError::Idle`] when `idle` passes without a chunk,
/// and with [`BodyError::TooSlow`] when it has not ended within `limit` of its start.
pub struct TimedBody<S> {
    inner: S,
    idle: Duration,
    /// The deadline of the whole body and its time limit, when it has one.
    deadline: Option<(Instant, Duration)>,
    /// Fires at the earlier of the idle timeout and the deadline.
    timer: Pin<Box<Sleep>>,
    timed_out: bool,
}

impl<S> TimedBody<S> {
    /// Wraps `inner`, starting both clocks now.
    pub fn new(inner: S, idle: Duration, limit: Option<Duration>) -> Self {
        let now = Instant::now();
        let deadline = limit.map(|limit| (now + limit, limit));
        let mut body = Self {
            inner,
            idle,
            deadline,
            timer: Box::pin(tokio::time::sleep_until(now + idle)),
            timed_out: false,
        };
        body.restart_timer(now);
        body
    }

    fn restart_timer(&mut self, now: Instant) {
        let idle_end = now + self.idle;
        let end = match self.deadline {
            Some((deadline, _)) => idle_end.min(deadline),
            None => idle_end,
        };
        self.timer.as_mut().reset(end);
    }

    fn timeout_error(&self) -> BodyError {
        match self.deadline {
            Some((deadline, limit)) if Instant::now() >= deadline => BodyError::TooSlow { limit },
            _ => BodyError::Idle { idle: self.idle },
        }
    }
}

/// An error of the stream inside a [`TimedBody`].
pub trait ReadError {
    /// Returns what went wrong and, where the client can mend it, what to send instead.
    fn reason(&self) -> String;
}

impl ReadError for PayloadError {
    fn reason(&self) -> String {
        match self {
            // actix-http's own text ends in the Debug form of an Option, such as "None".
            PayloadError::Incomplete(_) => "the connection ended before the body did, or a \
                chunk size was invalid; send the whole body, in valid chunks if chunked"
                .to_owned(),
            other => other.to_string(),
        }
    }
}

impl ReadError for Infallible {
    fn reason(&self) -> String {
        match *self {}
    }
}

impl<S, E> Stream for TimedBody<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: ReadError,
{
    type Item = Result<Bytes, BodyError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.timed_out {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                this.restart_timer(Instant::now());
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(BodyError::Read {
                reason: error.reason(),
            }))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                if this.timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.timed_out = true;
                Poll::Ready(Some(Err(this.timeout_error())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use futures_util::StreamExt;
    use futures_util::stream;

    use super::*;

    fn chunk() -> Result<Bytes, Infallible> {
        Ok(Bytes::from_static(b"x"))
    }

    #[tokio::test(start_paused = true)]
    async fn pause_fails_with_idle() {
        let body = stream::iter([chunk()]).chain(stream::pending());
        let mut timed = TimedBody::new(body, Duration::from_secs(10), None);
        assert!(timed.next().await.unwrap().is_ok());
        let started = Instant::now();
        let error = timed.next().await.unwrap().unwrap_err();
        assert!(matches!(error, BodyError::Idle { .. }), "{error}");
        assert_eq!(started.elapsed(), Duration::from_secs(10));
        assert!(timed.next().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn trickle_fails_at_limit() {
        let trickle = stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Some((chunk(), ()))
        });
        let limit = Duration::from_secs(30);
        let mut timed = TimedBody::new(Box::pin(trickle), Duration::from_secs(10), Some(limit));
        let started = Instant::now();
        let mut chunks = 0;
        let error = loop {
            match timed.next().await.unwrap() {
                Ok(_) => chunks += 1,
                Err(error) => break error,
            }
        };
        assert!(matches!(error, BodyError::TooSlow { .. }), "{error}");
        assert_eq!(started.elapsed(), limit);
        // The 30th chunk arrives at the deadline itself, and a chunk is taken before the timer.
        assert_eq!(chunks, 30);
        assert!(error.to_string().contains("30s"), "{error}");
    }
}
