//! The in-process broker: channels live in this process's memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use futures_util::future::{BoxFuture, FutureExt};
use tokio::sync::mpsc;

use super::{Broker, BrokerError, Published, Subscription};
use crate::channel::ChannelId;
use crate::sse;

/// Frames a subscriber may have queued before it counts as stalled and is dropped.
///
/// A reader that keeps up never has more than a few queued; a full queue means the client or
/// its network stopped reading, and the bound keeps the server's memory flat meanwhile.
pub const SUBSCRIBER_QUEUE: usize = 64;

/// Channels of this process, shared by all HTTP workers.
#[derive(Clone, Default)]
pub struct MemoryBroker {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Every channel that has subscribers. A std mutex suits because no critical section
    /// awaits, and each only walks one channel's subscriber list.
    channels: Mutex<HashMap<ChannelId, Channel>>,
}

#[derive(Default)]
struct Channel {
    subscribers: HashMap<u64, mpsc::Sender<Bytes>>,
    next_subscriber: u64,
}

impl Channel {
    /// Queues `frame` for every subscriber and drops those whose queue is full or closed.
    fn fan_out(&mut self, frame: &Bytes) -> usize {
        let before = self.subscribers.len();
        self.subscribers
            .retain(|_, queue| queue.try_send(frame.clone()).is_ok());
        let dropped = before - self.subscribers.len();
        if dropped > 0 {
            tracing::debug!(dropped, "dropped subscribers whose queue was full");
        }
        self.subscribers.len()
    }

    fn announce_count(&mut self) {
        let frame = sse::count(self.subscribers.len());
        self.fan_out(&frame);
    }
}

impl MemoryBroker {
    /// Creates a broker with no channels.
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns the number of subscribers of `channel`.
    pub fn subscribers(&self, channel: &ChannelId) -> usize {
        self.inner
            .lock()
            .get(channel)
            .map_or(0, |c| c.subscribers.len())
    }

    fn join(&self, channel: ChannelId) -> Subscription {
        let (sender, frames) = mpsc::channel(SUBSCRIBER_QUEUE);
        let mut channels = self.inner.lock();
        let entry = channels.entry(channel.clone()).or_default();
        let id = entry.next_subscriber;
        entry.next_subscriber += 1;
        entry.subscribers.insert(id, sender);
        entry.announce_count();
        tracing::debug!(%channel, subscribers = entry.subscribers.len(), "subscriber joined");

        let membership = Membership {
            inner: self.inner.clone(),
            channel,
            id,
        };
        Subscription::new(frames, Box::new(membership))
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, HashMap<ChannelId, Channel>> {
        // A panic while holding the lock leaves the map itself consistent (every mutation is a
        // single insert, remove or retain), so a poisoned lock is still safe to use.
        self.channels.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Broker for MemoryBroker {
    fn subscribe(&self, channel: ChannelId) -> BoxFuture<'_, Result<Subscription, BrokerError>> {
        let subscription = self.join(channel);
        async move { Ok(subscription) }.boxed()
    }

    fn publish(
        &self,
        channel: ChannelId,
        payload: Bytes,
    ) -> BoxFuture<'_, Result<Published, BrokerError>> {
        let result = sse::data(&payload).map_err(BrokerError::from).map(|frame| {
            let mut channels = self.inner.lock();
            let Some(entry) = channels.get_mut(&channel) else {
                return Published { queued: 0 };
            };
            let queued = entry.fan_out(&frame);
            if queued == 0 {
                channels.remove(&channel);
            }
            Published { queued }
        });
        async move { result }.boxed()
    }
}

/// Removes a subscriber from its channel when its stream ends.
struct Membership {
    inner: Arc<Inner>,
    channel: ChannelId,
    id: u64,
}

impl Drop for Membership {
    fn drop(&mut self) {
        let mut channels = self.inner.lock();
        let Some(channel) = channels.get_mut(&self.channel) else {
            return;
        };
        if channel.subscribers.remove(&self.id).is_none() {
            // The broker already dropped this subscriber as stalled.
            return;
        }
        if channel.subscribers.is_empty() {
            channels.remove(&self.channel);
        } else {
            channel.announce_count();
        }
        tracing::debug!(channel = %self.channel, "subscriber left");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(name: &str) -> ChannelId {
        ChannelId::parse(name).unwrap()
    }

    #[tokio::test]
    async fn subscribers_see_counts_and_events() {
        let broker = MemoryBroker::new();
        let mut first = broker.subscribe(channel("room")).await.unwrap();
        assert_eq!(first.frames.recv().await.unwrap(), sse::count(1));

        let mut second = broker.subscribe(channel("room")).await.unwrap();
        assert_eq!(first.frames.recv().await.unwrap(), sse::count(2));
        assert_eq!(second.frames.recv().await.unwrap(), sse::count(2));

        let published = broker
            .publish(channel("room"), Bytes::from_static(b"{}"))
            .await
            .unwrap();
        assert_eq!(published.queued, 2);
        assert_eq!(&first.frames.recv().await.unwrap()[..], b"data: {}\n\n");
        assert_eq!(&second.frames.recv().await.unwrap()[..], b"data: {}\n\n");

        drop(second);
        assert_eq!(first.frames.recv().await.unwrap(), sse::count(1));
        drop(first);
        assert_eq!(broker.subscribers(&channel("room")), 0);
        assert!(broker.inner.lock().is_empty());
    }

    #[tokio::test]
    async fn stalled_subscriber_is_dropped() {
        let broker = MemoryBroker::new();
        let mut stalled = broker.subscribe(channel("room")).await.unwrap();
        for _ in 0..SUBSCRIBER_QUEUE {
            broker
                .publish(channel("room"), Bytes::from_static(b"x"))
                .await
                .unwrap();
        }
        assert_eq!(broker.subscribers(&channel("room")), 0);

        let mut received = 0;
        while stalled.frames.recv().await.is_some() {
            received += 1;
        }
        assert_eq!(received, SUBSCRIBER_QUEUE);
    }
}
