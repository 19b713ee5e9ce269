//! Counters and gauges, and their Prometheus text rendering for `GET /metrics`.
//!
//! Each worker owns one [`WorkerStats`] and is its only writer, so the relaxed atomic adds on the
//! hot path never contend; whichever worker answers `/metrics` reads them all.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

/// Why a request or connection was refused; the `reason` label of `ssed_requests_rejected_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectReason {
    BadRequest,
    HeadTooLarge,
    NotFound,
    MethodNotAllowed,
    BodyTooLarge,
    Unauthorized,
    Forbidden,
    MaxConnections,
    HeaderTimeout,
    Unavailable,
    TooManyTopics,
    SubscriberInput,
    NotImplemented,
}

impl RejectReason {
    pub const ALL: [RejectReason; 13] = [
        RejectReason::BadRequest,
        RejectReason::HeadTooLarge,
        RejectReason::NotFound,
        RejectReason::MethodNotAllowed,
        RejectReason::BodyTooLarge,
        RejectReason::Unauthorized,
        RejectReason::Forbidden,
        RejectReason::MaxConnections,
        RejectReason::HeaderTimeout,
        RejectReason::Unavailable,
        RejectReason::TooManyTopics,
        RejectReason::SubscriberInput,
        RejectReason::NotImplemented,
    ];

    pub fn label(self) -> &'static str {
        match self {
            RejectReason::BadRequest => "bad_request",
            RejectReason::HeadTooLarge => "head_too_large",
            RejectReason::NotFound => "not_found",
            RejectReason::MethodNotAllowed => "method_not_allowed",
            RejectReason::BodyTooLarge => "body_too_large",
            RejectReason::Unauthorized => "unauthorized",
            RejectReason::Forbidden => "forbidden",
            RejectReason::MaxConnections => "max_connections",
            RejectReason::HeaderTimeout => "header_timeout",
            RejectReason::Unavailable => "unavailable",
            RejectReason::TooManyTopics => "too_many_topics",
            RejectReason::SubscriberInput => "subscriber_input",
            RejectReason::NotImplemented => "not_implemented",
        }
    }

    pub fn for_status(status: u16) -> RejectReason {
        match status {
            401 => RejectReason::Unauthorized,
            403 => RejectReason::Forbidden,
            404 => RejectReason::NotFound,
            405 => RejectReason::MethodNotAllowed,
            413 => RejectReason::BodyTooLarge,
            431 => RejectReason::HeadTooLarge,
            501 => RejectReason::NotImplemented,
            503 => RejectReason::Unavailable,
            _ => RejectReason::BadRequest,
        }
    }
}

/// Why a TLS handshake did not finish; the `reason` label of
/// `ssed_tls_handshake_failures_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsFailure {
    /// The first bytes were not a TLS handshake record (plaintext HTTP on the HTTPS port).
    NotTls,
    /// The peer broke the protocol, or offered nothing ssed accepts (version, cipher suite).
    Protocol,
    /// Not finished within --header-timeout.
    Timeout,
    /// The peer closed or reset the connection before the handshake finished.
    Closed,
}

impl TlsFailure {
    pub const ALL: [TlsFailure; 4] = [
        TlsFailure::NotTls,
        TlsFailure::Protocol,
        TlsFailure::Timeout,
        TlsFailure::Closed,
    ];

    pub fn label(self) -> &'static str {
        match self {
            TlsFailure::NotTls => "not_tls",
            TlsFailure::Protocol => "protocol",
            TlsFailure::Timeout => "timeout",
            TlsFailure::Closed => "closed",
        }
    }
}

#[derive(Default, Debug)]
pub struct WorkerStats {
    pub connections: AtomicI64,
    pub subscribers: AtomicI64,
    pub topics: AtomicI64,
    pub accepted: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub slow_dropped: AtomicU64,
    pub accept_errors: AtomicU64,
    pub rejected: [AtomicU64; RejectReason::ALL.len()],
    pub tls_handshake_failures: [AtomicU64; TlsFailure::ALL.len()],
    /// When the worker's loop last turned (ms since the epoch), for /livez.
    pub last_turn_ms: AtomicU64,
    pub auth_failures: crate::auth::AuthFailures,
    /// Its fan-out is behind the events (publishers everywhere wait; see delivery.rs).
    pub behind: std::sync::atomic::AtomicBool,
}

/// A worker whose loop has not turned for this long makes /livez answer 503. An idle loop
/// still turns once a second (its housekeeping timer).
const STUCK_AFTER_MS: u64 = 5_000;

/// The first worker whose loop has not turned recently, if any.
pub fn stuck_worker(workers: &[WorkerStats]) -> Option<usize> {
    let now = crate::broker::now_ms();
    workers
        .iter()
        .position(|w| now.saturating_sub(w.last_turn_ms.load(Relaxed)) > STUCK_AFTER_MS)
}

impl WorkerStats {
    pub fn turned(&self) {
        self.last_turn_ms.store(crate::broker::now_ms(), Relaxed);
    }

    pub fn reject(&self, reason: RejectReason) {
        self.rejected[reason as usize].fetch_add(1, Relaxed);
    }
}

/// Process-wide figures that no single worker owns.
#[derive(Default, Debug)]
pub struct GlobalStats {
    pub events_published: AtomicU64,
}

