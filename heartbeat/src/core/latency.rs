//! Early warning: slot write latency per disk and beat loss per link, so an
//! alert comes before slow writes or a lossy link endanger the timeouts.

use serde::Serialize;
use std::collections::VecDeque;

/// Samples kept per disk.
pub const WINDOW: usize = 128;

/// The last [`WINDOW`] write latencies of one disk and whether the alert
/// is raised.
#[derive(Debug, Clone, Default)]
pub struct Window {
    samples: VecDeque<u64>,
    raised: bool,
}

/// What one sample changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    /// The p99 crossed the limit upwards: alert.
    Raised(u64),
    /// It went back under the limit: clear.
    Cleared(u64),
}

/// A summary for status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// The last write, in ms.
    pub last_ms: u64,
    /// The 99th percentile of the window, in ms.
    pub p99_ms: u64,
    /// Samples in the window.
    pub samples: usize,
}

impl Window {
    /// Adds a write that took `ms`; reports a crossing of `limit_ms`.
    /// The alert needs a few samples so one slow write does not flap it.
    pub fn add(&mut self, ms: u64, limit_ms: u64) -> Option<Edge> {
        if self.samples.len() == WINDOW {
            self.samples.pop_front();
        }
        self.samples.push_back(ms);
        let p99 = self.p99();
        if !self.raised && self.samples.len() >= 10 && p99 > limit_ms {
            self.raised = true;
            return Some(Edge::Raised(p99));
        }
        if self.raised && p99 <= limit_ms {
            self.raised = false;
            return Some(Edge::Cleared(p99));
        }
        None
    }

    /// The 99th percentile (nearest rank) of the window; 0 when empty.
    pub fn p99(&self) -> u64 {
        let mut v: Vec<u64> = self.samples.iter().copied().collect();
        if v.is_empty() {
            return 0;
        }
        v.sort_unstable();
        let rank = (v.len() * 99).div_ceil(100);
        v[rank.saturating_sub(1)]
    }

    /// For status.
    pub fn summary(&self) -> Summary {
        Summary {
            last_ms: self.samples.back().copied().unwrap_or(0),
            p99_ms: self.p99(),
            samples: self.samples.len(),
        }
    }
}

/// Beat loss of one interconnect link, judged once per window of counter
/// deltas: raised at [`LOSS_RAISE_PCT`] or more of the expected beats lost,
/// cleared under [`LOSS_CLEAR_PCT`] (apart, so a link near the line does not
/// flap).
#[derive(Debug, Clone, Copy, Default)]
pub struct Loss {
    received: u64,
    lost: u64,
    raised: bool,
}

/// Loss that raises the alert, in percent of the beats expected.
pub const LOSS_RAISE_PCT: u64 = 20;
/// Loss under which it clears.
pub const LOSS_CLEAR_PCT: u64 = 5;
/// Beats a window needs before it says anything.
pub const LOSS_MIN_BEATS: u64 = 20;

impl Loss {
    /// Takes the link's counters at the end of a window; reports a
    /// crossing with the window's loss in percent.
    pub fn window(&mut self, received: u64, lost: u64) -> Option<Edge> {
        let got = received.saturating_sub(self.received);
        let missed = lost.saturating_sub(self.lost);
        self.received = received;
        self.lost = lost;
        let expected = got + missed;
        if expected < LOSS_MIN_BEATS {
            return None;
        }
        let pct = missed * 100 / expected;
        if !self.raised && pct >= LOSS_RAISE_PCT {
            self.raised = true;
            return Some(Edge::Raised(pct));
        }
        if self.raised && pct < LOSS_CLEAR_PCT {
            self.raised = false;
            return Some(Edge::Cleared(pct));
        }
        None
    }
}

/// The round-trip warning of one link: raised when the running average
/// reaches the limit (half of `ic_timeout`: a one-way delay of a quarter
/// of it, before late beats could look like a silent link), cleared under
/// half the limit.
#[derive(Debug, Clone, Copy, Default)]
pub struct RoundTrip {
    raised: bool,
}

impl RoundTrip {
    /// Takes the link's average round trip (µs) against `limit_us`.
    pub fn check(&mut self, avg_us: Option<u64>, limit_us: u64) -> Option<Edge> {
        let avg = avg_us?;
        if !self.raised && avg >= limit_us {
            self.raised = true;
            return Some(Edge::Raised(avg));
        }
        if self.raised && avg < limit_us / 2 {
            self.raised = false;
            return Some(Edge::Cleared(avg));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_link_raises_once_and_clears_under_half_the_limit() {
        let mut r = RoundTrip::default();
        assert_eq!(r.check(None, 500_000), None, "no round trip yet");
        assert_eq!(r.check(Some(400), 500_000), None);
        assert_eq!(r.check(Some(500_000), 500_000), Some(Edge::Raised(500_000)));
        assert_eq!(r.check(Some(600_000), 500_000), None, "once");
        assert_eq!(r.check(Some(300_000), 500_000), None, "not yet clear");
        assert_eq!(r.check(Some(1_000), 500_000), Some(Edge::Cleared(1_000)));
        assert_eq!(r.check(Some(1_000), 500_000), None);
    }

    #[test]
    fn p99_is_the_nearest_rank() {
        let mut w = Window::default();
        assert_eq!(w.p99(), 0);
        for ms in 1..=100 {
            w.add(ms, 1000);
        }
        assert_eq!(w.p99(), 99);
        assert_eq!(w.summary().last_ms, 100);
    }

    #[test]
    fn slow_writes_raise_once_and_clear_once() {
        let mut w = Window::default();
        let limit = 750;
        let mut edges = Vec::new();
        for _ in 0..20 {
            edges.extend(w.add(5, limit));
        }
        // One slow write among 21 is past the p99 rank: alert.
        for _ in 0..5 {
            edges.extend(w.add(900, limit));
        }
        assert_eq!(edges, vec![Edge::Raised(900)]);
        // The window forgets them as fast writes come in.
        for _ in 0..WINDOW {
            edges.extend(w.add(5, limit));
        }
        assert_eq!(edges, vec![Edge::Raised(900), Edge::Cleared(5)]);
        assert_eq!(w.summary().samples, WINDOW);
    }

    #[test]
    fn too_few_samples_do_not_alert() {
        let mut w = Window::default();
        for _ in 0..9 {
            assert_eq!(w.add(5000, 750), None);
        }
        assert_eq!(w.add(5000, 750), Some(Edge::Raised(5000)));
    }

    #[test]
    fn loss_alert_needs_enough_beats_and_does_not_flap() {
        let mut l = Loss::default();
        assert_eq!(l.window(10, 5), None, "too few beats to judge");
        assert_eq!(l.window(100, 10), None, "5 of 95: fine");
        assert_eq!(l.window(170, 40), Some(Edge::Raised(30)));
        assert_eq!(l.window(250, 50), None, "still over the clear line");
        assert_eq!(l.window(350, 51), Some(Edge::Cleared(0)));
        assert_eq!(
            l.window(350, 51),
            None,
            "a silent link is an outage, not loss"
        );
    }
}
