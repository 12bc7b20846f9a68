//! The in-process broker: channels, their subscribers and their history live in this process.
//!
//! All channels sit in one map behind one std mutex. No critical section awaits; the longest
//! is a fan-out, which pushes one shared frame handle into each subscriber queue of a channel.
//! One maintenance task, not a timer per connection, sends the coalesced counts, the keepalive
//! comments, and frees channels whose history has expired.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::{BoxFuture, FutureExt};
use tokio::time::{Instant, MissedTickBehavior};

use super::event_id::{EventId, random_epoch};
use super::queue::{self, End, Frame, PushError, QueueSender};
use super::{
    Broker, BrokerError, BrokerStats, DeliveryCounters, Published, SubscribeRequest, Subscription,
};
use crate::channel::ChannelId;
use crate::sse::{self, ResetReason};

/// Settings of a [`MemoryBroker`]; [`Default`] gives the relay's defaults.
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    /// Events each channel keeps for reconnecting subscribers.
    ///
    /// NOTE: history is bounded per channel by event count only, so one channel can keep up
    /// to `history_len` times the publish size limit (3.2 MiB at the defaults), and there is
    /// no byte budget over all channels.
    pub history_len: usize,
    /// How long a channel keeps its history after its last subscriber leaves.
    pub history_retention: Duration,
    /// Shortest time between two count events of one channel.
    pub count_interval: Duration,
    /// Time between keepalive comments on every stream.
    pub keepalive: Duration,
    /// Frames a subscriber may have waiting before it counts as stalled and is dropped.
    pub queue_capacity: usize,
    /// Maximum subscribers per channel.
    pub max_subscribers_per_channel: usize,
}

impl Default for BrokerSettings {
    fn default() -> Self {
        Self {
            history_len: 100,
            history_retention: Duration::from_secs(300),
            count_interval: Duration::from_millis(370),
            keepalive: Duration::from_secs(20),
            queue_capacity: 64,
            max_subscribers_per_channel: 1000,
        }
    }
}

/// Channels of this process, shared by all HTTP workers. Cheap to clone.
#[derive(Clone)]
pub struct MemoryBroker {
    shared: Arc<Shared>,
}

struct Shared {
    settings: BrokerSettings,
    /// Drawn once at start, so event ids never repeat across restarts.
    epoch: u64,
    /// A std mutex suits: no critical section awaits, and fan-out under it does constant work
    /// per subscriber.
    state: Mutex<State>,
    delivery: Arc<DeliveryCounters>,
    subscribers_opened: AtomicU64,
    subscribers_closed: AtomicU64,
    slow_subscribers_dropped: AtomicU64,
    events_published: AtomicU64,
    bytes_published: AtomicU64,
}

#[derive(Default)]
struct State {
    channels: HashMap<ChannelId, Channel>,
    /// Subscribers now, over all channels.
    subscribers: usize,
    /// Sequence number of the next event, from 1.
    next_sequence: u64,
    next_subscriber: u64,
    /// Channels whose membership changed since the last count tick.
    counts_due: HashSet<ChannelId>,
    /// Channels that lost their last subscriber, oldest first, with the time it left.
    idle: VecDeque<(Instant, ChannelId)>,
    closed: bool,
}

struct Channel {
    subscribers: HashMap<u64, QueueSender>,
    /// The latest events, oldest first, at most `history_len` of them.
    history: VecDeque<StoredEvent>,
    /// The sequence number the broker was at when this channel was created: ids below it were
    /// issued before the channel existed and are unknown to it.
    first_sequence: u64,
    /// The newest sequence number pushed out of the history by newer events.
    evicted_through: Option<u64>,
    /// When the last subscriber left; `None` while the channel has subscribers.
    idle_since: Option<Instant>,
}

struct StoredEvent {
    sequence: u64,
    frame: Bytes,
}

