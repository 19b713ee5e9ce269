//! Configuration: every command-line flag, its default and its validation.
//!
//! `--help` is the reference for operators, so each flag's help says what it does and why one
//! would change it; docs/operations.md repeats them with tuning advice.

use clap::Parser;
use std::net::SocketAddr;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "ssed",
    version,
    about = "A lean Server-Sent Events daemon: GET /events/<topic> subscribes, POST /events/<topic> publishes.",
    after_help = "Several ssed processes may share one --listen port (SO_REUSEPORT is always set), \
but without a shared broker they do not see each other's events: use --redis for that.\n\
Every flag can also be set in the environment as SSED_<FLAG> (--max-connections is \
SSED_MAX_CONNECTIONS); a flag on the command line wins over the environment.\n\
Logging: RUST_LOG=debug|info|warn|error (default info), to stderr."
)]
pub struct Config {
    /// Address to listen on; port 0 picks a free port. The real address is printed on stdout as
    /// `listening on ADDR`.
    #[arg(long, env = "SSED_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Event loops (threads), each with its own SO_REUSEPORT listener [default: the number of CPUs
    /// this process may use].
    #[arg(long, env = "SSED_WORKERS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub workers: Option<u16>,

    /// Seconds between heartbeats sent to idle subscribers; 0 turns them off.
    #[arg(long, env = "SSED_HEARTBEAT", default_value_t = 15)]
    pub heartbeat: u64,

    /// Send heartbeats as `event: NAME` + `data: null` instead of an SSE comment
    /// (`--heartbeat 5 --heartbeat-event keep-alive` reproduces the original Go server)
    /// [default: a `: heartbeat` comment].
    #[arg(long, env = "SSED_HEARTBEAT_EVENT", value_name = "NAME", value_parser = parse_event_name)]
    pub heartbeat_event: Option<String>,

    /// Send `retry: MS` at the start of every stream, to set the client's reconnection delay
    /// [default: not sent; browsers then wait about 3 s].
    #[arg(long, env = "SSED_RETRY_MS", value_name = "MS")]
    pub retry_ms: Option<u32>,

    /// Events each topic retains for Last-Event-ID replay.
    #[arg(long, env = "SSED_HISTORY", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub history: u64,

    /// Bytes of encoded events each topic retains (on top of --history).
    #[arg(long, env = "SSED_HISTORY_BYTES", default_value_t = 1 << 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub history_bytes: u64,

    /// Seconds after its last event that a topic's history is dropped; the topic itself is
    /// forgotten once it also has no subscribers.
    #[arg(long, env = "SSED_TOPIC_TTL", default_value_t = 300)]
    pub topic_ttl: u64,

    /// Most topics a worker holds at once (each worker holds every topic that has events); a
    /// subscribe or publish that would create one more is answered 503 and counted.
    #[arg(long, env = "SSED_MAX_TOPICS", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_topics: u64,

    /// Most topics one connection may subscribe to (`/events?topic=a&topic=b&…`); a request
    /// naming more is answered 400.
    #[arg(long, env = "SSED_MAX_TOPICS_PER_SUBSCRIBER", default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=crate::subscribers::MAX_MEMBERS as u64))]
    pub max_topics_per_subscriber: u64,

    /// Give every event published without an `event` type the type of its topic
    /// (`event: <topic>`), so that a client holding several topics on one connection can tell
    /// them apart with `addEventListener("<topic>", …)` [default: off; untyped events reach
    /// `onmessage`].
    #[arg(long, env = "SSED_TOPIC_EVENT_TYPES")]
    pub topic_event_types: bool,

    /// Largest accepted event body; larger publishes are answered 413.
    #[arg(long, env = "SSED_MAX_EVENT_BYTES", default_value_t = 65536)]
    pub max_event_bytes: usize,

