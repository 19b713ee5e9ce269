//! The Redis broker (`--redis URL`): many ssed processes, on one machine or many, share one
//! ordered event stream.
//!
//! Layout in Redis (docs/design.md explains the choice):
//! - `ssed:events`, one stream for every topic, each entry `topic`, `event`, `data`. Every ssed
//!   process follows it with one blocking `XREAD`, so following costs the same for 1 topic as for
//!   100,000, and every process sees every event in the stream's single order, with its id.
//! - `ssed:topic:<topic>`, one stream per topic with the same entries under the same ids, trimmed
//!   to `--history` and expiring `--topic-ttl` after its last event: what a process that did not
//!   see an event live (it started later, or was away) reads to replay it.
//!
//! Both are written by one Lua script, atomically, so the two never disagree.
//!
//! Nothing here runs on an event loop: a reader thread follows the stream and hands events to
//! the workers' mailboxes; a command thread runs publishes and history reads from a bounded
//! queue and posts the answers back. Every cost a client can cause is bounded: the queue (a full
//! one answers 503 to publishers and parks replays), one history read per topic in flight
//! whatever the number of workers or subscribers asking, and history reads bounded in bytes.
//! A lost connection is retried with back-off, reset only once a read succeeds (a Redis that
//! accepts connections but answers `LOADING` must not make the reader spin); the reader resumes
//! after the last id it delivered, and if Redis trimmed events it never read meanwhile, every
//! worker is told, so that every subscriber gets the `ssed-gap` event.

use crate::broker::{now_ms, HistoryRequest, Outcome, Publish};
use crate::event_log::{encode_event, EncodedEvent, EventId};
use crate::mailbox::{lock, Fetched, Mailboxes, Message, SharedEvent};
use crate::metrics::GlobalStats;
use redis::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

const EVENTS_KEY: &str = "ssed:events";
const TOPIC_KEY_PREFIX: &str = "ssed:topic:";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// XREAD blocks this long at most, so a silently dead connection is noticed.
const BLOCK_MS: u64 = 2000;
const IO_TIMEOUT: Duration = Duration::from_secs(5);
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Commands waiting for the command thread. Past this, publishes are answered 503 and replays
/// wait: a burst of clients cannot queue unbounded work (or memory) behind Redis.
const QUEUE_DEPTH: usize = 1024;
/// History is read newest first in pages of this many entries, until `--history` entries or
/// `--history-bytes` bytes: one read holds at most `--history-bytes` plus one page of
/// `--max-event-bytes` events.
const HISTORY_PAGE: usize = 16;
/// While Redis is unreachable, the command thread tries to reconnect at most this often and
/// fails publishes at once in between.
const RECONNECT_EVERY: Duration = Duration::from_millis(500);

const PUBLISH_SCRIPT: &str = r"
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'topic', ARGV[3], 'event', ARGV[4], 'data', ARGV[5])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], id, 'event', ARGV[4], 'data', ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
return id
";

/// Work for the command thread.
enum Command {
    Publish {
        worker: usize,
        token: usize,
        serial: u64,
        topic: Box<str>,
        event_type: Option<String>,
        data: String,
    },
    History {
        topic: Box<str>,
    },
}

/// What the reader, the command thread and the workers share.
struct Shared {
    connected: AtomicBool,
    events_received: AtomicU64,
    lag_ms: AtomicU64,
    gaps: AtomicU64,
    /// Topics whose history is being read, and the workers waiting for it.
    history_waiters: Mutex<HashMap<Box<str>, Vec<usize>>>,
}

/// The event loops' side of the broker.
pub struct RedisLink {
    commands: mpsc::SyncSender<Command>,
    shared: Arc<Shared>,
    stream_start: EventId,
}

/// Settings the broker threads need.
#[derive(Clone, Debug)]
pub struct BrokerSettings {
    pub url: String,
    pub history: u64,
    pub history_bytes: u64,
    pub stream_len: u64,
    pub topic_ttl_ms: u64,
}

