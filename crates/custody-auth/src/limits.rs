//! Attempt limiting (per account and per IP, for sign-ins and codes) and lockout.
//!
//! - [`AttemptLimiter`]: `governor` keyed GCRA limiters held in memory. They smooth bursts
//!   from one source; each coordinator process has its own, so with several processes the
//!   effective limit is that many times higher. IPv6 clients are keyed by their /64 (one
//!   subscriber usually holds a whole /64); IPv4-mapped IPv6 addresses count as IPv4.
//! - [`LockoutState`]: the durable part. N failures within a window lock the account until
//!   a time that doubles with each consecutive lockout (up to a cap); the lock is reported
//!   once as a [`LockoutEvent`], which the coordinator records as a security event and an
//!   alert. The state is small and serialisable: store it with the account and update it
//!   in the transaction that checks the credential.

use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::Clock as _;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::clock::{GovernorClock, TimeSource};

/// A steady rate with an allowed burst: `burst` attempts at once, then one more every
/// `period_secs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttemptRate {
    /// Attempts allowed at once.
    pub burst: u32,
    /// Seconds for one attempt to come back.
    pub period_secs: u32,
}

impl AttemptRate {
    fn quota(self) -> Quota {
        let period = Duration::from_secs(u64::from(self.period_secs.max(1)));
        let burst = NonZeroU32::new(self.burst.max(1)).expect("at least one");
        Quota::with_period(period)
            .expect("the period is at least one second")
            .allow_burst(burst)
    }
}

/// The four limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttemptLimits {
    /// Sign-in attempts per account.
    pub login_per_account: AttemptRate,
    /// Sign-in attempts per client IP.
    pub login_per_ip: AttemptRate,
    /// Code attempts (TOTP, email, SMS, recovery) per account.
    pub code_per_account: AttemptRate,
    /// Code attempts per client IP.
    pub code_per_ip: AttemptRate,
}

impl Default for AttemptLimits {
    /// 10 sign-ins at once then one a minute per account; 30 then one every 10 s per IP;
    /// 5 codes then one a minute per account; 20 then one every 10 s per IP.
    fn default() -> Self {
        AttemptLimits {
            login_per_account: AttemptRate {
                burst: 10,
                period_secs: 60,
            },
            login_per_ip: AttemptRate {
                burst: 30,
                period_secs: 10,
            },
            code_per_account: AttemptRate {
                burst: 5,
                period_secs: 60,
            },
            code_per_ip: AttemptRate {
                burst: 20,
                period_secs: 10,
            },
        }
    }
}

/// What is being attempted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AttemptKind {
    /// A password sign-in.
    Login,
    /// A second-factor or recovery code.
    Code,
}

/// Which limit refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LimitScope {
    /// The per-account limit.
    Account,
    /// The per-IP limit.
    Ip,
}

/// Too many attempts; try again later.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("too many attempts; try again in {retry_after_secs} s")]
#[non_exhaustive]
pub struct RateLimitedError {
    /// Which limit refused.
    pub scope: LimitScope,
    /// Seconds until one more attempt is allowed (for `Retry-After`).
    pub retry_after_secs: u64,
}

type Keyed<K> = RateLimiter<
    K,
    DefaultKeyedStateStore<K>,
    GovernorClock,
    governor::middleware::NoOpMiddleware<governor::nanos::Nanos>,
>;

/// Keyed attempt limiters per account and per IP, for sign-ins and codes.
pub struct AttemptLimiter {
    clock: GovernorClock,
    login_account: Keyed<String>,
    login_ip: Keyed<IpAddr>,
    code_account: Keyed<String>,
    code_ip: Keyed<IpAddr>,
}

impl std::fmt::Debug for AttemptLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttemptLimiter")
            .field("tracked_keys", &self.tracked_keys())
            .finish_non_exhaustive()
    }
}

/// The key an address is limited under: IPv4 (also when mapped into IPv6) as is, other
/// IPv6 addresses by their /64.
pub fn limit_key(ip: IpAddr) -> IpAddr {
    match crate::ip::canonical_ip(ip) {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
    }
}

impl AttemptLimiter {
    /// Limiters with `limits`, reading the time from `time`.
    pub fn new(limits: AttemptLimits, time: Arc<dyn TimeSource>) -> Self {
        let clock = GovernorClock(time);
        AttemptLimiter {
            login_account: Keyed::hashmap_with_clock(
                limits.login_per_account.quota(),
                clock.clone(),
            ),
            login_ip: Keyed::hashmap_with_clock(limits.login_per_ip.quota(), clock.clone()),
            code_account: Keyed::hashmap_with_clock(limits.code_per_account.quota(), clock.clone()),
            code_ip: Keyed::hashmap_with_clock(limits.code_per_ip.quota(), clock.clone()),
            clock,
        }
    }

