//! The in-process broker: channels, their subscribers and their history live in this process.
//!
//! Each channel keeps a log of encoded event frames, and each subscriber a cursor into it. A
//! publish appends one frame and wakes the channel's subscribers. Each subscriber's connection
//! then takes every frame from its cursor to the newest in one batch. A subscriber
//! that falls more than `max_waiting_events` events (or `max_waiting_bytes` bytes) behind is
//! dropped as stalled. The log keeps what some subscriber still has to send, and at least the
//! last `history_len` events for subscribers that reconnect.
//!
//! Subscriber counts and keepalives are not queued at all: each channel stores the latest count
//! frame and a version number for each, and a subscriber sends the frame when its version is
//! behind. One maintenance task, not a timer per connection, moves the versions on (the counts
//! coalesced to one per `count_interval`) and frees channels whose history has expired.
//!
//! Locks: the channel map is behind one std mutex, and each channel's log behind its own. Code
//! that needs both takes the map's first. A connection that gathers frames takes only its
//! channel's lock; no critical section awaits, and wakers are woken after the locks are
//! released.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::{BoxFuture, FutureExt};
use slab::Slab;
use tokio::time::{Instant, MissedTickBehavior};

use super::event_id::{EventId, MAX_EVENT_ID_LEN, random_epoch};
use super::{
    Batch, Broker, BrokerError, BrokerStats, DeliveryCounters, End, Feed, Gathered, Published,
    SubscribeRequest, Subscription,
};
use crate::channel::ChannelId;
use crate::connection::ConnectionCloser;
use crate::sse::{self, ResetReason};

/// Bytes an event frame has beyond its payload: `id: `, the id, `\ndata: ` and the blank
/// line.
const MAX_FRAME_OVERHEAD: usize = 4 + MAX_EVENT_ID_LEN + 7 + 2;

/// Settings of a [`MemoryBroker`]; [`Default`] gives the relay's defaults.
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    /// Events each channel keeps for reconnecting subscribers. One channel can keep up to
    /// `history_len` times the publish size limit (3.2 MiB at the defaults), and
    /// `max_history_bytes` bounds all channels together.
    pub history_len: usize,
    /// Maximum bytes of event frames in all channels' logs together. Publishing someone
    /// else's channel needs no subscription, so a client with many addresses could otherwise
    /// fill memory with the history of channels without subscribers.
    pub max_history_bytes: usize,
    /// How long a channel keeps its history after its last subscriber leaves.
    pub history_retention: Duration,
    /// Shortest time between two count events of one channel.
    pub count_interval: Duration,
    /// Time between keepalive comments on every stream.
    pub keepalive: Duration,
    /// Maximum events published but not yet taken by a subscriber's connection. A subscriber
    /// further behind counts as stalled and is dropped.
    pub max_waiting_events: usize,
    /// The same limit in bytes of event frames. With `max_waiting_events`, it bounds the
    /// memory a stalled subscriber keeps alive in its channel's log.
    pub max_waiting_bytes: usize,
    /// Maximum subscribers per channel.
    pub max_subscribers_per_channel: usize,
}

