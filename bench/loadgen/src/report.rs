//! The result of one run: the figures a comparison needs, as JSON and as a short summary.

use std::collections::BTreeMap;
use std::fmt::Write;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::plan::RunArgs;
use crate::procstat::{MachineCpu, ProcSample};
use crate::protocol::StalledReport;

/// Everything measured in one run of one scenario against one server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub scenario: String,
    pub server: String,
    pub run: u32,
    pub run_id: u64,
    /// The flags of the run, target included.
    pub settings: RunArgs,
    pub workers: u32,
    pub connections: Connections,
    pub publishing: Publishing,
    pub deliveries: Deliveries,
    pub stalled: StalledReport,
    /// Figures of the server process, when its PID was given.
    pub server_process: Option<ServerFigures>,
    /// CPU of the load generator's own processes while messages were delivered.
    pub generator_cpu: Option<CpuSeconds>,
    pub machine: MachineFigures,
    /// Failed connections, publishes and deliveries, one line each. Empty for a clean run.
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Connections {
    /// Readers attempted (stalled readers are reported apart).
    pub attempted: u64,
    pub established: u64,
    pub failed: BTreeMap<String, u64>,
    /// Established readers whose stream ended before the run did, by reason.
    pub closed_early: BTreeMap<String, u64>,
    /// Of those, the streams that had ended before the first publish (up to 200 ms late).
    pub closed_before_publishing: u64,
    /// Seconds from the first connection attempt until every worker was ready.
    pub ramp_secs: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Publishing {
    pub attempted: u64,
    pub accepted: u64,
    pub failed: BTreeMap<String, u64>,
    /// Seconds from the first request to the last response.
    pub secs: f64,
    /// Accepted messages per second over `secs`.
    pub per_second: f64,
    /// Time from writing a request to reading its response.
    pub request_latency_ms: Option<Percentiles>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Deliveries {
    /// Accepted messages times the readers of their channel.
    pub expected: u64,
    /// Unique deliveries: each message counted once per reader.
    pub delivered: u64,
    pub lost: u64,
    pub duplicated: u64,
    /// Probes of another run or channel, or never published.
    pub foreign: u64,
    /// Message events without a probe.
    pub unparsed: u64,
    /// Events of a named type, such as subscriber counts.
    pub named_events: u64,
    /// Message events that carried an `id:`.
    pub events_with_id: u64,
    /// Unique deliveries per second, from the first publish to the last delivery.
    pub per_second: f64,
    /// From the send time in the message to its arrival at the reader.
    pub latency_ms: Option<Percentiles>,
}

/// A latency distribution in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    /// Summarizes a histogram of microseconds; `None` when it is empty.
    pub fn from_micros(histogram: &Histogram<u64>) -> Option<Self> {
        if histogram.is_empty() {
            return None;
        }
        let ms = |micros: u64| micros as f64 / 1_000.0;
        Some(Self {
            count: histogram.len(),
            mean: histogram.mean() / 1_000.0,
            p50: ms(histogram.value_at_quantile(0.50)),
            p90: ms(histogram.value_at_quantile(0.90)),
            p99: ms(histogram.value_at_quantile(0.99)),
            max: ms(histogram.max()),
        })
    }
}

/// User and system CPU seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuSeconds {
    pub user: f64,
    pub system: f64,
}

impl CpuSeconds {
    /// Returns the CPU time spent between two samples of one process.
    pub fn between(start: &ProcSample, end: &ProcSample) -> Self {
        Self {
            user: end.user_secs - start.user_secs,
            system: end.system_secs - start.system_secs,
        }
    }

    pub fn total(&self) -> f64 {
        self.user + self.system
    }
}

/// The server process's figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerFigures {
    pub pid: u32,
    /// Before any subscriber connected.
    pub before: ProcSample,
    /// With every subscriber connected, after the hold, before the first publish.
    pub idle: ProcSample,
    /// After the last delivery (or the drain timeout), before the subscribers closed.
    pub published: ProcSample,
    /// After the subscribers closed.
    pub after: Option<ProcSample>,
    /// Readings every `--sample-ms` over the whole run.
    pub series: Vec<ProcSample>,
    /// (idle RSS − RSS before) / connections open at idle, readers and stalled readers.
    pub rss_per_connection_kib: Option<f64>,
    /// CPU from the first connection until idle: accepting and greeting subscribers.
    pub connect_cpu: CpuSeconds,
    /// CPU from idle until published: taking and delivering messages.
    pub publish_cpu: CpuSeconds,
    /// Publish-phase CPU per unique delivery, in microseconds.
    pub user_micros_per_delivery: Option<f64>,
    pub system_micros_per_delivery: Option<f64>,
    pub total_micros_per_delivery: Option<f64>,
    /// Unique deliveries per publish-phase CPU second.
    pub deliveries_per_cpu_second: Option<f64>,
    /// Largest RSS read between idle and published, in KiB.
    pub publish_max_rss_kib: u64,
}

