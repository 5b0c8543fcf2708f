//! Replication bookkeeping, as pure state machines.
//!
//! Each keeper ships its own section's log (entries `1..=head`, no gaps) to
//! the partner in order and the partner acknowledges the highest entry it
//! has durably merged. The partner's applied version is the truth: on every
//! (re)connection the sender asks for it and resumes right after it, so a
//! restart or a partition never restarts from zero and never skips an entry.
//!
//! The driver feeds inputs (`on_*`) and carries out what the methods return;
//! nothing here does I/O or looks at a clock.

/// Sender side: what to ship next and what has been acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sender {
    head: u64,
    acked: u64,
    next: u64,
    connected: bool,
    window: u64,
}

/// Something the sender's driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendStep {
    /// Ship entries `from..=to` (inclusive) in order.
    Ship {
        /// First entry.
        from: u64,
        /// Last entry.
        to: u64,
    },
    /// Persist the acknowledged version (an optimisation for status; the
    /// partner's report at connection is the truth) and release the
    /// `sync=true` callers waiting for versions up to it.
    Acked(u64),
}

/// What the partner reported at connection that the sender cannot accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SenderError {
    /// The partner claims entries we never wrote: one of the two databases
    /// was replaced or restored. Needs an operator; shipping would corrupt.
    #[error("partner has applied our version {partner} but our log ends at {head}")]
    PartnerAhead {
        /// What the partner reported.
        partner: u64,
        /// Our last version.
        head: u64,
    },
}

impl Sender {
    /// A sender whose log ends at `head`, with `acked` last persisted.
    /// `window` bounds the entries in flight.
    pub fn new(head: u64, acked: u64, window: u64) -> Self {
        Sender {
            head,
            acked: acked.min(head),
            next: acked.min(head) + 1,
            connected: false,
            window: window.max(1),
        }
    }

    /// Last version of our log.
    pub fn head(&self) -> u64 {
        self.head
    }

    /// Last version the partner acknowledged.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// True while connected to the partner.
    pub fn connected(&self) -> bool {
        self.connected
    }

    /// The partner answered our hello: it has applied our log up to
    /// `partner_applied`. Resume right after it.
    pub fn on_connected(&mut self, partner_applied: u64) -> Result<Vec<SendStep>, SenderError> {
        if partner_applied > self.head {
            return Err(SenderError::PartnerAhead {
                partner: partner_applied,
                head: self.head,
            });
        }
        self.connected = true;
        let mut steps = Vec::new();
        if partner_applied != self.acked {
            // Lower can happen only if the partner lost its database; we
            // re-ship from there rather than trust our own note.
            self.acked = partner_applied;
            steps.push(SendStep::Acked(partner_applied));
        }
        self.next = partner_applied + 1;
        steps.extend(self.poll());
        Ok(steps)
    }

    /// The link dropped: everything unacknowledged will be re-shipped.
    pub fn on_disconnected(&mut self) {
        self.connected = false;
        self.next = self.acked + 1;
    }

    /// We committed version `v` locally.
    pub fn on_commit(&mut self, v: u64) -> Vec<SendStep> {
        self.head = self.head.max(v);
        self.poll()
    }

    /// The partner acknowledged every version up to `v`.
    pub fn on_ack(&mut self, v: u64) -> Vec<SendStep> {
        let v = v.min(self.head);
        let mut steps = Vec::new();
        if v > self.acked {
            self.acked = v;
            self.next = self.next.max(v + 1);
            steps.push(SendStep::Acked(v));
        }
        steps.extend(self.poll());
        steps
    }

    /// The partner saw a gap: it has only `applied`. Re-ship from there.
    pub fn on_gap(&mut self, applied: u64) -> Vec<SendStep> {
        let mut steps = self.on_ack(applied);
        self.next = self.acked + 1;
        steps.extend(self.poll());
        steps
    }

    /// Entries to ship now, within the window.
    fn poll(&mut self) -> Vec<SendStep> {
        if !self.connected || self.next > self.head {
            return Vec::new();
        }
        let limit = self.acked.saturating_add(self.window).min(self.head);
        if self.next > limit {
            return Vec::new();
        }
        let step = SendStep::Ship {
            from: self.next,
            to: limit,
        };
        self.next = limit + 1;
        vec![step]
    }
}

/// Receiver side decision for one shipped entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Receive {
    /// The next entry: merge it, then acknowledge its version.
    Apply,
    /// Already merged (a re-ship after a lost ack): acknowledge `applied`
    /// again, merge nothing.
    Duplicate {
        /// What to acknowledge.
        applied: u64,
    },
    /// An entry is missing before it: ask for a re-ship after `applied`.
    Gap {
        /// What we have.
        applied: u64,
    },
}

/// Decides what to do with entry `seq` when `applied` entries of that
/// origin have been merged.
pub fn receive(applied: u64, seq: u64) -> Receive {
    if seq <= applied {
        Receive::Duplicate { applied }
    } else if seq == applied + 1 {
        Receive::Apply
    } else {
        Receive::Gap { applied }
    }
}

/// Readiness of a returning controller: ready once the partner's section is
/// merged up to the head the partner reported, or when there is no partner
/// to catch up from and the operator said so (`standalone`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatchUp {
    target: Option<u64>,
    done: bool,
}

impl Default for CatchUp {
    fn default() -> Self {
        Self::new()
    }
}

