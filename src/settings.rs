//! What every worker needs to know, derived once from the command line.

use crate::config::Config;
use crate::event_log::Retention;
use std::time::Duration;

#[derive(Debug)]
pub struct Settings {
    pub heartbeat_every: Option<Duration>,
    pub heartbeat: Vec<u8>,
    pub retry_ms: Option<u32>,
    pub retention: Retention,
    pub topic_ttl_secs: u32,
    pub max_topics: usize,
    pub max_topics_per_subscriber: usize,
    pub topic_event_types: bool,
    pub max_event_bytes: usize,
    pub send_buffer: usize,
    pub header_timeout_secs: u32,
    pub publish_token: Option<String>,
    pub cors_origins: Vec<String>,
    /// With --tls-cert and --tls-key, the certificate every listener serves (SIGHUP reloads it).
    pub tls: Option<std::sync::Arc<crate::tls::Certificates>>,
}

impl Settings {
    pub fn from_config(config: &Config) -> Settings {
        Settings {
            heartbeat_every: (config.heartbeat > 0).then(|| Duration::from_secs(config.heartbeat)),
            heartbeat: config.heartbeat_bytes(),
            retry_ms: config.retry_ms,
            retention: Retention {
                max_events: config.history as usize,
                max_bytes: config.history_bytes as usize,
            },
            topic_ttl_secs: config.topic_ttl.min(u32::MAX as u64) as u32,
            // Every worker holds every topic that has events, so the limit is per worker.
            max_topics: config.max_topics as usize,
            max_topics_per_subscriber: config.max_topics_per_subscriber as usize,
            topic_event_types: config.topic_event_types,
            max_event_bytes: config.max_event_bytes,
            send_buffer: config.send_buffer,
            header_timeout_secs: config.header_timeout.min(u32::MAX as u64) as u32,
            publish_token: config.publish_token.clone().filter(|t| !t.is_empty()),
            cors_origins: config.cors_origins.clone(),
            // Loaded by the server, which reports a bad file before it listens.
            tls: None,
        }
    }
}
