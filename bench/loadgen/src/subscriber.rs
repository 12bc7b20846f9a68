//! One event-stream subscriber: connect from its source address, check the response head,
//! then read and account for every delivery until the run ends. A stalled reader stops after
//! the response head and only reads again, briefly, at the end.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;

use crate::clock;
use crate::envelope::Probe;
use crate::http::{self, BodyDecoder};
use crate::plan::{SubscriberSpec, WorkerPlan};
use crate::sse::{Event, EventParser};

/// Bytes read from a socket at a time.
const READ_BUFFER: usize = 4096;

/// Receive buffer of a stalled reader's socket, in bytes, so that the server soon finds it
/// full. The kernel doubles the value and applies its own minimum.
const STALLED_RECEIVE_BUFFER: u32 = 4096;

/// How long a stalled reader reads at the end of the run, and how much at most.
const STALLED_DRAIN_TIME: Duration = Duration::from_secs(2);
const STALLED_DRAIN_BYTES: u64 = 256 * 1024 * 1024;

/// Largest latency recorded, in microseconds; longer ones are recorded as this.
pub const MAX_LATENCY_MICROS: u64 = 600_000_000;

/// Figures shared by every subscriber of a worker. A subscriber locks them while it accounts
/// for one read's events, and the worker runs one thread, so the lock is never contended.
pub struct Shared {
    pub run_id: u64,
    /// Unique deliveries, read by the worker for its progress lines.
    pub deliveries: AtomicU64,
    /// Readers whose stream ended before the run did, also for the progress lines.
    pub closed_early: AtomicU64,
    pub stats: Mutex<DeliveryStats>,
}

/// Counts of a worker's deliveries; see [`crate::protocol::WorkerReport`] for each.
pub struct DeliveryStats {
    pub latency: Histogram<u64>,
    pub duplicates: u64,
    pub foreign: u64,
    pub unparsed: u64,
    pub named_events: u64,
    pub events_with_id: u64,
    pub first_delivery_nanos: Option<u64>,
    pub last_delivery_nanos: Option<u64>,
}

impl Shared {
    /// Creates empty figures for run `run_id`.
    pub fn new(run_id: u64) -> Self {
        // 1 µs to MAX_LATENCY_MICROS at 3 significant digits are valid bounds for hdrhistogram.
        let latency =
            Histogram::new_with_bounds(1, MAX_LATENCY_MICROS, 3).expect("valid histogram bounds");
        Self {
            run_id,
            deliveries: AtomicU64::new(0),
            closed_early: AtomicU64::new(0),
            stats: Mutex::new(DeliveryStats {
                latency,
                duplicates: 0,
                foreign: 0,
                unparsed: 0,
                named_events: 0,
                events_with_id: 0,
                first_delivery_nanos: None,
                last_delivery_nanos: None,
            }),
        }
    }

    /// Locks the figures. A panic in another subscriber cannot leave them inconsistent (each
    /// update is a counter or a histogram record), so a poisoned lock is still used.
    pub fn lock(&self) -> MutexGuard<'_, DeliveryStats> {
        self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Error that keeps a subscriber from getting an event stream.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("bind {source_addr}: {error}")]
    Bind {
        source_addr: SocketAddr,
        error: io::Error,
    },

    #[error("connect: {0}")]
    Connect(io::Error),

    #[error("send request: {0}")]
    Send(io::Error),

    #[error("response: {0}")]
    Response(#[from] http::HttpError),

    #[error("status {status}")]
    Status { status: u16 },

    #[error("content type {content_type:?} is not text/event-stream")]
    NotEventStream { content_type: String },

    #[error("timed out after {0:?}")]
    TimedOut(Duration),
}

impl ConnectError {
    /// Returns the error as a short key for counting failures by reason: the message without
    /// per-connection details such as the source address.
    pub fn reason(&self) -> String {
        match self {
            Self::Bind { error, .. } => format!("bind: {error}"),
            other => other.to_string(),
        }
    }
}

