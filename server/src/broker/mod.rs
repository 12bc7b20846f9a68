//! Fan-out of events to the subscribers of a channel, with history for resuming, subscriber
//! counts and the delivery figures.
//!
//! The routes only talk to a [`Broker`]. This relay runs the in-process [`MemoryBroker`]. A
//! broker that shares channels between relay processes through an external store would
//! implement the same trait, so the routes need no change when one is added. Events travel as
//! encoded server-sent event frames in [`Bytes`]: a broker encodes each event once, and every
//! subscriber's connection writes handles to the same bytes.
//!
//! A subscriber reads its channel through a [`Feed`], which a connection polls for every frame
//! that is ready, in one [`Batch`], whenever it can write. Nothing is queued per subscriber, so
//! a subscriber costs the same whether it is idle or far behind. The broker decides how far
//! behind a subscriber may fall before it is dropped as stalled.
//!
//! - [`event_id`]: the `<epoch>-<sequence>` ids of relayed events.
//! - [`batch`]: the frames a connection writes at once.
//! - [`memory`]: the in-process broker, a log of shared frames per channel with a cursor per
//!   subscriber.

pub mod batch;
pub mod event_id;
mod memory;

pub use batch::Batch;
pub use memory::{BrokerSettings, MemoryBroker};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use serde::Serialize;

use crate::channel::ChannelId;
use crate::connection::ConnectionCloser;

/// Publishes events to channels and hands out subscriptions.
pub trait Broker: Send + Sync + 'static {
    /// Adds a subscriber to a channel. The subscription ends when it is dropped.
    ///
    /// With a `last_event_id` the subscription first yields the channel's events after that
    /// id, or an `event: reset` frame when they cannot be given exactly.
    fn subscribe(
        &self,
        request: SubscribeRequest,
    ) -> BoxFuture<'_, Result<Subscription, BrokerError>>;

    /// Sends a single-line `payload` as one event to every current subscriber of `channel` and
    /// keeps it in the channel's history.
    fn publish(
        &self,
        channel: ChannelId,
        payload: Bytes,
    ) -> BoxFuture<'_, Result<Published, BrokerError>>;

    /// Returns the number of subscribers of `channel`.
    fn subscribers(&self, channel: ChannelId) -> BoxFuture<'_, Result<usize, BrokerError>>;

    /// Returns the broker's figures since it started.
    fn stats(&self) -> BrokerStats;

    /// Ends every stream after the events already published and rejects new subscriptions
    /// and publishes: the first step of a graceful shutdown.
    fn close(&self);
}

/// A request to join a channel.
#[derive(Debug, Clone)]
pub struct SubscribeRequest {
    pub channel: ChannelId,
    /// The `Last-Event-ID` a reconnecting client sent, as received.
    pub last_event_id: Option<String>,
}

/// The reason a subscriber's stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The relay is shutting down: the stream ends cleanly after the events already published.
    Closed,
    /// The subscriber fell too far behind and was dropped: its connection is to be closed
    /// without sending the rest.
    Overflow,
}

/// The outcome of a [`Feed::poll_frames`] call that added frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gathered {
    /// Every frame that was ready is in the batch, and the task is registered to be woken
    /// when the next one is.
    All,
    /// The batch filled up while more frames were ready: poll again after writing it.
    More,
}

/// One subscriber's position in its channel, as a broker implements it.
pub trait Feed: Send {
    /// Appends the frames ready for this subscriber to `batch`, in order, while it has room.
    ///
    /// Registers the task of `cx` to be woken when more frames are ready or the stream ends,
    /// on every call, including calls that return frames. Returns `Pending` when it added
    /// nothing. Once the stream has ended, it returns the reason: [`End::Closed`] after every
    /// remaining frame, and [`End::Overflow`] at once.
    fn poll_frames(
        &mut self,
        cx: &mut Context<'_>,
        batch: &mut Batch,
    ) -> Poll<Result<Gathered, End>>;