impl Default for BrokerSettings {
    fn default() -> Self {
        Self {
            history_len: 100,
            max_history_bytes: 256 << 20,
            history_retention: Duration::from_secs(300),
            count_interval: Duration::from_millis(370),
            keepalive: Duration::from_secs(20),
            max_waiting_events: 1024,
            max_waiting_bytes: 1 << 20,
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
    /// Sequence number of the next event, from 1. An event takes its number under its
    /// channel's lock, so each channel's log is in sequence order.
    next_sequence: AtomicU64,
    /// A std mutex suits: no critical section awaits, and the longest (a count tick) does
    /// constant work per subscriber.
    state: Mutex<State>,
    delivery: Arc<DeliveryCounters>,
    subscribers_opened: AtomicU64,
    subscribers_closed: AtomicU64,
    slow_subscribers_dropped: AtomicU64,
    events_published: AtomicU64,
    bytes_published: AtomicU64,
    /// Bytes of event frames in the logs of the channels in the map. Changed under a
    /// channel's lock, read under the map's lock before a publish.
    history_bytes: AtomicU64,
    history_evictions: AtomicU64,
}

#[derive(Default)]
struct State {
    channels: HashMap<ChannelId, ChannelEntry>,
    /// Subscribers now, over all channels.
    subscribers: usize,
    next_subscriber: u64,
    /// Channels whose membership changed since the last count tick.
    counts_due: HashSet<ChannelId>,
    /// Channels that lost their last subscriber, oldest first, with the time it left.
    idle: VecDeque<(Instant, ChannelId)>,
    closed: bool,
}

struct ChannelEntry {
    channel: Arc<Channel>,
    /// Time the last subscriber left, or `None` while the channel has subscribers.
    idle_since: Option<Instant>,
}

/// One channel: created by its first subscriber, shared by the map and every subscriber's
/// feed, and dropped when both let go of it.
struct Channel {
    /// A std mutex suits: a connection holds it to copy frame handles, a publish to append
    /// and to take the wakers, and neither awaits.
    log: Mutex<Log>,
}

struct Log {
    /// Events from position `front` on, oldest first.
    events: VecDeque<StoredEvent>,
    /// Position of the oldest event in `events`. Positions number this channel's events from
    /// 0 without gaps, where sequence numbers are shared by all channels.
    front: u64,
    /// Bytes of every event frame appended so far.
    appended_bytes: u64,
    /// The sequence number the broker was at when this channel was created: ids below it were
    /// issued before the channel existed and are unknown to it.
    first_sequence: u64,
    /// The newest sequence number dropped from the front of the log.
    evicted_through: Option<u64>,
    members: Slab<Member>,
    /// The latest `event: count` frame, the count it carries, and its version. A version
    /// moves on at a count tick.
    count_frame: Bytes,
    count: usize,
    count_version: u64,
    /// Moves on when keepalives are due.
    keepalive_version: u64,
    /// Set when the channel leaves the map: its bytes no longer count in the broker's
    /// `history_bytes`, and a publish that still has a handle to it stores nothing in it.
    detached: bool,
    /// Set by [`Broker::close`]: streams end once they have sent every event.
    closed: bool,
}

struct StoredEvent {
    sequence: u64,
    frame: Bytes,
    /// `appended_bytes` before this event, to measure how many bytes a subscriber is behind.
    offset: u64,
}

/// One subscriber's state in its channel's log.
struct Member {
    /// Unique over the broker, so a feed can tell its own entry from a later one that reuses
    /// the slab slot after it was dropped as stalled.
    id: u64,
    /// Position of the next event this subscriber sends.
    cursor: u64,
    count_seen: u64,
    /// The count this subscriber was last sent, so that a tick that leaves the count where it
    /// was sends nothing.
    count_sent: usize,
    keepalive_seen: u64,
    /// Whether the count at the moment of joining is still to be sent.
    opening_count: bool,
    /// A resume notice still to be sent, before any event.
    reset: Option<ResetReason>,
    /// The connection's task, woken when frames are ready or the stream ends.
    waker: Option<Waker>,
    closer: Option<ConnectionCloser>,
}

impl MemoryBroker {
    /// Creates a broker with no channels and starts its maintenance task on the current Tokio
    /// runtime. The task stops when the last clone of the broker is dropped.
    pub fn new(settings: BrokerSettings) -> Result<Self, getrandom::Error> {
        let shared = Arc::new(Shared {
            settings,
            epoch: random_epoch()?,
            next_sequence: AtomicU64::new(1),
            state: Mutex::new(State::default()),
            delivery: Arc::default(),
            subscribers_opened: AtomicU64::new(0),
            subscribers_closed: AtomicU64::new(0),
            slow_subscribers_dropped: AtomicU64::new(0),
            events_published: AtomicU64::new(0),
            bytes_published: AtomicU64::new(0),
            history_bytes: AtomicU64::new(0),
            history_evictions: AtomicU64::new(0),
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
        let result = self
            .shared
            .join(request)
            .map(|feed| Subscription::new(Box::new(feed), self.shared.delivery.clone()));
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
            .map_or(0, |entry| entry.channel.lock().members.len());
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
            history_bytes: shared.history_bytes.load(Ordering::Relaxed),
            history_evictions: shared.history_evictions.load(Ordering::Relaxed),
        }
    }

    fn close(&self) {
        let mut wakers = Vec::new();
        let subscribers = {
            let mut state = self.shared.lock();
            state.closed = true;
            for entry in state.channels.values() {
                let mut log = entry.channel.lock();
                log.closed = true;
                log.take_wakers(&mut wakers);
            }
            state.subscribers
        };
        tracing::info!(subscribers, "ending every event stream for shutdown");
        wakers.into_iter().for_each(Waker::wake);
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // No critical section panics between two related updates (each is an insert, remove
        // or counter change), so the state behind a lock poisoned elsewhere is consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn join(self: &Arc<Self>, request: SubscribeRequest) -> Result<MemoryFeed, BrokerError> {
        let mut guard = self.lock();
        let state = &mut *guard;
        if state.closed {
            return Err(BrokerError::ShuttingDown);
        }

        let first_sequence = self.next_sequence.load(Ordering::Relaxed);
        let entry = state
            .channels
            .entry(request.channel.clone())
            .or_insert_with(|| ChannelEntry {
                channel: Arc::new(Channel::new(first_sequence)),
                idle_since: None,
            });
        let channel = entry.channel.clone();
        let mut log = channel.lock();
        let limit = self.settings.max_subscribers_per_channel;
        if log.members.len() >= limit {
            return Err(BrokerError::ChannelFull {
                channel: request.channel,
                limit,
            });
        }

        let (cursor, reset) = match &request.last_event_id {
            Some(last_event_id) => {
                log.resume_position(last_event_id, self.epoch, self.settings.history_len)
            }
            None => (log.head(), None),
        };
        let id = state.next_subscriber;
        state.next_subscriber += 1;
        let member = Member {
            id,
            cursor,
            count_seen: log.count_version,
            count_sent: 0,
            keepalive_seen: log.keepalive_version,
            opening_count: true,
            reset,
            waker: None,
            closer: None,
        };
        let key = log.members.insert(member);
        // The new subscriber learns the count at once; the others get it coalesced.
        let count = log.members.len();
        log.set_count(count);
        drop(log);

        entry.idle_since = None;
        state.subscribers += 1;
        state.counts_due.insert(request.channel.clone());
        self.subscribers_opened.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(channel = %request.channel, subscribers = count, "subscriber joined");

        Ok(MemoryFeed {
            shared: self.clone(),
            channel,
            name: request.channel,
            key,
            id,
        })
    }

    fn publish(&self, name: ChannelId, payload: &[u8]) -> Result<Published, BrokerError> {
        let (channel, fits) = {
            let mut state = self.lock();
            if state.closed {
                return Err(BrokerError::ShuttingDown);
            }
            let channel = state.channels.get(&name).map(|entry| entry.channel.clone());
            // Room is only made for an event that will be stored. Making it may free this very
            // channel, if it is the oldest idle one; the event is then not stored either.
            let fits =
                channel.is_none() || self.make_room(&mut state, payload.len() + MAX_FRAME_OVERHEAD);
            (channel, fits)
        };
        let Some(channel) = channel else {
            return self.publish_unstored(&name, payload);
        };

        let mut wakers = Vec::new();
        let (id, queued, dropped) = {
            let mut log = channel.lock();
            if log.detached {
                drop(log);
                return self.publish_unstored(&name, payload);
            }
            let id = self.next_id();
            let text = id.to_text();
            let frame = sse::event(&text, payload)?;
            self.history_bytes
                .fetch_add(frame.len() as u64, Ordering::Relaxed);
            log.append(id.sequence, frame);
            wakers.reserve(log.members.len());
            log.take_wakers(&mut wakers);
            let dropped = log.drop_stalled(&self.settings, &mut wakers);
            if fits {
                self.trim(&mut log, self.settings.history_len);
            } else {
                // Over budget with no idle channel left to free, the event still reaches the
                // subscribers, but the channel keeps only what they have still to send.
                if self.trim(&mut log, 0) > 0 {
                    self.count_history_eviction(&name, "history cut to what subscribers need");
                }
            }
            (text, log.members.len(), dropped)
        };
        self.count_published(payload);
        wakers.into_iter().for_each(Waker::wake);
        tracing::debug!(channel = %name, %id, bytes = payload.len(), queued, "event published");

        if dropped > 0 {
            self.slow_subscribers_dropped
                .fetch_add(dropped as u64, Ordering::Relaxed);
            tracing::debug!(channel = %name, dropped, "dropped subscribers that stopped reading");
            let mut state = self.lock();
            state.subscribers -= dropped;
            state.counts_due.insert(name.clone());
            state.mark_if_idle(&name, Instant::now());
        }
        Ok(Published { id, queued })
    }

    /// Publishes to a channel that has no subscribers and no history: the event only takes an
    /// id.
    fn publish_unstored(&self, name: &ChannelId, payload: &[u8]) -> Result<Published, BrokerError> {
        let id = self.next_id().to_text();
        sse::event(&id, payload)?;
        self.count_published(payload);
        tracing::debug!(channel = %name, %id, bytes = payload.len(), queued = 0, "event published");
        Ok(Published { id, queued: 0 })
    }

    /// Frees idle channels, oldest first, until `needed` more bytes fit in
    /// `max_history_bytes`. Returns whether they fit.
    fn make_room(&self, state: &mut State, needed: usize) -> bool {
        let max = self.settings.max_history_bytes as u64;
        while self.history_bytes.load(Ordering::Relaxed) + needed as u64 > max {
            let Some((since, name)) = state.idle.pop_front() else {
                return false;
            };
            // The channel may have gained a subscriber, or gone idle again later, since.
            let current = state
                .channels
                .get(&name)
                .is_some_and(|entry| entry.idle_since == Some(since));
            if current {
                self.remove_channel(state, &name);
                self.count_history_eviction(&name, "idle channel freed before its retention ended");
            }
        }
        true
    }

    /// Removes a channel without subscribers from the map, and its events from
    /// `history_bytes`.
    fn remove_channel(&self, state: &mut State, name: &ChannelId) {
        let Some(entry) = state.channels.remove(name) else {
            return;
        };
        let mut log = entry.channel.lock();
        log.detached = true;
        self.history_bytes
            .fetch_sub(log.stored_bytes(), Ordering::Relaxed);
    }

    /// Trims a channel's log to `history_len` events beyond what its subscribers have still
    /// to send, and takes what it dropped off `history_bytes`. Returns the bytes dropped.
    fn trim(&self, log: &mut Log, history_len: usize) -> u64 {
        let freed = log.trim(history_len);
        if !log.detached {
            self.history_bytes.fetch_sub(freed, Ordering::Relaxed);
        }
        freed
    }

    fn count_history_eviction(&self, name: &ChannelId, reason: &'static str) {
        let previous = self.history_evictions.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(channel = %name, reason, "history dropped to stay within --max-history-bytes");
        // The first eviction and then every thousandth is logged at a level operators see.
        if previous.is_multiple_of(1000) {
            tracing::warn!(
                limit = self.settings.max_history_bytes,
                evictions = previous + 1,
                "the history of all channels reached --max-history-bytes; dropping the oldest"
            );
        }
    }

    fn next_id(&self) -> EventId {
        EventId {
            epoch: self.epoch,
            sequence: self.next_sequence.fetch_add(1, Ordering::Relaxed),
        }
    }

    fn count_published(&self, payload: &[u8]) {
        self.events_published.fetch_add(1, Ordering::Relaxed);
        self.bytes_published
            .fetch_add(payload.len() as u64, Ordering::Relaxed);
    }

    /// Moves the counts of the channels whose membership changed and, when due, the
    /// keepalives on, then frees expired channels.
    fn tick(&self, now: Instant, keepalive_due: bool) {
        let mut wakers = Vec::new();
        {
            let mut guard = self.lock();
            let state = &mut *guard;

            let due = std::mem::take(&mut state.counts_due);
            for name in due {
                let Some(entry) = state.channels.get(&name) else {
                    continue;
                };
                {
                    let mut log = entry.channel.lock();
                    let count = log.members.len();
                    log.set_count(count);
                    log.count_version += 1;
                    log.take_wakers(&mut wakers);
                    self.trim(&mut log, self.settings.history_len);
                }
                state.mark_if_idle(&name, now);
            }

            if keepalive_due {
                for entry in state.channels.values() {
                    let mut log = entry.channel.lock();
                    log.keepalive_version += 1;
                    log.take_wakers(&mut wakers);
                }
            }

            self.free_expired(state, now);
        }
        wakers.into_iter().for_each(Waker::wake);
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
                .is_some_and(|entry| entry.idle_since == Some(since));
            if expired {
                self.remove_channel(state, &name);
                tracing::debug!(channel = %name, "channel history expired");
            }
        }
    }

    /// Removes a subscriber whose stream ended, unless it was already dropped as stalled.
    fn leave(&self, name: &ChannelId, channel: &Channel, key: usize, id: u64) {
        self.subscribers_closed.fetch_add(1, Ordering::Relaxed);
        let mut state = self.lock();
        {
            let mut log = channel.lock();
            if log.members.get(key).is_none_or(|member| member.id != id) {
                // The broker already dropped this subscriber as stalled.
                return;
            }
            log.members.remove(key);
            if log.members.is_empty() {
                self.trim(&mut log, self.settings.history_len);
            }
        }
        state.subscribers -= 1;
        state.counts_due.insert(name.clone());
        state.mark_if_idle(name, Instant::now());
        tracing::debug!(channel = %name, "subscriber left");
    }
}

impl State {
    /// Frees the channel if it has neither subscribers nor history. If it has only history,
    /// starts its retention time instead.
    fn mark_if_idle(&mut self, name: &ChannelId, now: Instant) {
        let Some(entry) = self.channels.get_mut(name) else {
            return;
        };
        if entry.idle_since.is_some() {
            return;
        }
        let (has_members, has_history) = {
            let mut log = entry.channel.lock();
            let (has_members, has_history) = (!log.members.is_empty(), !log.events.is_empty());
            // Detached under the log's lock, so that a publish that already holds the
            // channel does not store an event in it.
            log.detached = !has_members && !has_history;
            (has_members, has_history)
        };
        if has_members {
            return;
        }
        if !has_history {
            self.channels.remove(name);
            self.counts_due.remove(name);
            return;
        }
        entry.idle_since = Some(now);
        self.idle.push_back((now, name.clone()));
    }
}

impl Channel {
    fn new(first_sequence: u64) -> Self {
        Self {
            log: Mutex::new(Log {
                events: VecDeque::new(),
                front: 0,
                appended_bytes: 0,
                first_sequence,
                evicted_through: None,
                members: Slab::new(),
                count_frame: sse::count(0),
                count: 0,
                count_version: 0,
                keepalive_version: 0,
                detached: false,
                closed: false,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Log> {
        // Every critical section leaves the log whole (appends, pops and slab updates that
        // cannot stop halfway), so a lock poisoned by a panic elsewhere is still consistent.
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Log {
    /// Sets the count that subscribers are sent next.
    fn set_count(&mut self, count: usize) {
        self.count_frame = sse::count(count);
        self.count = count;
    }

    /// Returns the position the next event will take.
    fn head(&self) -> u64 {
        self.front + self.events.len() as u64
    }

    fn append(&mut self, sequence: u64, frame: Bytes) {
        let offset = self.appended_bytes;
        self.appended_bytes += frame.len() as u64;
        self.events.push_back(StoredEvent {
            sequence,
            frame,
            offset,
        });
    }

    /// Moves every registered waker into `wakers`.
    fn take_wakers(&mut self, wakers: &mut Vec<Waker>) {
        wakers.extend(
            self.members
                .iter_mut()
                .filter_map(|(_, member)| member.waker.take()),
        );
    }

    /// Removes the subscribers that are too far behind, shutting down their connections and
    /// adding their wakers to `wakers`. Returns how many it removed.
    fn drop_stalled(&mut self, settings: &BrokerSettings, wakers: &mut Vec<Waker>) -> usize {
        let head = self.head();
        let stalled: Vec<usize> = self
            .members
            .iter()
            .filter(|(_, member)| {
                // One event alone never counts, however large: the limits bound a backlog.
                let behind = head - member.cursor;
                behind > settings.max_waiting_events as u64
                    || (behind > 1
                        && self.bytes_behind(member.cursor) > settings.max_waiting_bytes as u64)
            })
            .map(|(key, _)| key)
            .collect();
        for &key in &stalled {
            let mut member = self.members.remove(key);
            // The closer is used under this lock: the connection's drop removes the member
            // under the same lock, so its socket is still open here.
            if let Some(closer) = member.closer.take() {
                closer.shut_down();
            }
            wakers.extend(member.waker.take());
        }
        stalled.len()
    }

    /// Returns the bytes of the event frames from position `cursor` to the newest.
    fn bytes_behind(&self, cursor: u64) -> u64 {
        let index = (cursor - self.front) as usize;
        self.events
            .get(index)
            .map_or(0, |event| self.appended_bytes - event.offset)
    }

    /// Returns the bytes of every event frame in the log.
    fn stored_bytes(&self) -> u64 {
        self.events
            .front()
            .map_or(0, |oldest| self.appended_bytes - oldest.offset)
    }

    /// Drops the events that no subscriber has still to send and that are older than the
    /// last `history_len`. Returns the bytes of the frames it dropped.
    fn trim(&mut self, history_len: usize) -> u64 {
        let before = self.stored_bytes();
        let head = self.head();
        let oldest_needed = self
            .members
            .iter()
            .map(|(_, member)| member.cursor)
            .min()
            .unwrap_or(head);
        let keep_from = oldest_needed.min(head.saturating_sub(history_len as u64));
        while self.front < keep_from {
            let Some(event) = self.events.pop_front() else {
                break;
            };
            self.evicted_through = Some(event.sequence);
            self.front += 1;
        }
        if self.events.capacity() > 2 * self.events.len().max(history_len) {
            // A burst grew the log, so give the memory back once subscribers have caught up.
            self.events.shrink_to(self.events.len().max(history_len));
        }
        before - self.stored_bytes()
    }

    /// Returns the cursor of a subscriber that last received `last_event_id`, and the notice it
    /// gets first when some events may be missing. The cursor is the position after that
    /// event, or else the oldest event of the history, after a `too-old` or `unknown-id`
    /// notice.
    fn resume_position(
        &self,
        last_event_id: &str,
        epoch: u64,
        history_len: usize,
    ) -> (u64, Option<ResetReason>) {
        // Only the last `history_len` events count as history, even while the log still has
        // older ones for subscribers that are behind, so that a resume does not depend on them.
        let history = self.events.len().min(history_len);
        let history_start = self.events.len() - history;
        let oldest_in_history = self.head() - history as u64;

        // An id of another epoch most often comes from before a restart. Every event this
        // process has was then published after the client last heard from the relay, so the
        // client gets the whole history rather than nothing. The same goes for an id this
        // channel never had, such as one from before the channel was freed.
        let id = EventId::parse(last_event_id).filter(|id| id.epoch == epoch);
        let Some(id) = id else {
            return (oldest_in_history, Some(ResetReason::UnknownId));
        };

        let found = self
            .events
            .binary_search_by_key(&id.sequence, |event| event.sequence);
        if let Ok(index) = found
            && index >= history_start
        {
            return (self.front + index as u64 + 1, None);
        }

        // Events after the id have left the history: every event still in it is newer than
        // the id, so all of them go out after the notice, without duplicates.
        let left_history_through = match history_start.checked_sub(1) {
            Some(index) => Some(self.events[index].sequence),
            None => self.evicted_through,
        };
        let evicted = left_history_through.is_some_and(|through| id.sequence <= through);
        if evicted && id.sequence >= self.first_sequence {
            return (oldest_in_history, Some(ResetReason::TooOld));
        }
        (oldest_in_history, Some(ResetReason::UnknownId))
    }
}

impl Member {
    /// Keeps the task of `cx` to be woken, cloning its waker only when it changed.
    fn register(&mut self, cx: &Context<'_>) {
        match &self.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => self.waker = Some(cx.waker().clone()),
        }
    }
}

/// One subscriber's view of a [`MemoryBroker`] channel. Dropping it removes the subscriber.
struct MemoryFeed {
    shared: Arc<Shared>,
    channel: Arc<Channel>,
    name: ChannelId,
    /// The subscriber's slot in the channel's `members`, valid while the slot's member has
    /// this `id`.
    key: usize,
    id: u64,
}

impl Feed for MemoryFeed {
    fn poll_frames(
        &mut self,
        cx: &mut Context<'_>,
        batch: &mut Batch,
    ) -> Poll<Result<Gathered, End>> {
        let mut guard = self.channel.lock();
        let log = &mut *guard;
        let Some(member) = log.members.get_mut(self.key).filter(|m| m.id == self.id) else {
            return Poll::Ready(Err(End::Overflow));
        };
        member.register(cx);

        let empty_before = batch.is_empty();
        let mut added = false;
        if member.opening_count && batch.has_room() {
            batch.push_control(log.count_frame.clone());
            member.count_sent = log.count;
            member.opening_count = false;
            added = true;
        }
        if let Some(reason) = member.reset
            && batch.has_room()
        {
            batch.push_control(sse::reset(reason));
            member.reset = None;
            added = true;
        }
        let head = log.front + log.events.len() as u64;
        while member.cursor < head && batch.has_room() {
            let index = (member.cursor - log.front) as usize;
            batch.push_event(log.events[index].frame.clone());
            member.cursor += 1;
            added = true;
        }
        if member.count_seen != log.count_version && batch.has_room() {
            // A subscriber gets each count once: the tick after a subscriber's own join
            // carries the count it was sent when it joined.
            if member.count_sent != log.count {
                batch.push_control(log.count_frame.clone());
                member.count_sent = log.count;
                added = true;
            }
            member.count_seen = log.count_version;
        }
        if member.keepalive_seen != log.keepalive_version {
            // Any other frame keeps the connection alive just as well.
            if empty_before && !added {
                batch.push_control(sse::KEEPALIVE);
                added = true;
            }
            member.keepalive_seen = log.keepalive_version;
        }

        let more = member.opening_count
            || member.reset.is_some()
            || member.cursor < head
            || member.count_seen != log.count_version;
        match (added, more) {
            (true, true) => Poll::Ready(Ok(Gathered::More)),
            (true, false) => Poll::Ready(Ok(Gathered::All)),
            (false, false) if log.closed => Poll::Ready(Err(End::Closed)),
            (false, _) => Poll::Pending,
        }
    }

    fn poll_dropped(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut log = self.channel.lock();
        match log.members.get_mut(self.key).filter(|m| m.id == self.id) {
            Some(member) => {
                member.register(cx);
                Poll::Pending
            }
            None => Poll::Ready(()),
        }
    }

    fn set_closer(&mut self, closer: ConnectionCloser) {
        let mut log = self.channel.lock();
        if let Some(member) = log.members.get_mut(self.key).filter(|m| m.id == self.id) {
            member.closer = Some(closer);
        }
    }
}

impl Drop for MemoryFeed {
    fn drop(&mut self) {
        self.shared
            .leave(&self.name, &self.channel, self.key, self.id);
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

#[cfg(test)]
mod tests {
    use std::task::{Context, Poll, Waker};

    use futures_util::future::poll_fn;

    use super::*;

    fn channel(name: &str) -> ChannelId {
        ChannelId::parse(name).unwrap()
    }

    fn settings() -> BrokerSettings {
        BrokerSettings {
            history_len: 3,
            max_history_bytes: 1 << 20,
            history_retention: Duration::from_millis(200),
            count_interval: Duration::from_millis(50),
            keepalive: Duration::from_secs(3600),
            max_waiting_events: 8,
            max_waiting_bytes: 1 << 20,
            max_subscribers_per_channel: 2,
        }
    }

    fn request(name: &str, last_event_id: Option<&str>) -> SubscribeRequest {
        SubscribeRequest {
            channel: channel(name),
            last_event_id: last_event_id.map(str::to_owned),
        }
    }

    fn text(frames: &[Bytes]) -> Vec<String> {
        frames
            .iter()
            .map(|frame| String::from_utf8(frame.to_vec()).unwrap())
            .collect()
    }

    /// Takes the frames that are ready without waiting, and the end if the stream ended.
    fn poll_ready(subscription: &mut Subscription) -> (Vec<String>, Option<End>) {
        let mut cx = Context::from_waker(Waker::noop());
        let mut batch = Batch::new();
        let mut frames = Vec::new();
        loop {
            match subscription.poll_frames(&mut cx, &mut batch) {
                Poll::Ready(Ok(_)) => frames.extend(text(&batch.take_frames())),
                Poll::Ready(Err(end)) => return (frames, Some(end)),
                Poll::Pending => return (frames, None),
            }
        }
    }

    fn ready_frames(subscription: &mut Subscription) -> Vec<String> {
        poll_ready(subscription).0
    }

    /// Waits for the next batch of frames.
    async fn next_batch(subscription: &mut Subscription) -> Result<Vec<String>, End> {
        let mut batch = Batch::new();
        poll_fn(|cx| subscription.poll_frames(cx, &mut batch)).await?;
        Ok(text(batch.frames()))
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
        let frames = tokio::time::timeout(Duration::from_secs(2), next_batch(&mut first))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(frames, ["event: count\ndata: count=2\n\n"]);
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
    async fn backlog_leaves_in_one_batch() {
        let broker = MemoryBroker::new(settings()).unwrap();
        let mut subscription = broker.subscribe(request("room", None)).await.unwrap();
        ready_frames(&mut subscription);

        let mut expected = Vec::new();
        for payload in ["1", "2", "3", "4", "5"] {
            let published = publish(&broker, "room", payload).await;
            expected.push(event_frame(&published.id, payload));
        }
        let mut cx = Context::from_waker(Waker::noop());
        let mut batch = Batch::new();
        let gathered = subscription.poll_frames(&mut cx, &mut batch);
        assert_eq!(gathered, Poll::Ready(Ok(Gathered::All)));
        assert_eq!(text(batch.frames()), expected);
        assert_eq!(batch.events(), 5);
    }

    #[tokio::test]
    async fn publish_wakes_waiting_subscriber() {
        let broker = MemoryBroker::new(settings()).unwrap();
        let mut subscription = broker.subscribe(request("room", None)).await.unwrap();
        ready_frames(&mut subscription);

        let waiting = tokio::spawn(async move { next_batch(&mut subscription).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let published = publish(&broker, "room", "x").await;
        let frames = tokio::time::timeout(Duration::from_secs(2), waiting)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(frames, [event_frame(&published.id, "x")]);
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

        // History keeps 3: events 3 to 5, although the log still contains all five for the keeper,
        // which has not read them. Id 1 is too old, and 3 to 5 follow the notice.
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

        // Unknown ids get the notice and then the whole history, as after a restart.
        let foreign = format!("{:016x}-2", broker.epoch().wrapping_add(1));
        for unknown in [foreign.as_str(), "garbage", "", &"9".repeat(100)] {
            let mut subscription = broker
                .subscribe(request("room", Some(unknown)))
                .await
                .unwrap();
            let frames = ready_frames(&mut subscription);
            assert_eq!(
                frames[1..],
                [
                    "event: reset\ndata: reason=unknown-id\n\n".to_owned(),
                    event_frame(&ids[2], "3"),
                    event_frame(&ids[3], "4"),
                    event_frame(&ids[4], "5"),
                ],
                "{unknown:?}"
            );
        }
    }

    #[tokio::test]
    async fn stalled_subscriber_is_dropped() {
        let broker = MemoryBroker::new(settings()).unwrap();
        let mut stalled = broker.subscribe(request("room", None)).await.unwrap();
        let mut reader = broker.subscribe(request("room", None)).await.unwrap();
        // 8 events may wait; the 9th makes the subscriber that never reads too far behind.
        for _ in 0..8 {
            publish(&broker, "room", "x").await;
            ready_frames(&mut reader);
        }
        assert_eq!(broker.subscribers(channel("room")).await.unwrap(), 2);
        let published = publish(&broker, "room", "x").await;
        assert_eq!(published.queued, 1);
        assert_eq!(broker.subscribers(channel("room")).await.unwrap(), 1);
        assert_eq!(broker.stats().slow_subscribers_dropped, 1);
        assert_eq!(poll_ready(&mut stalled), (vec![], Some(End::Overflow)));
        assert_eq!(ready_frames(&mut reader).len(), 1);
    }

    #[tokio::test]
    async fn byte_limit_drops_stalled() {
        // Each frame is 67 bytes: `id: ` and an 18-character id, `\ndata: `, 36 bytes of
        // payload and the blank line. Two fit in 150 bytes, three do not.
        let broker = MemoryBroker::new(BrokerSettings {
            max_waiting_bytes: 150,
            ..settings()
        })
        .unwrap();
        let payload = "thirty-six bytes of payload, exactly";
        let mut stalled = broker.subscribe(request("room", None)).await.unwrap();
        publish(&broker, "room", payload).await;
        publish(&broker, "room", payload).await;
        assert_eq!(broker.stats().slow_subscribers_dropped, 0);
        publish(&broker, "room", payload).await;
        assert_eq!(broker.stats().slow_subscribers_dropped, 1);
        assert_eq!(poll_ready(&mut stalled).1, Some(End::Overflow));
    }

    #[tokio::test]
    async fn log_keeps_only_history_once_read() {
        let broker = MemoryBroker::new(settings()).unwrap();
        let mut reader = broker.subscribe(request("room", None)).await.unwrap();
        for _ in 0..7 {
            publish(&broker, "room", "x").await;
        }
        let log_len = |broker: &MemoryBroker| {
            let state = broker.shared.lock();
            let log = state.channels[&channel("room")].channel.lock();
            log.events.len()
        };
        assert_eq!(log_len(&broker), 7, "the reader still has to send them");
        ready_frames(&mut reader);
        publish(&broker, "room", "x").await;
        assert_eq!(log_len(&broker), 3, "only the history is left");
    }

    #[tokio::test]
    async fn history_budget_frees_idle_first() {
        // A frame of a 100-byte payload is about 131 bytes, so 500 bytes fit three.
        let broker = MemoryBroker::new(BrokerSettings {
            max_history_bytes: 500,
            history_len: 10,
            history_retention: Duration::from_secs(3600),
            ..settings()
        })
        .unwrap();
        let payload = Bytes::from(vec![b'x'; 100]);
        let send = |name: &str| broker.publish(channel(name), payload.clone());
        let has_channel = |name: &str| broker.shared.lock().channels.contains_key(&channel(name));
        for (name, events) in [("old", 2), ("new", 1)] {
            let member = broker.subscribe(request(name, None)).await.unwrap();
            for _ in 0..events {
                send(name).await.unwrap();
            }
            drop(member);
        }
        assert_eq!(broker.stats().channels, 2);

        // A publish to a channel with a subscriber frees the oldest idle channel first.
        let mut live = broker.subscribe(request("live", None)).await.unwrap();
        send("live").await.unwrap();
        assert!(!has_channel("old"), "the oldest idle channel is freed");
        assert!(has_channel("new"));
        assert_eq!(broker.stats().history_evictions, 1);
        ready_frames(&mut live);
        send("live").await.unwrap();
        ready_frames(&mut live);
        send("live").await.unwrap();
        assert!(!has_channel("new"));
        assert_eq!(broker.stats().history_evictions, 2);

        // With no idle channel left, the channel keeps only the event its subscriber has
        // still to send, and the event still arrives.
        ready_frames(&mut live);
        let published = send("live").await.unwrap();
        assert_eq!(published.queued, 1);
        let stats = broker.stats();
        assert_eq!(stats.history_evictions, 3);
        let unsent = event_frame(&published.id, &"x".repeat(100));
        assert_eq!(stats.history_bytes, unsent.len() as u64);
        assert_eq!(ready_frames(&mut live), [unsent]);
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
        let published = publish(&broker, "room", "last").await;
        broker.close();
        let (frames, end) = poll_ready(&mut subscription);
        assert_eq!(
            frames,
            [
                "event: count\ndata: count=1\n\n".to_owned(),
                event_frame(&published.id, "last")
            ],
            "the opening count and the event published before the close"
        );
        assert_eq!(end, Some(End::Closed));
        assert!(matches!(
            broker.subscribe(request("room", None)).await,
            Err(BrokerError::ShuttingDown)
        ));
        assert!(matches!(
            broker
                .publish(channel("room"), Bytes::from_static(b"x"))
                .await,
            Err(BrokerError::ShuttingDown)
        ));
    }
}
