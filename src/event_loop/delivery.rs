//! Getting events to subscribers: applying the mailbox to the topic logs, flushing each touched
//! topic's subscribers once, heartbeats, and starting replays (parked subscribers, history from
//! the broker).

use super::Worker;
use crate::event_log::EncodedEvent;
use crate::publish::Message;
use crate::subscribers::{self, ConnState, Flush, Subscriber};
use crate::topics::{History, TopicId, NO_SUBSCRIBER};
use std::io;
use std::sync::atomic::Ordering::Relaxed;

impl Worker {
    pub(super) fn flush_subscriber(&mut self, token: usize) {
        let conn = &mut self.conns[token];
        let ConnState::Subscriber(sub) = &mut conn.state else {
            return;
        };
        let mut sent = 0;
        let outcome = sub.flush(
            &mut conn.stream,
            self.topics.get(sub.topic).log(),
            &mut sent,
        );
        self.stats().bytes_sent.fetch_add(sent, Relaxed);
        self.settle_flush(token, outcome);
    }

    pub(super) fn settle_flush(&mut self, token: usize, outcome: io::Result<Flush>) {
        match outcome {
            Ok(Flush::CaughtUp | Flush::Blocked) => {}
            Ok(Flush::FellBehind) => {
                self.stats().slow_dropped.fetch_add(1, Relaxed);
                log::debug!("subscriber {token} fell behind retained history; disconnecting it");
                self.close(token);
            }
            Err(e) => {
                log::debug!("subscriber {token}: {e}");
                self.close(token);
            }
        }
    }

    /// Handles the mailbox: appends every event to its topic's log, then gives each touched
    /// topic's subscribers one flush, so a burst of events leaves in one write per subscriber.
    pub(super) fn deliver_messages(&mut self) {
        let mut inbox = std::mem::take(&mut self.inbox);
        self.hub.take_messages(self.index, &mut inbox);
        if inbox.is_empty() && self.touched_topics.is_empty() {
            self.inbox = inbox;
            return;
        }
        let now = self.now();
        for message in inbox.drain(..) {
            match message {
                Message::Event(event) => {
                    let topic = self.topics.get_or_create(&event.topic, now);
                    self.topics.append(topic, event.id, &event.encoded, now);
                    self.touched_topics.push(topic);
                    self.delivered_up_to = self.delivered_up_to.max(event.id);
                }
                Message::PublishDone {
                    token,
                    serial,
                    outcome,
                } => self.on_publish_done(token, serial, outcome),
                Message::History { topic, events } => self.on_history(&topic, events),
            }
        }
        self.inbox = inbox;
        self.retry_parked();
        let mut touched = std::mem::take(&mut self.touched_topics);
        touched.sort_unstable();
        touched.dedup();
        for &topic in &touched {
            self.flush_topic(topic);
        }
        touched.clear();
        self.touched_topics = touched;
    }

    /// Attaches a parked subscriber to its topic at the first event after its Last-Event-ID, once
    /// that can be done without a gap or a duplicate; until then it stays parked, waiting for:
    /// - the topic's older history from the broker, if this process never saw the id's events;
    /// - the stream to catch up, if the id is newer than what this worker has been handed yet
    ///   (the client learned it from another worker or process a moment ago).
    ///
    /// `topic_name` saves a scan of the topic table when the caller knows it (a subscribe does;
    /// a reconnect storm is exactly when many topics ask for their history at once).
    pub(super) fn start_replay(&mut self, token: usize, topic_name: Option<&str>) {
        let ConnState::Parked {
            topic: topic_id,
            last_seen,
        } = self.conns[token].state
        else {
            return;
        };
        let topic = self.topics.get_mut(topic_id);
        if let Some(redis) = self.hub.redis.as_ref().filter(|_| !topic.covers(last_seen)) {
            if topic.history == History::Local {
                topic.history = History::Requested;
                redis.send(crate::redis_broker::Command::History {
                    worker: self.index,
                    topic: topic_name
                        .unwrap_or_else(|| self.topics.name(topic_id))
                        .into(),
                });
            }
            if self.topics.get(topic_id).history == History::Requested {
                self.awaiting_history
                    .entry(topic_id)
                    .or_default()
                    .push(token);
                return;
            }
        }
        if last_seen > self.delivered_up_to && self.hub.may_still_arrive(last_seen) {
            self.awaiting_stream.push(token);
            return;
        }
        let topic = self.topics.get_mut(topic_id);
        self.conns[token].state =
            ConnState::Subscriber(Subscriber::new(topic_id, topic.offset_after(last_seen)));
        subscribers::link(&mut self.conns, &mut topic.first_subscriber, token);
        self.touched_topics.push(topic_id);
    }

