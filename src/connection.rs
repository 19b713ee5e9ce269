//! A connection's life: one explicit state machine (docs/design.md, "A connection's life",
//! draws it; the invariants at the end of that section are pinned by tests).
//!
//! ```text
//! accept ─▶ AwaitingRequest ─(bytes)─▶ Http(Exchange) ──────────────────────────────┐
//!              ▲   no buffer at all      │ ReadingHead ─▶ ReadingBody ─▶ answered    │
//!              └──(all answered, idle)───┘      │             │          │          │
//!                                               └── refused ──┴──▶ Lingering ─▶ closed
//!                                                                     (answer sent, write
//!                                                                      side shut, input
//!                                                                      drained, bounded)
//!              GET /events/<t> ─▶ Subscriber ─────────────────────────────────▶ closed
//!              with Last-Event-ID ─▶ Parked ─(replay can start)─▶ Subscriber
//!              GET /events?topic=a&topic=b ─▶ Multi ──────────────────────────▶ closed
//!              with Last-Event-ID ─▶ ParkedMulti ─(replay can start)─▶ Multi
//! ```
//!
//! - **AwaitingRequest** holds only when the wait began, for `--header-timeout`.
//! - **Http** holds an [`Exchange`]: the input read so far with the parse's progress (how far
//!   the search for the end of the head went, the parsed head and its route, the chunked
//!   decoder's state), and the output not yet written. Nothing is parsed or copied twice: bytes
//!   are read straight into the input, a head is parsed once, a chunked body is decoded in
//!   place. Its phase is derived from that progress ([`Exchange::phase`]). Exchanges come from
//!   a small per-worker pool and go back to it, so a connection holds buffers only while it is
//!   in the middle of something.
//! - **Subscriber** and **Parked** are the 20-byte subscriber states (`subscribers.rs`,
//!   `replay.rs`). **Multi** is a connection holding several topics: a boxed slice of 20-byte
//!   members, one per topic; **ParkedMulti** its parked form (the topics and the id to resume
//!   after), which lives only until its replay starts.
//!
//! Every wake-up of a connection is budgeted ([`Budget`]): so many bytes read, so many requests
//! answered; a connection with work left goes on the worker's run queue and continues next
//! turn. A connection whose unsent output is over [`OUTPUT_CAP`] reads and parses nothing more
//! until its client has read: pipelining requests without reading the answers holds at most
//! one request and one cap of output.

use crate::event_log::EventLog;
use crate::http::{ChunkedDecoder, Framing, Head, HeadScan, Request, MAX_HEAD_BYTES};
use crate::requests::{Answer, Refusal, Requests, Route, SubscribeTo};
use crate::subscribers::{all_caught_up, flush_merged, write_some, Flush, Subscriber};
use crate::topics::{TopicId, Topics};
use crate::transport::Transport;
use std::io::{self, IoSlice};

/// Unsent output past which a connection reads and parses nothing more until it drains.
pub const OUTPUT_CAP: usize = 2 * 1024;
/// Bytes read from one connection per wake-up.
const READ_BUDGET: usize = 64 * 1024;
/// Requests answered on one connection per wake-up.
const REQUESTS_BUDGET: u32 = 16;
/// Input grows by at most this much per read, so a slow client's buffer is the size of what it
/// sent, not of the budget: small while a head is awaited (most heads are a few hundred bytes,
/// and pipelined requests wait in the socket, not here), larger for a body.
const HEAD_CHUNK: usize = 2048;
const BODY_CHUNK: usize = 16 * 1024;
/// How long, and how many bytes, a closing connection's input is drained after its last
/// answer, so that the close does not turn into a reset that destroys the answer in flight
/// (RFC 9112 §9.6).
pub const LINGER_SECS: u32 = 2;
const LINGER_BYTES: usize = 64 * 1024;
/// Exchanges kept for reuse per worker, and the capacity past which a buffer is not kept.
const POOL_SIZE: usize = 64;
const POOL_KEEP_BYTES: usize = 16 * 1024;

pub struct Connection {
    /// The socket, the peer, and the TLS session on an HTTPS listener (`transport.rs`).
    stream: Transport,
    state: State,
}