/// An established event stream, positioned after the response head.
pub struct Stream {
    socket: TcpStream,
    decoder: BodyDecoder,
    /// Body bytes that arrived with the head.
    leftover: Vec<u8>,
}

/// The end of a subscriber's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The run ended while the stream was open.
    Finished,
    /// The stream ended before the run did, for this reason.
    ClosedEarly(String),
    /// A stalled reader's end: whether the server had ended its stream, and the body bytes
    /// that were waiting for it.
    Stalled { ended_by_server: bool, bytes: u64 },
}

/// Connects, sends the request and reads the response head, within `timeout`.
pub async fn open(plan: &WorkerPlan, spec: &SubscriberSpec) -> Result<Stream, ConnectError> {
    let timeout = plan.connect_timeout;
    tokio::time::timeout(timeout, open_stream(plan, spec))
        .await
        .map_err(|_| ConnectError::TimedOut(timeout))?
}

async fn open_stream(plan: &WorkerPlan, spec: &SubscriberSpec) -> Result<Stream, ConnectError> {
    let target = plan.target.addr;
    let socket = if target.is_ipv4() {
        let socket = TcpSocket::new_v4().map_err(ConnectError::Connect)?;
        let source_addr = SocketAddr::new(spec.source, 0);
        socket
            .bind(source_addr)
            .map_err(|error| ConnectError::Bind { source_addr, error })?;
        socket
    } else {
        // IPv6 has a single loopback address, ::1, so there is no range to spread over.
        TcpSocket::new_v6().map_err(ConnectError::Connect)?
    };
    if spec.stalled {
        socket
            .set_recv_buffer_size(STALLED_RECEIVE_BUFFER)
            .map_err(ConnectError::Connect)?;
    }
    let mut socket = socket
        .connect(target)
        .await
        .map_err(ConnectError::Connect)?;

    let request = format!(
        "GET /sub/{channel} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\
         Cache-Control: no-cache\r\n\r\n",
        channel = plan.channel_name(spec.channel),
        host = plan.target.host_header(),
    );
    socket
        .write_all(request.as_bytes())
        .await
        .map_err(ConnectError::Send)?;

    let mut buffer = Vec::new();
    let (head, consumed) = http::read_head(&mut socket, &mut buffer).await?;
    if head.status != 200 {
        return Err(ConnectError::Status {
            status: head.status,
        });
    }
    let content_type = head.content_type.unwrap_or_default();
    if !content_type
        .to_ascii_lowercase()
        .starts_with("text/event-stream")
    {
        return Err(ConnectError::NotEventStream {
            content_type: content_type.chars().take(64).collect(),
        });
    }
    buffer.drain(..consumed);
    Ok(Stream {
        socket,
        decoder: BodyDecoder::new(head.framing),
        leftover: buffer,
    })
}

/// One reader's view of its channel: which of the channel's messages it has received.
struct Tracker<'a> {
    shared: &'a Shared,
    channel: u32,
    /// Messages published to the channel, numbered 0 to expected - 1.
    expected: u64,
    /// Bit `seq` is set once message `seq` has arrived.
    received: Vec<u64>,
}

impl<'a> Tracker<'a> {
    fn new(shared: &'a Shared, channel: u32, expected: u64) -> Self {
        Self {
            shared,
            channel,
            expected,
            received: vec![0; expected.div_ceil(64) as usize],
        }
    }

