//! The topic table: name → topic, each topic owning its [`EventLog`] and the head of its
//! subscriber list.
//!
//! A topic is small (a few dozen bytes) until its first event, because one topic per user is a
//! normal way to use ssed and 18,000 idle per-user streams must stay cheap. Topics are created on
//! first use and forgotten `--topic-ttl` seconds after their last event once no one subscribes;
//! their history is dropped `--topic-ttl` after the last event whether or not anyone subscribes,
//! a rule that depends only on the event stream, so every worker drops the same history at the same
//! time and replay gives the same answer on each.

use crate::event_log::{EncodedEvent, EventId, EventLog, Retention, STREAM_ORIGIN};
use slab::Slab;
use std::collections::HashMap;

/// Marks the end of a subscriber list (tokens are slab keys, far below this).
pub const NO_SUBSCRIBER: u32 = u32::MAX;

pub type TopicId = u32;

#[derive(Debug)]
pub struct Topic {
    /// Boxed because most topics of a per-user deployment are idle and never have an event.
    log: Option<Box<EventLog>>,
    pub first_subscriber: u32,
    pub subscriber_count: u32,
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
    pub fn log(&self) -> Option<&EventLog> {
        self.log.as_deref()
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

    pub fn mark_unsubscribed(&mut self, now: u32) {
        self.subscriber_count -= 1;
        self.last_used_at = now;
    }
}

pub struct Topics {
    by_name: HashMap<Box<str>, TopicId>,
    topics: Slab<Topic>,
    retention: Retention,
    ttl_secs: u32,
}

impl Topics {
    pub fn new(retention: Retention, ttl_secs: u32) -> Topics {
        Topics {
            by_name: HashMap::new(),
            topics: Slab::new(),
            retention,
            ttl_secs,
        }
    }

    pub fn len(&self) -> usize {
        self.topics.len()
    }

    pub fn is_empty(&self) -> bool {
        self.topics.is_empty()
    }

    pub fn get_or_create(&mut self, name: &str, now: u32) -> TopicId {
        if let Some(&id) = self.by_name.get(name) {
            return id;
        }
        let id = self.topics.insert(Topic {
            log: None,
            first_subscriber: NO_SUBSCRIBER,
            subscriber_count: 0,
            last_event_at: now,
            last_used_at: now,
            history: History::Local,
        }) as TopicId;
        self.by_name.insert(name.into(), id);
        id
    }

    /// A topic's name (a scan: only for the rare history request).
    pub fn name(&self, id: TopicId) -> &str {
        self.by_name
            .iter()
            .find(|&(_, &i)| i == id)
            .map_or("", |(name, _)| name)
    }

    pub fn find(&self, name: &str) -> Option<TopicId> {
        self.by_name.get(name).copied()
    }

    pub fn get(&self, id: TopicId) -> &Topic {
        &self.topics[id as usize]
    }

    pub fn get_mut(&mut self, id: TopicId) -> &mut Topic {
        &mut self.topics[id as usize]
    }

    pub fn iter(&self) -> impl Iterator<Item = (TopicId, &Topic)> {
        self.topics.iter().map(|(id, topic)| (id as TopicId, topic))
    }

    pub fn append(&mut self, id: TopicId, event_id: EventId, encoded: &[u8], now: u32) {
        let retention = self.retention;
        let topic = &mut self.topics[id as usize];
        topic
            .log
            .get_or_insert_with(Default::default)
            .append(event_id, encoded, retention);
        topic.last_event_at = now;
        topic.last_used_at = now;
    }

    /// Merges events fetched from the broker in front of the local ones.
    pub fn prepend(&mut self, id: TopicId, older: &[EncodedEvent]) {
        let retention = self.retention;
        let topic = &mut self.topics[id as usize];
        topic
            .log
            .get_or_insert_with(Default::default)
            .prepend(older, retention);
    }

    /// Drops history older than the TTL and forgets unused topics. Returns how many were forgotten.
    pub fn expire(&mut self, now: u32) -> usize {
        let ttl = self.ttl_secs;
        let expired = |at: u32| now.saturating_sub(at) >= ttl;
        for (_, topic) in self.topics.iter_mut() {
            if let Some(log) = topic.log.as_mut().filter(|log| !log.is_empty()) {
                if expired(topic.last_event_at) {
                    log.clear();
                }
            }
        }
        let topics = &mut self.topics;
        let before = topics.len();
        self.by_name.retain(|_, &mut id| {
            let topic = &topics[id as usize];
            let forget = topic.subscriber_count == 0 && expired(topic.last_used_at);
            if forget {
                topics.remove(id as usize);
            }
            !forget
        });
        before - topics.len()
    }
}
