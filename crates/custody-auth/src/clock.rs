//! Where the time comes from: always from the caller.
//!
//! Functions that need the time take `now` (unix seconds) as a parameter. The attempt
//! limiters run on `governor`, which reads a clock itself, so they take a [`TimeSource`]
//! instead: the coordinator implements it over its injected clock, tests use
//! [`ManualTime`].

use std::fmt::Debug;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// A source of unix time in seconds.
pub trait TimeSource: Send + Sync + Debug {
    /// The current unix time, in seconds.
    fn unix_seconds(&self) -> i64;
}

/// A time source that moves only when told (tests, benchmarks).
#[derive(Clone, Debug)]
pub struct ManualTime {
    now: Arc<AtomicI64>,
}

impl ManualTime {
    /// Reads `start` until moved.
    pub fn new(start: i64) -> Self {
        ManualTime {
            now: Arc::new(AtomicI64::new(start)),
        }
    }

    /// Moves the time forward by `secs`.
    pub fn advance(&self, secs: i64) {
        self.now.fetch_add(secs, Ordering::SeqCst);
    }

    /// Sets the time to `t`.
    pub fn set(&self, t: i64) {
        self.now.store(t, Ordering::SeqCst);
    }
}

impl TimeSource for ManualTime {
    fn unix_seconds(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }
}

/// Adapts a [`TimeSource`] to `governor`'s clock (nanoseconds since the unix epoch; a time
/// before 1970 reads as the epoch).
#[derive(Clone, Debug)]
pub(crate) struct GovernorClock(pub(crate) Arc<dyn TimeSource>);

impl governor::clock::Clock for GovernorClock {
    type Instant = governor::nanos::Nanos;

    fn now(&self) -> Self::Instant {
        let secs = u64::try_from(self.0.unix_seconds()).unwrap_or(0);
        governor::nanos::Nanos::from(secs.saturating_mul(1_000_000_000))
    }
}