    /// Accounts for one event that arrived at `now` (CLOCK_MONOTONIC nanoseconds).
    fn record(&mut self, stats: &mut DeliveryStats, event: Event<'_>, now: u64) {
        if !event.event_type.is_empty() && event.event_type != b"message" {
            stats.named_events += 1;
            return;
        }
        if event.id.is_some() {
            stats.events_with_id += 1;
        }
        let Ok(probe) = Probe::from_event_data(event.data) else {
            stats.unparsed += 1;
            return;
        };
        let seq = u64::from(probe.seq);
        if probe.run != self.shared.run_id || probe.channel != self.channel || seq >= self.expected
        {
            stats.foreign += 1;
            return;
        }

        let (word, bit) = ((seq / 64) as usize, seq % 64);
        if self.received[word] & (1 << bit) != 0 {
            stats.duplicates += 1;
            return;
        }
        self.received[word] |= 1 << bit;
        self.shared.deliveries.fetch_add(1, Ordering::Relaxed);

        let micros = clock::since(probe.sent_nanos, now).as_micros();
        let micros = u64::try_from(micros)
            .unwrap_or(u64::MAX)
            .clamp(1, MAX_LATENCY_MICROS);
        stats.latency.saturating_record(micros);
        stats.first_delivery_nanos.get_or_insert(now);
        stats.last_delivery_nanos = Some(now);
    }
}

/// Reads the stream and accounts for its events until `finish` turns true or it ends.
pub async fn read(
    mut stream: Stream,
    plan: &WorkerPlan,
    shared: &Shared,
    channel: u32,
    mut finish: watch::Receiver<bool>,
) -> Ending {
    let mut tracker = Tracker::new(shared, channel, plan.messages_for(channel));
    let mut parser = EventParser::new();
    let mut buffer = vec![0u8; READ_BUFFER];

    let leftover = std::mem::take(&mut stream.leftover);
    if let Err(reason) = consume(&mut stream.decoder, &mut parser, &mut tracker, &leftover) {
        return Ending::ClosedEarly(reason);
    }
    loop {
        if stream.decoder.is_done() {
            return Ending::ClosedEarly("the server ended the response".into());
        }
        tokio::select! {
            biased;
            _ = finish.wait_for(|done| *done) => return Ending::Finished,
            read = stream.socket.read(&mut buffer) => match read {
                Ok(0) => return Ending::ClosedEarly("the server closed the connection".into()),
                Ok(n) => {
                    if let Err(reason) =
                        consume(&mut stream.decoder, &mut parser, &mut tracker, &buffer[..n])
                    {
                        return Ending::ClosedEarly(reason);
                    }
                }
                Err(error) => return Ending::ClosedEarly(format!("read: {error}")),
            },
        }
    }
}

/// Decodes and parses `input`, accounting for every event in it.
fn consume(
    decoder: &mut BodyDecoder,
    parser: &mut EventParser,
    tracker: &mut Tracker<'_>,
    input: &[u8],
) -> Result<(), String> {
    // Every event in one read arrived at the same moment.
    let now = clock::now_nanos();
    let shared = tracker.shared;
    let mut stats = shared.lock();
    let mut parse_result = Ok(());
    decoder
        .decode(input, |body| {
            if parse_result.is_ok() {
                parse_result = parser.feed(body, |event| tracker.record(&mut stats, event, now));
            }
        })
        .map_err(|e| format!("response body: {e}"))?;
    parse_result.map_err(|e| format!("event stream: {e}"))
}

/// Holds a stalled reader's socket without reading until `finish`, then reads what is waiting
/// for a short while to learn whether the server ended the stream.
pub async fn stall(mut stream: Stream, mut finish: watch::Receiver<bool>) -> Ending {
    // The sender lives until the worker has collected every subscriber, so an error here only
    // means the worker is already ending, which is the same signal.
    let _ = finish.wait_for(|done| *done).await;

    let mut bytes = 0u64;
    let mut ended_by_server = stream.decoder.is_done();
    let mut buffer = vec![0u8; 64 * 1024];
    let drain = async {
        while !ended_by_server && bytes < STALLED_DRAIN_BYTES {
            match stream.socket.read(&mut buffer).await {
                Ok(0) | Err(_) => ended_by_server = true,
                Ok(n) => {
                    let decoded = stream.decoder.decode(&buffer[..n], |_| {});
                    bytes += n as u64;
                    ended_by_server = decoded.is_err() || stream.decoder.is_done();
                }
            }
        }
    };
    let _ = tokio::time::timeout(STALLED_DRAIN_TIME, drain).await;
    Ending::Stalled {
        ended_by_server,
        bytes,
    }
}
