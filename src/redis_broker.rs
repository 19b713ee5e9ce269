//! The Redis broker (`--redis URL`): many ssed processes, on one machine or many, share one
//! ordered event stream.
//!
//! Layout in Redis (docs/design.md explains the choice):
//! - `ssed:events`, one stream for every topic, each entry `topic`, `event`, `data`. Every ssed
//!   process follows it with one blocking `XREAD`, so following costs the same for 1 topic as for
//!   100,000, and every process sees every event in the stream's single order, with its id.
//! - `ssed:topic:<topic>`, one stream per topic with the same entries under the same ids, trimmed
//!   to `--history` and expiring `--topic-ttl` after its last event: what a process that did not
//!   see an event live (it started later, or was away) reads to replay it, with one `XREVRANGE`
//!   on that topic alone.
//!
//! Both are written by one Lua script, atomically, so the two never disagree.
//!
//! Nothing here runs on an event loop: a reader thread follows the stream and hands events to the
//! workers' mailboxes; a command thread runs publishes and history reads and posts the answers
//! back. A lost connection is retried with back-off; the reader resumes after the last id it
//! delivered, so no event is skipped or delivered twice.

use crate::event_log::{encode_event, EncodedEvent, EventId};
use crate::publish::{now_ms, Hub, Message};
use redis::Value;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{mpsc, Arc};
use std::time::Duration;

const EVENTS_KEY: &str = "ssed:events";
const TOPIC_KEY_PREFIX: &str = "ssed:topic:";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// XREAD blocks this long at most, so a silently dead connection is noticed.
const BLOCK_MS: u64 = 2000;
const IO_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

const PUBLISH_SCRIPT: &str = r"
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'topic', ARGV[3], 'event', ARGV[4], 'data', ARGV[5])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], id, 'event', ARGV[4], 'data', ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
return id
";

/// Work for the command thread.
pub enum Command {
    Publish {
        worker: usize,
        token: usize,
        serial: u64,
        topic: Box<str>,
        event_type: Option<String>,
        data: String,
    },
    History {
        worker: usize,
        topic: Box<str>,
    },
}

/// The event loops' side of the broker: where to send commands, and its state for /healthz and
/// /metrics.
pub struct RedisLink {
    commands: mpsc::Sender<Command>,
    pub connected: AtomicBool,
    pub events_received: AtomicU64,
    pub last_delivered_ms: AtomicU64,
}

impl RedisLink {
    pub fn send(&self, command: Command) {
        // The command thread only ends with the process.
        let _ = self.commands.send(command);
    }

    pub fn metrics(&self) -> String {
        format!(
            "# HELP ssed_redis_connected Whether the stream reader is connected to Redis.\n# TYPE ssed_redis_connected gauge\nssed_redis_connected {}\n\
             # HELP ssed_redis_events_received_total Events read from the Redis stream.\n# TYPE ssed_redis_events_received_total counter\nssed_redis_events_received_total {}\n\
             # HELP ssed_redis_lag_ms Age of the last event delivered from Redis when it was delivered (the id's time against the clock).\n# TYPE ssed_redis_lag_ms gauge\nssed_redis_lag_ms {}\n",
            u8::from(self.connected.load(Relaxed)),
            self.events_received.load(Relaxed),
            self.last_delivered_ms.load(Relaxed),
        )
    }
}

/// Settings the broker threads need.
#[derive(Clone, Debug)]
pub struct BrokerSettings {
    pub url: String,
    pub history: u64,
    pub stream_len: u64,
    pub topic_ttl_ms: u64,
}

/// Checks that Redis answers and finds where the shared stream ends, so that following starts
/// there. Run at startup: an unreachable Redis is a configuration error.
pub fn connect_at_startup(
    settings: &BrokerSettings,
) -> Result<(RedisLink, mpsc::Receiver<Command>, EventId), String> {
    let mut conn = connect(&settings.url)
        .map_err(|e| format!("cannot reach Redis at {}: {e}", settings.url))?;
    let head = stream_head(&mut conn)
        .map_err(|e| format!("Redis at {} refused a stream read: {e}", settings.url))?;
    let (commands, receiver) = mpsc::channel();
    let link = RedisLink {
        commands,
        connected: AtomicBool::new(true),
        events_received: AtomicU64::new(0),
        last_delivered_ms: AtomicU64::new(0),
    };
    Ok((link, receiver, head))
}