    /// SO_SNDBUF for subscriber sockets: bounds the kernel memory a stalled client can hold
    /// (Linux doubles the value; 0 leaves the kernel's autotuning, up to ~4 MB a socket).
    #[arg(
        long,
        env = "SSED_SEND_BUFFER",
        value_name = "BYTES",
        default_value_t = 65536
    )]
    pub send_buffer: usize,

    /// Most connections held at once, over all workers; more are answered 503
    /// [default: the open-file limit minus a reserve].
    #[arg(long, env = "SSED_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,

    /// Seconds a client has to send a complete request (and an idle keep-alive connection may
    /// wait for its next one) before it is closed.
    #[arg(long, env = "SSED_HEADER_TIMEOUT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout: u64,

    /// Let any client holding this token publish (`Authorization: Bearer TOKEN`), and no one
    /// else [default: none; only loopback clients may publish].
    #[arg(long, env = "SSED_PUBLISH_TOKEN", hide_env_values = true)]
    pub publish_token: Option<String>,

    /// Share events with every ssed process using this Redis (e.g. redis://127.0.0.1:6379/0):
    /// publishes go to a Redis stream that every process follows [default: none; events stay in
    /// this process]. A password in the URL is never logged.
    #[arg(long, env = "SSED_REDIS", value_name = "URL", hide_env_values = true)]
    pub redis: Option<String>,

    /// With --redis: entries the shared stream `ssed:events` keeps (approximately), which bounds
    /// how long a process may lose Redis and still catch up without a gap.
    #[arg(long, env = "SSED_REDIS_STREAM_LEN", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub redis_stream_len: u64,

    /// Allow this origin for cross-origin subscribe and publish (repeatable, or several separated
    /// by commas, as SSED_CORS_ORIGIN must give them; `*` for any) [default: none; no CORS headers
    /// are sent].
    #[arg(
        long = "cors-origin",
        env = "SSED_CORS_ORIGIN",
        value_name = "ORIGIN",
        value_delimiter = ','
    )]
    pub cors_origins: Vec<String>,

    /// Serve HTTPS (TLS 1.3 and 1.2) with the certificate chain in this PEM file, leaf first;
    /// needs --tls-key. SIGHUP re-reads both files; new connections get the new certificate
    /// [default: plain HTTP].
    #[arg(long, env = "SSED_TLS_CERT", value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,

    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1) of --tls-cert's certificate.
    #[arg(long, env = "SSED_TLS_KEY", value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,

    #[command(flatten)]
    pub auth: crate::auth::AuthConfig,

    /// Seconds between SIGTERM and the shutdown: meanwhile /readyz (and /healthz) answer 503, so a
    /// load balancer or Kubernetes stops sending new clients, while every stream goes on; then
    /// subscribers are told to come back (`retry:`) and closed.
    #[arg(
        long,
        env = "SSED_SHUTDOWN_DELAY",
        value_name = "SECS",
        default_value_t = 0
    )]
    pub shutdown_delay: u64,

    /// Log line format on stderr: `text` for people, `json` for one JSON object per line
    /// (timestamp, level, target, message, fields) for Loki, Elasticsearch or Cloud Logging.
    #[arg(long, env = "SSED_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

fn parse_event_name(name: &str) -> Result<String, String> {
    if name.is_empty() || name.len() > 200 || name.bytes().any(|b| b == b'\r' || b == b'\n') {
        return Err("an event name is 1 to 200 characters without CR or LF".into());
    }
    Ok(name.to_string())
}

impl Config {
    /// The command line and the environment; `SSED_REDIS_URL`, the name `--redis` had before
    /// every flag became `SSED_<FLAG>`, is still read when `SSED_REDIS` is not set.
    pub fn from_args() -> Config {
        let mut config = <Config as clap::Parser>::parse();
        if config.redis.is_none() {
            config.redis = std::env::var("SSED_REDIS_URL")
                .ok()
                .filter(|url| !url.is_empty());
        }
        config
    }

    pub fn workers(&self) -> usize {
        self.workers.map_or_else(
            || std::thread::available_parallelism().map_or(1, |n| n.get()),
            usize::from,
        )
    }

    /// The bytes sent as a heartbeat: an SSE comment, or the configured event.
    pub fn heartbeat_bytes(&self) -> Vec<u8> {
        match &self.heartbeat_event {
            Some(name) => format!("event: {name}\ndata: null\n\n").into_bytes(),
            None => b": heartbeat\n\n".to_vec(),
        }
    }
}