impl MemoryBroker {
    /// Creates a broker with no channels and starts its maintenance task on the current Tokio
    /// runtime. The task stops when the last clone of the broker is dropped.
    pub fn new(settings: BrokerSettings) -> Result<Self, getrandom::Error> {
        let shared = Arc::new(Shared {
            settings,
            epoch: random_epoch()?,
            state: Mutex::new(State {
                next_sequence: 1,
                ..State::default()
            }),
            delivery: Arc::default(),
            subscribers_opened: AtomicU64::new(0),
            subscribers_closed: AtomicU64::new(0),
            slow_subscribers_dropped: AtomicU64::new(0),
            events_published: AtomicU64::new(0),
            bytes_published: AtomicU64::new(0),
        });
        tokio::spawn(maintain(Arc::downgrade(&shared)));
        Ok(Self { shared })
    }

    /// Returns the epoch part of this broker's event ids.
    pub fn epoch(&self) -> u64 {
        self.shared.epoch
    }
}

impl Broker for MemoryBroker {
    fn subscribe(
        &self,
        request: SubscribeRequest,
    ) -> BoxFuture<'_, Result<Subscription, BrokerError>> {
        let result = self.shared.join(request).map(|(membership, frames)| {
            Subscription::new(frames, self.shared.delivery.clone(), Box::new(membership))
        });
        async move { result }.boxed()
    }

    fn publish(
        &self,
        channel: ChannelId,
        payload: Bytes,
    ) -> BoxFuture<'_, Result<Published, BrokerError>> {
        let result = self.shared.publish(channel, &payload);
        async move { result }.boxed()
    }

    fn subscribers(&self, channel: ChannelId) -> BoxFuture<'_, Result<usize, BrokerError>> {
        let count = self
            .shared
            .lock()
            .channels
            .get(&channel)
            .map_or(0, |c| c.subscribers.len());
        async move { Ok(count) }.boxed()
    }

    fn stats(&self) -> BrokerStats {
        let shared = &self.shared;
        let (subscribers, channels) = {
            let state = shared.lock();
            (state.subscribers as u64, state.channels.len() as u64)
        };
        let (events_delivered, bytes_delivered) = shared.delivery.get();
        BrokerStats {
            subscribers,
            subscribers_opened: shared.subscribers_opened.load(Ordering::Relaxed),
            subscribers_closed: shared.subscribers_closed.load(Ordering::Relaxed),
            slow_subscribers_dropped: shared.slow_subscribers_dropped.load(Ordering::Relaxed),
            channels,
            events_published: shared.events_published.load(Ordering::Relaxed),
            bytes_published: shared.bytes_published.load(Ordering::Relaxed),
            events_delivered,
            bytes_delivered,
        }
    }

    fn close(&self) {
        let mut state = self.shared.lock();
        state.closed = true;
        for channel in state.channels.values() {
            for queue in channel.subscribers.values() {
                queue.end(End::Closed);
            }
        }
        tracing::info!(
            subscribers = state.subscribers,
            "ending every event stream for shutdown"
        );
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // No critical section panics between two related updates (each is an insert, remove
        // or push), so the state behind a lock poisoned by a panic elsewhere is consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn join(
        self: &Arc<Self>,
        request: SubscribeRequest,
    ) -> Result<(Membership, queue::QueueReceiver), BrokerError> {
        let mut guard = self.lock();
        let state = &mut *guard;
        if state.closed {
            return Err(BrokerError::ShuttingDown);
        }

        let limit = self.settings.max_subscribers_per_channel;
        let next_sequence = state.next_sequence;
        let channel = state
            .channels
            .entry(request.channel.clone())
            .or_insert_with(|| Channel::new(next_sequence));
        if channel.subscribers.len() >= limit {
            return Err(BrokerError::ChannelFull {
                channel: request.channel,
                limit,
            });
        }

        let (sender, receiver) = queue::queue(self.settings.queue_capacity);
        let id = state.next_subscriber;
        state.next_subscriber += 1;
        channel.subscribers.insert(id, sender);
        channel.idle_since = None;
        state.subscribers += 1;
        self.subscribers_opened.fetch_add(1, Ordering::Relaxed);

        // The new subscriber learns the count at once; the others get it coalesced.
        let count = channel.subscribers.len();
        let opening = &channel.subscribers[&id];
        opening.push_opening(Frame::control(sse::count(count)));
        if let Some(last_event_id) = &request.last_event_id {
            for frame in channel.resume_after(last_event_id, self.epoch) {
                opening.push_opening(frame);
            }
        }
        state.counts_due.insert(request.channel.clone());
        tracing::debug!(channel = %request.channel, subscribers = count, "subscriber joined");

        let membership = Membership {
            shared: self.clone(),
            channel: request.channel,
            id,
        };
        Ok((membership, receiver))
    }

    fn publish(&self, channel: ChannelId, payload: &[u8]) -> Result<Published, BrokerError> {
        let mut guard = self.lock();
        let state = &mut *guard;
        if state.closed {
            return Err(BrokerError::ShuttingDown);
        }

        let id = EventId {
            epoch: self.epoch,
            sequence: state.next_sequence,
        };
        let frame = sse::event(&id.to_string(), payload)?;
        state.next_sequence += 1;
        self.events_published.fetch_add(1, Ordering::Relaxed);
        self.bytes_published
            .fetch_add(payload.len() as u64, Ordering::Relaxed);

        let Some(entry) = state.channels.get_mut(&channel) else {
            return Ok(Published {
                id: id.to_string(),
                queued: 0,
            });
        };
        let (queued, dropped) = self.fan_out(entry, &Frame::event(frame.clone()));
        entry.remember(id.sequence, frame, self.settings.history_len);
        if dropped > 0 {
            state.subscribers -= dropped;
            state.counts_due.insert(channel.clone());
            state.mark_if_idle(&channel, Instant::now());
        }
        Ok(Published {
            id: id.to_string(),
            queued,
        })
    }

    /// Queues `frame` for every subscriber of `channel`, removing those whose queue is full
    /// or whose stream is gone. Returns how many it was queued for and how many were removed.
    fn fan_out(&self, channel: &mut Channel, frame: &Frame) -> (usize, usize) {
        let before = channel.subscribers.len();
        channel
            .subscribers
            .retain(|_, queue| match queue.push(frame.clone()) {
                Ok(()) => true,
                Err(PushError::Full) => {
                    queue.end(End::Overflow);
                    self.slow_subscribers_dropped
                        .fetch_add(1, Ordering::Relaxed);
                    false
                }
                Err(PushError::Ended) => false,
            });
        let queued = channel.subscribers.len();
        let dropped = before - queued;
        if dropped > 0 {
            tracing::debug!(dropped, "dropped subscribers that stopped reading");
        }
        (queued, dropped)
    }

    /// Sends the coalesced counts, the keepalives when due, and frees expired channels.
    fn tick(&self, now: Instant, keepalive_due: bool) {
        let mut guard = self.lock();
        let state = &mut *guard;

        let due = std::mem::take(&mut state.counts_due);
        for name in due {
            let Some(channel) = state.channels.get_mut(&name) else {
                continue;
            };
            let frame = Frame::control(sse::count(channel.subscribers.len()));
            let (_, dropped) = self.fan_out(channel, &frame);
            state.subscribers -= dropped;
            if dropped > 0 {
                state.counts_due.insert(name.clone());
            }
            state.mark_if_idle(&name, now);
        }

        if keepalive_due {
            let frame = Frame::control(sse::KEEPALIVE);
            let mut emptied = Vec::new();
            for (name, channel) in state.channels.iter_mut() {
                let (_, dropped) = self.fan_out(channel, &frame);
                if dropped > 0 {
                    state.subscribers -= dropped;
                    state.counts_due.insert(name.clone());
                    emptied.push(name.clone());
                }
            }
            for name in emptied {
                state.mark_if_idle(&name, now);
            }
        }

        self.free_expired(state, now);
    }

    fn free_expired(&self, state: &mut State, now: Instant) {
        let retention = self.settings.history_retention;
        while let Some((since, _)) = state.idle.front() {
            if now.duration_since(*since) < retention {
                break;
            }
            let Some((since, name)) = state.idle.pop_front() else {
                break;
            };
            // The channel may have gained a subscriber, or gone idle again later, since.
            let expired = state
                .channels
                .get(&name)
                .is_some_and(|c| c.idle_since == Some(since));
            if expired {
                state.channels.remove(&name);
                tracing::debug!(channel = %name, "channel history expired");
            }
        }
    }
}

