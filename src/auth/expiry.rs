//! When streams opened with an expiring token must end: one instant per such subscriber in a
//! timer heap, and nothing else (no copy of the token or its claims).
//!
//! A subscriber that leaves before its instant is forgotten from the index at once; its heap
//! entry is dropped when it comes due, or when stale entries outnumber live ones (then the heap
//! is rebuilt from the index), so churn cannot grow the heap without bound.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

#[derive(Default)]
pub struct Expiries {
    /// (instant, token), soonest first. Instants are seconds on the worker's clock.
    heap: BinaryHeap<Reverse<(u32, u32)>>,
    /// The instant of every live subscriber that has one.
    by_token: HashMap<u32, u32>,
}

impl Expiries {
    pub fn add(&mut self, token: usize, at: u32) {
        self.by_token.insert(token as u32, at);
        self.heap.push(Reverse((at, token as u32)));
    }

    /// The subscriber left (or its slot is about to be reused).
    pub fn forget(&mut self, token: usize) {
        if self.by_token.remove(&(token as u32)).is_some()
            && self.heap.len() > 2 * self.by_token.len() + 1024
        {
            self.heap = self
                .by_token
                .iter()
                .map(|(&t, &at)| Reverse((at, t)))
                .collect();
        }
    }

    /// Takes the subscribers whose instant has come by `now`.
    pub fn due(&mut self, now: u32, into: &mut Vec<usize>) {
        while let Some(&Reverse((at, token))) = self.heap.peek() {
            if at > now {
                break;
            }
            self.heap.pop();
            if self.by_token.get(&token) == Some(&at) {
                self.by_token.remove(&token);
                into.push(token as usize);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.by_token.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_token.is_empty()
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
        assert_eq!(due, [1], "slot 2's first instant was forgotten with it");
        for i in 0..10_000 {
            expiries.add(100 + i, 1_000);
            expiries.forget(100 + i);
        }
        assert!(expiries.heap.len() < 3_000, "{}", expiries.heap.len());
        due.clear();
        expiries.due(u32::MAX, &mut due);
        assert_eq!(due, [2]);
        assert!(expiries.is_empty());
    }
}
