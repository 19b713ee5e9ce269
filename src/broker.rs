//! The broker boundary: who gives events their ids and order, and keeps history beyond a
//! worker's own log.
//!
//! Two brokers sit behind this one interface, and the rest of ssed only sees [`Broker`]:
//! - **Local** (the default): an in-process sequencer. Publishing takes one short lock in which
//!   the event gets the next id, is encoded, and is pushed (as one shared `Arc`) onto every
//!   worker's mailbox. Pushing under the lock that assigns ids is what makes every worker see
//!   every event in id order.
//! - **Redis** (`--redis`): Redis assigns ids and orders events; see [`crate::redis_broker`].
//!   Its answers arrive later, through the mailboxes.

use crate::event_log::{encode_event, EventId};
use crate::mailbox::{lock, Mailboxes, Message, SharedEvent};
use crate::redis_broker::RedisLink;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A publish request as a worker hands it over.
pub struct Publish<'a> {
    pub worker: usize,
    pub token: usize,
    pub serial: u64,
    pub topic: &'a str,
    pub event_type: Option<&'a str>,
    pub data: &'a str,
}

pub enum Outcome {
    Done(EventId),
    /// The answer will come as [`Message::PublishDone`].
    Pending,
    /// The broker cannot take it now (unreachable, or its queue is full): answer 503.
    Unavailable,
}

/// Whether a history read could be queued; if not, the caller keeps its subscribers parked and
/// asks again later.
#[derive(Debug, PartialEq, Eq)]
pub enum HistoryRequest {
    Queued,
    Busy,
}

pub enum Broker {
    Local(Sequencer),
    Redis(RedisLink),
}

pub struct Sequencer {
    last_id: Mutex<EventId>,
    /// The first id this process could issue: older ids come from an earlier run, whose events
    /// are gone.
    origin: EventId,
}

impl Broker {
    pub fn local() -> Broker {
        Broker::Local(Sequencer {
            last_id: Mutex::new(EventId::default()),
            origin: EventId {
                ms: now_ms(),
                seq: 0,
            },
        })
    }

    pub fn publish(&self, mailboxes: &Mailboxes, request: Publish<'_>) -> Outcome {
        match self {
            Broker::Redis(link) => link.publish(request),
            Broker::Local(sequencer) => {
                let mut last_id = lock(&sequencer.last_id);
                let id = last_id.next(now_ms());
                *last_id = id;
                let event = Arc::new(SharedEvent {
                    topic: request.topic.into(),
                    id,
                    encoded: encode_event(id, request.event_type, request.data).into_boxed_slice(),
                });
                mailboxes.broadcast(Some(request.worker), || Message::Event(Arc::clone(&event)));
                Outcome::Done(id)
            }
        }
    }

    /// Asks for a topic's older history on behalf of `worker` (Redis only: the local broker has
    /// no history beyond the workers' logs).
    pub fn request_history(&self, worker: usize, topic: &str) -> HistoryRequest {
        match self {
            Broker::Redis(link) => link.request_history(worker, topic),
            Broker::Local(_) => HistoryRequest::Queued,
        }
    }

    pub fn has_history(&self) -> bool {
        matches!(self, Broker::Redis(_))
    }

    /// Whether an event with this id may still be on its way to the workers. In-process, any id
    /// the sequencer has issued; with Redis, ids carry their publish time, so one from more than
    /// a few seconds ago would have arrived and one from the future was never issued.
    pub fn may_still_arrive(&self, id: EventId) -> bool {
        const GRACE_MS: u64 = 10_000;
        match self {
            Broker::Local(sequencer) => id <= *lock(&sequencer.last_id),
            Broker::Redis(_) => {
                let now = now_ms();
                id.ms.saturating_add(GRACE_MS) > now && id.ms < now.saturating_add(GRACE_MS)
            }
        }
    }

    /// How far back a worker can vouch for a topic it has no log of: in-process, ids before
    /// this process started belong to a run whose events are gone; with Redis, the broker's
    /// history answers instead.
    pub fn fresh_horizon(&self) -> Option<EventId> {
        match self {
            Broker::Local(sequencer) => Some(sequencer.origin),
            Broker::Redis(_) => None,
        }
    }

    /// Whether publishes can be taken and history read now.
    pub fn is_available(&self) -> bool {
        match self {
            Broker::Local(_) => true,
            Broker::Redis(link) => link.is_connected(),
        }
    }

    /// Where following the broker's stream began: events up to here only come as history.
    pub fn stream_start(&self) -> EventId {
        match self {
            Broker::Local(_) => EventId::default(),
            Broker::Redis(link) => link.stream_start(),
        }
    }

    /// The broker's own lines for /metrics.
    pub fn metrics(&self) -> String {
        match self {
            Broker::Local(_) => String::new(),
            Broker::Redis(link) => link.metrics(),
        }
    }
}