impl State {
    /// Frees the channel if it has neither subscribers nor history. If it has only history,
    /// starts its retention time instead.
    fn mark_if_idle(&mut self, name: &ChannelId, now: Instant) {
        let Some(channel) = self.channels.get_mut(name) else {
            return;
        };
        if !channel.subscribers.is_empty() || channel.idle_since.is_some() {
            return;
        }
        if channel.history.is_empty() {
            self.channels.remove(name);
            self.counts_due.remove(name);
            return;
        }
        channel.idle_since = Some(now);
        self.idle.push_back((now, name.clone()));
    }
}

impl Channel {
    fn new(first_sequence: u64) -> Self {
        Self {
            subscribers: HashMap::new(),
            history: VecDeque::new(),
            first_sequence,
            evicted_through: None,
            idle_since: None,
        }
    }

    fn remember(&mut self, sequence: u64, frame: Bytes, history_len: usize) {
        self.history.push_back(StoredEvent { sequence, frame });
        while self.history.len() > history_len {
            if let Some(evicted) = self.history.pop_front() {
                self.evicted_through = Some(evicted.sequence);
            }
        }
    }

    /// Returns the frames a subscriber that last saw `last_event_id` needs: the events after
    /// it, or a reset notice followed by every retained event when some may be missing.
    fn resume_after(&self, last_event_id: &str, epoch: u64) -> Vec<Frame> {
        let id = EventId::parse(last_event_id).filter(|id| id.epoch == epoch);
        let Some(id) = id else {
            return vec![Frame::control(sse::reset(ResetReason::UnknownId))];
        };

        let found = self
            .history
            .binary_search_by_key(&id.sequence, |event| event.sequence);
        if let Ok(index) = found {
            return self.events_from(index + 1);
        }

        // Events after the id were evicted: every retained event is newer than the id, so all
        // of them go out after the notice, without duplicates.
        let evicted = self
            .evicted_through
            .is_some_and(|through| id.sequence <= through);
        if evicted && id.sequence >= self.first_sequence {
            let mut frames = vec![Frame::control(sse::reset(ResetReason::TooOld))];
            frames.extend(self.events_from(0));
            return frames;
        }
        vec![Frame::control(sse::reset(ResetReason::UnknownId))]
    }