pub enum State {
    /// Waiting for (the next) request; nothing of it has been kept yet.
    AwaitingRequest {
        since: u32,
    },
    Http(Box<Exchange>),
    Subscriber(Subscriber),
    /// Subscribed with a Last-Event-ID (the head is sent), waiting until its replay can start;
    /// counted as a subscriber of the topic meanwhile.
    Parked(crate::replay::Parked),
    /// Subscribed to several topics: one member per topic, each linked into its topic's list.
    Multi(Box<[Subscriber]>),
    /// Several topics with a Last-Event-ID, waiting until the replay can start; counted as a
    /// subscriber of each topic meanwhile.
    ParkedMulti(Box<crate::replay::ParkedMulti>),
}

/// Where an exchange stands, derived from its progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    ReadingHead,
    ReadingBody,
    /// Waiting for the broker's answer to a publish; reads nothing meanwhile, so answers stay
    /// in request order.
    AwaitingBroker,
    /// Writing answers; over [`OUTPUT_CAP`], nothing more is read until it drains.
    Writing,
    /// The last answer is out (or going out); the write side is shut after it and the input is
    /// drained, within bounds.
    Lingering,
}

/// One client's request/response traffic in progress.
#[derive(Debug, Default)]
pub struct Exchange {
    input: Vec<u8>,
    /// Where the current request starts in `input`; what is before it is answered.
    start: usize,
    scan: HeadScan,
    /// The current request's head and route, once the head is whole and admitted.
    head: Option<(Head, Route)>,
    chunked: ChunkedDecoder,
    output: Vec<u8>,
    /// When the client began owing us a request, for --header-timeout.
    since: u32,
    continue_sent: bool,
    /// A publish handed to the broker: its serial, and the CORS headers its answer carries.
    awaiting: Option<(u64, String)>,
    close_after_output: bool,
    lingering_since: Option<u32>,
    lingered: usize,
    peer_closed: bool,
    /// Writing failed (the client is gone): requests it sent before going are still carried out
    /// (a publisher may send and close at once), but nothing is written or read any more.
    write_failed: bool,
    /// The last read stopped before WouldBlock (budget or cap): the socket may hold more, and
    /// edge-triggered readiness will not say so again.
    unread: bool,
}

impl Exchange {
    pub fn phase(&self) -> Phase {
        if self.lingering_since.is_some() || (self.close_after_output && self.awaiting.is_none()) {
            Phase::Lingering
        } else if self.awaiting.is_some() {
            Phase::AwaitingBroker
        } else if self.output.len() > OUTPUT_CAP {
            Phase::Writing
        } else if self.head.is_some() {
            Phase::ReadingBody
        } else {
            Phase::ReadingHead
        }
    }

    /// When this exchange began waiting for its client, if it is (for --header-timeout), or
    /// began lingering.
    pub fn waiting_since(&self) -> Option<u32> {
        match self.phase() {
            Phase::AwaitingBroker => None,
            // Until its last answer is out, a closing connection is timed like any other: a
            // client that never reads its refusal is not kept forever.
            _ => Some(self.lingering_since.unwrap_or(self.since)),
        }
    }

    fn is_idle(&self) -> bool {
        self.start == self.input.len()
            && self.output.is_empty()
            && self.head.is_none()
            && self.awaiting.is_none()
            && !self.close_after_output
            && self.lingering_since.is_none()
            && !self.unread
    }

    fn pending_input(&self) -> &[u8] {
        &self.input[self.start..]
    }

    /// Drops answered input; moves the rest to the front only when that is cheap relative to
    /// what was answered, so pipelined requests cost no repeated moves.
    fn compact(&mut self) {
        if self.start == self.input.len() {
            self.input.clear();
            self.start = 0;
        } else if self.start >= self.input.len() - self.start {
            self.input.drain(..self.start);
            self.start = 0;
        }
    }

    fn refuse(&mut self, refusal: &Refusal) {
        refusal.write(&mut self.output);
        self.close_after_output = true;
    }

    /// Appends an answer the worker wrote for this connection (a broker's late reply).
    pub fn output_mut(&mut self) -> &mut Vec<u8> {
        &mut self.output
    }

    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// The broker answered publish `serial`: if this exchange waits for it, returns the CORS
    /// headers for the answer and whether the connection stays open after it.
    pub fn broker_answered(&mut self, serial: u64) -> Option<(String, bool)> {
        let (_, cors) = self.awaiting.take_if(|(s, _)| *s == serial)?;
        Some((cors, !self.close_after_output))
    }
}