impl CatchUp {
    /// Not caught up, partner head unknown.
    pub fn new() -> Self {
        CatchUp {
            target: None,
            done: false,
        }
    }

    /// Already caught up (no partner configured, or forced standalone).
    pub fn standalone() -> Self {
        CatchUp {
            target: None,
            done: true,
        }
    }

    /// The partner told us its head; we have merged `applied` of it.
    /// Returns true when this made us ready.
    pub fn on_partner_head(&mut self, head: u64, applied: u64) -> bool {
        self.target = Some(head);
        self.on_applied(applied)
    }

    /// We merged up to `applied`. Returns true when this made us ready.
    pub fn on_applied(&mut self, applied: u64) -> bool {
        if self.done {
            return false;
        }
        match self.target {
            Some(t) if applied >= t => {
                self.done = true;
                true
            }
            _ => false,
        }
    }

    /// True once caught up (sticky: later lag is ordinary replication lag).
    pub fn ready(&self) -> bool {
        self.done
    }

    /// The partner head we are catching up to, if known.
    pub fn target(&self) -> Option<u64> {
        self.target
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sender with `head` committed and `window` in flight at most,
    /// connected to a partner that has applied nothing: it ships 1..=`to`.
    fn connected_from_zero(head: u64, window: u64, to: u64) -> Sender {
        let mut s = Sender::new(head, 0, window);
        assert_eq!(s.on_connected(0), Ok(vec![SendStep::Ship { from: 1, to }]));
        s
    }

    /// `n` acknowledged, then `from..=to` shipped: the answer to an ack or
    /// a report that frees room in the window.
    fn acked_and_ship(n: u64, from: u64, to: u64) -> Vec<SendStep> {
        vec![SendStep::Acked(n), SendStep::Ship { from, to }]
    }

    #[test]
    fn ships_in_order_and_resumes_after_last_ack() {
        let mut s = Sender::new(0, 0, 4);
        assert!(s.on_commit(1).is_empty(), "not connected: nothing to ship");
        assert_eq!(
            s.on_connected(0),
            Ok(vec![SendStep::Ship { from: 1, to: 1 }])
        );
        assert_eq!(s.on_commit(2), vec![SendStep::Ship { from: 2, to: 2 }]);
        assert_eq!(s.on_commit(3), vec![SendStep::Ship { from: 3, to: 3 }]);
        assert_eq!(s.on_ack(2), vec![SendStep::Acked(2)]);
        // Link drops with 3 unacknowledged; 4 and 5 are committed meanwhile.
        s.on_disconnected();
        assert!(s.on_commit(4).is_empty());
        assert!(s.on_commit(5).is_empty());
        // The partner restarted and reports 2 applied: resume at 3.
        assert_eq!(
            s.on_connected(2),
            Ok(vec![SendStep::Ship { from: 3, to: 5 }])
        );
        assert_eq!(s.on_ack(5), vec![SendStep::Acked(5)]);
        assert_eq!(s.acked(), 5);
    }

    #[test]
    fn window_limits_in_flight() {
        let mut s = connected_from_zero(10, 3, 3);
        assert_eq!(s.on_ack(1), acked_and_ship(1, 4, 4));
        assert_eq!(s.on_ack(4), acked_and_ship(4, 5, 7));
    }

    #[test]
    fn restart_of_sender_resumes_from_partner_report_not_zero() {
        // Sender restarted: persisted ack says 3 but partner actually has 7.
        let mut s = Sender::new(9, 3, 100);
        assert_eq!(s.on_connected(7), Ok(acked_and_ship(7, 8, 9)));
    }

    #[test]
    fn partner_ahead_is_refused() {
        let mut s = Sender::new(5, 5, 10);
        assert_eq!(
            s.on_connected(6),
            Err(SenderError::PartnerAhead {
                partner: 6,
                head: 5
            })
        );
    }

    #[test]
    fn stale_and_duplicate_acks_are_ignored() {
        let mut s = Sender::new(5, 0, 10);
        let _ = s.on_connected(0);
        assert_eq!(s.on_ack(3), vec![SendStep::Acked(3)]);
        assert!(s.on_ack(2).is_empty());
        assert!(s.on_ack(3).is_empty());
        assert_eq!(s.on_ack(99), vec![SendStep::Acked(5)], "clamped to head");
    }

    #[test]
    fn gap_reships() {
        let mut s = connected_from_zero(5, 10, 5);
        assert_eq!(s.on_gap(2), acked_and_ship(2, 3, 5));
    }

    #[test]
    fn receiver_decisions() {
        assert_eq!(receive(4, 5), Receive::Apply);
        assert_eq!(receive(4, 4), Receive::Duplicate { applied: 4 });
        assert_eq!(receive(4, 2), Receive::Duplicate { applied: 4 });
        assert_eq!(receive(4, 6), Receive::Gap { applied: 4 });
    }

    #[test]
    fn catch_up_gates_readiness() {
        let mut c = CatchUp::new();
        assert!(!c.ready());
        assert!(!c.on_partner_head(10, 4));
        assert!(!c.on_applied(9));
        assert!(c.on_applied(10));
        assert!(c.ready());
        assert!(CatchUp::standalone().ready());
        let mut c = CatchUp::new();
        assert!(c.on_partner_head(3, 3), "already there");
    }
}
