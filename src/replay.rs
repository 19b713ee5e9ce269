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
use crate::subscribers::{send_whole, Flush, Subscriber};
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
/// slab entry stays 40 bytes.
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
            let Some(State::Parked(parked)) = conns.get(token).map(Connection::state) else {
                continue;
            };
            let (topic_id, mut last_seen) = (parked.topic, parked.last_seen);
            let topic = topics.get_mut(topic_id);
            if last_seen != UNPLACEABLE && broker.has_history() && !topic.covers(last_seen) {
                if topic.history == History::Local {
                    match broker.request_history(worker, topic.name()) {
                        HistoryRequest::Queued => topic.history = History::Requested,
                        HistoryRequest::Busy => {
                            self.broker_busy.push(token);
                            continue;
                        }
                    }
                }
                if topic.history == History::Requested {
                    self.awaiting_history
                        .entry(topic_id)
                        .or_default()
                        .push(token);
                    continue;
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
            let gap = last_seen == UNPLACEABLE || topics.may_have_missed(topic_id, last_seen);
            let topic = topics.get_mut(topic_id);
            let offset = if gap {
                topic.offset_after(EventId::default())
            } else {
                topic.offset_after(last_seen)
            };
            let conn = &mut conns[token];
            conn.set_state(State::Subscriber(Subscriber::new(topic_id, offset)));
            topic.subscribers_mut().link_parked(conns, token);
            let Some((sub, stream)) = conns[token].subscriber_and_stream() else {
                continue;
            };
            if gap {
                log::debug!(
                    "subscriber {token}: Last-Event-ID cannot be honoured on {}; sending ssed-gap",
                    topic.name()
                );
                match send_whole(stream, &encode_gap(topic.name()), bytes_sent) {
                    Ok(Flush::CaughtUp) => {}
                    // A fresh socket takes a few dozen bytes; if not, the client is gone.
                    _ => {
                        failed.push((token, Ok(Flush::FellBehind)));
                        continue;
                    }
                }
            }
            match sub.flush(stream, topic.log(), bytes_sent) {
                Ok(Flush::CaughtUp | Flush::Blocked) => {}
                outcome => failed.push((token, outcome)),
            }
        }
    }
}
