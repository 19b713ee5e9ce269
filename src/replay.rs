//! Replay: starting a subscriber that reconnects with a `Last-Event-ID` at the first event it
//! has not seen, with no gap and no duplicate, or telling it that it may have missed events.
//!
//! Such a subscriber is *parked* (its head is sent, it is counted as a subscriber of its topic)
//! until its replay can start without a gap or a duplicate. It waits for:
//! - the topic's older history from the broker (Redis), if this process never saw the id's
//!   events; one read per topic, however many subscribers wait for it;
//! - the stream to catch up, if the id is newer than what this worker has been handed yet (the
//!   client learned it from another worker or process a moment ago);
//! - room in the broker's queue, if it was full.
//!
//! Starting is budgeted: a reconnect storm of N subscribers starts a bounded number per turn of
//! the loop, each with one write of its own pending bytes (never a pass over its whole topic).
//!
//! **No silent gaps.** A client whose id is older than what its topic can vouch for (trimmed by
//! retention or age, or from before this process: see [`Topics::may_have_missed`]), or whose id
//! cannot be placed at all (malformed, or from another deployment), gets everything retained,
//! preceded by one `event: ssed-gap` / `data: <topic>` event, and always a 200: EventSource
//! treats any other answer as final.

use crate::broker::{Broker, HistoryRequest};
use crate::connection::{Connection, State};
use crate::event_log::{encode_gap, EventId};
use crate::mailbox::Fetched;
use crate::subscribers::{member_node, Flush, Subscriber};
use crate::topics::{History, TopicId, Topics};
use slab::Slab;
use std::collections::{HashMap, VecDeque};
use std::io;

/// Marks a Last-Event-ID that cannot be placed; never a real id.
const UNPLACEABLE: EventId = EventId {
    ms: u64::MAX,
    seq: u64::MAX,
};

/// A parked subscriber: its topic and the id it last saw. Packed like [`Subscriber`], so the
/// slab entry stays 32 bytes.
#[derive(Debug, Clone, Copy)]
#[repr(C, packed(4))]
pub struct Parked {
    last_seen: EventId,
    topic: TopicId,
}

impl Parked {
    pub fn new(topic: TopicId, last_seen: Option<EventId>) -> Parked {
        Parked {
            last_seen: last_seen.unwrap_or(UNPLACEABLE),
            topic,
        }
    }

    pub fn topic(&self) -> TopicId {
        self.topic
    }
}

/// A parked connection with several topics. Boxed in the connection's state: it lives only
/// until its replay starts.
#[derive(Debug)]
pub struct ParkedMulti {
    last_seen: EventId,
    topics: Box<[TopicId]>,
}

impl ParkedMulti {
    pub fn new(topics: Box<[TopicId]>, last_seen: Option<EventId>) -> ParkedMulti {
        ParkedMulti {
            last_seen: last_seen.unwrap_or(UNPLACEABLE),
            topics,
        }
    }

    pub fn topics(&self) -> &[TopicId] {
        &self.topics
    }
}

/// What stops a parked subscriber from starting now.
enum Wait {
    History(TopicId),
    BrokerBusy,
}

#[derive(Default)]
pub struct Replay {
    /// Parked subscribers to try to start, in arrival order.
    starting: VecDeque<usize>,
    awaiting_history: HashMap<TopicId, Vec<usize>>,
    awaiting_stream: Vec<usize>,
    /// Waiting for room in the broker's queue; retried once a second.
    broker_busy: Vec<usize>,
    /// The newest event id handed to this worker (ids are ordered across all topics).
    delivered_up_to: EventId,
}

impl Replay {
    pub fn new(stream_start: EventId) -> Replay {
        Replay {
            delivered_up_to: stream_start,
            ..Replay::default()
        }
    }

    pub fn park(&mut self, token: usize) {
        self.starting.push_back(token);
    }

    pub fn has_work(&self) -> bool {
        !self.starting.is_empty()
    }

    /// An event reached this worker.
    pub fn event_arrived(&mut self, id: EventId) {
        self.delivered_up_to = self.delivered_up_to.max(id);
    }

    /// The mailbox has been applied: subscribers waiting for the stream may start now (once per
    /// turn, not once per event).
    pub fn stream_advanced(&mut self) {
        self.starting.extend(self.awaiting_stream.drain(..));
    }

    /// Once a second: try again those the broker had no room for, and those waiting for the
    /// stream (an id that never arrives stops being waited for once the broker says so).
    pub fn retry(&mut self) {
        self.starting.extend(self.broker_busy.drain(..));
        self.starting.extend(self.awaiting_stream.drain(..));
    }

