//! Publishers: a few keep-alive connections that post the run's messages on a schedule.
//!
//! Message `m` is due at `start + m / rate` (at once when the rate is 0). Each publisher takes
//! the next message number, waits until it is due, stamps the send time into its probe and
//! posts it. Only the status matters: any 2xx counts as accepted, whatever the body contains.

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::clock;
use crate::envelope::{self, Probe};
use crate::http::{self, BodyDecoder, HttpError};
use crate::plan::{self, RunArgs};
use crate::subscriber::MAX_LATENCY_MICROS;
use crate::target::Target;

/// Maximum wait for one publish response.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Maximum publish response body read, in bytes: the relays' replies are under 200 bytes.
const MAX_RESPONSE_BODY: u64 = 64 * 1024;

/// The publishers' results.
#[derive(Debug)]
pub struct PublishOutcome {
    pub attempted: u64,
    pub accepted: u64,
    /// Accepted messages of each channel, indexed by channel.
    pub accepted_per_channel: Vec<u64>,
    pub failed: BTreeMap<String, u64>,
    /// CLOCK_MONOTONIC nanoseconds of the first request and of the last response.
    pub first_sent_nanos: Option<u64>,
    pub last_done_nanos: Option<u64>,
    /// Time from writing a request to reading its whole response, in microseconds.
    pub request_latency: Histogram<u64>,
}

/// Error from one publish request.
#[derive(Debug, thiserror::Error)]
enum PublishError {
    #[error("connect: {0}")]
    Connect(io::Error),

    #[error("send request: {0}")]
    Send(io::Error),

    #[error("response: {0}")]
    Response(#[from] HttpError),

    #[error("response body exceeds {MAX_RESPONSE_BODY} bytes")]
    BodyTooLarge,

    #[error("the server closed the connection in the response body")]
    Truncated,

    #[error("status {0}")]
    Status(u16),

    #[error("timed out after {REQUEST_TIMEOUT:?}")]
    TimedOut,
}

/// Settings shared by the publisher tasks.
struct Schedule {
    target: Target,
    run_id: u64,
    prefix: String,
    channels: u32,
    messages: u64,
    /// Seconds between due times; zero sends at once.
    interval: f64,
    ciphertext_len: usize,
    start: Instant,
    deadline: Instant,
    next: AtomicU64,
}

/// Publishes every message of the run, stopping at `deadline` if they are not all sent.
pub async fn publish_all(args: &RunArgs, run_id: u64, deadline: Instant) -> PublishOutcome {
    let interval = if args.rate > 0.0 {
        1.0 / args.rate
    } else {
        0.0
    };
    let schedule = Arc::new(Schedule {
        target: args.url,
        run_id,
        prefix: args.channel_prefix.clone(),
        channels: args.channels,
        messages: args.messages,
        interval,
        ciphertext_len: args.ciphertext_bytes,
        start: Instant::now(),
        deadline,
        next: AtomicU64::new(0),
    });

    let publishers = u64::from(args.publishers).min(args.messages.max(1));
    let tasks: Vec<_> = (0..publishers)
        .map(|_| tokio::spawn(publisher(schedule.clone())))
        .collect();

    let mut outcome = PublishOutcome::nothing(args.channels);
    for task in tasks {
        match task.await {
            Ok(part) => outcome.merge(part),
            Err(error) => {
                *outcome
                    .failed
                    .entry(format!("publisher task: {error}"))
                    .or_insert(0) += 1
            }
        }
    }
    outcome
}

impl PublishOutcome {
    /// Returns the outcome of publishing nothing to `channels` channels.
    pub fn nothing(channels: u32) -> Self {
        Self {
            attempted: 0,
            accepted: 0,
            accepted_per_channel: vec![0; channels as usize],
            failed: BTreeMap::new(),
            first_sent_nanos: None,
            last_done_nanos: None,
            // 1 µs to MAX_LATENCY_MICROS at 3 significant digits are valid bounds.
            request_latency: Histogram::new_with_bounds(1, MAX_LATENCY_MICROS, 3)
                .expect("valid histogram bounds"),
        }
    }