    fn events_from(&self, index: usize) -> Vec<Frame> {
        self.history
            .range(index..)
            .map(|event| Frame::event(event.frame.clone()))
            .collect()
    }
}

/// Runs [`Shared::tick`] every count interval until the broker is dropped or closed.
async fn maintain(shared: Weak<Shared>) {
    let Some((count_interval, keepalive)) = shared
        .upgrade()
        .map(|s| (s.settings.count_interval, s.settings.keepalive))
    else {
        return;
    };
    // Delay keeps ticks at least one interval apart even after a late one, so no channel
    // gets two counts within the interval.
    let mut ticks = tokio::time::interval_at(Instant::now() + count_interval, count_interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut next_keepalive = Instant::now() + keepalive;

    loop {
        let now = ticks.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if shared.lock().closed {
            return;
        }
        let keepalive_due = now >= next_keepalive;
        if keepalive_due {
            next_keepalive = now + keepalive;
        }
        shared.tick(now, keepalive_due);
    }
}

/// Removes a subscriber from its channel when its stream ends.
struct Membership {
    shared: Arc<Shared>,
    channel: ChannelId,
    id: u64,
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.shared
            .subscribers_closed
            .fetch_add(1, Ordering::Relaxed);
        let mut guard = self.shared.lock();
        let state = &mut *guard;
        let Some(channel) = state.channels.get_mut(&self.channel) else {
            return;
        };
        if channel.subscribers.remove(&self.id).is_none() {
            // The broker already dropped this subscriber as stalled.
            return;
        }
        state.subscribers -= 1;
        state.counts_due.insert(self.channel.clone());
        state.mark_if_idle(&self.channel, Instant::now());
        tracing::debug!(channel = %self.channel, "subscriber left");
    }
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::{Context, Poll, Waker};

    use futures_util::{Stream, StreamExt};

    use super::*;

    fn channel(name: &str) -> ChannelId {
        ChannelId::parse(name).unwrap()
    }

    fn settings() -> BrokerSettings {
        BrokerSettings {
            history_len: 3,
            history_retention: Duration::from_millis(200),
            count_interval: Duration::from_millis(50),
            keepalive: Duration::from_secs(3600),
            queue_capacity: 8,
            max_subscribers_per_channel: 2,
        }
    }

    fn request(name: &str, last_event_id: Option<&str>) -> SubscribeRequest {
        SubscribeRequest {
            channel: channel(name),
            last_event_id: last_event_id.map(str::to_owned),
        }
    }

    /// Takes the frames that are ready without waiting.
    fn ready_frames(subscription: &mut Subscription) -> Vec<String> {
        let mut cx = Context::from_waker(Waker::noop());
        let mut frames = Vec::new();
        while let Poll::Ready(Some(frame)) = Pin::new(&mut *subscription).poll_next(&mut cx) {
            frames.push(String::from_utf8(frame.to_vec()).unwrap());
        }
        frames
    }

    async fn publish(broker: &MemoryBroker, name: &str, payload: &'static str) -> Published {
        broker
            .publish(channel(name), Bytes::from_static(payload.as_bytes()))
            .await
            .unwrap()
    }

    fn event_frame(id: &str, payload: &str) -> String {
        format!("id: {id}\ndata: {payload}\n\n")
    }

    #[tokio::test]
    async fn joiner_gets_count_at_once() {
        let broker = MemoryBroker::new(settings()).unwrap();
        let mut first = broker.subscribe(request("room", None)).await.unwrap();
        assert_eq!(
            ready_frames(&mut first),
            ["event: count\ndata: count=1\n\n"]
        );
        let mut second = broker.subscribe(request("room", None)).await.unwrap();
        assert_eq!(
            ready_frames(&mut second),
            ["event: count\ndata: count=2\n\n"]
        );
        assert!(ready_frames(&mut first).is_empty());

        // The first subscriber learns of the second at the next count tick.
        let frame = tokio::time::timeout(Duration::from_secs(2), first.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&frame[..], b"event: count\ndata: count=2\n\n");
    }

    #[tokio::test]
    async fn publish_reaches_every_subscriber() {
        let broker = MemoryBroker::new(settings()).unwrap();
        let mut first = broker.subscribe(request("room", None)).await.unwrap();
        let mut second = broker.subscribe(request("room", None)).await.unwrap();
        ready_frames(&mut first);
        ready_frames(&mut second);

        let published = publish(&broker, "room", "{}").await;
        assert_eq!(published.queued, 2);
        let expected = event_frame(&published.id, "{}");
        assert_eq!(ready_frames(&mut first), std::slice::from_ref(&expected));
        assert_eq!(ready_frames(&mut second), [expected]);

        let stats = broker.stats();
        assert_eq!(stats.events_published, 1);
        assert_eq!(stats.events_delivered, 2);
        assert_eq!(stats.subscribers, 2);
    }

    #[tokio::test]
    async fn channel_limit_rejects_third() {
        let broker = MemoryBroker::new(settings()).unwrap();
        let _first = broker.subscribe(request("room", None)).await.unwrap();
        let _second = broker.subscribe(request("room", None)).await.unwrap();
        let third = broker.subscribe(request("room", None)).await;
        assert!(matches!(
            third,
            Err(BrokerError::ChannelFull { limit: 2, .. })
        ));
    }

    #[tokio::test]
    async fn resume_replays_missed_events() {
        let broker = MemoryBroker::new(settings()).unwrap();
        let _keeper = broker.subscribe(request("room", None)).await.unwrap();
        let first = publish(&broker, "room", "1").await;
        let second = publish(&broker, "room", "2").await;
        let third = publish(&broker, "room", "3").await;

        let mut resumed = broker
            .subscribe(request("room", Some(&first.id)))
            .await
            .unwrap();
        assert_eq!(
            ready_frames(&mut resumed),
            [
                "event: count\ndata: count=2\n\n".to_owned(),
                event_frame(&second.id, "2"),
                event_frame(&third.id, "3"),
            ]
        );

        drop(resumed);

        let mut latest = broker
            .subscribe(request("room", Some(&third.id)))
            .await
            .unwrap();
        assert_eq!(
            ready_frames(&mut latest),
            ["event: count\ndata: count=2\n\n"]
        );
    }

    #[tokio::test]
    async fn resume_reports_evicted_and_unknown() {
        let broker = MemoryBroker::new(settings()).unwrap();
        let _keeper = broker.subscribe(request("room", None)).await.unwrap();
        let mut ids = Vec::new();
        for payload in ["1", "2", "3", "4", "5"] {
            ids.push(publish(&broker, "room", payload).await.id);
        }

        // History keeps 3: events 3 to 5. Id 1 is too old, and 3 to 5 follow the notice.
        let mut old = broker
            .subscribe(request("room", Some(&ids[0])))
            .await
            .unwrap();
        let frames = ready_frames(&mut old);
        assert_eq!(frames[1], "event: reset\ndata: reason=too-old\n\n");
        assert_eq!(
            frames[2..],
            [
                event_frame(&ids[2], "3"),
                event_frame(&ids[3], "4"),
                event_frame(&ids[4], "5"),
            ]
        );
        drop(old);

        let foreign = format!("{:016x}-2", broker.epoch().wrapping_add(1));
        for unknown in [foreign.as_str(), "garbage", "", &"9".repeat(100)] {
            let mut subscription = broker
                .subscribe(request("room", Some(unknown)))
                .await
                .unwrap();
            let frames = ready_frames(&mut subscription);
            assert_eq!(
                frames[1..],
                ["event: reset\ndata: reason=unknown-id\n\n"],
                "{unknown:?}"
            );
        }
    }

    #[tokio::test]
    async fn stalled_subscriber_is_dropped() {
        let broker = MemoryBroker::new(settings()).unwrap();
        let mut stalled = broker.subscribe(request("room", None)).await.unwrap();
        // The opening count is already queued, so capacity 8 overflows on the 8th event.
        for _ in 0..8 {
            publish(&broker, "room", "x").await;
        }
        assert_eq!(broker.subscribers(channel("room")).await.unwrap(), 0);
        assert_eq!(broker.stats().slow_subscribers_dropped, 1);
        assert_eq!(stalled.end(), Some(End::Overflow));
        assert!(ready_frames(&mut stalled).is_empty());
    }

    #[tokio::test]
    async fn channel_freed_after_retention() {
        let broker = MemoryBroker::new(settings()).unwrap();
        let quiet = broker.subscribe(request("quiet", None)).await.unwrap();
        drop(quiet);
        assert_eq!(broker.stats().channels, 0, "no history: freed at once");

        let talker = broker.subscribe(request("talk", None)).await.unwrap();
        publish(&broker, "talk", "1").await;
        drop(talker);
        assert_eq!(broker.stats().channels, 1, "history kept after leaving");

        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(broker.stats().channels, 0, "history expired");
        let stats = broker.stats();
        assert_eq!(stats.subscribers_opened, 2);
        assert_eq!(stats.subscribers_closed, 2);
    }

    #[tokio::test]
    async fn close_ends_streams_and_rejects() {
        let broker = MemoryBroker::new(settings()).unwrap();
        let mut subscription = broker.subscribe(request("room", None)).await.unwrap();
        broker.close();
        let frames: Vec<Bytes> = subscription.by_ref().collect().await;
        assert_eq!(frames.len(), 1, "the opening count, then the end");
        assert_eq!(subscription.end(), Some(End::Closed));
        assert!(matches!(
            broker.subscribe(request("room", None)).await,
            Err(BrokerError::ShuttingDown)
        ));
    }
}
