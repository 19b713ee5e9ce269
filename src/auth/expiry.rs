//! When streams opened with an expiring token must end: one instant per such subscriber, and
//! nothing else (no copy of the token or its claims).
//!
//! Instants are Unix seconds, compared with the wall clock when they come due, so a stream never
//! ends before its `exp`, and ends within the second after it (the worker looks once a second).
//! They are kept in a flat array indexed by connection slot, 4 bytes per slot, which exists only
//! once some token had an `exp`: with a token per subscriber this is per-subscriber memory, so
//! there is no ordering structure beside it. Finding what is due is a scan of the array once a
//! second, about a nanosecond per slot (a millisecond would take a million slots on one worker);
//! a subscriber that leaves costs one store.

#[derive(Default)]
pub struct Expiries {
    /// The instant of the subscriber in each slot, 0 for none.
    at: Vec<u32>,
    live: usize,
}

impl Expiries {
    /// The subscriber in `slot` ends at `exp_unix` (Unix seconds).
    pub fn add(&mut self, slot: usize, exp_unix: u64) {
        let exp = exp_unix.clamp(1, u32::MAX as u64) as u32;
        if slot >= self.at.len() {
            grow(&mut self.at, slot + 1);
            self.at.resize(slot + 1, 0);
        }
        if self.at[slot] == 0 {
            self.live += 1;
        }
        self.at[slot] = exp;
    }

    /// The subscriber in `slot` left (its slot may be reused at once).
    pub fn forget(&mut self, slot: usize) {
        if let Some(at) = self.at.get_mut(slot).filter(|at| **at != 0) {
            *at = 0;
            self.live -= 1;
        }
    }

    /// Takes the subscribers whose instant is `now_unix` or earlier.
    pub fn due(&mut self, now_unix: u64, into: &mut Vec<usize>) {
        if self.live == 0 {
            return;
        }
        for (slot, at) in self.at.iter_mut().enumerate() {
            if *at != 0 && *at as u64 <= now_unix {
                *at = 0;
                self.live -= 1;
                into.push(slot);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }
}

/// Makes room for `len` slots, growing by a quarter rather than doubling.
fn grow(at: &mut Vec<u32>, len: usize) {
    if len > at.capacity() {
        let want = len.max(at.capacity() + at.capacity() / 4 + 256);
        at.reserve_exact(want - at.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_live_subscribers_come_due_and_churn_does_not_grow_anything() {
        let mut expiries = Expiries::default();
        expiries.add(1, 10);
        expiries.add(2, 5);
        expiries.forget(2);
        expiries.add(2, 20);
        let mut due = Vec::new();
        expiries.due(10, &mut due);
        assert_eq!(due, [1], "slot 2's first instant left with its subscriber");
        for i in 0..10_000 {
            expiries.add(100 + i, 1_000);
            expiries.forget(100 + i);
        }
        assert!(expiries.at.len() <= 10_100, "{}", expiries.at.len());
        due.clear();
        expiries.due(19, &mut due);
        assert!(due.is_empty(), "never before its instant");
        expiries.due(20, &mut due);
        assert_eq!(due, [2]);
        assert!(expiries.is_empty());
    }
}