    fn merge(&mut self, other: Self) {
        self.attempted += other.attempted;
        self.accepted += other.accepted;
        for (total, part) in self
            .accepted_per_channel
            .iter_mut()
            .zip(other.accepted_per_channel)
        {
            *total += part;
        }
        for (reason, count) in other.failed {
            *self.failed.entry(reason).or_insert(0) += count;
        }
        self.first_sent_nanos = min_option(self.first_sent_nanos, other.first_sent_nanos);
        self.last_done_nanos = self.last_done_nanos.max(other.last_done_nanos);
        // `nothing` gives every histogram the same bounds, so adding cannot fail.
        let _ = self.request_latency.add(&other.request_latency);
    }
}

fn min_option(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Publishes over one connection, taking message numbers until none are left.
async fn publisher(schedule: Arc<Schedule>) -> PublishOutcome {
    let mut outcome = PublishOutcome::nothing(schedule.channels);
    let mut connection: Option<TcpStream> = None;
    let mut buffer = Vec::new();

    loop {
        let number = schedule.next.fetch_add(1, Ordering::Relaxed);
        if number >= schedule.messages {
            break;
        }
        let due = schedule.start + Duration::from_secs_f64(number as f64 * schedule.interval);
        if due > schedule.deadline {
            break;
        }
        tokio::time::sleep_until(due).await;

        let channel = (number % u64::from(schedule.channels)) as u32;
        let seq = (number / u64::from(schedule.channels)) as u32;
        let sent_nanos = clock::now_nanos();
        let probe = Probe {
            run: schedule.run_id,
            channel,
            seq,
            sent_nanos,
        };
        let body = envelope::envelope(probe, schedule.ciphertext_len);
        let path = format!(
            "/pub/{}",
            plan::channel_name(&schedule.prefix, schedule.run_id, channel)
        );

        outcome.attempted += 1;
        outcome.first_sent_nanos.get_or_insert(sent_nanos);
        let result = tokio::time::timeout(
            REQUEST_TIMEOUT,
            post(&mut connection, &schedule.target, &path, &body, &mut buffer),
        )
        .await
        .unwrap_or(Err(PublishError::TimedOut));
        let done = clock::now_nanos();
        outcome.last_done_nanos = Some(done);

        match result {
            Ok(()) => {
                outcome.accepted += 1;
                outcome.accepted_per_channel[channel as usize] += 1;
                let micros = clock::since(sent_nanos, done).as_micros();
                let micros = u64::try_from(micros)
                    .unwrap_or(u64::MAX)
                    .clamp(1, MAX_LATENCY_MICROS);
                outcome.request_latency.saturating_record(micros);
            }
            Err(error) => {
                // The connection's state is unknown after an error: open a new one next time.
                connection = None;
                *outcome.failed.entry(error.to_string()).or_insert(0) += 1;
            }
        }
    }
    outcome
}

/// Posts one message on `connection`, opening it first if needed, and reads the response.
async fn post(
    connection: &mut Option<TcpStream>,
    target: &Target,
    path: &str,
    body: &str,
    buffer: &mut Vec<u8>,
) -> Result<(), PublishError> {
    let stream = match connection {
        Some(stream) => stream,
        None => {
            let stream = TcpStream::connect(target.addr)
                .await
                .map_err(PublishError::Connect)?;
            // Small requests go out at once instead of waiting to be coalesced.
            stream.set_nodelay(true).map_err(PublishError::Connect)?;
            connection.insert(stream)
        }
    };

    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {length}\r\nAccept: application/json\r\n\r\n{body}",
        host = target.host_header(),
        length = body.len(),
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(PublishError::Send)?;

    buffer.clear();
    let (head, consumed) = http::read_head(stream, buffer).await?;
    read_body(stream, &head, &buffer[consumed..]).await?;
    if head.close {
        *connection = None;
    }
    if !(200..300).contains(&head.status) {
        return Err(PublishError::Status(head.status));
    }
    Ok(())
}

/// Reads and discards a response body, bounded by [`MAX_RESPONSE_BODY`].
async fn read_body(
    stream: &mut TcpStream,
    head: &http::ResponseHead,
    already_read: &[u8],
) -> Result<(), PublishError> {
    let mut decoder = BodyDecoder::new(head.framing);
    let mut total = 0u64;
    let mut count = |input: &[u8], decoder: &mut BodyDecoder| -> Result<(), PublishError> {
        decoder.decode(input, |data| total += data.len() as u64)?;
        if total > MAX_RESPONSE_BODY {
            return Err(PublishError::BodyTooLarge);
        }
        Ok(())
    };
    count(already_read, &mut decoder)?;

    let mut chunk = [0u8; 4096];
    while !decoder.is_done() {
        let read = stream.read(&mut chunk).await.map_err(HttpError::Io)?;
        if read == 0 {
            // A body framed by the connection's end is complete here; others are cut short.
            if head.framing == http::Framing::UntilClose {
                return Ok(());
            }
            return Err(PublishError::Truncated);
        }
        count(&chunk[..read], &mut decoder)?;
    }
    Ok(())
}
