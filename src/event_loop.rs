//! The event loop: one thread, one mio `Poll`, one listener, and every connection it accepted.
//!
//! A connection's life (docs/design.md has the picture):
//! `AwaitingRequest` → (request in pieces: `Http`) → either `Subscriber` until the client goes, or
//! answered (publish, /metrics, ...) and back to `AwaitingRequest` for the next request.
//!
//! mio is edge-triggered: every handler reads, writes or accepts until `WouldBlock`, or the event
//! is lost. Timers (heartbeats, header timeouts, topic expiry, accept back-off) are the `poll`
//! timeout; events from other workers arrive through the hub's mailbox and this loop's `Waker`.
//!
//! This file drives sockets: accepting, reading requests, writing responses, timers, closing.
//! What a request does is in `requests.rs`; how events reach subscribers is in `delivery.rs`.

mod delivery;
mod requests;

pub use requests::may_publish;

use crate::event_log::EventId;
use crate::http::{self, Parse, Rejection};
use crate::metrics::{RejectReason, WorkerStats};
use crate::publish::{Hub, Message};
use crate::subscribers::{self, ConnState, Connection, Flush, HttpConn};
use crate::topics::{TopicId, Topics};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use std::io::{self, IoSlice, Read as _};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const LISTENER: Token = Token(usize::MAX - 1);
pub const WAKER: Token = Token(usize::MAX - 2);

const SCRATCH_BYTES: usize = 16 * 1024;
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What every worker needs to know, derived once from the command line.
#[derive(Debug)]
pub struct Settings {
    pub heartbeat_every: Option<Duration>,
    pub heartbeat: Vec<u8>,
    pub retry_ms: Option<u32>,
    pub retention: crate::event_log::Retention,
    pub topic_ttl_secs: u32,
    pub max_event_bytes: usize,
    pub send_buffer: usize,
    pub header_timeout_secs: u32,
    pub publish_token: Option<String>,
    pub cors_origins: Vec<String>,
}

/// What to do with a connection after one request.
enum Next {
    /// Answered; read the next request.
    Continue,
    /// It is a subscriber now (or was closed while becoming one).
    Subscribed,
}

pub struct Worker {
    index: usize,
    poll: Poll,
    listener: Option<TcpListener>,
    hub: Arc<Hub>,
    settings: Arc<Settings>,
    conns: Slab<Connection>,
    max_connections: usize,
    topics: Topics,
    started: Instant,
    scratch: Vec<u8>,
    inbox: Vec<Message>,
    /// Connections waiting for a topic's history from the broker (Redis mode).
    awaiting_history: std::collections::HashMap<TopicId, Vec<usize>>,
    /// Parked subscribers whose Last-Event-ID this worker has not been handed yet.
    awaiting_stream: Vec<usize>,
    /// The newest event id handed to this worker (ids are ordered across all topics).
    delivered_up_to: EventId,
    /// Tags each publish handed to the broker, so a late answer finds the right connection.
    next_serial: u64,
    touched_topics: Vec<TopicId>,
    /// Reused buffer of subscribers whose heartbeat failed, settled after the pass.
    failed_writes: Vec<(usize, io::Result<Flush>)>,
    accept_paused_until: Option<Instant>,
    accept_errors_unlogged: u64,
    accept_error_logged_at: Option<Instant>,
    next_heartbeat: Option<Instant>,
    next_housekeeping: Instant,
    rng: u64,
}

