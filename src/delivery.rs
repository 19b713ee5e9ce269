//! Getting events to subscribers: the fan-out run queue and heartbeats.
//!
//! When events arrive for a topic, the topic goes on the run queue once (however many events
//! came); each turn of the loop writes to a bounded number of subscribers, round-robin over the
//! queued topics, each write carrying everything that subscriber has pending in one `writev`.
//! A topic with 100,000 subscribers therefore never holds the worker for more than one budget
//! at a time: its pass keeps a cursor in its [`SubscriberList`](crate::subscribers) and goes on
//! next turn, while requests, accepts and other topics get their turn in between.
//!
//! Heartbeats go only to subscribers that were sent nothing during the interval (a topic that
//! had an event in it wrote to all of its caught-up subscribers) and are spread over the
//! interval: a round walks the connection table a slice at a time, at a pace that finishes it
//! within the interval, instead of writing to everyone in one burst.

use crate::connection::Connection;
use crate::subscribers::{node_parts, Flush, NO_SUBSCRIBER};
use crate::topics::{TopicId, Topics};
use slab::Slab;
use std::collections::VecDeque;
use std::io;
use std::time::{Duration, Instant};

/// Subscribers one topic's pass writes before the next queued topic gets its turn.
const SLICE: usize = 256;
/// A heartbeat round wakes the loop this many times.
const SLICES: usize = 16;

pub struct Delivery {
    queue: VecDeque<TopicId>,
    /// Queued topics that received events while their pass was under way: the fan-out is
    /// behind the events.
    behind: usize,
    heartbeat: Vec<u8>,
    every: Option<Duration>,
    round: Option<Round>,
}

/// A heartbeat round: when it began, and the next slab index it looks at.
struct Round {
    began: Instant,
    cursor: usize,
    end: usize,
}

impl Delivery {
    pub fn new(heartbeat: Vec<u8>, every: Option<Duration>) -> Delivery {
        Delivery {
            queue: VecDeque::new(),
            behind: 0,
            heartbeat,
            every,
            round: None,
        }
    }

    /// A topic has new events: give its subscribers a pass.
    pub fn touch(&mut self, topics: &mut Topics, topic: TopicId) {
        if let Some(t) = topics.try_get_mut(topic) {
            if t.subscribers().count() == 0 {
                return;
            }
            let was_behind = t.subscribers().rerun_pending();
            if t.subscribers_mut().request_pass() {
                self.queue.push_back(topic);
            } else if !was_behind {
                self.behind += 1;
            }
        }
    }

    pub fn has_work(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Events arrive faster than passes over their subscribers end: the worker should read no
    /// more requests (publishes among them) until it catches up.
    pub fn is_behind(&self) -> bool {
        self.behind > 0
    }

    /// Writes to up to `budget` subscribers of queued topics. Subscribers that could not be
    /// written to are pushed onto `failed`, for the worker to close after the pass.
    pub fn run(
        &mut self,
        conns: &mut Slab<Connection>,
        topics: &mut Topics,
        mut budget: usize,
        bytes_sent: &mut u64,
        failed: &mut Vec<(usize, io::Result<Flush>)>,
    ) {
        while budget > 0 {
            let Some(id) = self.queue.pop_front() else {
                self.behind = 0;
                return;
            };
            if topics.try_get_mut(id).is_none() {
                continue;
            }
            let mut slice = SLICE.min(budget);
            let finished = loop {
                let list = topics.get_mut(id).subscribers_mut();
                let Some(node) = list.cursor() else {
                    if list.pass_over() {
                        self.behind = self.behind.saturating_sub(1);
                        continue;
                    }
                    break true;
                };
                if slice == 0 {
                    break false;
                }
                slice -= 1;
                budget -= 1;
                let (token, member) = node_parts(node);
                let Some(conn) = conns.get_mut(token) else {
                    // Not a subscriber of this list: cannot happen, but a pass must end.
                    list.advance(NO_SUBSCRIBER);
                    continue;
                };
                let next = conn
                    .node_mut(member)
                    .map_or(NO_SUBSCRIBER, |sub| sub.next());
                // A connection with several topics gets all of them merged in this one write;
                // its turn in the other topics' passes then finds it caught up.
                match conn.flush(topics, bytes_sent) {
                    Some(Ok(Flush::CaughtUp | Flush::Blocked)) | None => {}
                    Some(outcome) => failed.push((token, outcome)),
                }
                topics.get_mut(id).subscribers_mut().advance(next);
            };
            if !finished {
                self.queue.push_back(id);
            }
        }
        if self.queue.is_empty() {
            self.behind = 0;
        }
    }

    /// When the next heartbeat slice is due.
    pub fn next_heartbeat(&self, now: Instant) -> Option<Instant> {
        let every = self.every?;
        Some(match &self.round {
            None => now,
            Some(round) if round.cursor >= round.end => round.began + every,
            // Wake up in slices of the round, not once per slab entry.
            Some(round) => {
                let slice = round.cursor * SLICES / round.end + 1;
                round.began + spread(every).mul_f64(slice as f64 / SLICES as f64)
            }
        })
    }

    /// Sends the heartbeats that are due by now, at most `budget`; returns true if more are due
    /// already (the budget ran out).
    #[allow(clippy::too_many_arguments)]
    pub fn heartbeats(
        &mut self,
        conns: &mut Slab<Connection>,
        topics: &Topics,
        clock_secs: u32,
        now: Instant,
        mut budget: usize,
        bytes_sent: &mut u64,
        failed: &mut Vec<(usize, io::Result<Flush>)>,
    ) -> bool {
        let Some(every) = self.every else {
            return false;
        };
        let round = match &mut self.round {
            Some(round) if round.cursor < round.end || now < round.began + every => round,
            _ => self.round.insert(Round {
                began: now,
                cursor: 0,
                end: conns.capacity().max(1),
            }),
        };
        let elapsed = now.saturating_duration_since(round.began);
        let due = ((round.end as f64)
            * (elapsed.as_secs_f64() / spread(every).as_secs_f64()).min(1.0))
        .ceil() as usize;
        let quiet_secs = every.as_secs().max(1) as u32;
        while round.cursor < due.min(round.end) {
            if budget == 0 {
                return true;
            }
            let token = round.cursor;
            round.cursor += 1;
            let Some(conn) = conns.get_mut(token).filter(|c| c.is_live_subscriber()) else {
                continue;
            };
            budget -= 1;
            if !conn.wants_heartbeat(topics, clock_secs, quiet_secs) {
                continue;
            }
            match conn.send_whole(&self.heartbeat, bytes_sent) {
                Ok(Flush::CaughtUp | Flush::Blocked) => {}
                outcome => failed.push((token, outcome)),
            }
        }
        false
    }
}

/// A round is spread over most of the interval, so that it ends before the next begins.
fn spread(every: Duration) -> Duration {
    every.mul_f64(0.8)
}
