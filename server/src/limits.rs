//! Limits on what one client, and all clients together, may take: concurrent event streams,
//! and the rate of publishes and uploads.
//!
//! Both tables are keyed by [`ClientKey`] and sit behind std mutexes held only for a lookup
//! and an update. Entries are removed when they stop mattering (a client's last stream ends,
//! its token bucket refills), so the tables hold only active clients.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::client::ClientKey;

/// Error from taking a stream permit or a rate token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("the relay is serving its maximum of {limit} event streams; retry later")]
    TooManyStreams { limit: usize },

    #[error("this client already has {limit} event streams open, the maximum per client")]
    TooManyClientStreams { limit: usize },

    #[error(
        "too many {action} requests from this client; retry in {} s",
        retry_after.as_secs()
    )]
    RateLimited {
        action: &'static str,
        retry_after: Duration,
    },
}

/// Counts open event streams, overall and per client.
pub struct StreamLimiter {
    max_total: usize,
    max_per_client: usize,
    counts: Mutex<StreamCounts>,
}

#[derive(Default)]
struct StreamCounts {
    total: usize,
    per_client: HashMap<ClientKey, usize>,
}

impl StreamLimiter {
    /// Allows `max_total` streams in all, and `max_per_client` for each client.
    pub fn new(max_total: usize, max_per_client: usize) -> Self {
        Self {
            max_total,
            max_per_client,
            counts: Mutex::default(),
        }
    }

    /// Returns the overall maximum.
    pub fn max_total(&self) -> usize {
        self.max_total
    }

    /// Takes a permit for one more stream, released when the permit is dropped.
    pub fn acquire(
        self: &Arc<Self>,
        client: Option<ClientKey>,
    ) -> Result<StreamPermit, LimitError> {
        let mut counts = self.lock();
        if counts.total >= self.max_total {
            return Err(LimitError::TooManyStreams {
                limit: self.max_total,
            });
        }
        if let Some(client) = client {
            let open = counts.per_client.entry(client).or_default();
            if *open >= self.max_per_client {
                return Err(LimitError::TooManyClientStreams {
                    limit: self.max_per_client,
                });
            }
            *open += 1;
        }
        counts.total += 1;
        Ok(StreamPermit {
            limiter: self.clone(),
            client,
        })
    }

    fn lock(&self) -> MutexGuard<'_, StreamCounts> {
        // Each critical section is a counter update that cannot stop halfway, so a poisoned
        // lock still guards consistent counts.
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One open stream's share of the limits.
pub struct StreamPermit {
    limiter: Arc<StreamLimiter>,
    client: Option<ClientKey>,
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut counts = self.limiter.lock();
        counts.total -= 1;
        let Some(client) = self.client else {
            return;
        };
        if let Some(open) = counts.per_client.get_mut(&client) {
            *open -= 1;
            if *open == 0 {
                counts.per_client.remove(&client);
            }
        }
    }
}

/// Maximum clients with their own token bucket. Past it, new clients share one bucket, so the
/// table stays bounded however many addresses send requests.
const MAX_TRACKED_CLIENTS: usize = 100_000;

/// A token bucket per client: `burst` requests at once, refilled at `per_second`.
pub struct RateLimiter {
    action: &'static str,
    per_second: f64,
    burst: f64,
    buckets: Mutex<Buckets>,
}

struct Buckets {
    by_client: HashMap<ClientKey, Bucket>,
    /// The bucket of clients that arrive while the table is full.
    overflow: Bucket,
    /// Table size at which full buckets are next swept out.
    sweep_at: usize,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn refill(&mut self, now: Instant, per_second: f64, burst: f64) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * per_second).min(burst);
        self.updated = now;
    }
}

