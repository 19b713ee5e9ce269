//! Workers' mailboxes: how anything outside a worker's thread hands it work.
//!
//! Each worker has one mailbox (a short-locked `Vec`) and the mio `Waker` of its loop. Published
//! events, the broker's answers and its history reads all arrive here; a worker takes its whole
//! mailbox at once, in order, at the top of every turn of its loop. This module depends on
//! nothing else in ssed, so the in-process sequencer and the Redis threads can both use it
//! without knowing about each other.

use crate::event_log::{EncodedEvent, EventId};
use mio::Waker;
use std::sync::{Arc, Mutex, MutexGuard};

/// An event as every worker receives it: encoded once, shared by all.
#[derive(Debug)]
pub struct SharedEvent {
    pub topic: Box<str>,
    pub id: EventId,
    pub encoded: Box<[u8]>,
}

/// A topic's older history, as fetched once from the broker for every worker that asked.
#[derive(Debug)]
pub struct Fetched {
    pub events: Vec<EncodedEvent>,
    /// Whether these are all the broker had; a fetch cut short by its limits is not.
    pub complete: bool,
}

/// What arrives in a worker's mailbox.
#[derive(Debug)]
pub enum Message {
    Event(Arc<SharedEvent>),
    /// The broker's answer to a publish that connection `token` is waiting for.
    PublishDone {
        token: usize,
        serial: u64,
        outcome: Result<EventId, String>,
    },
    /// A topic's older history, fetched from the broker for a Last-Event-ID replay.
    History {
        topic: Box<str>,
        fetched: Arc<Result<Fetched, String>>,
    },
    /// The broker lost events after `after` (its stream was trimmed while this process could not
    /// read it): every subscriber must be told.
    Gap {
        after: EventId,
    },
}

struct Mailbox {
    messages: Mutex<Vec<Message>>,
    waker: Waker,
}

pub struct Mailboxes {
    boxes: Vec<Mailbox>,
}

pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A worker that panicked ends the process (see server.rs), so a poisoned lock's data is
    // still consistent for the moment it takes to exit.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Mailboxes {
    pub fn new(wakers: Vec<Waker>) -> Mailboxes {
        Mailboxes {
            boxes: wakers
                .into_iter()
                .map(|waker| Mailbox {
                    messages: Mutex::new(Vec::new()),
                    waker,
                })
                .collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.boxes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.boxes.is_empty()
    }

    /// Pushes a message to every mailbox; wakes each worker whose mailbox was empty, except
    /// `from`, which drains its own mailbox before it polls again.
    pub fn broadcast(&self, from: Option<usize>, message: impl Fn() -> Message) {
        for (worker, mailbox) in self.boxes.iter().enumerate() {
            let mut messages = lock(&mailbox.messages);
            let was_empty = messages.is_empty();
            messages.push(message());
            drop(messages);
            if was_empty && Some(worker) != from {
                self.wake(worker);
            }
        }
    }

    /// Sends one worker a message and wakes it.
    pub fn post(&self, worker: usize, message: Message) {
        lock(&self.boxes[worker].messages).push(message);
        self.wake(worker);
    }

    /// Moves worker `worker`'s pending messages into `into`, in order.
    pub fn take(&self, worker: usize, into: &mut Vec<Message>) {
        std::mem::swap(&mut *lock(&self.boxes[worker].messages), into);
    }

    pub fn wake(&self, worker: usize) {
        if let Err(e) = self.boxes[worker].waker.wake() {
            log::error!("could not wake worker {worker}: {e}");
        }
    }

    pub fn wake_all(&self) {
        for worker in 0..self.boxes.len() {
            self.wake(worker);
        }
    }
}
