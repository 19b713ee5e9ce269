//! The event loop: one thread, one mio `Poll`, one listener, and every connection it accepted.
//!
//! Each turn of the loop: poll; apply the mailbox (events, the broker's answers); drive the
//! connections that are ready; then the posted work, each within a budget: connections with
//! work left from earlier turns, accepts, fan-out, replay starts, heartbeats, timeouts and
//! topic expiry. Whatever a budget does not cover stays queued with its cursor, and the next
//! poll does not wait while anything is queued. So no connection, topic or pass holds the
//! worker for more than about a millisecond while others wait (HAProxy's run queue and
//! nginx's posted events are the models).
//!
//! mio is edge-triggered: a readiness event is not repeated, so every piece of work that stops
//! before `WouldBlock` (a budget, a cap) is remembered and resumed, never dropped.
//!
//! What a connection does with its bytes is `connection.rs`; what a request does is
//! `requests.rs`; fan-out and heartbeats are `delivery.rs`; replay is `replay.rs`.

use crate::auth::Expiries;
use crate::broker::now_ms;
use crate::connection::{Connection, Drive, ExchangePool, Ready, State, LINGER_SECS};
use crate::delivery::Delivery;
use crate::event_log::encode_gap;
use crate::http::Rejection;
use crate::mailbox::Message;
use crate::metrics::{RejectReason, WorkerStats};
use crate::publish::Hub;
use crate::replay::{Parked, ParkedMulti, Replay};
use crate::requests::{answer_published, Handler, Peer, Refusal, Resume, SubscribeTo};
use crate::settings::Settings;
use crate::subscribers::{member_node, write_some, Flush, Subscriber};
use crate::topics::Topics;
use crate::transport::Transport;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const LISTENER: Token = Token(usize::MAX - 1);
pub const WAKER: Token = Token(usize::MAX - 2);

const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How often connections paused by another worker's fan-out look again.
const PAUSED_RECHECK: Duration = Duration::from_millis(1);
/// Work per turn of the loop, by kind. A subscriber write or a heartbeat costs a few
/// microseconds; these keep a turn around a millisecond on this class of machine.
const ACCEPTS_PER_TURN: usize = 128;
const WRITES_PER_TURN: usize = 512;
const REPLAYS_PER_TURN: usize = 64;
/// TLS handshake steps (a ClientHello answered with a signed server flight costs a few hundred
/// microseconds) per turn; readable connections beyond it wait their turn in order.
const HANDSHAKES_PER_TURN: usize = 4;
const HEARTBEATS_PER_TURN: usize = 512;
const TIMEOUT_SCAN_PER_TURN: usize = 16 * 1024;
const TOPIC_EXPIRY_PER_TURN: usize = 4096;
/// The connection table is reserved up to this many entries and grows beyond it only as
/// connections come: startup never depends on the open-file limit.
const RESERVED_CONNECTIONS: usize = 16 * 1024;