/// Exchanges kept for reuse, so that a connection's buffers are allocated once per worker, not
/// once per request.
#[derive(Default)]
pub struct ExchangePool {
    // Boxed: an exchange moves into and out of a connection's state whole, without a copy.
    #[allow(clippy::vec_box)]
    free: Vec<Box<Exchange>>,
}

impl ExchangePool {
    fn take(&mut self, since: u32) -> Box<Exchange> {
        let mut exchange = self.free.pop().unwrap_or_default();
        exchange.since = since;
        exchange
    }

    fn give_back(&mut self, mut exchange: Box<Exchange>) {
        if self.free.len() >= POOL_SIZE
            || exchange.input.capacity() > POOL_KEEP_BYTES
            || exchange.output.capacity() > POOL_KEEP_BYTES
        {
            return;
        }
        let (mut input, mut output) = (
            std::mem::take(&mut exchange.input),
            std::mem::take(&mut exchange.output),
        );
        input.clear();
        output.clear();
        *exchange = Exchange {
            input,
            output,
            ..Exchange::default()
        };
        self.free.push(exchange);
    }
}

/// What the worker does with a connection after driving it.
pub enum Drive {
    /// Wait for its next readiness event (or the broker's answer).
    Wait,
    /// It has work left that its budget did not cover: drive it again next turn.
    Again,
    /// It may have requests to read, but the worker's fan-out is behind: drive it again once
    /// the fan-out has caught up.
    Paused,
    Close,
    /// Make it a subscriber: write `preamble` (answers to requests pipelined before it), then
    /// the stream head.
    Subscribe(SubscribeTo, Vec<u8>),
    /// It asked to subscribe but sent bytes after the request: a stream never ends, so they
    /// could never be answered. The worker gives up the subscription and closes it.
    SubscribeRefused(SubscribeTo),
}

/// Readiness reported by the poll for this wake-up.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ready {
    pub readable: bool,
    pub writable: bool,
}

impl Connection {
    pub fn new(stream: Transport, now: u32) -> Connection {
        Connection {
            stream,
            state: State::AwaitingRequest { since: now },
        }
    }

    /// A connection refused before it could ask anything (over --max-connections): it gets
    /// `refusal`, then lingers like any other refused connection.
    pub fn refused(
        stream: Transport,
        now: u32,
        refusal: &Refusal,
        pool: &mut ExchangePool,
    ) -> Connection {
        let mut exchange = pool.take(now);
        exchange.refuse(refusal);
        Connection {
            stream,
            state: State::Http(exchange),
        }
    }

