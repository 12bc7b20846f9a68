//! The relay's figures, served as JSON at `/stats` and in Prometheus text format at `/metrics`.
//!
//! Both endpoints read one list, [`Figures::list`], taken at request time from the broker,
//! the blob store and the route counters, so they always agree.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::blob::{BlobStats, BlobStore};
use crate::broker::{Broker, BrokerStats};

/// Counts of requests the routes rejected for a limit, since the start.
#[derive(Debug, Default)]
pub struct RejectionCounters {
    pub streams_rejected: AtomicU64,
    pub requests_rate_limited: AtomicU64,
    /// Requests whose head or body did not arrive in time, rejected with 408.
    pub requests_timed_out: AtomicU64,
}

/// Whether a figure only grows or goes up and down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

/// One named figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Figure {
    /// The JSON key, and the Prometheus name after the `dropthat_` prefix (counters also get
    /// the `_total` suffix there).
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub value: u64,
}

/// A snapshot of every figure.
#[derive(Debug, Clone, Copy)]
pub struct Figures {
    broker: BrokerStats,
    blobs: BlobStats,
    streams_rejected: u64,
    requests_rate_limited: u64,
    requests_timed_out: u64,
}

impl Figures {
    /// Returns the figures in a fixed order.
    pub fn list(&self) -> [Figure; 16] {
        use Kind::{Counter, Gauge};
        let b = &self.broker;
        let figure = |name, help, kind, value| Figure {
            name,
            help,
            kind,
            value,
        };
        [
            figure("subscribers", "Open event streams.", Gauge, b.subscribers),
            figure(
                "subscribers_opened",
                "Event streams opened.",
                Counter,
                b.subscribers_opened,
            ),
            figure(
                "subscribers_closed",
                "Event streams ended, for any reason.",
                Counter,
                b.subscribers_closed,
            ),
            figure(
                "slow_subscribers_dropped",
                "Subscribers disconnected because they stopped reading.",
                Counter,
                b.slow_subscribers_dropped,
            ),
            figure(
                "channels",
                "Channels with subscribers or retained history.",
                Gauge,
                b.channels,
            ),
            figure(
                "events_published",
                "Events published.",
                Counter,
                b.events_published,
            ),
            figure(
                "bytes_published",
                "Payload bytes of the events published.",
                Counter,
                b.bytes_published,
            ),
            figure(
                "events_delivered",
                "Events handed to subscriber connections.",
                Counter,
                b.events_delivered,
            ),
            figure(
                "bytes_delivered",
                "Bytes of all frames handed to subscriber connections.",
                Counter,
                b.bytes_delivered,
            ),
            figure(
                "history_bytes",
                "Bytes of event frames kept in memory over all channels.",
                Gauge,
                b.history_bytes,
            ),
            figure(
                "history_evictions",
                "Channel histories dropped early to stay within --max-history-bytes.",
                Counter,
                b.history_evictions,
            ),
            figure("blobs", "Blobs stored.", Gauge, self.blobs.blobs),
            figure(
                "blob_bytes",
                "Bytes of the blobs stored.",
                Gauge,
                self.blobs.blob_bytes,
            ),
            figure(
                "streams_rejected",
                "Event streams rejected by the overall, per-client or per-channel stream limit.",
                Counter,
                self.streams_rejected,
            ),
            figure(
                "requests_rate_limited",
                "Publishes and uploads rejected by a rate limit.",
                Counter,
                self.requests_rate_limited,
            ),
            figure(
                "requests_timed_out",
                "Requests whose head or body did not arrive in time.",
                Counter,
                self.requests_timed_out,
            ),
        ]
    }

    /// Returns the figures as a JSON object of name to value.
    pub fn to_json(&self) -> serde_json::Value {
        let object = self
            .list()
            .iter()
            .map(|f| (f.name.to_owned(), serde_json::Value::from(f.value)))
            .collect::<serde_json::Map<_, _>>();
        serde_json::Value::Object(object)
    }
}

/// The sources of the figures, and the Prometheus registry that reads them. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    source: Arc<Source>,
    registry: Arc<Registry>,
}

struct Source {
    broker: Arc<dyn Broker>,
    blobs: BlobStore,
    rejections: Arc<RejectionCounters>,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source").finish_non_exhaustive()
    }
}

impl Source {
    fn figures(&self) -> Figures {
        Figures {
            broker: self.broker.stats(),
            blobs: self.blobs.stats(),
            streams_rejected: self.rejections.streams_rejected.load(Ordering::Relaxed),
            requests_rate_limited: self
                .rejections
                .requests_rate_limited
                .load(Ordering::Relaxed),
            requests_timed_out: self.rejections.requests_timed_out.load(Ordering::Relaxed),
        }
    }
}

/// A collector that reads the figures at each scrape, so `/metrics` returns the same values as
/// `/stats`.
#[derive(Debug)]
struct SourceCollector(Arc<Source>);

/// Writes one figure as a metric with its name and help text.
fn encode_figure(
    encoder: &mut DescriptorEncoder,
    figure: &Figure,
    metric: &impl EncodeMetric,
) -> Result<(), std::fmt::Error> {
    let metric_encoder =
        encoder.encode_descriptor(figure.name, figure.help, None, metric.metric_type())?;
    metric.encode(metric_encoder)
}

impl Collector for SourceCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for figure in self.0.figures().list() {
            match figure.kind {
                Kind::Counter => {
                    encode_figure(&mut encoder, &figure, &ConstCounter::new(figure.value))?;
                }
                Kind::Gauge => {
                    // Every gauge here is a count far below i64::MAX.
                    let value = i64::try_from(figure.value).unwrap_or(i64::MAX);
                    encode_figure(&mut encoder, &figure, &ConstGauge::new(value))?;
                }
            }
        }
        Ok(())
    }
}

impl Metrics {
    /// Reads figures from `broker`, `blobs` and `rejections`.
    pub fn new(
        broker: Arc<dyn Broker>,
        blobs: BlobStore,
        rejections: Arc<RejectionCounters>,
    ) -> Self {
        let source = Arc::new(Source {
            broker,
            blobs,
            rejections,
        });
        let mut registry = Registry::with_prefix("dropthat");
        registry.register_collector(Box::new(SourceCollector(source.clone())));
        Self {
            source,
            registry: Arc::new(registry),
        }
    }

    /// Returns a snapshot of every figure.
    pub fn figures(&self) -> Figures {
        self.source.figures()
    }

    /// Returns every figure in the Prometheus text exposition format.
    pub fn prometheus_text(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}