/// Starts the reader and command threads.
pub fn start(
    hub: Arc<Hub>,
    settings: BrokerSettings,
    commands: mpsc::Receiver<Command>,
    after: EventId,
) -> std::io::Result<()> {
    let reader_hub = Arc::clone(&hub);
    let reader_settings = settings.clone();
    std::thread::Builder::new()
        .name("ssed-redis-reader".into())
        .spawn(move || follow(&reader_hub, &reader_settings.url, after))?;
    std::thread::Builder::new()
        .name("ssed-redis-commands".into())
        .spawn(move || run_commands(&hub, &settings, commands))?;
    Ok(())
}

/// The URL with any password replaced, for messages and logs.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            format!("{scheme}://{user}:***@{host}")
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

fn link(hub: &Hub) -> &RedisLink {
    hub.redis
        .as_ref()
        .expect("broker threads run only with --redis")
}

/// The reader thread: XREAD the shared stream forever, handing each event to every worker.
fn follow(hub: &Hub, url: &str, mut after: EventId) {
    let link = link(hub);
    let mut backoff = Duration::from_millis(100);
    loop {
        let mut conn = match connect(url) {
            Ok(conn) => conn,
            Err(e) => {
                if link.connected.swap(false, Relaxed) {
                    log::warn!("lost Redis: {e}; retrying with back-off");
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        if !link.connected.swap(true, Relaxed) {
            log::info!("Redis is back; resuming after event {after}");
        }
        backoff = Duration::from_millis(100);
        loop {
            let reply: redis::RedisResult<Value> = redis::cmd("XREAD")
                .arg("COUNT")
                .arg(1000)
                .arg("BLOCK")
                .arg(BLOCK_MS)
                .arg("STREAMS")
                .arg(EVENTS_KEY)
                .arg(after.to_string())
                .query(&mut conn);
            let reply = match reply {
                Ok(reply) => reply,
                Err(e) => {
                    if link.connected.swap(false, Relaxed) {
                        log::warn!("lost Redis: {e}; retrying with back-off");
                    }
                    break;
                }
            };
            // Reply: [[key, [entry, ...]]], or nil when BLOCK timed out.
            let Value::Array(streams) = reply else {
                continue;
            };
            for stream in &streams {
                let Value::Array(key_and_entries) = stream else {
                    continue;
                };
                let Some(entries_value) = key_and_entries.get(1) else {
                    continue;
                };
                for entry in entries(entries_value) {
                    after = entry.id;
                    let Some(topic) = entry.topic else {
                        log::warn!("ignoring stream entry {} without a topic", entry.id);
                        continue;
                    };
                    let encoded = encode_event(entry.id, entry.event_type.as_deref(), &entry.data);
                    hub.broadcast(topic.into(), entry.id, encoded.into_boxed_slice());
                    link.events_received.fetch_add(1, Relaxed);
                    link.last_delivered_ms
                        .store(now_ms().saturating_sub(entry.id.ms), Relaxed);
                }
            }
        }
    }
}

/// The command thread: publishes and history reads, one at a time, answers posted back.
fn run_commands(hub: &Hub, settings: &BrokerSettings, commands: mpsc::Receiver<Command>) {
    let script = redis::Script::new(PUBLISH_SCRIPT);
    let mut conn: Option<redis::Connection> = None;
    for command in commands {
        if conn.is_none() {
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
                    hub.global_stats.events_published.fetch_add(1, Relaxed);
                }
                hub.post(
                    worker,
                    Message::PublishDone {
                        token,
                        serial,
                        outcome,
                    },
                );
            }
            Command::History { worker, topic } => {
                let events = match conn.as_mut() {
                    None => Err("Redis is unavailable".to_string()),
                    Some(c) => redis::cmd("XREVRANGE")
                        .arg(format!("{TOPIC_KEY_PREFIX}{topic}"))
                        .arg("+")
                        .arg("-")
                        .arg("COUNT")
                        .arg(settings.history)
                        .query::<Value>(c)
                        .map_err(|e| e.to_string())
                        .map(|reply| {
                            let mut events: Vec<EncodedEvent> = entries(&reply)
                                .into_iter()
                                .map(|e| {
                                    (
                                        e.id,
                                        encode_event(e.id, e.event_type.as_deref(), &e.data)
                                            .into_boxed_slice(),
                                    )
                                })
                                .collect();
                            events.reverse();
                            events
                        }),
                };
                if let Err(e) = &events {
                    log::debug!("history read from Redis failed: {e}");
                    conn = None;
                }
                hub.post(worker, Message::History { topic, events });
            }
        }
    }
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
            redacted("redis://127.0.0.1:6379/0"),
            "redis://127.0.0.1:6379/0"
        );
    }
}