/// Renders every metric in the Prometheus text exposition format (version 0.0.4).
pub fn render(global: &GlobalStats, workers: &[&WorkerStats], extra: &str) -> String {
    let mut out = String::with_capacity(4096);
    let sum = |f: &dyn Fn(&WorkerStats) -> i64| workers.iter().map(|w| f(w)).sum::<i64>();
    let mut metric =
        |name: &str, kind: &str, help: &str, f: &dyn Fn(&WorkerStats) -> i64, per_worker: bool| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}",
                sum(f)
            );
            if per_worker {
                for (i, w) in workers.iter().enumerate() {
                    let _ = writeln!(out, "{name}{{worker=\"{i}\"}} {}", f(w));
                }
            }
        };
    metric(
        "ssed_connections",
        "gauge",
        "Open client connections.",
        &|w| w.connections.load(Relaxed),
        true,
    );
    metric(
        "ssed_subscribers",
        "gauge",
        "Connections streaming events.",
        &|w| w.subscribers.load(Relaxed),
        true,
    );
    metric(
        "ssed_connections_accepted_total",
        "counter",
        "Connections accepted.",
        &|w| w.accepted.load(Relaxed) as i64,
        true,
    );
    metric(
        "ssed_bytes_sent_total",
        "counter",
        "Event stream bytes written to subscribers.",
        &|w| w.bytes_sent.load(Relaxed) as i64,
        false,
    );
    metric(
        "ssed_slow_subscribers_dropped_total",
        "counter",
        "Subscribers disconnected because they fell behind retained history.",
        &|w| w.slow_dropped.load(Relaxed) as i64,
        false,
    );
    metric(
        "ssed_accept_errors_total",
        "counter",
        "accept() failures (EMFILE, ENFILE, ...), each followed by a short back-off.",
        &|w| w.accept_errors.load(Relaxed) as i64,
        false,
    );
    // Every worker holds every topic with recent events, so the total is the largest worker's.
    let topics = workers
        .iter()
        .map(|w| w.topics.load(Relaxed))
        .max()
        .unwrap_or(0);
    let _ = writeln!(out, "# HELP ssed_topics Topics held (each worker holds every active topic).\n# TYPE ssed_topics gauge\nssed_topics {topics}");
    for (i, w) in workers.iter().enumerate() {
        let _ = writeln!(
            out,
            "ssed_topics{{worker=\"{i}\"}} {}",
            w.topics.load(Relaxed)
        );
    }
    let _ = writeln!(
        out,
        "# HELP ssed_events_published_total Events accepted for publishing.\n# TYPE ssed_events_published_total counter\nssed_events_published_total {}",
        global.events_published.load(Relaxed)
    );
    let _ = writeln!(out, "# HELP ssed_requests_rejected_total Requests and connections refused, by reason.\n# TYPE ssed_requests_rejected_total counter");
    for reason in RejectReason::ALL {
        let n: u64 = workers
            .iter()
            .map(|w| w.rejected[reason as usize].load(Relaxed))
            .sum();
        let _ = writeln!(
            out,
            "ssed_requests_rejected_total{{reason=\"{}\"}} {n}",
            reason.label()
        );
    }
    let _ = writeln!(out, "# HELP ssed_tls_handshake_failures_total TLS handshakes that did not finish, by reason.\n# TYPE ssed_tls_handshake_failures_total counter");
    for reason in TlsFailure::ALL {
        let n: u64 = workers
            .iter()
            .map(|w| w.tls_handshake_failures[reason as usize].load(Relaxed))
            .sum();
        let _ = writeln!(
            out,
            "ssed_tls_handshake_failures_total{{reason=\"{}\"}} {n}",
            reason.label()
        );
    }
    let failures: Vec<&crate::auth::AuthFailures> =
        workers.iter().map(|w| &w.auth_failures).collect();
    out.push_str(&crate::auth::render_failures(&failures));
    out.push_str(extra);
    let (rss, fds) = process_figures();
    let _ = writeln!(out, "# HELP process_resident_memory_bytes Resident memory size in bytes.\n# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {rss}");
    let _ = writeln!(out, "# HELP process_open_fds Number of open file descriptors.\n# TYPE process_open_fds gauge\nprocess_open_fds {fds}");
    out
}

/// Resident memory and open descriptors, computed at most once a second: listing
/// /proc/self/fd costs time in proportion to the open connections, and /metrics is anyone's to
/// ask for.
fn process_figures() -> (u64, u64) {
    static CACHE: std::sync::Mutex<Option<(std::time::Instant, (u64, u64))>> =
        std::sync::Mutex::new(None);
    let mut cache = crate::mailbox::lock(&CACHE);
    match *cache {
        Some((at, figures)) if at.elapsed() < std::time::Duration::from_secs(1) => figures,
        _ => {
            let figures = read_process_figures();
            *cache = Some((std::time::Instant::now(), figures));
            figures
        }
    }
}

/// Resident memory (from /proc/self/statm) and open descriptors (entries of /proc/self/fd).
fn read_process_figures() -> (u64, u64) {
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    let rss_pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0);
    let fds = std::fs::read_dir("/proc/self/fd").map_or(0, |dir| dir.count() as u64);
    (rss_pages * page, fds)
}