    /// Merges a topic's older history from the broker, then lets everyone who waited for it
    /// start. If the broker could not answer, they replay what is here.
    pub fn history_arrived(
        &mut self,
        topics: &mut Topics,
        name: &str,
        fetched: &Result<Fetched, String>,
    ) {
        let Some(topic) = topics.find(name) else {
            return;
        };
        match fetched {
            Ok(fetched) => {
                // Newer events reach this worker through the stream; taking them here too
                // would deliver them twice.
                topics.prepend(
                    topic,
                    &fetched.events,
                    fetched.complete,
                    self.delivered_up_to,
                );
                topics.get_mut(topic).history = History::Loaded;
            }
            Err(e) => {
                log::warn!("could not read the history of topic {name} from Redis ({e}); replaying what this process has");
                topics.get_mut(topic).history = History::Local;
            }
        }
        self.starting
            .extend(self.awaiting_history.remove(&topic).unwrap_or_default());
    }

    /// Starts up to `budget` parked subscribers; pushes those that could not be written to onto
    /// `failed`, for the worker to close.
    #[allow(clippy::too_many_arguments)]
    pub fn run(
        &mut self,
        conns: &mut Slab<Connection>,
        topics: &mut Topics,
        broker: &Broker,
        worker: usize,
        budget: usize,
        bytes_sent: &mut u64,
        failed: &mut Vec<(usize, io::Result<Flush>)>,
    ) {
        for _ in 0..budget {
            let Some(token) = self.starting.pop_front() else {
                return;
            };
            let (ids, mut last_seen): (Vec<TopicId>, EventId) =
                match conns.get(token).map(Connection::state) {
                    Some(State::Parked(parked)) => (vec![parked.topic], parked.last_seen),
                    Some(State::ParkedMulti(parked)) => (parked.topics.to_vec(), parked.last_seen),
                    _ => continue,
                };
            if last_seen != UNPLACEABLE && broker.has_history() {
                match self.history_needed(topics, broker, worker, &ids, last_seen) {
                    None => {}
                    Some(Wait::History(topic)) => {
                        self.awaiting_history.entry(topic).or_default().push(token);
                        continue;
                    }
                    Some(Wait::BrokerBusy) => {
                        self.broker_busy.push(token);
                        continue;
                    }
                }
            }
            if last_seen != UNPLACEABLE && last_seen > self.delivered_up_to {
                if broker.may_still_arrive(last_seen) {
                    self.awaiting_stream.push(token);
                    continue;
                }
                // Newer than anything that was or will be issued: from another deployment.
                last_seen = UNPLACEABLE;
            }
            // Each topic starts after `last_seen`, or, if it may have lost events since, at
            // everything it retains, after a gap notice. Ids are ordered across topics, so one
            // id places the client in all of them.
            let mut gaps = Vec::new();
            let mut members: Vec<Subscriber> = Vec::with_capacity(ids.len());
            for &id in &ids {
                let gap = last_seen == UNPLACEABLE || topics.may_have_missed(id, last_seen);
                let topic = topics.get(id);
                let offset = if gap {
                    log::debug!(
                        "subscriber {token}: Last-Event-ID cannot be honoured on {}; sending ssed-gap",
                        topic.name()
                    );
                    gaps.extend_from_slice(&encode_gap(topic.name()));
                    topic.offset_after(EventId::default())
                } else {
                    topic.offset_after(last_seen)
                };
                members.push(Subscriber::new(id, offset));
            }
            let conn = &mut conns[token];
            if let [single] = members[..] {
                conn.set_state(State::Subscriber(single));
                topics
                    .get_mut(single.topic())
                    .subscribers_mut()
                    .link_parked(conns, token as u32);
            } else {
                conn.set_state(State::Multi(members.into_boxed_slice()));
                for (index, &id) in ids.iter().enumerate() {
                    topics
                        .get_mut(id)
                        .subscribers_mut()
                        .link_parked(conns, member_node(token, index));
                }
            }
            let conn = &mut conns[token];
            if !gaps.is_empty() {
                // A fresh socket takes a few dozen bytes per topic; if not, the client is gone.
                if !matches!(conn.send_whole(&gaps, bytes_sent), Ok(Flush::CaughtUp)) {
                    failed.push((token, Ok(Flush::FellBehind)));
                    continue;
                }
            }
            match conn.flush(topics, bytes_sent) {
                Some(Ok(Flush::CaughtUp | Flush::Blocked)) | None => {}
                Some(outcome) => failed.push((token, outcome)),
            }
        }
    }

    /// Whether replaying after `last_seen` must wait for a topic's older history from the
    /// broker: asks for it (once per topic) and says what to wait for.
    fn history_needed(
        &mut self,
        topics: &mut Topics,
        broker: &Broker,
        worker: usize,
        ids: &[TopicId],
        last_seen: EventId,
    ) -> Option<Wait> {
        // Every topic's read is asked for at once; the subscriber waits for one, and is looked
        // at again when it arrives.
        let mut wait = None;
        for &id in ids {
            let topic = topics.get_mut(id);
            if topic.covers(last_seen) {
                continue;
            }
            if topic.history == History::Local {
                match broker.request_history(worker, topic.name()) {
                    HistoryRequest::Queued => topic.history = History::Requested,
                    HistoryRequest::Busy => return Some(Wait::BrokerBusy),
                }
            }
            if topic.history == History::Requested {
                wait.get_or_insert(Wait::History(id));
            }
        }
        wait
    }
}