    fn refused(
        &self,
        scope: LimitScope,
        not_until: governor::NotUntil<governor::nanos::Nanos>,
    ) -> RateLimitedError {
        let wait = not_until.wait_time_from(self.clock.now());
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        RateLimitedError {
            scope,
            retry_after_secs: secs.max(1),
        }
    }

    /// Takes one attempt of `kind` for `account` from `ip`. The IP limit is checked first;
    /// when it refuses, the account's allowance is not spent.
    ///
    /// # Errors
    /// [`RateLimitedError`] naming the limit and when to retry.
    pub fn check(
        &self,
        kind: AttemptKind,
        account: &str,
        ip: IpAddr,
    ) -> Result<(), RateLimitedError> {
        let (by_account, by_ip) = match kind {
            AttemptKind::Login => (&self.login_account, &self.login_ip),
            AttemptKind::Code => (&self.code_account, &self.code_ip),
        };
        by_ip
            .check_key(&limit_key(ip))
            .map_err(|n| self.refused(LimitScope::Ip, n))?;
        by_account
            .check_key(&account.to_owned())
            .map_err(|n| self.refused(LimitScope::Account, n))?;
        Ok(())
    }

    /// Forgets keys whose allowance is full again (call it now and then to bound memory).
    pub fn retain_recent(&self) {
        self.login_account.retain_recent();
        self.login_ip.retain_recent();
        self.code_account.retain_recent();
        self.code_ip.retain_recent();
    }

    /// How many keys the limiters track.
    pub fn tracked_keys(&self) -> usize {
        self.login_account.len()
            + self.login_ip.len()
            + self.code_account.len()
            + self.code_ip.len()
    }
}

/// When an account locks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Failures that lock.
    pub max_failures: u32,
    /// The window they must fall in (seconds).
    pub window_secs: i64,
    /// The first lock's length (seconds); each consecutive lock doubles it.
    pub lock_secs: i64,
    /// The longest lock (seconds).
    pub max_lock_secs: i64,
}

impl Default for LockoutPolicy {
    /// 5 failures within 15 minutes lock for 15 minutes, doubling up to 24 hours.
    fn default() -> Self {
        LockoutPolicy {
            max_failures: 5,
            window_secs: 900,
            lock_secs: 900,
            max_lock_secs: 86_400,
        }
    }
}

/// The account is locked.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("too many failed attempts; locked until {locked_until}")]
#[non_exhaustive]
pub struct LockedOutError {
    /// When the lock ends (unix seconds).
    pub locked_until: i64,
}

/// An account just locked: the coordinator records a security event and sends an alert.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockoutEvent {
    /// When it locked.
    pub locked_at: i64,
    /// When the lock ends.
    pub locked_until: i64,
    /// Failures in the window that caused it.
    pub failures: u32,
    /// Consecutive lockouts so far, this one included.
    pub consecutive_lockouts: u32,
}

/// Failure history of one account (or one factor of it). Column: JSON, or
/// `failures`/`locked_until`/`lockouts`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockoutState {
    /// Times of recent failures, oldest first, at most `max_failures` of them.
    pub failures: Vec<i64>,
    /// When the current lock ends.
    pub locked_until: Option<i64>,
    /// Consecutive lockouts without a success in between.
    pub lockouts: u32,
}

impl LockoutState {
    /// Whether an attempt may be made at `now`.
    ///
    /// # Errors
    /// [`LockedOutError`] while locked.
    pub fn check(&self, now: i64) -> Result<(), LockedOutError> {
        match self.locked_until {
            Some(until) if now < until => Err(LockedOutError {
                locked_until: until,
            }),
            _ => Ok(()),
        }
    }

    /// Records a failed attempt at `now`; returns the event when it locks the account.
    pub fn record_failure(&mut self, policy: &LockoutPolicy, now: i64) -> Option<LockoutEvent> {
        if self.check(now).is_err() {
            // Attempts while locked are refused before any credential check; they neither
            // extend the lock nor count.
            return None;
        }
        let since = now.saturating_sub(policy.window_secs);
        self.failures.retain(|t| *t > since);
        self.failures.push(now);
        let max = usize::try_from(policy.max_failures.max(1)).unwrap_or(usize::MAX);
        if self.failures.len() > max {
            let extra = self.failures.len() - max;
            self.failures.drain(..extra);
        }
        if self.failures.len() < max {
            return None;
        }
        self.lockouts = self.lockouts.saturating_add(1);
        let shift = self.lockouts.saturating_sub(1).min(20);
        let length = policy
            .lock_secs
            .saturating_mul(1i64 << shift)
            .min(policy.max_lock_secs);
        let until = now.saturating_add(length);
        self.locked_until = Some(until);
        let failures = u32::try_from(self.failures.len()).unwrap_or(u32::MAX);
        self.failures.clear();
        Some(LockoutEvent {
            locked_at: now,
            locked_until: until,
            failures,
            consecutive_lockouts: self.lockouts,
        })
    }