pub struct Worker {
    index: usize,
    poll: Poll,
    listener: Option<TcpListener>,
    /// The listener may have connections waiting that this turn's budget did not take.
    accept_pending: bool,
    hub: Arc<Hub>,
    settings: Arc<Settings>,
    conns: Slab<Connection>,
    max_connections: usize,
    pool: ExchangePool,
    topics: Topics,
    delivery: Delivery,
    replay: Replay,
    /// When streams opened with an expiring token end.
    expiries: Expiries,
    /// Connections with work left over from an earlier turn.
    run_queue: VecDeque<usize>,
    /// Connections waiting for the fan-out to catch up before they read more requests.
    paused: Vec<usize>,
    /// TLS connections with handshake bytes to read that this turn's budget did not cover,
    /// and what is left of the budget.
    handshakes: VecDeque<usize>,
    handshakes_left: usize,
    inbox: Vec<Message>,
    failed: Vec<(usize, io::Result<Flush>)>,
    next_serial: u64,
    started: Instant,
    accept_paused_until: Option<Instant>,
    accept_errors_unlogged: u64,
    accept_error_logged_at: Option<Instant>,
    next_housekeeping: Instant,
    /// Where the header-timeout scan of the connection table resumes; `None` between scans.
    timeout_scan: Option<usize>,
    heartbeats_pending: bool,
    /// Connections accepted since freed heap pages were last handed back to the kernel.
    accepted_since_trim: usize,
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
        // A loop that has not polled yet is not stuck: /livez counts from here.
        hub.worker_stats[index].turned();
        let now = Instant::now();
        Ok(Worker {
            index,
            poll,
            listener: Some(listener),
            accept_pending: false,
            conns: Slab::with_capacity(max_connections.min(RESERVED_CONNECTIONS)),
            max_connections,
            pool: ExchangePool::default(),
            topics: Topics::new(
                settings.retention,
                settings.topic_ttl_secs,
                settings.max_topics,
                hub.broker.fresh_horizon(),
            ),
            delivery: Delivery::new(settings.heartbeat.clone(), settings.heartbeat_every),
            replay: Replay::new(hub.broker.stream_start()),
            expiries: Expiries::default(),
            run_queue: VecDeque::new(),
            paused: Vec::new(),
            handshakes: VecDeque::new(),
            handshakes_left: HANDSHAKES_PER_TURN,
            inbox: Vec::new(),
            failed: Vec::new(),
            next_serial: 0,
            started: now,
            accept_paused_until: None,
            accept_errors_unlogged: 0,
            accept_error_logged_at: None,
            next_housekeeping: now + Duration::from_secs(1),
            timeout_scan: None,
            heartbeats_pending: false,
            accepted_since_trim: 0,
            rng: seed(index),
            hub,
            settings,
        })
    }

    fn stats(&self) -> &WorkerStats {
        &self.hub.worker_stats[self.index]
    }

    /// Seconds since the worker started: the clock of timeouts and topic ages.
    fn now(&self) -> u32 {
        self.started.elapsed().as_secs() as u32
    }

    fn has_work(&self) -> bool {
        !self.run_queue.is_empty()
            || !self.handshakes.is_empty()
            || self.accept_pending
            || self.delivery.has_work()
            || self.replay.has_work()
            || self.heartbeats_pending
            || self.timeout_scan.is_some()
    }

    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = if self.has_work() {
                Duration::ZERO
            } else if !self.paused.is_empty() {
                // Waiting for another worker's fan-out to catch up.
                PAUSED_RECHECK
            } else {
                self.next_timer().saturating_duration_since(Instant::now())
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            self.stats().turned();
            self.handshakes_left = HANDSHAKES_PER_TURN;
            // Events published before this wake-up are applied before any request is read, so a
            // client that was told an id finds its event here (see replay.rs).
            self.deliver_messages();
            let queued = self.run_queue.len();
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_pending = true,
                    WAKER => {}
                    Token(token) => {
                        let ready = Ready {
                            readable: event.is_readable()
                                || event.is_read_closed()
                                || event.is_error(),
                            writable: event.is_writable(),
                        };
                        self.on_ready(token, ready);
                    }
                }
            }
            if self.hub.is_shutting_down() {
                self.shut_down();
                return Ok(());
            }
            // Events this worker published during this turn: a publisher does not wake its own
            // loop (mailbox.rs), so they are applied now, not at the next wake-up.
            self.deliver_messages();
            self.run_posted(queued);
            self.run_timers();
        }
    }

    fn next_timer(&self) -> Instant {
        let mut next = self.next_housekeeping;
        if let Some(at) = self.delivery.next_heartbeat(Instant::now()) {
            next = next.min(at);
        }
        if let Some(at) = self.accept_paused_until {
            next = next.min(at);
        }
        next
    }

    /// The work queued by earlier turns, each kind within its budget.
    fn run_posted(&mut self, queued: usize) {
        for _ in 0..queued {
            let Some(token) = self.run_queue.pop_front() else {
                break;
            };
            self.drive(token, Ready::default());
        }
        while self.handshakes_left > 0 {
            let Some(token) = self.handshakes.pop_front() else {
                break;
            };
            if self.conns.contains(token) {
                self.handshakes_left -= 1;
                let ready = Ready {
                    readable: true,
                    writable: true,
                };
                self.drive(token, ready);
            }
        }
        if self.accept_pending && self.accept_paused_until.is_none() {
            self.accept_some();
        }
        let mut sent = 0;
        let mut failed = std::mem::take(&mut self.failed);
        self.delivery.run(
            &mut self.conns,
            &mut self.topics,
            WRITES_PER_TURN,
            &mut sent,
            &mut failed,
        );
        self.replay.run(
            &mut self.conns,
            &mut self.topics,
            &self.hub.broker,
            self.index,
            REPLAYS_PER_TURN,
            &mut sent,
            &mut failed,
        );
        self.stats().bytes_sent.fetch_add(sent, Relaxed);
        self.settle(failed);
        self.publish_behind();
        if !self.delivery.is_behind() && !self.hub.fanout_behind() {
            self.run_queue.extend(self.paused.drain(..));
        }
    }

    /// Tells the other workers whether this one's fan-out is behind (see `Hub::fanout_behind`).
    fn publish_behind(&self) {
        let behind = self.delivery.is_behind();
        if behind != self.stats().behind.load(Relaxed) {
            self.stats().behind.store(behind, Relaxed);
        }
    }

    /// Closes the subscribers a pass could not write to; keeps the buffer for reuse.
    fn settle(&mut self, mut failed: Vec<(usize, io::Result<Flush>)>) {
        for (token, outcome) in failed.drain(..) {
            // A pass may find a connection behind more than once (a multi-topic connection in
            // each of its topics' passes, a topic's rerun): it is closed, and counted, once.
            if !self.conns.contains(token) {
                continue;
            }
            match outcome {
                Ok(Flush::CaughtUp | Flush::Blocked) => {}
                Ok(Flush::FellBehind) => {
                    self.stats().slow_dropped.fetch_add(1, Relaxed);
                    log::debug!(
                        "subscriber {token} fell behind retained history; disconnecting it"
                    );
                    self.close(token);
                }
                Err(e) => {
                    log::debug!("subscriber {token}: {e}");
                    self.close(token);
                }
            }
        }
        self.failed = failed;
    }

    // ---- accepting ---------------------------------------------------------------------------

    fn accept_some(&mut self) {
        for _ in 0..ACCEPTS_PER_TURN {
            let Some(listener) = &self.listener else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => {
                    self.stats().accepted.fetch_add(1, Relaxed);
                    self.accepted_since_trim += 1;
                    let peer = Peer {
                        loopback: peer.ip().to_canonical().is_loopback(),
                    };
                    self.admit(stream, peer);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.accept_pending = false;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {}
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

    fn admit(&mut self, stream: TcpStream, peer: Peer) {
        let now = self.now();
        let over_limit = self.conns.len() >= self.max_connections;
        // Refused connections linger briefly (so the 503 is read, not reset); their number is
        // bounded too, past which they are simply closed. Over TLS the 503 would cost a
        // handshake, the most expensive thing a connection asks for: it is simply closed.
        if over_limit
            && (self.conns.len() >= self.max_connections + self.max_connections / 16 + 16
                || self.settings.tls.is_some())
        {
            self.hub.worker_stats[self.index].reject(RejectReason::MaxConnections);
            return;
        }
        let mut stream = match Transport::new(stream, peer, self.settings.tls.as_deref()) {
            Ok(stream) => stream,
            Err(e) => {
                log::warn!("{e}");
                return;
            }
        };
        let socket = socket2::SockRef::from(&*stream.socket());
        let _ = socket.set_nodelay(true);
        if self.settings.send_buffer > 0 {
            let _ = socket.set_send_buffer_size(self.settings.send_buffer);
        }
        let entry = self.conns.vacant_entry();
        let token = entry.key();
        if let Err(e) = self.poll.registry().register(
            stream.socket(),
            Token(token),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            log::warn!("could not register a new connection: {e}");
            return;
        }
        self.hub.worker_stats[self.index]
            .connections
            .fetch_add(1, Relaxed);
        if over_limit {
            self.hub.worker_stats[self.index].reject(RejectReason::MaxConnections);
            log::debug!("refusing a connection: at --max-connections");
            let refusal = Refusal::new(
                Rejection::new(503, "server at connection limit"),
                "Retry-After: 5\r\n".into(),
            );
            entry.insert(Connection::refused(stream, now, &refusal, &mut self.pool));
            self.drive(token, Ready::default());
        } else {
            entry.insert(Connection::new(stream, now));
        }
    }

    // ---- connections -------------------------------------------------------------------------

    fn on_ready(&mut self, token: usize, ready: Ready) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        match conn.has_subscribed() {
            true => {
                if ready.readable {
                    if let Some(why) = conn.check_subscriber_input() {
                        log::debug!("subscriber {token}: {why}; closing");
                        if why == "sent bytes after its request" {
                            self.stats().reject(RejectReason::SubscriberInput);
                        }
                        self.close(token);
                        return;
                    }
                }
                if ready.writable && conn.is_live_subscriber() {
                    self.flush_subscriber(token);
                }
            }
            false if ready.readable && conn.stream().is_handshaking() => {
                // A handshake storm must not hold the loop: a few handshake steps per turn,
                // the others in arrival order on the next turns (edge-triggered: queued, or
                // their readiness would be lost).
                if self.handshakes_left == 0 {
                    self.handshakes.push_back(token);
                } else {
                    self.handshakes_left -= 1;
                    self.drive(token, ready);
                }
            }
            false => self.drive(token, ready),
        }
    }

    /// Runs a connection's HTTP machine and carries out what it asks for.
    fn drive(&mut self, token: usize, ready: Ready) {
        let now = self.now();
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        let mut handler = Handler {
            index: self.index,
            hub: &self.hub,
            settings: &self.settings,
            topics: &mut self.topics,
            now,
            next_serial: &mut self.next_serial,
            busy: self.delivery.is_behind() || self.hub.fanout_behind(),
        };
        match conn.drive(now, ready, &mut handler, token, &mut self.pool) {
            Drive::Wait => {}
            Drive::Again => self.run_queue.push_back(token),
            Drive::Paused => self.paused.push(token),
            Drive::Close => self.close(token),
            Drive::Subscribe(to, preamble) => self.subscribe(token, to, preamble),
            Drive::SubscribeRefused(to) => {
                self.stats().reject(RejectReason::SubscriberInput);
                for &topic in &to.topics {
                    self.topics.unsubscribed(topic, now);
                }
                self.close(token);
            }
        }
    }

    /// Makes a connection a subscriber: links it (or each of its members) at its topic's end,
    /// or parks it for replay; then writes the stream head.
    fn subscribe(&mut self, token: usize, to: SubscribeTo, mut preamble: Vec<u8>) {
        let last_seen = match to.resume {
            Resume::Live => None,
            Resume::After(id) => Some(Some(id)),
            Resume::Unplaceable => Some(None),
        };
        let conn = &mut self.conns[token];
        match (last_seen, &to.topics[..]) {
            (None, &[topic]) => {
                let end = self.topics.get(topic).end();
                conn.set_state(State::Subscriber(Subscriber::new(topic, end)));
                let list = self.topics.get_mut(topic).subscribers_mut();
                list.link(&mut self.conns, token as u32);
            }
            (None, topics) => {
                let members = topics
                    .iter()
                    .map(|&topic| Subscriber::new(topic, self.topics.get(topic).end()))
                    .collect();
                conn.set_state(State::Multi(members));
                for (index, &topic) in topics.iter().enumerate() {
                    let list = self.topics.get_mut(topic).subscribers_mut();
                    list.link(&mut self.conns, member_node(token, index));
                }
            }
            (Some(last_seen), topics) => {
                conn.set_state(match topics {
                    &[topic] => State::Parked(Parked::new(topic, last_seen)),
                    _ => State::ParkedMulti(Box::new(ParkedMulti::new(topics.into(), last_seen))),
                });
                for &topic in topics {
                    self.topics.get_mut(topic).subscribers_mut().add_parked();
                }
                self.replay.park(token);
            }
        }
        self.stats().subscribers.fetch_add(1, Relaxed);
        if let Some(exp) = to.expires_at_unix {
            self.expiries.add(token, exp);
        }
        preamble.extend_from_slice(&to.head);
        // A fresh socket's send buffer is empty, so a head of a few hundred bytes goes out whole;
        // if it does not, the client is already gone or misbehaving.
        match write_some(self.conns[token].stream(), &[IoSlice::new(&preamble)]) {
            Ok(Some(n)) if n == preamble.len() => {}
            outcome => {
                log::debug!("connection {token}: could not write the stream head ({outcome:?})");
                self.close(token);
            }
        }
    }

    fn flush_subscriber(&mut self, token: usize) {
        let mut sent = 0;
        let Some(outcome) = self.conns[token].flush(&self.topics, &mut sent) else {
            return;
        };
        self.stats().bytes_sent.fetch_add(sent, Relaxed);
        let mut failed = std::mem::take(&mut self.failed);
        failed.push((token, outcome));
        self.settle(failed);
    }

    // ---- the mailbox -------------------------------------------------------------------------

    /// Applies the mailbox: appends every event to its topic's log and queues the topic for a
    /// pass (a burst of events leaves in one write per subscriber); answers publishes the broker
    /// has settled; merges history.
    fn deliver_messages(&mut self) {
        let mut inbox = std::mem::take(&mut self.inbox);
        self.hub.mailboxes.take(self.index, &mut inbox);
        let now = self.now();
        for message in inbox.drain(..) {
            match message {
                Message::Event(event) => {
                    let topic = self.topics.for_event(&event.topic, now);
                    self.topics.append(topic, event.id, &event.encoded, now);
                    self.delivery.touch(&mut self.topics, topic);
                    self.replay.event_arrived(event.id);
                }
                Message::PublishDone {
                    token,
                    serial,
                    outcome,
                } => self.publish_done(token, serial, outcome),
                Message::History { topic, fetched } => {
                    self.replay
                        .history_arrived(&mut self.topics, &topic, &fetched);
                }
                Message::Gap { after } => {
                    // Placed right after the last event this process had, so a client that
                    // reconnects with that id is told too.
                    let marker = after.after();
                    for topic in self.topics.subscribed() {
                        let gap = encode_gap(self.topics.get(topic).name());
                        self.topics.append(topic, marker, &gap, now);
                        self.delivery.touch(&mut self.topics, topic);
                    }
                }
            }
        }
        self.inbox = inbox;
        self.replay.stream_advanced();
        self.publish_behind();
    }

    /// The broker answered a publish that connection `token` waits for: answer it, then go on
    /// with the requests it sent meanwhile.
    fn publish_done(
        &mut self,
        token: usize,
        serial: u64,
        outcome: Result<crate::event_log::EventId, String>,
    ) {
        let Some(exchange) = self.conns.get_mut(token).and_then(Connection::exchange_mut) else {
            return;
        };
        let Some((cors, keep_alive)) = exchange.broker_answered(serial) else {
            return;
        };
        let failed = outcome.is_err();
        answer_published(exchange.output_mut(), outcome, keep_alive, &cors);
        if failed {
            self.stats().reject(RejectReason::Unavailable);
        }
        self.run_queue.push_back(token);
    }

    // ---- timers -------------------------------------------------------------------------------

    fn run_timers(&mut self) {
        let now = Instant::now();
        if self.accept_paused_until.is_some_and(|at| at <= now) {
            self.accept_paused_until = None;
            self.accept_pending = true;
        }
        if self
            .delivery
            .next_heartbeat(now)
            .is_some_and(|at| at <= now)
            || self.heartbeats_pending
        {
            let mut sent = 0;
            let mut failed = std::mem::take(&mut self.failed);
            let clock = self.now();
            self.heartbeats_pending = self.delivery.heartbeats(
                &mut self.conns,
                &self.topics,
                clock,
                now,
                HEARTBEATS_PER_TURN,
                &mut sent,
                &mut failed,
            );
            self.hub.worker_stats[self.index]
                .bytes_sent
                .fetch_add(sent, Relaxed);
            self.settle(failed);
        }
        if self.next_housekeeping <= now {
            self.next_housekeeping = now + Duration::from_secs(1);
            self.timeout_scan.get_or_insert(0);
            self.replay.retry();
            self.end_expired_streams();
            let forgotten = self.topics.expire(self.now(), TOPIC_EXPIRY_PER_TURN);
            if forgotten > 0 {
                log::debug!("forgot {forgotten} unused topic(s)");
            }
            self.stats().topics.store(self.topics.len() as i64, Relaxed);
            self.trim_heap();
        }
        if self.timeout_scan.is_some() {
            self.expire_requests();
        }
    }

    /// Closes connections that have not completed a request within --header-timeout
    /// (slowloris), and lingering ones past their linger time. A scan of the table, a slice per
    /// turn: a deadline queue would cost memory for every connection.
    fn expire_requests(&mut self) {
        let Some(mut cursor) = self.timeout_scan else {
            return;
        };
        let now = self.now();
        let timeout = self.settings.header_timeout_secs;
        let end = (cursor + TIMEOUT_SCAN_PER_TURN).min(self.conns.capacity());
        while cursor < end {
            let token = cursor;
            cursor += 1;
            let overdue = |conn: &Connection| {
                conn.waiting_since().is_some_and(|(since, lingering)| {
                    since.saturating_add(if lingering { LINGER_SECS } else { timeout }) <= now
                })
            };
            if !self.conns.get(token).is_some_and(overdue) {
                continue;
            }
            // On a starved machine the request may be sitting unread in the socket (its readiness
            // event not handled yet): read it first, and only close if it is still incomplete.
            let lingering = self.conns[token].waiting_since().is_some_and(|(_, l)| l);
            if !lingering {
                self.drive(
                    token,
                    Ready {
                        readable: true,
                        writable: true,
                    },
                );
            }
            if self.conns.get(token).is_some_and(overdue) {
                if !lingering && self.conns[token].stream().handshake_timed_out() {
                    // Counted as a TLS handshake failure when it closes.
                    log::debug!("connection {token}: no TLS handshake within {timeout} s; closing");
                } else if !lingering {
                    log::debug!(
                        "connection {token}: no complete request within {timeout} s; closing"
                    );
                    self.stats().reject(RejectReason::HeaderTimeout);
                }
                self.close(token);
            }
        }
        self.timeout_scan = (cursor < self.conns.capacity()).then_some(cursor);
    }

    /// Ends the streams whose token has expired; their EventSource reconnects with whatever
    /// credentials the application holds by then.
    fn end_expired_streams(&mut self) {
        if self.expiries.is_empty() {
            return;
        }
        let mut due = Vec::new();
        self.expiries.due(now_ms() / 1000, &mut due);
        for token in due {
            log::debug!("subscriber {token}: its token expired; ending the stream");
            self.close(token);
        }
    }

    /// After a burst of new connections, hands freed heap pages back to the kernel. Each request
    /// allocates and frees buffers (a token's verification a good deal more) between the
    /// long-lived allocations of the connections it creates; the allocator keeps the pages that
    /// held them, so a connection storm would leave its transient memory behind as resident.
    /// `malloc_trim` walks the free chunks (a fraction of a millisecond here), so it runs at most
    /// once a second, and only after a burst.
    fn trim_heap(&mut self) {
        const BURST: usize = 1024;
        if self.accepted_since_trim >= BURST {
            self.accepted_since_trim = 0;
            // SAFETY: malloc_trim only returns free memory to the kernel.
            unsafe { libc::malloc_trim(0) };
        }
    }

    // ---- closing ------------------------------------------------------------------------------

    fn close(&mut self, token: usize) {
        let Some(mut conn) = self.conns.try_remove(token) else {
            return;
        };
        self.expiries.forget(token);
        let now = self.now();
        match conn.state() {
            State::Subscriber(sub) => {
                let sub = *sub;
                let topic = self.topics.get_mut(sub.topic);
                topic
                    .subscribers_mut()
                    .unlink(&mut self.conns, token as u32, &sub);
                self.topics.unsubscribed(sub.topic, now);
                self.stats().subscribers.fetch_sub(1, Relaxed);
            }
            State::Parked(parked) => {
                let topic = parked.topic();
                self.topics.get_mut(topic).subscribers_mut().remove_parked();
                self.topics.unsubscribed(topic, now);
                self.stats().subscribers.fetch_sub(1, Relaxed);
            }
            State::Multi(members) => {
                for (index, member) in members.iter().enumerate() {
                    let topic = self.topics.get_mut(member.topic());
                    let node = member_node(token, index);
                    topic
                        .subscribers_mut()
                        .unlink(&mut self.conns, node, member);
                    self.topics.unsubscribed(member.topic(), now);
                }
                self.stats().subscribers.fetch_sub(1, Relaxed);
            }
            State::ParkedMulti(parked) => {
                for &topic in parked.topics() {
                    self.topics.get_mut(topic).subscribers_mut().remove_parked();
                    self.topics.unsubscribed(topic, now);
                }
                self.stats().subscribers.fetch_sub(1, Relaxed);
            }
            State::AwaitingRequest { .. } | State::Http(_) => {}
        }
        // Over TLS, the peer learns that the stream ended here and was not cut (RFC 8446 §6.1).
        conn.stream().close_notify();
        if let Some(failure) = conn.stream().handshake_failure() {
            self.stats().tls_handshake_failures[failure as usize].fetch_add(1, Relaxed);
        }
        let _ = self.poll.registry().deregister(conn.stream().socket());
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
            if conn.is_live_subscriber() {
                let mut sent = 0;
                if let Some(Ok(Flush::CaughtUp)) = conn.flush(&self.topics, &mut sent) {
                    let retry = format!("retry: {}\n\n", 1000 + xorshift(&mut self.rng) % 4000);
                    if let Ok(Flush::CaughtUp) = conn.send_whole(retry.as_bytes(), &mut sent) {
                        told += 1;
                    }
                }
                conn.stream().close_notify();
            } else if let Some(exchange) = conn.exchange_mut() {
                let output = exchange.take_output();
                if !output.is_empty() {
                    let _ = write_some(conn.stream(), &[IoSlice::new(&output)]);
                }
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
