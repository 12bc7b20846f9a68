//! Bookkeeping that keeps the page's work bounded: the budget of new key derivations a room's
//! members can make the page do, retry delays, and the ids of messages already shown.
//!
//! Plain Rust with times passed in as milliseconds, so it is tested natively.

use std::collections::{HashSet, VecDeque};
use std::hash::Hash;

/// A token bucket of PBKDF2 iterations for keys the page has not derived yet.
///
/// Honest pages reuse one salt for everything they send, so a room costs one derivation per
/// member. A hostile member can send every message with a new salt and 100,000 iterations;
/// the bucket bounds what that costs the page per second, and the caller queues or skips what
/// does not fit.
#[derive(Debug, Clone)]
pub struct DerivationBudget {
    capacity: f64,
    tokens: f64,
    refill_per_milli: f64,
    last_millis: f64,
}

/// Iterations a full bucket holds: ten derivations at the 100,000 cap, or a hundred at the
/// default 10,000, so a room of honest members joining at once never waits.
pub const BUDGET_CAPACITY: u32 = 1_000_000;

/// Iterations the bucket regains per second: two derivations at the cap. One such derivation
/// took 35 ms through WebCrypto in headless Chromium (docs/BENCHMARKS.md), so a hostile
/// sender can take about 7 percent of one core from the page.
pub const BUDGET_REFILL_PER_SECOND: u32 = 200_000;

impl Default for DerivationBudget {
    fn default() -> Self {
        Self::new(BUDGET_CAPACITY, BUDGET_REFILL_PER_SECOND)
    }
}

impl DerivationBudget {
    /// Creates a full bucket.
    pub fn new(capacity: u32, refill_per_second: u32) -> Self {
        Self {
            capacity: capacity.into(),
            tokens: capacity.into(),
            refill_per_milli: f64::from(refill_per_second) / 1000.0,
            last_millis: 0.0,
        }
    }

    /// Takes `iterations` from the bucket at time `now_millis`, or returns how many
    /// milliseconds until they are available. A cost above the capacity never fits.
    pub fn try_spend(&mut self, now_millis: f64, iterations: u32) -> Result<(), Wait> {
        self.refill(now_millis);
        let cost = f64::from(iterations);
        if cost > self.capacity {
            return Err(Wait::Never);
        }
        if cost <= self.tokens {
            self.tokens -= cost;
            return Ok(());
        }
        let millis = (cost - self.tokens) / self.refill_per_milli;
        Err(Wait::Millis(millis.ceil() as u32))
    }

    fn refill(&mut self, now_millis: f64) {
        let elapsed = (now_millis - self.last_millis).max(0.0);
        self.tokens = (self.tokens + elapsed * self.refill_per_milli).min(self.capacity);
        self.last_millis = now_millis;
    }
}

/// How long a derivation that does not fit the budget must wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    Millis(u32),
    Never,
}

/// Delay before retry number `attempt` (0 for the first retry): 1 s doubling to at most 30 s,
/// with `jitter` (0 to 255, from a random byte) adding up to a quarter, so pages that lost the
/// relay together do not return together.
pub fn retry_delay_millis(attempt: u32, jitter: u8) -> u32 {
    let base = 1_000u32.saturating_mul(1 << attempt.min(5)).min(30_000);
    base + base / 4 * u32::from(jitter) / 255
}

/// The most recent ids seen, up to a capacity, oldest forgotten first.
#[derive(Debug, Clone)]
pub struct RecentIds<T> {
    capacity: usize,
    order: VecDeque<T>,
    members: HashSet<T>,
}

impl<T: Clone + Eq + Hash> RecentIds<T> {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            order: VecDeque::with_capacity(capacity),
            members: HashSet::with_capacity(capacity),
        }
    }

    /// Records `id`, returning `false` when it was already recorded.
    pub fn insert(&mut self, id: T) -> bool {
        if self.members.contains(&id) {
            return false;
        }
        if self.order.len() == self.capacity
            && let Some(oldest) = self.order.pop_front()
        {
            self.members.remove(&oldest);
        }
        self.order.push_back(id.clone());
        self.members.insert(id);
        true
    }

    pub fn contains(&self, id: &T) -> bool {
        self.members.contains(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn budget_admits_burst_then_waits() {
        let mut budget = DerivationBudget::new(300_000, 100_000);
        for _ in 0..3 {
            assert_eq!(budget.try_spend(0.0, 100_000), Ok(()));
        }
        assert_eq!(budget.try_spend(0.0, 100_000), Err(Wait::Millis(1000)));
        assert_eq!(budget.try_spend(400.0, 100_000), Err(Wait::Millis(600)));
        assert_eq!(budget.try_spend(1000.0, 100_000), Ok(()));
        assert_eq!(budget.try_spend(1000.0, 10_000), Err(Wait::Millis(100)));
    }

    #[test]
    fn budget_never_exceeds_capacity() {
        let mut budget = DerivationBudget::new(200_000, 100_000);
        assert_eq!(budget.try_spend(1e9, 200_000), Ok(()));
        assert_eq!(budget.try_spend(1e9, 1), Err(Wait::Millis(1)));
        assert_eq!(budget.try_spend(1e9, 300_000), Err(Wait::Never));
    }

    #[test]
    fn default_budget_admits_hundred_honest_members() {
        let mut budget = DerivationBudget::default();
        for member in 0..100 {
            assert_eq!(budget.try_spend(0.0, 10_000), Ok(()), "member {member}");
        }
    }

    #[test]
    fn retry_delay_doubles_to_cap() {
        let delays: Vec<u32> = (0..8)
            .map(|attempt| retry_delay_millis(attempt, 0))
            .collect();
        assert_eq!(delays, [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
        assert_eq!(retry_delay_millis(0, 255), 1250);
        assert_eq!(retry_delay_millis(u32::MAX, 255), 37_500);
    }

    #[test]
    fn recent_ids_forget_oldest() {
        let mut ids = RecentIds::new(2);
        assert!(ids.insert("a"));
        assert!(!ids.insert("a"));
        assert!(ids.insert("b"));
        assert!(ids.insert("c"));
        assert!(!ids.contains(&"a"));
        assert!(ids.contains(&"b"));
        assert!(ids.contains(&"c"));
        assert!(ids.insert("a"));
    }
}
