//! Messages between the coordinating process and its workers: one JSON object per line.
//!
//! The coordinator writes the [`WorkerPlan`](crate::plan::WorkerPlan) as the first line of a
//! worker's stdin, then [`FINISH`] (or closes stdin) when the run is over. The worker writes
//! [`WorkerMessage`]s to its stdout.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The line that makes a worker close its subscribers and report.
pub const FINISH: &str = "finish";

/// A line from a worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WorkerMessage {
    /// Every subscriber of the worker has connected or failed.
    Ready {
        /// Readers with an event stream, on each channel, indexed by channel.
        readers_per_channel: Vec<u64>,
        /// Stalled readers with an event stream.
        stalled: u64,
        /// Readers and stalled readers without one, by reason.
        failed: BTreeMap<String, u64>,
    },
    /// Unique deliveries and streams closed early so far, sent a few times per second.
    Progress { deliveries: u64, closed_early: u64 },
    /// The final figures, after the subscribers were closed.
    Report(Box<WorkerReport>),
}

/// The figures one worker measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WorkerReport {
    /// Readers whose response head arrived with status 200 and an event stream.
    pub established: u64,
    /// Readers that never got an event stream, by reason.
    pub connect_failures: BTreeMap<String, u64>,
    /// Established readers whose stream ended before the run did, by reason.
    pub closed_early: BTreeMap<String, u64>,
    /// Established readers on each channel, indexed by channel.
    pub readers_per_channel: Vec<u64>,
    /// Deliveries of this run's messages, each counted once per subscriber.
    pub deliveries: u64,
    /// Deliveries of a message the subscriber had already received.
    pub duplicates: u64,
    /// Probes from another run or channel, or with a sequence number never published there.
    pub foreign: u64,
    /// Message events whose data contains no probe.
    pub unparsed: u64,
    /// Events with a type of their own, such as `event: count`.
    pub named_events: u64,
    /// Message events that carried an event id.
    pub events_with_id: u64,
    /// Delivery latency in microseconds: (value, count) pairs of a histogram.
    pub latency_micros: Vec<(u64, u64)>,
    /// CLOCK_MONOTONIC nanoseconds of the first and last delivery.
    pub first_delivery_nanos: Option<u64>,
    pub last_delivery_nanos: Option<u64>,
    pub stalled: StalledReport,
}

/// The outcome of the stalled readers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StalledReport {
    /// Stalled readers that got an event stream.
    pub established: u64,
    pub connect_failures: BTreeMap<String, u64>,
    /// Stalled readers whose stream the server had ended (closed, or finished the response)
    /// by the time they read again at the end of the run.
    pub ended_by_server: u64,
    /// Body bytes the stalled readers found waiting when they read again.
    pub bytes_waiting: u64,
}