    pub fn stream(&mut self) -> &mut Transport {
        &mut self.stream
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn set_state(&mut self, state: State) {
        self.state = state;
    }

    /// The subscriber a list node of this connection names: the connection's own, or one of
    /// its members.
    pub fn node_mut(&mut self, member: Option<usize>) -> Option<&mut Subscriber> {
        match (&mut self.state, member) {
            (State::Subscriber(sub), None) => Some(sub),
            (State::Multi(members), Some(index)) => members.get_mut(index),
            _ => None,
        }
    }

    /// Whether this connection is a subscriber being written to (not parked, not HTTP).
    pub fn is_live_subscriber(&self) -> bool {
        matches!(self.state, State::Subscriber(_) | State::Multi(_))
    }

    /// Whether this connection has subscribed, parked or not: it must send nothing more.
    pub fn has_subscribed(&self) -> bool {
        !matches!(self.state, State::AwaitingRequest { .. } | State::Http(_))
    }

    /// Writes what the subscriber has pending from its topics' logs; `None` if this connection
    /// is not a live subscriber.
    pub fn flush(&mut self, topics: &Topics, bytes_sent: &mut u64) -> Option<io::Result<Flush>> {
        let logs = |topic: TopicId| -> Option<&EventLog> { topics.get(topic).log() };
        match &mut self.state {
            State::Subscriber(sub) => {
                Some(sub.flush(&mut self.stream, logs(sub.topic), bytes_sent))
            }
            State::Multi(members) => {
                Some(flush_merged(members, &mut self.stream, logs, bytes_sent))
            }
            _ => None,
        }
    }

    /// Sends bytes that are not in any log (a heartbeat, gap notices), whole or not at all.
    pub fn send_whole(&mut self, bytes: &[u8], bytes_sent: &mut u64) -> io::Result<Flush> {
        crate::subscribers::send_whole(&mut self.stream, bytes, bytes_sent)
    }

    /// Whether a live subscriber is owed a heartbeat: it has nothing pending, and none of its
    /// topics had an event for `quiet_secs` (a topic with an event wrote to all its caught-up
    /// subscribers; one with events pending is being written to anyway).
    pub fn wants_heartbeat(&self, topics: &Topics, clock_secs: u32, quiet_secs: u32) -> bool {
        let quiet = |topic: TopicId| topics.get(topic).quiet_for(clock_secs) >= quiet_secs;
        let logs = |topic: TopicId| -> Option<&EventLog> { topics.get(topic).log() };
        match &self.state {
            State::Subscriber(sub) => quiet(sub.topic) && sub.is_caught_up(logs(sub.topic)),
            State::Multi(members) => {
                members.iter().all(|m| quiet(m.topic())) && all_caught_up(members, logs)
            }
            _ => false,
        }
    }

    pub fn exchange_mut(&mut self) -> Option<&mut Exchange> {
        match &mut self.state {
            State::Http(exchange) => Some(exchange),
            _ => None,
        }
    }

    /// When this connection began waiting for its client, if it is (for --header-timeout), and
    /// whether it is lingering (then the shorter linger time applies).
    pub fn waiting_since(&self) -> Option<(u32, bool)> {
        match &self.state {
            State::AwaitingRequest { since } => Some((*since, false)),
            State::Http(exchange) => exchange
                .waiting_since()
                .map(|since| (since, exchange.lingering_since.is_some())),
            _ => None,
        }
    }

    /// A subscriber has nothing to say after its request: the response never ends, so no later
    /// request could ever be answered. Reading only tells whether it is gone. Returns the
    /// reason to close it, if it must be closed.
    pub fn check_subscriber_input(&mut self) -> Option<&'static str> {
        let mut sink = [0u8; 64];
        loop {
            return match self.stream.read(&mut sink) {
                Ok(0) => Some("closed by the client"),
                Ok(_) => Some("sent bytes after its request"),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => Some("connection error"),
            };
        }
    }

    /// Runs the HTTP side of the machine as far as this wake-up's budget and the socket allow.
    pub fn drive(
        &mut self,
        now: u32,
        ready: Ready,
        requests: &mut impl Requests,
        token: usize,
        pool: &mut ExchangePool,
    ) -> Drive {
        let mut exchange =
            match std::mem::replace(&mut self.state, State::AwaitingRequest { since: now }) {
                State::AwaitingRequest { since } => {
                    if !ready.readable {
                        self.state = State::AwaitingRequest { since };
                        // A TLS handshake flight the socket did not take whole goes on now.
                        return match self.stream.flush_pending() {
                            Ok(_) => Drive::Wait,
                            Err(_) => Drive::Close,
                        };
                    }
                    pool.take(since)
                }
                State::Http(exchange) => exchange,
                other => {
                    self.state = other;
                    return Drive::Wait;
                }
            };
        if ready.readable {
            exchange.unread = true;
        }
        let outcome = self.run(&mut exchange, now, requests, token);
        match outcome {
            Drive::Close => pool.give_back(exchange),
            Drive::Subscribe(..) | Drive::SubscribeRefused(_) => pool.give_back(exchange),
            Drive::Wait if exchange.is_idle() => {
                let since = exchange.since;
                pool.give_back(exchange);
                self.state = State::AwaitingRequest { since };
            }
            _ => self.state = State::Http(exchange),
        }
        outcome
    }

