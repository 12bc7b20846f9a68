//! Fan-out of events to the subscribers of a channel, and subscriber counts.
//!
//! The routes only talk to a [`Broker`]. The in-process [`MemoryBroker`] is the one this relay
//! runs; a broker that shares channels between processes through an external store implements
//! the same trait, so the routes do not change when one is added. Events travel as encoded
//! server-sent event frames in [`Bytes`], so one encoding is shared by every subscriber's queue.

mod memory;

pub use memory::MemoryBroker;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use tokio::sync::mpsc;

use crate::channel::ChannelId;

/// Publishes events to channels and hands out subscriptions.
pub trait Broker: Send + Sync + 'static {
    /// Adds a subscriber to `channel`. The subscription ends when it is dropped.
    fn subscribe(&self, channel: ChannelId) -> BoxFuture<'_, Result<Subscription, BrokerError>>;

    /// Sends a single-line `payload` as one event to every current subscriber of `channel`.
    fn publish(
        &self,
        channel: ChannelId,
        payload: Bytes,
    ) -> BoxFuture<'_, Result<Published, BrokerError>>;
}

/// One subscriber's end of a channel: encoded frames to write to its stream, in order.
pub struct Subscription {
    /// Frames for this subscriber. The broker closes it when it drops a slow subscriber.
    pub frames: mpsc::Receiver<Bytes>,
    /// Removes the subscriber from its channel when dropped.
    _membership: Box<dyn Send + Sync>,
}

impl Subscription {
    /// Wraps a frame receiver and a guard whose drop removes the subscriber.
    pub fn new(frames: mpsc::Receiver<Bytes>, membership: Box<dyn Send + Sync>) -> Self {
        Self {
            frames,
            _membership: membership,
        }
    }
}

/// The outcome of a publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// Number of subscribers the event was queued for.
    pub queued: usize,
}

/// Error from a broker operation.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("the event payload cannot be sent as server-sent event data: {0}")]
    InvalidPayload(#[from] crate::sse::LineBreakInData),
}
