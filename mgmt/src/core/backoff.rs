//! Failed logins slow down per (user, address): after a few free tries,
//! each further failure doubles the wait before the next try from that
//! address for that user. Other addresses are not affected, so an attacker
//! guessing from one address cannot lock the admin out of another.

use std::collections::HashMap;
use std::net::IpAddr;

/// Failures allowed before any wait.
pub const FREE_FAILURES: u32 = 3;
/// The first wait, ms.
pub const BASE_DELAY_MS: u64 = 1000;
/// The longest wait, ms.
pub const MAX_DELAY_MS: u64 = 5 * 60 * 1000;
/// A record with no failure for this long is forgotten.
pub const FORGET_AFTER_MS: u64 = 30 * 60 * 1000;
/// Records kept at most (oldest dropped first), bounding memory against
/// attempts spread over many user names and addresses.
pub const MAX_RECORDS: usize = 16_384;

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    last_ms: u64,
    not_before_ms: u64,
}

/// The back-off table.
#[derive(Debug, Default)]
pub struct Backoff {
    records: HashMap<(String, IpAddr), Record>,
}

/// The wait after `failures` failures, ms.
pub fn delay_for(failures: u32) -> u64 {
    if failures < FREE_FAILURES {
        return 0;
    }
    let doublings = (failures - FREE_FAILURES).min(20);
    BASE_DELAY_MS
        .saturating_mul(1u64 << doublings)
        .min(MAX_DELAY_MS)
}

impl Backoff {
    /// An empty table.
    pub fn new() -> Backoff {
        Backoff::default()
    }

    /// `Err(wait_ms)` while `user` from `addr` must still wait.
    pub fn check(&self, user: &str, addr: IpAddr, now_ms: u64) -> Result<(), u64> {
        match self.records.get(&(user.to_string(), addr)) {
            Some(r) if r.not_before_ms > now_ms => Err(r.not_before_ms - now_ms),
            _ => Ok(()),
        }
    }

    /// Records a failed login; returns the wait before the next try, ms.
    pub fn failed(&mut self, user: &str, addr: IpAddr, now_ms: u64) -> u64 {
        self.records
            .retain(|_, r| now_ms.saturating_sub(r.last_ms) < FORGET_AFTER_MS);
        let key = (user.to_string(), addr);
        if !self.records.contains_key(&key) && self.records.len() >= MAX_RECORDS {
            let oldest = self
                .records
                .iter()
                .min_by_key(|(_, r)| r.last_ms)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.records.remove(&k);
            }
        }
        let r = self.records.entry(key).or_insert(Record {
            failures: 0,
            last_ms: now_ms,
            not_before_ms: 0,
        });
        r.failures = r.failures.saturating_add(1);
        r.last_ms = now_ms;
        let wait = delay_for(r.failures);
        r.not_before_ms = now_ms.saturating_add(wait);
        wait
    }

    /// A successful login clears the record of (user, address).
    pub fn succeeded(&mut self, user: &str, addr: IpAddr) {
        self.records.remove(&(user.to_string(), addr));
    }

    /// Records held.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when no record is held.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn waits_grow_after_the_free_tries_and_are_capped() {
        assert_eq!(delay_for(1), 0);
        assert_eq!(delay_for(2), 0);
        assert_eq!(delay_for(3), 1000);
        assert_eq!(delay_for(4), 2000);
        assert_eq!(delay_for(5), 4000);
        assert_eq!(delay_for(100), MAX_DELAY_MS);
    }

    #[test]
    fn an_attacker_address_does_not_lock_out_another_address_or_user() {
        let mut b = Backoff::new();
        let bad = ip("198.51.100.7");
        let now = 1_000_000;
        for _ in 0..10 {
            b.failed("admin", bad, now);
        }
        assert!(b.check("admin", bad, now).is_err());
        assert_eq!(b.check("admin", ip("10.0.0.2"), now), Ok(()));
        assert_eq!(b.check("bob", bad, now), Ok(()));
    }

    #[test]
    fn the_wait_ends_and_success_clears_it() {
        let mut b = Backoff::new();
        let a = ip("10.0.0.9");
        assert_eq!(b.failed("u", a, 0), 0);
        assert_eq!(b.failed("u", a, 0), 0);
        assert_eq!(b.failed("u", a, 0), 1000);
        assert_eq!(b.check("u", a, 999), Err(1));
        assert_eq!(b.check("u", a, 1000), Ok(()));
        b.succeeded("u", a);
        assert!(b.is_empty());
        b.failed("u", a, 0);
        assert_eq!(b.len(), 1);
        b.failed("v", a, FORGET_AFTER_MS);
        assert_eq!(b.len(), 1, "the stale record was forgotten");
    }
}