    /// Registers the task of `cx` like [`Self::poll_frames`], without taking frames, for a
    /// connection that waits for its socket. Returns `Ready` once the broker has dropped the
    /// subscriber as stalled.
    fn poll_dropped(&mut self, cx: &mut Context<'_>) -> Poll<()>;

    /// Sets the closer that shuts the connection down if the broker drops this subscriber as
    /// stalled while its connection is not polling. The HTTP server stops polling a response
    /// body whose socket is full, so without it a stalled connection would stay open.
    fn set_closer(&mut self, closer: ConnectionCloser);
}

/// One subscriber's end of a channel: the frames to write to its response, in order. Dropping
/// it removes the subscriber from the channel.
pub struct Subscription {
    feed: Box<dyn Feed>,
    delivery: Arc<DeliveryCounters>,
}

impl Subscription {
    /// Wraps a broker's feed and the counters its deliveries add to.
    pub fn new(feed: Box<dyn Feed>, delivery: Arc<DeliveryCounters>) -> Self {
        Self { feed, delivery }
    }

    /// Sets the closer that shuts the connection down if this subscriber is dropped as stalled.
    pub fn set_closer(&mut self, closer: ConnectionCloser) {
        self.feed.set_closer(closer);
    }

    /// Registers the task without taking frames, and returns `Ready` once the broker has
    /// dropped this subscriber as stalled. See [`Feed::poll_dropped`].
    pub fn poll_dropped(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.feed.poll_dropped(cx)
    }

    /// Appends the frames ready for this subscriber to `batch` and counts them as delivered.
    /// See [`Feed::poll_frames`].
    pub fn poll_frames(
        &mut self,
        cx: &mut Context<'_>,
        batch: &mut Batch,
    ) -> Poll<Result<Gathered, End>> {
        let (events, bytes) = (batch.events(), batch.bytes());
        let result = self.feed.poll_frames(cx, batch);
        self.delivery
            .record(batch.events() - events, batch.bytes() - bytes);
        result
    }
}

/// Frames handed to subscriber connections, shared by a broker and its subscriptions.
#[derive(Debug, Default)]
pub struct DeliveryCounters {
    events: AtomicU64,
    bytes: AtomicU64,
}

impl DeliveryCounters {
    fn record(&self, events: usize, bytes: usize) {
        if bytes == 0 {
            return;
        }
        if events > 0 {
            self.events.fetch_add(events as u64, Ordering::Relaxed);
        }
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Returns the relayed events and the bytes of all frames delivered so far.
    pub fn get(&self) -> (u64, u64) {
        (
            self.events.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }
}

/// The outcome of a publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The event's id, as its `id:` field carries it.
    pub id: String,
    /// Number of subscribers the event was queued for: the channel's subscribers after the
    /// publish dropped any that had fallen too far behind.
    pub queued: usize,
}

/// A broker's figures. Counters run from the broker's start, and the others are current values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BrokerStats {
    /// Subscribers now, over all channels.
    pub subscribers: u64,
    /// Subscriptions opened.
    pub subscribers_opened: u64,
    /// Subscriptions whose stream has ended, for any reason.
    pub subscribers_closed: u64,
    /// Subscribers dropped because they fell too far behind their channel.
    pub slow_subscribers_dropped: u64,
    /// Channels now, with subscribers or retained history.
    pub channels: u64,
    /// Events published.
    pub events_published: u64,
    /// Payload bytes of the events published.
    pub bytes_published: u64,
    /// Relayed events handed to subscriber connections.
    pub events_delivered: u64,
    /// Bytes of every frame handed to subscriber connections: events, counts and keepalives.
    pub bytes_delivered: u64,
    /// Bytes of the event frames kept in all channels, for history and for subscribers that
    /// have still to send them.
    pub history_bytes: u64,
    /// Channel histories dropped early to stay within the history budget.
    pub history_evictions: u64,
}

/// Error from a broker operation.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("the event payload cannot be sent as server-sent event data: {0}")]
    InvalidPayload(#[from] crate::sse::LineBreakInData),

    #[error("channel {channel} already has {limit} subscribers, the maximum per channel")]
    ChannelFull { channel: ChannelId, limit: usize },

    #[error("the relay is shutting down")]
    ShuttingDown,
}
