//! ssed: a lean Server-Sent Events daemon.
//!
//! Read the modules in this order (docs/design.md tells the same story with diagrams):
//! - [`config`] and [`settings`]: the command line, and what the workers take from it.
//! - [`server`]: listeners, worker threads, shutdown.
//! - [`event_loop`]: one worker's mio loop, its run queue and budgets.
//! - [`connection`]: a connection's life, as one explicit state machine.
//! - [`http`]: incremental request parsing, the few responses ssed writes.
//! - [`requests`]: what each request does (routing, subscribe, publish, /metrics).
//! - [`subscribers`]: what a subscriber is (20 bytes) and the per-topic list they form.
//! - [`topics`]: topic names, their event logs and subscriber lists.
//! - [`event_log`]: the shared buffer of already-encoded events.
//! - [`delivery`]: the fan-out run queue and heartbeats.
//! - [`replay`]: Last-Event-ID, parking, and the `ssed-gap` event.
//! - [`publish`], [`broker`], [`mailbox`]: the hub, who orders events (in-process or Redis),
//!   and how work reaches a worker.
//! - [`redis_broker`]: `--redis`, sharing one event stream between processes and machines.
//! - [`transport`] and [`tls`]: a connection's bytes on the wire, and HTTPS under them.
//! - [`metrics`]: counters and the Prometheus rendering.
//! - [`auth`]: who may subscribe and publish (JWT, --publish-token), and `ssed token`.
//! - [`logging`]: text or JSON log lines.

pub mod auth;
pub mod broker;
pub mod config;
pub mod connection;
pub mod delivery;
pub mod event_log;
pub mod event_loop;
pub mod http;
pub mod logging;
pub mod mailbox;
pub mod metrics;
pub mod publish;
pub mod redis_broker;
pub mod replay;
pub mod requests;
pub mod server;
pub mod settings;
pub mod subscribers;
pub mod tls;
pub mod topics;
pub mod transport;