impl Worker {
    pub fn new(
        index: usize,
        poll: Poll,
        mut listener: TcpListener,
        hub: Arc<Hub>,
        settings: Arc<Settings>,
        max_connections: usize,
    ) -> io::Result<Worker> {
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let now = Instant::now();
        Ok(Worker {
            index,
            poll,
            listener: Some(listener),
            // Reserving the whole table up front costs address space, not memory: pages are only
            // touched as entries are used, and the table never reallocates under load.
            conns: Slab::with_capacity(max_connections),
            max_connections,
            topics: Topics::new(settings.retention, settings.topic_ttl_secs),
            started: now,
            scratch: Vec::with_capacity(SCRATCH_BYTES),
            inbox: Vec::new(),
            awaiting_history: Default::default(),
            awaiting_stream: Vec::new(),
            delivered_up_to: hub.stream_start(),
            next_serial: 0,
            touched_topics: Vec::new(),
            failed_writes: Vec::new(),
            accept_paused_until: None,
            accept_errors_unlogged: 0,
            accept_error_logged_at: None,
            next_heartbeat: settings.heartbeat_every.map(|every| now + every),
            next_housekeeping: now + Duration::from_secs(1),
            rng: seed(index),
            hub,
            settings,
        })
    }

    fn stats(&self) -> &WorkerStats {
        &self.hub.worker_stats[self.index]
    }

