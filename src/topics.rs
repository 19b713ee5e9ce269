//! The topic table: name → topic, each topic owning its [`EventLog`] and its
//! [`SubscriberList`].
//!
//! A topic is small (a few dozen bytes) until its first event, because one topic per user is a
//! normal way to use ssed and 18,000 idle per-user streams must stay cheap. Topics are created on
//! first use. A topic that never had an event is forgotten as soon as its last subscriber leaves
//! (so one-shot subscribes to random names leave nothing behind); one with history is forgotten
//! `--topic-ttl` seconds after its last event once no one subscribes. History is dropped
//! `--topic-ttl` after the last event whether or not anyone subscribes, a rule that depends only
//! on the event stream, so every worker drops the same history at the same time and replay gives
//! the same answer on each.
//!
//! The table also knows how far back it can vouch for a topic (its *horizon*), which is how
//! replay tells a client that it may have missed events (see `replay.rs`).

use crate::event_log::{EncodedEvent, EventId, EventLog, Retention, STREAM_ORIGIN};
use crate::subscribers::SubscriberList;
use hashbrown::HashTable;
use slab::Slab;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

pub type TopicId = u32;

#[derive(Debug)]
pub struct Topic {
    name: Arc<str>,
    /// Boxed because most topics of a per-user deployment are idle and never have an event.
    log: Option<Box<EventLog>>,
    subscribers: SubscriberList,
    /// Seconds (of the worker's clock) of the last event, and of the last time the topic was in
    /// use at all (an event, a subscriber leaving).
    last_event_at: u32,
    last_used_at: u32,
    pub history: History,
}

/// Whether the topic's older history has been fetched from the broker (Redis mode only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum History {
    /// Only what this process received while running.
    Local,
    Requested,
    /// Everything the broker retains has been merged in; the local log is authoritative.
    Loaded,
}

impl Topic {
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    pub fn log(&self) -> Option<&EventLog> {
        self.log.as_deref()
    }

    pub fn subscribers(&self) -> &SubscriberList {
        &self.subscribers
    }

    pub fn subscribers_mut(&mut self) -> &mut SubscriberList {
        &mut self.subscribers
    }

    /// The offset at which a subscriber that wants only new events starts.
    pub fn end(&self) -> u64 {
        self.log.as_ref().map_or(STREAM_ORIGIN, |log| log.end())
    }

    /// The offset at which to start replay for a client that last saw `last_seen`.
    pub fn offset_after(&self, last_seen: EventId) -> u64 {
        self.log
            .as_ref()
            .map_or(STREAM_ORIGIN, |log| log.offset_after(last_seen))
    }

    /// Whether the local log alone can replay everything after `last_seen`.
    pub fn covers(&self, last_seen: EventId) -> bool {
        self.history == History::Loaded
            || self
                .log()
                .and_then(EventLog::first_id)
                .is_some_and(|first| first <= last_seen)
    }

    /// Seconds since the topic's last event, on the worker's clock.
    pub fn quiet_for(&self, now: u32) -> u32 {
        now.saturating_sub(self.last_event_at)
    }
}

pub struct Topics {
    /// Name → id. Only the 4-byte id is stored: the name is the topic's own, hashed with
    /// `hasher`. A map keyed by the name would hold a second 16-byte pointer per topic, and in
    /// a deployment with one topic per user that is a tenth of what a subscriber costs.
    by_name: HashTable<TopicId>,
    hasher: RandomState,
    topics: Slab<Topic>,
    retention: Retention,
    ttl_secs: u32,
    max_topics: usize,
    /// How far back a topic without a log of its own can be vouched for: in-process, the first id
    /// this process could issue, raised by the history of topics forgotten since; `None` with a
    /// broker, whose own history answers instead.
    fresh_horizon: Option<EventId>,
    /// Where the budgeted expiry scan resumes.
    expiry_cursor: usize,
}