impl RateLimiter {
    /// Allows each client `burst` requests at once and `per_second` on average; `action` names
    /// the requests in error messages.
    pub fn new(action: &'static str, per_second: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            action,
            per_second,
            burst,
            buckets: Mutex::new(Buckets {
                by_client: HashMap::new(),
                overflow: Bucket {
                    tokens: burst,
                    updated: Instant::now(),
                },
                sweep_at: 1024,
            }),
        }
    }

    /// Takes one token from `client`'s bucket at time `now`, or returns how long to wait.
    pub fn check(&self, client: ClientKey, now: Instant) -> Result<(), LimitError> {
        // Each critical section is arithmetic on one bucket, so a poisoned lock is consistent.
        let mut guard = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let buckets = &mut *guard;
        if buckets.by_client.len() >= buckets.sweep_at {
            self.sweep(buckets, now);
        }

        let full = Bucket {
            tokens: self.burst,
            updated: now,
        };
        let bucket = if buckets.by_client.len() < MAX_TRACKED_CLIENTS {
            buckets.by_client.entry(client).or_insert(full)
        } else {
            match buckets.by_client.get_mut(&client) {
                Some(bucket) => bucket,
                None => &mut buckets.overflow,
            }
        };

        bucket.refill(now, self.per_second, self.burst);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let wait = (1.0 - bucket.tokens) / self.per_second;
        Err(LimitError::RateLimited {
            action: self.action,
            retry_after: Duration::from_secs(wait.ceil().max(1.0) as u64),
        })
    }

    /// Removes the buckets that have refilled, which behave exactly as new ones would.
    fn sweep(&self, buckets: &mut Buckets, now: Instant) {
        let (per_second, burst) = (self.per_second, self.burst);
        buckets.by_client.retain(|_, bucket| {
            bucket.refill(now, per_second, burst);
            bucket.tokens < burst
        });
        buckets.sweep_at = (buckets.by_client.len() * 2).clamp(1024, MAX_TRACKED_CLIENTS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> ClientKey {
        ClientKey::of(text.parse().unwrap())
    }

    #[test]
    fn stream_limits_count_and_release() {
        let limiter = Arc::new(StreamLimiter::new(3, 2));
        let a1 = limiter.acquire(Some(key("192.0.2.1"))).unwrap();
        let _a2 = limiter.acquire(Some(key("192.0.2.1"))).unwrap();
        assert_eq!(
            limiter.acquire(Some(key("192.0.2.1"))).err(),
            Some(LimitError::TooManyClientStreams { limit: 2 })
        );
        let _b1 = limiter.acquire(Some(key("192.0.2.2"))).unwrap();
        assert_eq!(
            limiter.acquire(Some(key("192.0.2.3"))).err(),
            Some(LimitError::TooManyStreams { limit: 3 })
        );
        drop(a1);
        assert!(limiter.acquire(Some(key("192.0.2.1"))).is_ok());
    }

    #[test]
    fn bucket_allows_burst_then_waits() {
        let limiter = RateLimiter::new("publish", 0.5, 3);
        let start = Instant::now();
        let client = key("192.0.2.1");
        for _ in 0..3 {
            assert_eq!(limiter.check(client, start), Ok(()));
        }
        assert_eq!(
            limiter.check(client, start),
            Err(LimitError::RateLimited {
                action: "publish",
                retry_after: Duration::from_secs(2)
            })
        );
        assert!(limiter.check(key("192.0.2.2"), start).is_ok());
        assert!(
            limiter
                .check(client, start + Duration::from_secs(2))
                .is_ok()
        );
        assert!(
            limiter
                .check(client, start + Duration::from_secs(2))
                .is_err()
        );
    }

    #[test]
    fn refilled_buckets_are_swept() {
        let limiter = RateLimiter::new("upload", 100.0, 1);
        let start = Instant::now();
        // The first sweep, at 1024 clients, finds no bucket refilled and moves the next to 2048.
        for i in 0..2048u32 {
            let address = std::net::Ipv4Addr::from(0xC000_0000 + i);
            limiter.check(ClientKey::of(address.into()), start).unwrap();
        }
        let later = start + Duration::from_secs(1);
        limiter.check(key("198.51.100.1"), later).unwrap();
        let tracked = limiter.buckets.lock().unwrap().by_client.len();
        assert_eq!(tracked, 1, "only the new client's bucket is left");
    }
}
