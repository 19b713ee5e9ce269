//! The publish path: giving an event its id, encoding it once, and handing it to every worker.
//!
//! Publishing takes one short lock, the sequencer's, in which the event gets the next id, is
//! encoded, and is pushed (as one shared `Arc`) onto every worker's mailbox. Pushing under the same
//! lock that assigns ids is what makes every worker see every event in id order. Workers are woken
//! through their mio `Waker` and append the event to their own topic logs; from there on a worker
//! touches nothing shared, so the per-subscriber write path takes no lock at all.

use crate::event_log::{encode_event, EventId};
use crate::metrics::{GlobalStats, WorkerStats};
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

struct Mailbox {
    events: Mutex<Vec<Arc<Published>>>,
    waker: Waker,
}

/// What the workers share: the sequencer, their mailboxes, their statistics, the shutdown flag.
pub struct Hub {
    last_id: Mutex<EventId>,
    mailboxes: Vec<Mailbox>,
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

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Hub {
    pub fn new(wakers: Vec<Waker>) -> Hub {
        Hub {
            last_id: Mutex::new(EventId::default()),
            worker_stats: wakers.iter().map(|_| WorkerStats::default()).collect(),
            mailboxes: wakers
                .into_iter()
                .map(|waker| Mailbox {
                    events: Mutex::new(Vec::new()),
                    waker,
                })
                .collect(),
            global_stats: GlobalStats::default(),
            shutting_down: AtomicBool::new(false),
        }
    }

    pub fn workers(&self) -> usize {
        self.mailboxes.len()
    }

    /// Publishes an event from worker `from` (which drains its own mailbox without being woken).
    pub fn publish(
        &self,
        from: usize,
        topic: &str,
        event_type: Option<&str>,
        data: &str,
    ) -> EventId {
        let mut last_id = lock(&self.last_id);
        let id = last_id.next(now_ms());
        *last_id = id;
        let event = Arc::new(Published {
            topic: topic.into(),
            id,
            encoded: encode_event(id, event_type, data).into_boxed_slice(),
        });
        let mut to_wake = Vec::with_capacity(self.mailboxes.len());
        for (worker, mailbox) in self.mailboxes.iter().enumerate() {
            let mut events = lock(&mailbox.events);
            if events.is_empty() && worker != from {
                to_wake.push(worker);
            }
            events.push(Arc::clone(&event));
        }
        drop(last_id);
        self.global_stats
            .events_published
            .fetch_add(1, Ordering::Relaxed);
        for worker in to_wake {
            self.wake(worker);
        }
        id
    }

    /// Moves worker `worker`'s pending events into `into`, in id order.
    pub fn take_events(&self, worker: usize, into: &mut Vec<Arc<Published>>) {
        std::mem::swap(&mut *lock(&self.mailboxes[worker].events), into);
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
