//! Early warning: slot write latency per disk, so an alert comes before slow
//! writes endanger the timeouts.

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