    fn run(
        &mut self,
        ex: &mut Exchange,
        now: u32,
        requests: &mut impl Requests,
        token: usize,
    ) -> Drive {
        let mut read_budget = READ_BUDGET;
        let mut request_budget = REQUESTS_BUDGET;
        loop {
            if ex.write_failed {
                ex.output.clear();
            } else if !ex.output.is_empty() {
                match write_some(&mut self.stream, &[IoSlice::new(&ex.output)]) {
                    Ok(Some(n)) => {
                        ex.output.drain(..n);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        log::debug!("connection {token}: {e}");
                        ex.write_failed = true;
                        ex.output.clear();
                    }
                }
            } else if let Err(e) = self.stream.flush_pending() {
                log::debug!("connection {token}: {e}");
                ex.write_failed = true;
            }
            if ex.write_failed
                && ex.awaiting.is_none()
                && (ex.close_after_output || ex.pending_input().is_empty())
            {
                return Drive::Close;
            }
            match ex.phase() {
                Phase::AwaitingBroker => return Drive::Wait,
                Phase::Writing => return Drive::Wait,
                Phase::Lingering => return self.linger(ex, now),
                Phase::ReadingHead | Phase::ReadingBody => {}
            }
            if requests.busy() {
                return Drive::Paused;
            }
            // Parse what has arrived.
            match self.parse(ex, requests, token, now, &mut request_budget) {
                Parsed::Progress => continue,
                Parsed::Subscribe(to) => {
                    if ex.start != ex.input.len() || ex.unread && self.has_more_input() {
                        log::debug!("connection {token}: bytes after a subscribe request; closing");
                        return Drive::SubscribeRefused(to);
                    }
                    return Drive::Subscribe(to, ex.take_output());
                }
                Parsed::OutOfBudget => return Drive::Again,
                Parsed::NeedInput => {}
            }
            if ex.write_failed {
                return Drive::Close;
            }
            if ex.peer_closed {
                // The client will send nothing more: answer what it asked, then close.
                if ex.output.is_empty() && ex.awaiting.is_none() {
                    return Drive::Close;
                }
                ex.close_after_output = true;
                continue;
            }
            if !ex.unread {
                return Drive::Wait;
            }
            if read_budget == 0 {
                return Drive::Again;
            }
            match self.read(ex, &mut read_budget, requests.max_body()) {
                Ok(true) => continue,
                Ok(false) => return Drive::Wait,
                Err(e) => {
                    log::debug!("connection {token}: {e}");
                    return Drive::Close;
                }
            }
        }
    }

    /// Whether the socket holds unread bytes (a subscribe request must be the last thing a
    /// client sends).
    fn has_more_input(&mut self) -> bool {
        self.stream.has_more_input()
    }