/// The whole machine's CPU while messages were delivered, to tell other load apart.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MachineFigures {
    pub cores: usize,
    /// CPU seconds all cores were busy between idle and published.
    pub publish_busy_secs: Option<f64>,
    /// Of those, seconds used by processes other than the server and the load generator.
    pub publish_other_secs: Option<f64>,
    /// The 1-minute load average at the start and at the end of the run.
    pub load_before: Option<f64>,
    pub load_after: Option<f64>,
}

impl MachineFigures {
    /// Returns the busy seconds between two readings of the machine's CPU.
    pub fn busy_between(start: &MachineCpu, end: &MachineCpu) -> f64 {
        end.busy_secs - start.busy_secs
    }
}

impl Report {
    /// Writes a few lines a person reads after a run.
    pub fn summary(&self) -> String {
        // Writing to a String cannot fail, so the results of writeln! are ignored here and in
        // the helpers.
        let mut out = String::new();
        self.summarize_run(&mut out);
        if self.settings.messages > 0 {
            self.summarize_deliveries(&mut out);
        }
        if self.settings.stalled > 0 {
            let st = &self.stalled;
            let _ = writeln!(
                out,
                "  stalled readers: {} established, {} ended by the server, {} bytes waiting",
                st.established, st.ended_by_server, st.bytes_waiting
            );
        }
        if let Some(server) = &self.server_process {
            summarize_server(&mut out, server);
        }

        if self.problems.is_empty() {
            let _ = writeln!(out, "  no problems");
        }
        for problem in &self.problems {
            let _ = writeln!(out, "  problem: {problem}");
        }
        out
    }

    fn summarize_run(&self, out: &mut String) {
        let s = &self.settings;
        let messages = match (s.messages, s.rate > 0.0) {
            (0, _) => "no messages".to_owned(),
            (n, true) => format!("{n} messages at {}/s", s.rate),
            (n, false) => format!("{n} messages at full speed"),
        };
        let _ = writeln!(
            out,
            "{} / {} run {}: {} readers + {} stalled on {} channel(s), {messages}, {} worker(s)",
            self.server,
            self.scenario,
            self.run,
            s.subscribers,
            s.stalled,
            s.channels,
            self.workers,
        );

        let c = &self.connections;
        let _ = writeln!(
            out,
            "  connections: {} of {} established in {:.1} s, failed {:?}, closed early {:?} \
             ({} before publishing)",
            c.established,
            c.attempted,
            c.ramp_secs,
            c.failed,
            c.closed_early,
            c.closed_before_publishing,
        );
    }

    fn summarize_deliveries(&self, out: &mut String) {
        let p = &self.publishing;
        let _ = writeln!(
            out,
            "  publishing: {} of {} accepted in {:.2} s ({:.0}/s), failed {:?}",
            p.accepted, p.attempted, p.secs, p.per_second, p.failed
        );

        let d = &self.deliveries;
        let _ = writeln!(
            out,
            "  deliveries: {} of {} ({} lost, {} duplicated, {} foreign), {:.0}/s",
            d.delivered, d.expected, d.lost, d.duplicated, d.foreign, d.per_second
        );
        if let Some(l) = &d.latency_ms {
            let _ = writeln!(
                out,
                "  latency ms: p50 {:.2}, p90 {:.2}, p99 {:.2}, max {:.2}",
                l.p50, l.p90, l.p99, l.max
            );
        }
        if let Some(other) = self.machine.publish_other_secs {
            let _ = writeln!(
                out,
                "  other processes used {other:.2} CPU s while publishing"
            );
        }
    }
}

fn summarize_server(out: &mut String, server: &ServerFigures) {
    let per_connection = server
        .rss_per_connection_kib
        .map(|kib| format!(", {kib:.2} per connection"))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "  server RSS KiB: {} before, {} idle, {} published (max {}){per_connection}",
        server.before.rss_kib,
        server.idle.rss_kib,
        server.published.rss_kib,
        server.publish_max_rss_kib,
    );

    let (connect, publish) = (&server.connect_cpu, &server.publish_cpu);
    let _ = writeln!(
        out,
        "  server CPU s: connect {:.2} user + {:.2} system, publish {:.2} user + {:.2} system",
        connect.user, connect.system, publish.user, publish.system,
    );
    if let (Some(user), Some(system)) = (
        server.user_micros_per_delivery,
        server.system_micros_per_delivery,
    ) {
        let _ = writeln!(
            out,
            "  server CPU per delivery: {user:.2} µs user + {system:.2} µs system, \
             {:.0} deliveries per CPU second",
            server.deliveries_per_cpu_second.unwrap_or(0.0)
        );
    }
}