    fn now(&self) -> u32 {
        self.started.elapsed().as_secs() as u32
    }

    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = self.next_timer().saturating_duration_since(Instant::now());
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            // Events published before this wake-up are applied before any request is read, so
            // a client that was told an id finds its event here (see `start_replay`).
            self.deliver_messages();
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_all(),
                    WAKER => {}
                    Token(token) => {
                        let readable =
                            event.is_readable() || event.is_read_closed() || event.is_error();
                        self.on_connection_event(token, readable, event.is_writable());
                    }
                }
            }
            if self.hub.is_shutting_down() {
                self.shut_down();
                return Ok(());
            }
            self.deliver_messages();
            self.run_timers();
        }
    }

    fn next_timer(&self) -> Instant {
        let mut next = self.next_housekeeping;
        if let Some(at) = self.next_heartbeat {
            next = next.min(at);
        }
        if let Some(at) = self.accept_paused_until {
            next = next.min(at);
        }
        next
    }

    // ---- accepting ---------------------------------------------------------------------------

    fn accept_all(&mut self) {
        if self.accept_paused_until.is_some() {
            return;
        }
        loop {
            let Some(listener) = &self.listener else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => {
                    self.stats().accepted.fetch_add(1, Relaxed);
                    self.admit(stream, peer.ip().to_canonical().is_loopback());
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
                Err(e) => {
                    // EMFILE, ENFILE, ENOBUFS...: the connection stays in the backlog, and
                    // retrying at once would spin; try again after a pause.
                    self.accept_paused_until = Some(Instant::now() + ACCEPT_BACKOFF);
                    self.stats().accept_errors.fetch_add(1, Relaxed);
                    self.accept_errors_unlogged += 1;
                    let quiet = self
                        .accept_error_logged_at
                        .is_some_and(|at| at.elapsed() < Duration::from_secs(1));
                    if !quiet {
                        log::warn!(
                            "accept failed ({} time(s) since last report): {e}; pausing accepts for {} ms",
                            self.accept_errors_unlogged,
                            ACCEPT_BACKOFF.as_millis()
                        );
                        self.accept_errors_unlogged = 0;
                        self.accept_error_logged_at = Some(Instant::now());
                    }
                    return;
                }
            }
        }
    }

    fn admit(&mut self, mut stream: TcpStream, from_loopback: bool) {
        if self.conns.len() >= self.max_connections {
            self.stats().reject(RejectReason::MaxConnections);
            log::debug!("refusing a connection: at --max-connections");
            let mut response = Vec::new();
            http::write_response(
                &mut response,
                503,
                "Retry-After: 5\r\n",
                "text/plain",
                b"server at connection limit\n",
                false,
            );
            let _ = subscribers::write_some(&mut stream, &[IoSlice::new(&response)]);
            return;
        }
        let socket = socket2::SockRef::from(&stream);
        let _ = socket.set_nodelay(true);
        if self.settings.send_buffer > 0 {
            let _ = socket.set_send_buffer_size(self.settings.send_buffer);
        }
        let entry = self.conns.vacant_entry();
        let token = entry.key();
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            Token(token),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            log::warn!("could not register a new connection: {e}");
            return;
        }
        let since = self.started.elapsed().as_secs() as u32;
        entry.insert(Connection {
            stream,
            from_loopback,
            state: ConnState::AwaitingRequest { since },
        });
        self.stats().connections.fetch_add(1, Relaxed);
    }

    // ---- connection events -------------------------------------------------------------------

    fn on_connection_event(&mut self, token: usize, readable: bool, writable: bool) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        match &conn.state {
            ConnState::Subscriber(_) => {
                if readable && !self.drain_subscriber_input(token) {
                    return;
                }
                if writable {
                    self.flush_subscriber(token);
                }
            }
            ConnState::Parked { .. } => {
                if readable {
                    self.drain_subscriber_input(token);
                }
            }
            ConnState::AwaitingRequest { .. } => {
                if readable {
                    self.on_request_bytes(token);
                }
            }
            ConnState::Http(_) => {
                if readable {
                    self.on_request_bytes(token);
                } else if writable {
                    self.continue_http(token, None);
                }
            }
        }
    }

    /// A subscriber has nothing to say after its request; reading only tells whether it is gone.
    /// Returns false if the connection was closed.
    fn drain_subscriber_input(&mut self, token: usize) -> bool {
        let stream = &mut self.conns[token].stream;
        let mut sink = [0u8; 512];
        loop {
            match stream.read(&mut sink) {
                Ok(0) => break,
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::debug!("subscriber {token}: {e}");
                    break;
                }
            }
        }
        self.close(token);
        false
    }

    /// Reads what the client sent and answers every complete request in it, in order.
    fn on_request_bytes(&mut self, token: usize) {
        let mut scratch = std::mem::take(&mut self.scratch);
        loop {
            scratch.clear();
            let Some(conn) = self.conns.get_mut(token) else {
                break;
            };
            let buffered = match &conn.state {
                ConnState::Http(http) => http.input.len(),
                ConnState::AwaitingRequest { .. } => 0,
                ConnState::Subscriber(_) | ConnState::Parked { .. } => break,
            };
            // Enough for any acceptable request; more unanswered input than that is refused by the
            // parser (431 or 413) rather than buffered.
            let limit = (http::MAX_HEAD_BYTES + 64 * 1024)
                .saturating_add(self.settings.max_event_bytes.saturating_mul(2));
            let room = limit.saturating_sub(buffered);
            if room == 0 {
                log::debug!(
                    "connection {token}: over {limit} bytes of unanswerable input; closing"
                );
                self.stats().reject(RejectReason::BodyTooLarge);
                self.close(token);
                break;
            }
            let read = read_available(&mut conn.stream, &mut scratch, room);
            if read == Read::Failed {
                self.close(token);
                break;
            }
            self.continue_http(token, Some((&scratch, read == Read::Eof)));
            // Edge-triggered: bytes left in the socket will not be announced again.
            if read != Read::Full {
                break;
            }
        }
        self.scratch = scratch;
    }

    /// Runs a plain-HTTP connection forward: parse and answer requests from its input (plus
    /// `fresh` bytes just read), write its output, and settle its next state.
    fn continue_http(&mut self, token: usize, fresh: Option<(&[u8], bool)>) {
        let now = self.now();
        let state = std::mem::replace(
            &mut self.conns[token].state,
            ConnState::AwaitingRequest { since: now },
        );
        let mut http = match state {
            ConnState::AwaitingRequest { since } => Box::new(HttpConn {
                since,
                ..HttpConn::default()
            }),
            ConnState::Http(http) => http,
            ConnState::Subscriber(_) | ConnState::Parked { .. } => {
                unreachable!("continue_http on a subscriber")
            }
        };
        let mut fresh_bytes: &[u8] = &[];
        if let Some((bytes, peer_closed)) = fresh {
            http.peer_closed |= peer_closed;
            if http.input.is_empty() {
                fresh_bytes = bytes;
            } else {
                http.input.extend_from_slice(bytes);
            }
        }
        let input_owned = std::mem::take(&mut http.input);
        let input: &[u8] = if input_owned.is_empty() {
            fresh_bytes
        } else {
            &input_owned
        };

        let mut consumed = 0;
        while !http.close_when_flushed && http.awaiting.is_none() && consumed < input.len() {
            match http::parse_request(&input[consumed..], self.settings.max_event_bytes) {
                Parse::Complete(request) => {
                    consumed += request.len;
                    http.continue_sent = false;
                    match self.answer(token, &request, &mut http) {
                        Next::Subscribed => return,
                        Next::Continue => {
                            if !request.keep_alive {
                                http.close_when_flushed = true;
                            }
                            http.since = now;
                        }
                    }
                }
                Parse::Incomplete {
                    head_done,
                    expects_continue,
                } => {
                    if head_done && expects_continue && !http.continue_sent {
                        http.output
                            .extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                        http.continue_sent = true;
                    }
                    break;
                }
                Parse::Invalid(rejection) => {
                    self.reject(token, &mut http, rejection, "");
                    break;
                }
            }
        }
        if !http.close_when_flushed && consumed < input.len() {
            http.input = input[consumed..].to_vec();
        }

        let conn = &mut self.conns[token];
        if !http.output.is_empty() {
            match subscribers::write_some(&mut conn.stream, &[IoSlice::new(&http.output)]) {
                Ok(Some(n)) => {
                    http.output.drain(..n);
                }
                Ok(None) => {}
                Err(e) => {
                    log::debug!("connection {token}: {e}");
                    self.close(token);
                    return;
                }
            }
        }
        let done_writing = http.output.is_empty();
        if done_writing && http.awaiting.is_none() && (http.close_when_flushed || http.peer_closed)
        {
            self.close(token);
        } else if done_writing
            && http.input.is_empty()
            && !http.continue_sent
            && http.awaiting.is_none()
        {
            conn.state = ConnState::AwaitingRequest { since: http.since };
        } else {
            conn.state = ConnState::Http(http);
        }
    }

    fn reject(
        &mut self,
        token: usize,
        http: &mut HttpConn,
        rejection: Rejection,
        extra_headers: &str,
    ) -> Next {
        self.stats()
            .reject(RejectReason::for_status(rejection.status));
        log::debug!(
            "connection {token}: {} {}",
            rejection.status,
            rejection.reason
        );
        let body = format!("{}\n", rejection.reason);
        http::write_response(
            &mut http.output,
            rejection.status,
            extra_headers,
            "text/plain; charset=utf-8",
            body.as_bytes(),
            false,
        );
        http.close_when_flushed = true;
        Next::Continue
    }

    // ---- timers -------------------------------------------------------------------------------

    fn run_timers(&mut self) {
        let now = Instant::now();
        if self.accept_paused_until.is_some_and(|at| at <= now) {
            self.accept_paused_until = None;
            self.accept_all();
        }
        if let Some(at) = self.next_heartbeat.filter(|&at| at <= now) {
            let every = self.settings.heartbeat_every.unwrap_or_default();
            self.next_heartbeat = Some((at + every).max(now));
            self.send_heartbeats();
        }
        if self.next_housekeeping <= now {
            self.next_housekeeping = now + Duration::from_secs(1);
            self.expire_requests();
            self.retry_parked();
            self.deliver_messages();
            let forgotten = self.topics.expire(self.now());
            if forgotten > 0 {
                log::debug!("forgot {forgotten} unused topic(s)");
            }
            self.stats().topics.store(self.topics.len() as i64, Relaxed);
        }
    }

    /// Closes connections that have not completed a request within --header-timeout (slowloris).
    /// A once-a-second scan of the table: a deadline queue would cost memory for every
    /// connection, and a scan of a few ten thousand entries costs microseconds.
    fn expire_requests(&mut self) {
        let now = self.now();
        let timeout = self.settings.header_timeout_secs;
        let overdue = |state: &ConnState| {
            waiting_since(state).is_some_and(|since| since.saturating_add(timeout) <= now)
        };
        let expired: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| overdue(&c.state))
            .map(|(token, _)| token)
            .collect();
        for token in expired {
            // On a starved machine the request may be sitting unread in the socket (its readiness
            // event not handled yet): read it first, and only close if it is still incomplete.
            self.on_request_bytes(token);
            if self.conns.get(token).is_some_and(|c| overdue(&c.state)) {
                log::debug!("connection {token}: no complete request within {timeout} s; closing");
                self.stats().reject(RejectReason::HeaderTimeout);
                self.close(token);
            }
        }
    }

    // ---- closing ------------------------------------------------------------------------------

    fn close(&mut self, token: usize) {
        let Some(mut conn) = self.conns.try_remove(token) else {
            return;
        };
        let now = self.now();
        match &conn.state {
            ConnState::Subscriber(sub) => {
                let topic = self.topics.get_mut(sub.topic);
                subscribers::unlink(&mut self.conns, &mut topic.first_subscriber, sub);
                topic.mark_unsubscribed(now);
                self.stats().subscribers.fetch_sub(1, Relaxed);
            }
            ConnState::Parked { topic, .. } => {
                self.topics.get_mut(*topic).mark_unsubscribed(now);
                self.stats().subscribers.fetch_sub(1, Relaxed);
            }
            _ => {}
        }
        let _ = self.poll.registry().deregister(&mut conn.stream);
        self.stats().connections.fetch_sub(1, Relaxed);
    }

    /// Stops accepting, then tells every subscriber to come back after a random few seconds (so
    /// that a restart does not bring every client back in the same instant) and closes everything.
    fn shut_down(&mut self) {
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        let mut told = 0;
        for (_, conn) in self.conns.iter_mut() {
            match &mut conn.state {
                ConnState::Subscriber(sub) => {
                    let log = self.topics.get(sub.topic).log();
                    let mut sent = 0;
                    if let Ok(Flush::CaughtUp) = sub.flush(&mut conn.stream, log, &mut sent) {
                        let retry = format!("retry: {}\n\n", 1000 + xorshift(&mut self.rng) % 4000);
                        if let Ok(Some(_)) = subscribers::write_some(
                            &mut conn.stream,
                            &[IoSlice::new(retry.as_bytes())],
                        ) {
                            told += 1;
                        }
                    }
                }
                ConnState::Http(http) if !http.output.is_empty() => {
                    let _ =
                        subscribers::write_some(&mut conn.stream, &[IoSlice::new(&http.output)]);
                }
                _ => {}
            }
        }
        log::info!(
            "worker {}: closed {} connection(s), {told} subscriber(s) told to retry later",
            self.index,
            self.conns.len()
        );
        self.stats().connections.store(0, Relaxed);
        self.stats().subscribers.store(0, Relaxed);
        self.conns.clear();
    }
}

/// When a connection began waiting for its (next) request, if it is waiting for one.
fn waiting_since(state: &ConnState) -> Option<u32> {
    match state {
        ConnState::AwaitingRequest { since } => Some(*since),
        // A publish waiting for the broker is not a slow client.
        ConnState::Http(http) if http.awaiting.is_none() => Some(http.since),
        _ => None,
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Read {
    /// Everything available was read.
    Drained,
    Eof,
    /// `limit` was reached with bytes possibly left in the socket.
    Full,
    Failed,
}

/// Reads until the socket would block, EOF, or `limit` bytes.
fn read_available(stream: &mut TcpStream, into: &mut Vec<u8>, limit: usize) -> Read {
    let mut chunk = [0u8; 4096];
    while into.len() < limit {
        let want = chunk.len().min(limit - into.len());
        match stream.read(&mut chunk[..want]) {
            Ok(0) => return Read::Eof,
            Ok(n) => into.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Read::Drained,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                log::debug!("read failed: {e}");
                return Read::Failed;
            }
        }
    }
    Read::Full
}

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn seed(index: usize) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64);
    (nanos ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1
}