    /// Reads one chunk into the exchange's input, within the budget and the input cap, growing
    /// the input only by what arrives. Returns whether anything new arrived (or the client
    /// closed).
    fn read(&mut self, ex: &mut Exchange, budget: &mut usize, max_body: usize) -> io::Result<bool> {
        let room = input_cap(ex, max_body)
            .saturating_sub(ex.pending_input().len())
            .min(*budget);
        if room == 0 {
            // Nothing more fits until what is here is answered: stop reading (TCP pushes back on
            // the client) and keep `unread` so reading resumes once it fits.
            return Ok(false);
        }
        ex.compact();
        let mut got = 0;
        // Read into the stack, then keep only what arrived: a client that trickles bytes holds
        // the bytes it sent, not a read-sized buffer.
        let mut chunk = [0u8; BODY_CHUNK];
        let size = if ex.head.is_some() {
            BODY_CHUNK
        } else {
            HEAD_CHUNK
        };
        let want = room.min(size);
        let outcome = loop {
            match self.stream.read(&mut chunk[..want]) {
                Ok(0) => {
                    ex.peer_closed = true;
                    ex.unread = false;
                    break Ok(true);
                }
                // One chunk, then parse it: the input holds what the next request needs, not
                // everything the client has queued (`unread` stays set: more may be waiting).
                Ok(n) => {
                    // Exactly what arrived: a doubling buffer would hold up to twice the
                    // unanswered input of every connection in the middle of a request.
                    ex.input.reserve_exact(n);
                    ex.input.extend_from_slice(&chunk[..n]);
                    got = n;
                    break Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ex.unread = false;
                    break Ok(false);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        *budget -= got;
        outcome
    }

    /// Parses and answers what the input holds, within the request budget.
    fn parse(
        &mut self,
        ex: &mut Exchange,
        requests: &mut impl Requests,
        token: usize,
        now: u32,
        budget: &mut u32,
    ) -> Parsed {
        let max_body = requests.max_body();
        if ex.head.is_none() {
            let pending = &ex.input[ex.start..];
            if pending.is_empty() {
                return Parsed::NeedInput;
            }
            let head = match ex.scan.next(pending, max_body) {
                Ok(Some(head)) => head,
                Ok(None) => return Parsed::NeedInput,
                Err(rejection) => {
                    ex.refuse(&requests.rejected(rejection, None));
                    return Parsed::Progress;
                }
            };
            let request = Request::new(&head, pending, b"");
            match requests.screen(token, self.stream.peer(), &request) {
                Ok(route) => {
                    let send_continue =
                        head.expects_continue && !ex.continue_sent && !body_arrived(&head, pending);
                    ex.head = Some((head, route));
                    ex.chunked = ChunkedDecoder::default();
                    if send_continue {
                        // Out at once (the loop writes before it reads), or the client waits.
                        ex.output
                            .extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                        ex.continue_sent = true;
                        return Parsed::Progress;
                    }
                }
                Err(refusal) => {
                    // Refused on its head alone: the body is never read (nor 100 Continue sent).
                    ex.refuse(&refusal);
                    return Parsed::Progress;
                }
            }
        }
        let Some((head, _)) = &ex.head else {
            return Parsed::NeedInput;
        };
        // The body: in place, from where the last read left it.
        let start = ex.start;
        let (body_len, consumed) = match head.framing {
            Framing::Length(n) => {
                if ex.input.len() - start < head.len + n {
                    return Parsed::NeedInput;
                }
                (n, head.len + n)
            }
            Framing::Chunked => {
                let body_at = start + head.len;
                match ex.chunked.advance(&mut ex.input[body_at..], max_body) {
                    Ok(Some(done)) => (done.decoded, head.len + done.consumed),
                    Ok(None) => {
                        ex.chunked.squeeze(&mut ex.input, body_at);
                        return Parsed::NeedInput;
                    }
                    Err(rejection) => {
                        let refusal = requests.rejected(rejection, None);
                        ex.head = None;
                        ex.refuse(&refusal);
                        return Parsed::Progress;
                    }
                }
            }
        };
        if *budget == 0 {
            return Parsed::OutOfBudget;
        }
        *budget -= 1;
        let Some((head, route)) = ex.head.take() else {
            return Parsed::NeedInput;
        };
        let input = &ex.input[start..start + consumed];
        let request = Request::new(&head, input, &input[head.len..head.len + body_len]);
        let answer = requests.answer(token, route, &request, &mut ex.output);
        ex.start += consumed;
        ex.continue_sent = false;
        ex.since = now;
        match answer {
            Answer::Answered if head.keep_alive => Parsed::Progress,
            Answer::Answered | Answer::Close => {
                ex.close_after_output = true;
                Parsed::Progress
            }
            Answer::Pending(serial, cors) => {
                ex.awaiting = Some((serial, cors));
                if !head.keep_alive {
                    ex.close_after_output = true;
                }
                Parsed::Progress
            }
            Answer::Subscribe(to) => Parsed::Subscribe(to),
        }
    }

    /// After the last answer: shut the write side once it is out, then drain the input until the
    /// client closes, within a byte budget (the time limit is the housekeeping scan's).
    fn linger(&mut self, ex: &mut Exchange, now: u32) -> Drive {
        if !ex.output.is_empty() || self.stream.has_pending_output() {
            return Drive::Wait;
        }
        if ex.lingering_since.is_none() {
            ex.lingering_since = Some(now);
            ex.input = Vec::new();
            ex.start = 0;
            if self.stream.shutdown_write().is_err() || ex.peer_closed {
                return Drive::Close;
            }
            ex.unread = true;
        }
        let mut sink = [0u8; 4096];
        while ex.unread {
            match self.stream.read(&mut sink) {
                Ok(0) => return Drive::Close,
                Ok(n) => {
                    ex.lingered += n;
                    if ex.lingered > LINGER_BYTES {
                        return Drive::Close;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => ex.unread = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Drive::Close,
            }
        }
        Drive::Wait
    }
}

enum Parsed {
    Progress,
    NeedInput,
    OutOfBudget,
    Subscribe(SubscribeTo),
}

/// The most unanswered input an exchange holds: the current request whole (a head, or a head
/// and its body; a chunked body's framing is squeezed out as it is decoded, its trailers are
/// bounded like a head), and nothing of the next until it is answered.
fn input_cap(ex: &Exchange, max_body: usize) -> usize {
    match &ex.head {
        None => MAX_HEAD_BYTES + 1,
        Some((head, _)) => match head.framing {
            Framing::Length(n) => head.len + n,
            Framing::Chunked => head.len + max_body + MAX_HEAD_BYTES + 1024,
        },
    }
}

/// Whether the body (or part of it) has already arrived with the head: then the client did not
/// wait for 100 Continue, and sending it would only confuse.
fn body_arrived(head: &Head, pending: &[u8]) -> bool {
    pending.len() > head.len || head.framing == Framing::Length(0)
}