/// The threads, once the link exists; started by [`Pending::start`].
pub struct Pending {
    commands: mpsc::Receiver<Command>,
    shared: Arc<Shared>,
    settings: BrokerSettings,
    after: EventId,
}

/// Checks that Redis answers and finds where the shared stream ends, so that following starts
/// there. Run at startup: an unreachable Redis is a configuration error.
pub fn connect_at_startup(settings: &BrokerSettings) -> Result<(RedisLink, Pending), String> {
    let shown = redacted(&settings.url);
    let mut conn =
        connect(&settings.url).map_err(|e| format!("cannot reach Redis at {shown}: {e}"))?;
    let head = stream_head(&mut conn)
        .map_err(|e| format!("Redis at {shown} refused a stream read: {e}"))?;
    let (sender, receiver) = mpsc::sync_channel(QUEUE_DEPTH);
    let shared = Arc::new(Shared {
        connected: AtomicBool::new(true),
        events_received: AtomicU64::new(0),
        lag_ms: AtomicU64::new(0),
        gaps: AtomicU64::new(0),
        history_waiters: Mutex::new(HashMap::new()),
    });
    let link = RedisLink {
        commands: sender,
        shared: Arc::clone(&shared),
        stream_start: head,
    };
    let pending = Pending {
        commands: receiver,
        shared,
        settings: settings.clone(),
        after: head,
    };
    Ok((link, pending))
}

impl Pending {
    /// Starts the reader and command threads.
    pub fn start(self, mailboxes: Arc<Mailboxes>, stats: Arc<GlobalStats>) -> std::io::Result<()> {
        let Pending {
            commands,
            shared,
            settings,
            after,
        } = self;
        let reader = (
            Arc::clone(&shared),
            Arc::clone(&mailboxes),
            settings.url.clone(),
        );
        std::thread::Builder::new()
            .name("ssed-redis-reader".into())
            .spawn(move || follow(&reader.0, &reader.1, &reader.2, after))?;
        std::thread::Builder::new()
            .name("ssed-redis-commands".into())
            .spawn(move || run_commands(&shared, &mailboxes, &stats, &settings, commands))?;
        Ok(())
    }
}

impl RedisLink {
    pub fn publish(&self, request: Publish<'_>) -> Outcome {
        if !self.is_connected() {
            return Outcome::Unavailable;
        }
        let command = Command::Publish {
            worker: request.worker,
            token: request.token,
            serial: request.serial,
            topic: request.topic.into(),
            event_type: request.event_type.map(str::to_string),
            data: request.data.to_string(),
        };
        match self.commands.try_send(command) {
            Ok(()) => Outcome::Pending,
            Err(_) => Outcome::Unavailable,
        }
    }

    pub fn request_history(&self, worker: usize, topic: &str) -> HistoryRequest {
        let mut waiters = lock(&self.shared.history_waiters);
        if let Some(workers) = waiters.get_mut(topic) {
            if !workers.contains(&worker) {
                workers.push(worker);
            }
            return HistoryRequest::Queued;
        }
        match self.commands.try_send(Command::History {
            topic: topic.into(),
        }) {
            Ok(()) => {
                waiters.insert(topic.into(), vec![worker]);
                HistoryRequest::Queued
            }
            Err(_) => HistoryRequest::Busy,
        }
    }

    pub fn is_connected(&self) -> bool {
        self.shared.connected.load(Relaxed)
    }

    pub fn stream_start(&self) -> EventId {
        self.stream_start
    }

