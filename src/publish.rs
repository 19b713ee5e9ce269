//! The publish path: giving an event its id, encoding it once, and handing it to every worker.
//!
//! In-process (the default), publishing takes one short lock, the sequencer's, in which the event
//! gets the next id, is encoded, and is pushed (as one shared `Arc`) onto every worker's mailbox.
//! Pushing under the same lock that assigns ids is what makes every worker see every event in id
//! order. With `--redis`, Redis assigns the ids and orders the events instead (see
//! [`crate::redis_broker`]); its reader thread pushes them onto the same mailboxes.
//!
//! Workers are woken through their mio `Waker` and append events to their own topic logs; from
//! there on a worker touches nothing shared, so the per-subscriber write path takes no lock.

use crate::event_log::{encode_event, EncodedEvent, EventId};
use crate::metrics::{GlobalStats, WorkerStats};
use crate::redis_broker::{Command, RedisLink};
use mio::Waker;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

/// An event as every worker receives it: encoded once, shared by all.
#[derive(Debug)]
pub struct Published {
    pub topic: Box<str>,
    pub id: EventId,
    pub encoded: Box<[u8]>,
}

/// What arrives in a worker's mailbox.
#[derive(Debug)]
pub enum Message {
    Event(Arc<Published>),
    /// The broker's answer to a publish that connection `token` is waiting for.
    PublishDone {
        token: usize,
        serial: u64,
        outcome: Result<EventId, String>,
    },
    /// A topic's older history, fetched from the broker for a Last-Event-ID replay.
    History {
        topic: Box<str>,
        events: Result<Vec<EncodedEvent>, String>,
    },
}

/// A publish request as the event loop hands it over.
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
}

struct Mailbox {
    messages: Mutex<Vec<Message>>,
    waker: Waker,
}

/// What the workers share: the sequencer or the broker, their mailboxes, their statistics, the
/// shutdown flag.
pub struct Hub {
    last_id: Mutex<EventId>,
    mailboxes: Vec<Mailbox>,
    pub redis: Option<RedisLink>,
    /// Where the broker's stream was when this process started following it: events up to
    /// here only come as history, never live.
    stream_start: EventId,
    pub worker_stats: Vec<WorkerStats>,
    pub global_stats: GlobalStats,
    shutting_down: AtomicBool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A worker that panicked ends the process (see server.rs), so a poisoned lock's data is
    // still consistent for the moment it takes to exit.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Hub {
    pub fn new(wakers: Vec<Waker>, redis: Option<RedisLink>, stream_start: EventId) -> Hub {
        Hub {
            stream_start,
            last_id: Mutex::new(EventId::default()),
            worker_stats: wakers.iter().map(|_| WorkerStats::default()).collect(),
            mailboxes: wakers
                .into_iter()
                .map(|waker| Mailbox {
                    messages: Mutex::new(Vec::new()),
                    waker,
                })
                .collect(),
            redis,
            global_stats: GlobalStats::default(),
            shutting_down: AtomicBool::new(false),
        }
    }

    pub fn stream_start(&self) -> EventId {
        self.stream_start
    }

    /// Whether an event with this id may still be on its way to the workers. In-process, any id
    /// the sequencer has issued; with a broker, ids carry their publish time, so one from more
    /// than a few seconds ago would have arrived and one from the future was never issued.
    pub fn may_still_arrive(&self, id: EventId) -> bool {
        const GRACE_MS: u64 = 10_000;
        if self.redis.is_none() {
            return id <= *lock(&self.last_id);
        }
        let now = now_ms();
        id.ms + GRACE_MS > now && id.ms < now + GRACE_MS
    }

    pub fn publish(&self, request: Publish<'_>) -> Outcome {
        if let Some(redis) = &self.redis {
            redis.send(Command::Publish {
                worker: request.worker,
                token: request.token,
                serial: request.serial,
                topic: request.topic.into(),
                event_type: request.event_type.map(str::to_string),
                data: request.data.to_string(),
            });
            return Outcome::Pending;
        }
        let mut last_id = lock(&self.last_id);
        let id = last_id.next(now_ms());
        *last_id = id;
        let encoded = encode_event(id, request.event_type, request.data).into_boxed_slice();
        self.broadcast_locked(request.worker, request.topic.into(), id, encoded);
        drop(last_id);
        self.global_stats
            .events_published
            .fetch_add(1, Ordering::Relaxed);
        Outcome::Done(id)
    }

    /// Hands an event that is already in order (from the broker's reader) to every worker.
    pub fn broadcast(&self, topic: Box<str>, id: EventId, encoded: Box<[u8]>) {
        self.broadcast_locked(usize::MAX, topic, id, encoded);
    }

    /// Pushes to every mailbox; wakes each worker whose mailbox was empty, except `from`, which
    /// drains its own mailbox before it polls again.
    fn broadcast_locked(&self, from: usize, topic: Box<str>, id: EventId, encoded: Box<[u8]>) {
        let event = Arc::new(Published { topic, id, encoded });
        for (worker, mailbox) in self.mailboxes.iter().enumerate() {
            let mut messages = lock(&mailbox.messages);
            let was_empty = messages.is_empty();
            messages.push(Message::Event(Arc::clone(&event)));
            drop(messages);
            if was_empty && worker != from {
                self.wake(worker);
            }
        }
    }

    /// Sends one worker a message and wakes it.
    pub fn post(&self, worker: usize, message: Message) {
        lock(&self.mailboxes[worker].messages).push(message);
        self.wake(worker);
    }

    /// Moves worker `worker`'s pending messages into `into`, in order.
    pub fn take_messages(&self, worker: usize, into: &mut Vec<Message>) {
        std::mem::swap(&mut *lock(&self.mailboxes[worker].messages), into);
    }

    fn wake(&self, worker: usize) {
        if let Err(e) = self.mailboxes[worker].waker.wake() {
            log::error!("could not wake worker {worker}: {e}");
        }
    }

    pub fn shut_down(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        for worker in 0..self.mailboxes.len() {
            self.wake(worker);
        }
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }
}
