//! Where the coordinator gets the time from.
//!
//! Every hold, session expiry and policy check reads the time through [`Clock`], so tests
//! drive it with a [`FakeClock`] and never sleep. The daemon uses [`SystemClock`]; a
//! development offset exists only behind `--dev-clock-offset-secs` and is refused on
//! mainnet (see [`crate::config`]).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of unix time in seconds.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current unix time, in seconds.
    fn now(&self) -> i64;
}

/// The system clock, optionally shifted by a development offset.
#[derive(Debug, Default)]
pub struct SystemClock {
    offset_secs: AtomicI64,
}

impl SystemClock {
    /// The system clock with no offset.
    pub fn new() -> Self {
        SystemClock::default()
    }

    /// The system clock shifted by `offset_secs` (development networks only; the caller
    /// checks the network).
    pub fn with_offset(offset_secs: i64) -> Self {
        SystemClock {
            offset_secs: AtomicI64::new(offset_secs),
        }
    }

    /// Moves the development offset forward by `secs` (the quickstart's "let the hold pass").
    pub fn advance(&self, secs: i64) {
        self.offset_secs.fetch_add(secs, Ordering::SeqCst);
    }

    /// The current offset in seconds.
    pub fn offset(&self) -> i64 {
        self.offset_secs.load(Ordering::SeqCst)
    }
}

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        secs.saturating_add(self.offset())
    }
}

/// A clock tests set and advance by hand.
#[derive(Debug, Clone)]
pub struct FakeClock {
    now: Arc<AtomicI64>,
}

impl FakeClock {
    /// A fake clock reading `start`.
    pub fn new(start: i64) -> Self {
        FakeClock {
            now: Arc::new(AtomicI64::new(start)),
        }
    }

    /// Moves the clock forward by `secs`.
    pub fn advance(&self, secs: i64) {
        self.now.fetch_add(secs, Ordering::SeqCst);
    }

    /// Sets the clock to `t`.
    pub fn set(&self, t: i64) {
        self.now.store(t, Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn now(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }
}

/// Formats a unix time as RFC 3339 UTC (`2026-11-26T00:00:00Z`) for people.
pub fn rfc3339(t: i64) -> String {
    let when = if t >= 0 {
        UNIX_EPOCH + std::time::Duration::from_secs(t.unsigned_abs())
    } else {
        UNIX_EPOCH
    };
    humantime::format_rfc3339_seconds(when).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_651_199), "2026-11-25T23:59:59Z");
    }

    #[test]
    fn fake_clock_moves_only_when_told() {
        let c = FakeClock::new(100);
        assert_eq!(c.now(), 100);
        c.advance(86_400);
        assert_eq!(c.now(), 86_500);
    }
}

/// The coordinator's clock as the time source of `custody-auth`'s attempt limiters, so
/// tests that move a fake clock move the limits with it.
#[derive(Clone)]
pub struct AuthTime(pub std::sync::Arc<dyn Clock>);

impl std::fmt::Debug for AuthTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthTime")
    }
}

impl custody_auth::TimeSource for AuthTime {
    fn unix_seconds(&self) -> i64 {
        self.0.now()
    }
}