    pub fn metrics(&self) -> String {
        let s = &self.shared;
        format!(
            "# HELP ssed_redis_connected Whether the stream reader is reading from Redis.\n# TYPE ssed_redis_connected gauge\nssed_redis_connected {}\n\
             # HELP ssed_redis_events_received_total Events read from the Redis stream.\n# TYPE ssed_redis_events_received_total counter\nssed_redis_events_received_total {}\n\
             # HELP ssed_redis_lag_ms Age of the last event delivered from Redis when it was delivered (the id's time against the clock).\n# TYPE ssed_redis_lag_ms gauge\nssed_redis_lag_ms {}\n\
             # HELP ssed_gaps_total Times Redis had trimmed events this process had not read yet (each told to every subscriber as an ssed-gap event).\n# TYPE ssed_gaps_total counter\nssed_gaps_total {}\n",
            u8::from(s.connected.load(Relaxed)),
            s.events_received.load(Relaxed),
            s.lag_ms.load(Relaxed),
            s.gaps.load(Relaxed),
        )
    }
}

/// The URL with any password replaced, for messages and logs. The userinfo ends at the last
/// `@` before the host (a password may itself contain `@`).
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            format!("{scheme}://{user}:***@{host}{}", &rest[authority_end..])
        }
        None => url.to_string(),
    }
}

fn connect(url: &str) -> redis::RedisResult<redis::Connection> {
    let client = redis::Client::open(url)?;
    let conn = client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
    conn.set_read_timeout(Some(IO_TIMEOUT))?;
    conn.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(conn)
}

fn stream_head(conn: &mut redis::Connection) -> redis::RedisResult<EventId> {
    let reply: Value = redis::cmd("XREVRANGE")
        .arg(EVENTS_KEY)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query(conn)?;
    Ok(entries(&reply)
        .first()
        .map_or(EventId::default(), |entry| entry.id))
}

/// Whether events after `after` may be gone from the shared stream: Redis trimmed entries this
/// process never read, or lost the stream. The stream's oldest entry being newer than `after`
/// means everything up to it was trimmed, and with it any entry between `after` and it (Redis
/// 7.0 does not record `MAXLEN ~` trims in `max-deleted-entry-id`, so the oldest entry is what
/// tells). When nothing was missed after all (exactly a stream's worth of new entries), the
/// clients are told they *may* have missed events, which is the safe side.
fn trimmed_past(conn: &mut redis::Connection, after: EventId) -> redis::RedisResult<bool> {
    if after == EventId::default() {
        return Ok(false);
    }
    let reply: Value = redis::cmd("XRANGE")
        .arg(EVENTS_KEY)
        .arg("-")
        .arg("+")
        .arg("COUNT")
        .arg(1)
        .query(conn)?;
    Ok(entries(&reply)
        .first()
        .is_none_or(|oldest| oldest.id > after))
}