    /// Gives parked subscribers waiting on the stream another chance.
    pub(super) fn retry_parked(&mut self) {
        for token in std::mem::take(&mut self.awaiting_stream) {
            if self
                .conns
                .get(token)
                .is_some_and(|c| matches!(c.state, ConnState::Parked { .. }))
            {
                self.start_replay(token, None);
            }
        }
    }

    /// Merges a topic's older history from the broker, then resumes everyone who waited for it.
    /// If the broker could not answer, they replay what is here.
    pub(super) fn on_history(
        &mut self,
        topic_name: &str,
        events: Result<Vec<EncodedEvent>, String>,
    ) {
        let Some(topic_id) = self.topics.find(topic_name) else {
            return;
        };
        match events {
            Ok(mut events) => {
                // Newer events reach this worker through the stream; taking them here too
                // would deliver them twice.
                events.retain(|(id, _)| *id <= self.delivered_up_to);
                self.topics.prepend(topic_id, &events);
                self.topics.get_mut(topic_id).history = History::Loaded;
            }
            Err(e) => {
                log::warn!("could not read the history of topic {topic_name} from Redis ({e}); replaying what this process has");
                self.topics.get_mut(topic_id).history = History::Local;
            }
        }
        for token in self.awaiting_history.remove(&topic_id).unwrap_or_default() {
            if self.conns.get(token).is_some_and(
                |c| matches!(c.state, ConnState::Parked { topic, .. } if topic == topic_id),
            ) {
                self.start_replay(token, None);
            }
        }
    }

    /// One write pass over a topic's subscribers from its shared log. Failures are settled after
    /// the pass, because closing a subscriber changes the list being walked.
    pub(super) fn flush_topic(&mut self, topic_id: TopicId) {
        let topic = self.topics.get(topic_id);
        let mut sent = 0;
        let mut failed = std::mem::take(&mut self.failed_writes);
        let mut token = topic.first_subscriber;
        while token != NO_SUBSCRIBER {
            let conn = &mut self.conns[token as usize];
            let ConnState::Subscriber(sub) = &mut conn.state else {
                break;
            };
            let next = sub.next;
            match sub.flush(&mut conn.stream, topic.log(), &mut sent) {
                Ok(Flush::CaughtUp | Flush::Blocked) => {}
                outcome => failed.push((token as usize, outcome)),
            }
            token = next;
        }
        self.stats().bytes_sent.fetch_add(sent, Relaxed);
        self.settle_failed(failed);
    }

    /// Starts a heartbeat on every caught-up subscriber; one that still has events pending is
    /// being written to anyway.
    pub(super) fn send_heartbeats(&mut self) {
        let heartbeat = &self.settings.heartbeat;
        let mut sent = 0;
        let mut failed = std::mem::take(&mut self.failed_writes);
        for (_, topic) in self.topics.iter() {
            let mut token = topic.first_subscriber;
            while token != NO_SUBSCRIBER {
                let conn = &mut self.conns[token as usize];
                let ConnState::Subscriber(sub) = &mut conn.state else {
                    break;
                };
                let next = sub.next;
                if sub.is_caught_up(topic.log()) {
                    match sub.heartbeat(&mut conn.stream, heartbeat, &mut sent) {
                        Ok(Flush::CaughtUp | Flush::Blocked) => {}
                        outcome => failed.push((token as usize, outcome)),
                    }
                }
                token = next;
            }
        }
        self.stats().bytes_sent.fetch_add(sent, Relaxed);
        self.settle_failed(failed);
    }

    /// Closes the subscribers a pass could not write to; hands the buffer back for reuse.
    fn settle_failed(&mut self, mut failed: Vec<(usize, io::Result<Flush>)>) {
        for (token, outcome) in failed.drain(..) {
            self.settle_flush(token, outcome);
        }
        self.failed_writes = failed;
    }
}