impl Topics {
    pub fn new(
        retention: Retention,
        ttl_secs: u32,
        max_topics: usize,
        fresh_horizon: Option<EventId>,
    ) -> Topics {
        Topics {
            by_name: HashTable::new(),
            hasher: RandomState::new(),
            topics: Slab::new(),
            retention,
            ttl_secs,
            max_topics,
            fresh_horizon,
            expiry_cursor: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.topics.len()
    }

    pub fn is_empty(&self) -> bool {
        self.topics.is_empty()
    }

    /// The topic called `name`, created if needed. `None` if it does not exist and the table is
    /// at `--max-topics` (a subscribe or publish is then answered 503). Events from the stream
    /// use [`for_event`](Self::for_event), which is not limited: they were admitted where they
    /// were published.
    pub fn get_or_create(&mut self, name: &str, now: u32) -> Option<TopicId> {
        if let Some(id) = self.find(name) {
            return Some(id);
        }
        (self.topics.len() < self.max_topics).then(|| self.create(name, now))
    }

    pub fn for_event(&mut self, name: &str, now: u32) -> TopicId {
        match self.find(name) {
            Some(id) => id,
            None => self.create(name, now),
        }
    }

    fn create(&mut self, name: &str, now: u32) -> TopicId {
        let name: Arc<str> = name.into();
        let id = self.topics.insert(Topic {
            name: Arc::clone(&name),
            log: None,
            subscribers: SubscriberList::default(),
            last_event_at: now,
            last_used_at: now,
            history: History::Local,
        }) as TopicId;
        let Topics {
            by_name,
            topics,
            hasher,
            ..
        } = self;
        by_name.insert_unique(hasher.hash_one(&*name), id, |&id| {
            hasher.hash_one(&*topics[id as usize].name)
        });
        id
    }

    pub fn find(&self, name: &str) -> Option<TopicId> {
        let topics = &self.topics;
        self.by_name
            .find(self.hasher.hash_one(name), |&id| {
                &*topics[id as usize].name == name
            })
            .copied()
    }

    pub fn get(&self, id: TopicId) -> &Topic {
        &self.topics[id as usize]
    }

    pub fn get_mut(&mut self, id: TopicId) -> &mut Topic {
        &mut self.topics[id as usize]
    }

    /// A topic that may have been forgotten since its id was taken.
    pub fn try_get_mut(&mut self, id: TopicId) -> Option<&mut Topic> {
        self.topics.get_mut(id as usize)
    }

    pub fn iter(&self) -> impl Iterator<Item = (TopicId, &Topic)> {
        self.topics.iter().map(|(id, topic)| (id as TopicId, topic))
    }

    /// Ids of topics that have subscribers.
    pub fn subscribed(&self) -> Vec<TopicId> {
        self.iter()
            .filter(|(_, t)| t.subscribers.count() > 0)
            .map(|(id, _)| id)
            .collect()
    }

    /// Whether a client that last saw `last_seen` may have missed events of this topic that
    /// are gone: trimmed by retention or age, or older than anything this worker can vouch for.
    pub fn may_have_missed(&self, id: TopicId, last_seen: EventId) -> bool {
        match &self.get(id).log {
            Some(log) => last_seen < log.horizon(),
            None => self.fresh_horizon.is_some_and(|h| last_seen < h),
        }
    }

    pub fn append(&mut self, id: TopicId, event_id: EventId, encoded: &[u8], now: u32) {
        let retention = self.retention;
        let fresh = self.fresh_horizon.unwrap_or_default();
        let topic = &mut self.topics[id as usize];
        topic
            .log
            .get_or_insert_with(|| Box::new(EventLog::with_horizon(fresh)))
            .append(event_id, encoded, retention);
        topic.last_event_at = now;
        topic.last_used_at = now;
    }

    /// Merges events fetched from the broker, up to `up_to`, in front of the local ones;
    /// `complete` says whether they are all the broker had (a fetch cut short by its limits is
    /// not).
    pub fn prepend(&mut self, id: TopicId, older: &[EncodedEvent], complete: bool, up_to: EventId) {
        let retention = self.retention;
        let topic = &mut self.topics[id as usize];
        topic
            .log
            .get_or_insert_with(Default::default)
            .prepend(older, retention, complete, up_to);
    }

    /// One subscriber fewer. A topic that never had an event, and has no one left, is forgotten
    /// at once: nothing about it is worth keeping.
    pub fn unsubscribed(&mut self, id: TopicId, now: u32) {
        let topic = &mut self.topics[id as usize];
        topic.last_used_at = now;
        if topic.subscribers.count() == 0
            && topic.log.is_none()
            && topic.history != History::Requested
        {
            self.forget(id);
        }
    }

    fn forget(&mut self, id: TopicId) {
        let hash = self.hasher.hash_one(&*self.topics[id as usize].name);
        if let Ok(entry) = self.by_name.find_entry(hash, |&other| other == id) {
            entry.remove();
        }
        let topic = self.topics.remove(id as usize);
        if let (Some(fresh), Some(log)) = (self.fresh_horizon.as_mut(), &topic.log) {
            *fresh = (*fresh).max(log.newest_id());
        }
    }

    /// Drops history older than the TTL and forgets unused topics, looking at no more than
    /// `budget` topics; the next call continues where this one stopped. Returns how many
    /// topics were forgotten.
    pub fn expire(&mut self, now: u32, budget: usize) -> usize {
        let ttl = self.ttl_secs;
        let expired = |at: u32| now.saturating_sub(at) >= ttl;
        let mut forgotten = 0;
        let end = self.topics.capacity();
        for _ in 0..budget.min(end) {
            let id = self.expiry_cursor;
            self.expiry_cursor = if id + 1 >= end { 0 } else { id + 1 };
            let Some(topic) = self.topics.get_mut(id) else {
                continue;
            };
            if let Some(log) = topic.log.as_mut().filter(|log| !log.is_empty()) {
                if expired(topic.last_event_at) {
                    log.clear();
                }
            }
            if topic.subscribers.count() == 0
                && topic.history != History::Requested
                && expired(topic.last_used_at)
            {
                self.forget(id as TopicId);
                forgotten += 1;
            }
        }
        forgotten
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_without_events_are_forgotten_when_their_last_subscriber_leaves() {
        let retention = Retention {
            max_events: 10,
            max_bytes: 1000,
        };
        let mut topics = Topics::new(retention, 300, 2, Some(EventId::default()));
        let a = topics.get_or_create("a", 0).unwrap();
        topics.get_mut(a).subscribers_mut().add_parked();
        let b = topics.get_or_create("b", 0).unwrap();
        assert!(topics.get_or_create("c", 0).is_none(), "at --max-topics");
        topics.get_mut(a).subscribers_mut().remove_parked();
        topics.unsubscribed(a, 1);
        assert_eq!(topics.find("a"), None);
        topics.append(b, EventId { ms: 1, seq: 0 }, b"x", 1);
        assert!(topics.get_or_create("c", 1).is_some());
        assert_eq!(topics.len(), 2);
        assert_eq!(topics.expire(400, 100), 2, "b after its TTL, c unused");
        assert!(topics.is_empty());
        let b_again = topics.for_event("b", 400);
        assert!(
            topics.may_have_missed(b_again, EventId::default()),
            "b's history was forgotten: an old id may have missed it"
        );
    }
}