/// The reader thread: XREAD the shared stream forever, handing each event to every worker.
fn follow(shared: &Shared, mailboxes: &Mailboxes, url: &str, mut after: EventId) {
    let mut backoff = MIN_BACKOFF;
    let mut lost = false;
    loop {
        let error = match connect(url) {
            Err(e) => e,
            Ok(mut conn) => {
                if lost {
                    match trimmed_past(&mut conn, after) {
                        Ok(true) => {
                            shared.gaps.fetch_add(1, Relaxed);
                            log::warn!("Redis trimmed events after {after} before this process could read them (an outage longer than --redis-stream-len covers); telling every subscriber with an ssed-gap event");
                            mailboxes.broadcast(None, || Message::Gap { after });
                        }
                        Ok(false) => {}
                        Err(e) => log::debug!("XINFO after reconnecting: {e}"),
                    }
                }
                read_stream(
                    &mut conn,
                    shared,
                    mailboxes,
                    &mut after,
                    &mut backoff,
                    &mut lost,
                )
            }
        };
        if shared.connected.swap(false, Relaxed) {
            log::warn!("lost Redis ({error}); retrying with back-off");
        }
        lost = true;
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// XREADs until an error, which it returns. The back-off is reset only here, after a read
/// succeeded.
fn read_stream(
    conn: &mut redis::Connection,
    shared: &Shared,
    mailboxes: &Mailboxes,
    after: &mut EventId,
    backoff: &mut Duration,
    lost: &mut bool,
) -> redis::RedisError {
    loop {
        let reply: Value = match redis::cmd("XREAD")
            .arg("COUNT")
            .arg(1000)
            .arg("BLOCK")
            .arg(BLOCK_MS)
            .arg("STREAMS")
            .arg(EVENTS_KEY)
            .arg(after.to_string())
            .query(conn)
        {
            Ok(reply) => reply,
            Err(e) => return e,
        };
        *backoff = MIN_BACKOFF;
        if !shared.connected.swap(true, Relaxed) && *lost {
            log::info!("Redis is back; resumed after event {after}");
        }
        *lost = false;
        // Reply: [[key, [entry, ...]]] (or a map in RESP3), or nil when BLOCK timed out.
        let streams = match reply {
            Value::Array(streams) => streams,
            Value::Map(pairs) => pairs
                .into_iter()
                .map(|(_, v)| Value::Array(vec![Value::Nil, v]))
                .collect(),
            _ => continue,
        };
        for stream in &streams {
            let Value::Array(key_and_entries) = stream else {
                continue;
            };
            let Some(entries_value) = key_and_entries.get(1) else {
                continue;
            };
            for entry in entries(entries_value) {
                *after = entry.id;
                let Some(topic) = entry.topic else {
                    log::warn!("ignoring stream entry {} without a topic", entry.id);
                    continue;
                };
                let event = Arc::new(SharedEvent {
                    topic: topic.into(),
                    id: entry.id,
                    encoded: encode_event(entry.id, entry.event_type.as_deref(), &entry.data)
                        .into_boxed_slice(),
                });
                mailboxes.broadcast(None, || Message::Event(Arc::clone(&event)));
                shared.events_received.fetch_add(1, Relaxed);
                shared
                    .lag_ms
                    .store(now_ms().saturating_sub(entry.id.ms), Relaxed);
            }
        }
    }
}

/// The command thread: publishes and history reads, one at a time, answers posted back.
fn run_commands(
    shared: &Shared,
    mailboxes: &Mailboxes,
    stats: &GlobalStats,
    settings: &BrokerSettings,
    commands: mpsc::Receiver<Command>,
) {
    let script = redis::Script::new(PUBLISH_SCRIPT);
    let mut conn: Option<redis::Connection> = None;
    let mut last_attempt: Option<Instant> = None;
    for command in commands {
        if conn.is_none() && last_attempt.is_none_or(|at| at.elapsed() >= RECONNECT_EVERY) {
            last_attempt = Some(Instant::now());
            conn = connect(&settings.url)
                .map_err(|e| log::debug!("Redis connect for commands: {e}"))
                .ok();
        }
        match command {
            Command::Publish {
                worker,
                token,
                serial,
                topic,
                event_type,
                data,
            } => {
                let outcome = match conn.as_mut() {
                    None => Err("Redis is unavailable".to_string()),
                    Some(c) => script
                        .key(EVENTS_KEY)
                        .key(format!("{TOPIC_KEY_PREFIX}{topic}"))
                        .arg(settings.stream_len)
                        .arg(settings.history)
                        .arg(&*topic)
                        .arg(event_type.as_deref().unwrap_or(""))
                        .arg(&data)
                        .arg(settings.topic_ttl_ms.max(1))
                        .invoke::<String>(c)
                        .map_err(|e| e.to_string())
                        .and_then(|id| {
                            EventId::parse(&id).ok_or(format!("Redis returned a strange id {id:?}"))
                        }),
                };
                if let Err(e) = &outcome {
                    log::debug!("publish to Redis failed: {e}");
                    conn = None;
                } else {
                    stats.events_published.fetch_add(1, Relaxed);
                }
                mailboxes.post(
                    worker,
                    Message::PublishDone {
                        token,
                        serial,
                        outcome,
                    },
                );
            }
            Command::History { topic } => {
                let fetched = match conn.as_mut() {
                    None => Err("Redis is unavailable".to_string()),
                    Some(c) => read_history(c, &topic, settings).map_err(|e| e.to_string()),
                };
                if let Err(e) = &fetched {
                    log::debug!("history read from Redis failed: {e}");
                    conn = None;
                }
                let fetched = Arc::new(fetched);
                let waiting = lock(&shared.history_waiters)
                    .remove(&topic)
                    .unwrap_or_default();
                for worker in waiting {
                    mailboxes.post(
                        worker,
                        Message::History {
                            topic: topic.clone(),
                            fetched: Arc::clone(&fetched),
                        },
                    );
                }
            }
        }
    }
}

/// Reads a topic's history newest first, a page at a time, until `--history` entries or
/// `--history-bytes` bytes (so a topic of large events cannot make one read huge), and returns
/// it oldest first.
fn read_history(
    conn: &mut redis::Connection,
    topic: &str,
    settings: &BrokerSettings,
) -> redis::RedisResult<Fetched> {
    let key = format!("{TOPIC_KEY_PREFIX}{topic}");
    let mut events: Vec<EncodedEvent> = Vec::new();
    let mut bytes = 0u64;
    let mut before = "+".to_string();
    let complete = loop {
        let want = (settings.history as usize - events.len()).min(HISTORY_PAGE);
        if want == 0 || bytes >= settings.history_bytes {
            break false;
        }
        let reply: Value = redis::cmd("XREVRANGE")
            .arg(&key)
            .arg(&before)
            .arg("-")
            .arg("COUNT")
            .arg(want)
            .query(conn)?;
        let page = entries(&reply);
        let got = page.len();
        for entry in page {
            let encoded = encode_event(entry.id, entry.event_type.as_deref(), &entry.data);
            if bytes + encoded.len() as u64 > settings.history_bytes && !events.is_empty() {
                // Older events would not be retained anyway.
                events.reverse();
                return Ok(Fetched {
                    events,
                    complete: false,
                });
            }
            bytes += encoded.len() as u64;
            before = format!("({}", entry.id);
            events.push((entry.id, encoded.into_boxed_slice()));
        }
        if got < want {
            break true;
        }
    };
    events.reverse();
    Ok(Fetched { events, complete })
}

struct Entry {
    id: EventId,
    topic: Option<String>,
    event_type: Option<String>,
    data: String,
}

/// Decodes a list of stream entries `[[id, [field, value, ...]], ...]`.
fn entries(reply: &Value) -> Vec<Entry> {
    let Value::Array(items) = reply else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| {
            let Value::Array(pair) = item else {
                return None;
            };
            let id = EventId::parse(&text(pair.first()?)?)?;
            let Value::Array(fields) = pair.get(1)? else {
                return None;
            };
            let mut entry = Entry {
                id,
                topic: None,
                event_type: None,
                data: String::new(),
            };
            for field in fields.chunks(2) {
                let (Some(name), Some(value)) = (text(&field[0]), field.get(1).and_then(text))
                else {
                    continue;
                };
                match name.as_str() {
                    "topic" => entry.topic = Some(value),
                    "event" => entry.event_type = Some(value).filter(|v| !v.is_empty()),
                    "data" => entry.data = value,
                    _ => {}
                }
            }
            Some(entry)
        })
        .collect()
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn passwords_never_reach_the_logs() {
        assert_eq!(
            redacted("redis://:s3cret@10.0.0.1:6379/0"),
            "redis://:***@10.0.0.1:6379/0"
        );
        assert_eq!(redacted("rediss://app:s3cret@h/1"), "rediss://app:***@h/1");
        assert_eq!(
            redacted("redis://:p@ss@word@127.0.0.1:6379/0"),
            "redis://:***@127.0.0.1:6379/0",
            "a password containing @"
        );
        assert_eq!(
            redacted("redis://127.0.0.1:6379/0"),
            "redis://127.0.0.1:6379/0"
        );
    }
}
