//! When streams opened with an expiring token must end: one instant per such subscriber, and
//! nothing else (no copy of the token or its claims).
//!
//! Instants are Unix seconds, compared with the wall clock when they come due, so a stream never
//! ends before its `exp`, and ends within the second after it (the worker looks once a second).
//! A heap orders them; a flat array indexed by connection slot says which are still live, so a
//! subscriber that leaves costs one store, and an entry whose slot has been reused by another
//! connection is recognised when it comes due and skipped. The array costs 4 bytes per slot and
//! exists only once some token had an `exp`; stale heap entries are dropped when they outnumber
//! live ones.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

#[derive(Default)]
pub struct Expiries {
    /// (Unix second, slot), soonest first; may hold entries of subscribers that have left.
    heap: BinaryHeap<Reverse<(u32, u32)>>,
    /// The instant of the subscriber in each slot, 0 for none.
    at: Vec<u32>,
    live: usize,
}

impl Expiries {
    /// The subscriber in `slot` ends at `exp_unix` (Unix seconds).
    pub fn add(&mut self, slot: usize, exp_unix: u64) {
        let exp = exp_unix.clamp(1, u32::MAX as u64) as u32;
        if slot >= self.at.len() {
            self.at.resize(slot + 1, 0);
        }
        if self.at[slot] == 0 {
            self.live += 1;
        }
        self.at[slot] = exp;
        self.heap.push(Reverse((exp, slot as u32)));
    }

    /// The subscriber in `slot` left (its slot may be reused at once).
    pub fn forget(&mut self, slot: usize) {
        if let Some(at) = self.at.get_mut(slot).filter(|at| **at != 0) {
            *at = 0;
            self.live -= 1;
            if self.heap.len() > 2 * self.live + 1024 {
                let at = &self.at;
                self.heap
                    .retain(|Reverse((exp, slot))| at[*slot as usize] == *exp);
            }
        }
    }

    /// Takes the subscribers whose instant is `now_unix` or earlier.
    pub fn due(&mut self, now_unix: u64, into: &mut Vec<usize>) {
        while let Some(&Reverse((exp, slot))) = self.heap.peek() {
            if exp as u64 > now_unix {
                break;
            }
            self.heap.pop();
            if self.at[slot as usize] == exp {
                self.at[slot as usize] = 0;
                self.live -= 1;
                into.push(slot as usize);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_live_subscribers_come_due_and_churn_does_not_grow_the_heap() {
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
        assert!(expiries.heap.len() < 3_000, "{}", expiries.heap.len());
        due.clear();
        expiries.due(19, &mut due);
        assert!(due.is_empty(), "never before its instant");
        expiries.due(20, &mut due);
        assert_eq!(due, [2]);
        assert!(expiries.is_empty());
    }
}
