//! ssed: a lean Server-Sent Events daemon.
//!
//! Read the modules in this order (docs/design.md tells the same story with a diagram):
//! - [`config`]: the command line.
//! - [`server`]: open-file limit, listeners, worker threads, shutdown.
//! - [`event_loop`]: one worker's mio loop and each connection's states (with `requests` and
//!   `delivery` inside it).
//! - [`http`]: parsing requests, writing the few responses.
//! - [`subscribers`]: the slab of connections; a subscriber is a socket and a write offset.
//! - [`topics`]: topic names, their event logs and subscriber lists.
//! - [`event_log`]: the shared buffer of already-encoded events.
//! - [`publish`]: ids, encoding once, and handing events to every worker.
//! - [`redis_broker`]: `--redis`, sharing one event stream between processes and machines.
//! - [`metrics`]: counters and the Prometheus rendering.
//! - [`auth`]: who may subscribe and publish (JWT, --publish-token), and `ssed token`.

pub mod auth;
pub mod config;
pub mod event_log;
pub mod event_loop;
pub mod http;
pub mod metrics;
pub mod publish;
pub mod redis_broker;
pub mod server;
pub mod subscribers;
pub mod topics;
