//! The hub: what every worker of a process shares, and the publish path's entry point.
//!
//! A publish goes to the [`Broker`] (in-process sequencer or Redis), which gives the event its
//! id and order and puts it, encoded once, into every worker's [`Mailboxes`]. From there on a
//! worker touches nothing shared, so the per-subscriber write path takes no lock.

use crate::auth::Authorizer;
use crate::broker::{Broker, Outcome, Publish};
use crate::mailbox::Mailboxes;
use crate::metrics::{GlobalStats, WorkerStats};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// What the workers share: the broker, their mailboxes, their statistics, the shutdown flag.
pub struct Hub {
    pub mailboxes: Arc<Mailboxes>,
    pub broker: Broker,
    /// Who may subscribe and publish; shared, reloaded in place on SIGHUP.
    pub auth: Authorizer,
    pub worker_stats: Vec<WorkerStats>,
    pub global_stats: Arc<GlobalStats>,
    shutting_down: AtomicBool,
    /// SIGTERM arrived: not ready any more, shutting down after --shutdown-delay.
    draining: AtomicBool,
}

impl Hub {
    pub fn new(
        mailboxes: Arc<Mailboxes>,
        broker: Broker,
        auth: Authorizer,
        global_stats: Arc<GlobalStats>,
    ) -> Hub {
        Hub {
            auth,
            worker_stats: (0..mailboxes.len())
                .map(|_| WorkerStats::default())
                .collect(),
            mailboxes,
            broker,
            global_stats,
            shutting_down: AtomicBool::new(false),
            draining: AtomicBool::new(false),
        }
    }

    pub fn publish(&self, request: Publish<'_>) -> Outcome {
        let outcome = self.broker.publish(&self.mailboxes, request);
        if let Outcome::Done(_) = outcome {
            self.global_stats
                .events_published
                .fetch_add(1, Ordering::Relaxed);
        }
        outcome
    }

    /// Stops being ready (SIGTERM), before shutting down.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst) || self.is_shutting_down()
    }

    pub fn shut_down(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        self.mailboxes.wake_all();
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Whether any worker's fan-out is behind the events: then no worker reads more requests,
    /// since a publish taken anywhere reaches every worker.
    pub fn fanout_behind(&self) -> bool {
        self.worker_stats
            .iter()
            .any(|w| w.behind.load(Ordering::Relaxed))
    }

    /// Readiness (`/readyz`): the broker takes publishes and the process is not stopping.
    pub fn is_ready(&self) -> bool {
        self.broker.is_available() && !self.is_draining()
    }
}