    /// Records a success: the history and the doubling start over.
    pub fn record_success(&mut self) {
        *self = LockoutState::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualTime;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn per_account_limit_refuses_then_recovers_with_time() {
        let time = ManualTime::new(1_800_000_000);
        let limits = AttemptLimits {
            login_per_account: AttemptRate {
                burst: 3,
                period_secs: 60,
            },
            ..AttemptLimits::default()
        };
        let l = AttemptLimiter::new(limits, Arc::new(time.clone()));
        for i in 0..3 {
            let from = ip(&format!("198.51.100.{i}"));
            assert_eq!(l.check(AttemptKind::Login, "alice", from), Ok(()));
        }
        let e = l
            .check(AttemptKind::Login, "alice", ip("198.51.100.9"))
            .expect_err("fourth refused");
        assert_eq!(e.scope, LimitScope::Account);
        assert_eq!(e.retry_after_secs, 60);
        // Someone else is not affected, nor are code attempts.
        assert_eq!(
            l.check(AttemptKind::Login, "bob", ip("198.51.100.9")),
            Ok(())
        );
        assert_eq!(
            l.check(AttemptKind::Code, "alice", ip("198.51.100.9")),
            Ok(())
        );
        time.advance(60);
        assert_eq!(
            l.check(AttemptKind::Login, "alice", ip("198.51.100.9")),
            Ok(())
        );
        assert!(l
            .check(AttemptKind::Login, "alice", ip("198.51.100.9"))
            .is_err());
    }

    #[test]
    fn per_ip_limit_covers_a_whole_ipv6_64_and_mapped_ipv4() {
        let time = ManualTime::new(1_800_000_000);
        let limits = AttemptLimits {
            code_per_ip: AttemptRate {
                burst: 2,
                period_secs: 10,
            },
            ..AttemptLimits::default()
        };
        let l = AttemptLimiter::new(limits, Arc::new(time));
        assert_eq!(
            l.check(AttemptKind::Code, "a", ip("2001:db8:1:2::1")),
            Ok(())
        );
        assert_eq!(
            l.check(AttemptKind::Code, "b", ip("2001:db8:1:2::ffff")),
            Ok(())
        );
        let e = l
            .check(AttemptKind::Code, "c", ip("2001:db8:1:2:aaaa::1"))
            .expect_err("same /64");
        assert_eq!(e.scope, LimitScope::Ip);
        assert_eq!(
            l.check(AttemptKind::Code, "c", ip("2001:db8:1:3::1")),
            Ok(())
        );

        assert_eq!(l.check(AttemptKind::Code, "a", ip("203.0.113.5")), Ok(()));
        assert_eq!(
            l.check(AttemptKind::Code, "a", ip("::ffff:203.0.113.5")),
            Ok(())
        );
        assert!(l.check(AttemptKind::Code, "z", ip("203.0.113.5")).is_err());
    }

    #[test]
    fn lockout_after_repeated_failures_reports_one_event_and_doubles() {
        let p = LockoutPolicy {
            max_failures: 3,
            window_secs: 600,
            lock_secs: 900,
            max_lock_secs: 2000,
        };
        let mut s = LockoutState::default();
        let t = 1_800_000_000;
        assert_eq!(s.record_failure(&p, t), None);
        assert_eq!(s.record_failure(&p, t + 1), None);
        let ev = s.record_failure(&p, t + 2).expect("locks on the third");
        assert_eq!(ev.locked_until, t + 902);
        assert_eq!(ev.failures, 3);
        assert_eq!(
            s.check(t + 500),
            Err(LockedOutError {
                locked_until: t + 902
            })
        );
        // Failures while locked neither count nor produce another alert.
        assert_eq!(s.record_failure(&p, t + 600), None);
        assert_eq!(s.check(t + 902), Ok(()));
        for i in 0..2 {
            assert_eq!(s.record_failure(&p, t + 1000 + i), None);
        }
        let ev = s.record_failure(&p, t + 1002).expect("second lock");
        assert_eq!(ev.consecutive_lockouts, 2);
        assert_eq!(ev.locked_until, t + 1002 + 1800);
        let mut s2 = s.clone();
        s2.locked_until = None;
        for i in 0..2 {
            s2.record_failure(&p, t + 5000 + i);
        }
        let ev = s2.record_failure(&p, t + 5002).expect("third lock");
        assert_eq!(ev.locked_until, t + 5002 + 2000, "capped");
        s.record_success();
        assert_eq!(s, LockoutState::default());
    }

    #[test]
    fn failures_outside_the_window_do_not_lock() {
        let p = LockoutPolicy {
            max_failures: 3,
            window_secs: 60,
            ..LockoutPolicy::default()
        };
        let mut s = LockoutState::default();
        let t = 1_800_000_000;
        for i in 0..10 {
            assert_eq!(s.record_failure(&p, t + i * 31), None, "failure {i}");
        }
        assert!(s.failures.len() <= 3);
    }
}
