//! One `subscribe` process: N subscriptions driven by one edge-triggered mio loop.
//!
//! A connection's lifecycle (`Phase`): `Idle` until its turn in the connect batch, then
//! `Connecting` (non-blocking connect from its source address) → `Sending` (the GET request) →
//! `Head` (awaiting the response head) → `Body` or `ChunkedBody` (counting what the SSE parser
//! finds) → `Dropped` if the server ends it. Any step before the body can end in `Failed`, counted
//! under a `Fail` reason. The run prints `ready ...` once no connection is left before `Body`,
//! then holds until a stop condition: a signal, --max-seconds, --hold, --expect-events met, or
//! every connection dropped.

use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use socket2::{Domain, Protocol, Socket, Type};

use crate::http::{parse_head, Dechunker, ProtocolError};
use crate::sse::SseParser;
use crate::summary::{Fail, Summary};
use crate::tls::{self, Io};
use crate::{
    expand, load_tokens, resolve, secs, source_ip, unix_micros, Failure, SubscribeArgs, SIGNAL,
};

/// Leaves headroom under the 20,000 open-file hard limit of the benchmark machines.
pub const MAX_PER_PROCESS: u64 = 19_000;

#[derive(Clone, Copy, Debug, Default, PartialEq)]
enum Phase {
    #[default]
    Idle,
    Connecting,
    Sending,
    Head,
    Body,
    ChunkedBody,
    Failed,
    Dropped,
}

/// One subscription; small on purpose, as it is multiplied by the connection count.
#[derive(Default)]
struct Conn {
    stream: Option<TcpStream>,
    phase: Phase,
    /// Request bytes written so far.
    sent: u16,
    dechunk: Dechunker,
    sse: SseParser,
    bytes: u64,
}

impl Conn {
    /// Runs body bytes through the chunk decoder, if chunked, and the SSE parser; `Ok(false)`
    /// once a chunked body has ended.
    fn feed_body(
        &mut self,
        data: &[u8],
        hb: &[u8],
        on_stamp: &mut impl FnMut(u64),
    ) -> Result<bool, ProtocolError> {
        self.bytes += data.len() as u64;
        if self.phase != Phase::ChunkedBody {
            self.sse.feed(data, hb, on_stamp);
            return Ok(true);
        }
        let sse = &mut self.sse;
        let ended = self
            .dechunk
            .feed(data, &mut |payload| sse.feed(payload, hb, on_stamp))?;
        Ok(ended.is_none())
    }
}

struct Subscriber<'a> {
    args: &'a SubscribeArgs,
    addr: SocketAddr,
    poll: Poll,
    conns: Vec<Conn>,
    read_buf: Vec<u8>,
    request: Vec<u8>,
    /// Tokens to present (--token, --token-file): connection i sends `tokens[i % len]`.
    tokens: Vec<String>,
    /// Response heads that arrived in pieces: rare, and only while connecting.
    partial_heads: HashMap<usize, Vec<u8>>,
    next_to_open: usize,
    /// Connections between socket() and an accepted response head.
    opening: usize,
    /// Open established connections that have not yet seen --expect-events events.
    below_target: u64,
    summary: Summary,
    /// --tls: how to make a connection's TLS state, and that state, indexed like `conns`
    /// (empty in a plain run).
    tls: Option<tls::Client>,
    tls_conns: Vec<Option<rustls::ClientConnection>>,
}

pub fn run_subscribe(a: &SubscribeArgs) -> Result<(), Failure> {
    let n = u64::from(a.connections);
    let addr = resolve(&a.addr)?;
    source_ip(a.source_base, 0)?;
    source_ip(a.source_base, (n - 1) / u64::from(a.per_source))?;
    if a.heartbeat_event.len() > 64 {
        return Err(usage!("--heartbeat-event is too long"));
    }
    ensure_fd_room(n)?;
    let tokens = load_tokens(a)?;
    let start = Instant::now();
    let mut sub = Subscriber {
        args: a,
        addr,
        poll: Poll::new().map_err(|e| fatal!("epoll: {e}"))?,
        conns: (0..n).map(|_| Conn::default()).collect(),
        read_buf: vec![0; 64 * 1024],
        request: Vec::new(),
        tokens,
        partial_heads: HashMap::new(),
        next_to_open: 0,
        opening: 0,
        below_target: 0,
        summary: Summary::default(),
        tls: tls::Client::from_args(&a.tls)?,
        tls_conns: Vec::new(),
    };
    if sub.tls.is_some() {
        sub.tls_conns = (0..n).map(|_| None).collect();
    }
    sub.run(start)?;
    let mut s = std::mem::take(&mut sub.summary);
    s.attempted = n;
    for c in &sub.conns {
        let events = u64::from(c.sse.events);
        s.events += events;
        s.heartbeats += u64::from(c.sse.heartbeats);
        s.comments += u64::from(c.sse.comments);
        s.bytes += c.bytes;
        if matches!(c.phase, Phase::Body | Phase::ChunkedBody | Phase::Dropped) {
            s.min_events = Some(s.min_events.map_or(events, |min| min.min(events)));
            s.max_events = s.max_events.max(events);
        }
    }
    s.elapsed_s = start.elapsed().as_secs_f64();
    s.rss_bytes = rss_bytes();
    let report = if a.report_raw {
        s.raw_line()
    } else {
        s.to_json()
    };
    println!("{report}");
    if s.established == 0 {
        return Err(fatal!("no connection to {addr} could be established"));
    }
    Ok(())
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:")?.strip_suffix("kB"));
    kib.and_then(|k| k.trim().parse::<u64>().ok()).unwrap_or(0) * 1024
}

/// Raises the soft open-file limit to the hard one and checks `sockets` fit under it.
fn ensure_fd_room(sockets: u64) -> Result<(), Failure> {
    if sockets > MAX_PER_PROCESS {
        return Err(usage!(
            "{sockets} connections in one process is over 19000; raise --processes"
        ));
    }
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a properly initialised struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    if lim.rlim_cur < sockets + 64 {
        return Err(usage!(
            "open-file limit {} is too low; raise --processes",
            lim.rlim_cur
        ));
    }
    Ok(())
}

impl Subscriber<'_> {
    fn run(&mut self, start: Instant) -> Result<(), Failure> {
        let a = self.args;
        let hard_stop = start + secs(a.max_seconds);
        let establish_by = (start + secs(a.connect_timeout)).min(hard_stop);
        let mut ready_at = None;
        let mut events = Events::with_capacity(1024);
        loop {
            let now = Instant::now();
            if ready_at.is_none() {
                if SIGNAL.load(Relaxed) != 0 {
                    self.fail_unsettled(Fail::Aborted);
                } else if now >= establish_by {
                    self.fail_unsettled(Fail::Timeout);
                } else {
                    self.open_more();
                }
                if self.next_to_open == self.conns.len() && self.opening == 0 {
                    let (established, n) = (self.summary.established, self.conns.len());
                    let failed = n as u64 - established;
                    println!("ready established={established} failed={failed} attempted={n}");
                    _ = io::stdout().flush();
                    ready_at = Some(now);
                    self.summary.ready_s = now.duration_since(start).as_secs_f64();
                }
            }
            let mut wake_by = establish_by;
            if let Some(ready) = ready_at {
                let hold_end = (a.hold > 0.0).then(|| ready + secs(a.hold));
                let all_closed = self.summary.established == self.summary.dropped;
                let all_got_expected = a.expect_events > 0 && self.below_target == 0;
                if SIGNAL.load(Relaxed) != 0
                    || now >= hard_stop
                    || hold_end.is_some_and(|end| now >= end)
                    || all_closed
                    || all_got_expected
                {
                    return Ok(());
                }
                wake_by = hold_end.unwrap_or(hard_stop).min(hard_stop);
            }
            // Capped so that a signal landing just before epoll_wait is still seen promptly.
            let timeout = wake_by.saturating_duration_since(now).min(secs(0.2));
            match self.poll.poll(&mut events, Some(timeout)) {
                Err(e) if e.kind() != ErrorKind::Interrupted => {
                    return Err(fatal!("epoll_wait: {e}"));
                }
                _ => {}
            }
            for event in events.iter() {
                let readable = event.is_readable() || event.is_read_closed() || event.is_error();
                self.on_event(event.token().0, readable);
            }
        }
    }

    fn open_more(&mut self) {
        let batch = self.args.connect_batch as usize;
        while self.opening < batch && self.next_to_open < self.conns.len() {
            let idx = self.next_to_open;
            self.next_to_open += 1;
            match self.open(idx) {
                Ok(stream) => {
                    if let Some(tls) = &self.tls {
                        self.tls_conns[idx] = Some(tls.connection());
                    }
                    self.conns[idx].stream = Some(stream);
                    self.conns[idx].phase = Phase::Connecting;
                    self.opening += 1;
                }
                Err(e) => {
                    if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) {
                        log::warn!("connection {idx}: no free source port; lower --per-source");
                    }
                    log::debug!("connection {idx}: {e}");
                    self.close(idx, Fail::Connect);
                }
            }
        }
    }

    fn open(&self, idx: usize) -> io::Result<TcpStream> {
        let a = self.args;
        let source = u32::from(a.source_base) + (idx / a.per_source as usize) as u32;
        let ty = Type::STREAM.nonblocking();
        let socket = Socket::new(Domain::IPV4, ty, Some(Protocol::TCP))?;
        // Let connect() pick the port per 4-tuple rather than bind() reserving one per source
        // address, or a source would run out of ports well before --per-source connections.
        let one: libc::c_int = 1;
        let len = std::mem::size_of_val(&one) as libc::socklen_t;
        let option = libc::IP_BIND_ADDRESS_NO_PORT;
        let fd = socket.as_raw_fd();
        // SAFETY: a valid socket, and optval points at a c_int of the length given.
        let rc =
            unsafe { libc::setsockopt(fd, libc::IPPROTO_IP, option, (&raw const one).cast(), len) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        socket.bind(&SocketAddr::from((Ipv4Addr::from(source), 0)).into())?;
        match socket.connect(&self.addr.into()) {
            Err(e) if e.raw_os_error() != Some(libc::EINPROGRESS) => return Err(e),
            _ => {}
        }
        let mut stream = TcpStream::from_std(socket.into());
        let interest = Interest::READABLE | Interest::WRITABLE;
        self.poll
            .registry()
            .register(&mut stream, Token(idx), interest)?;
        Ok(stream)
    }

    /// Moves a connection along as far as its readiness allows. Reading needs read readiness
    /// (or an error to collect); without it the read would only return WouldBlock.
    fn on_event(&mut self, idx: usize, readable: bool) {
        if self.conns[idx].phase == Phase::Connecting {
            self.finish_connect(idx);
        }
        let phase = self.conns[idx].phase;
        if !self.tls_conns.is_empty()
            && matches!(phase, Phase::Head | Phase::Body | Phase::ChunkedBody)
        {
            self.flush_tls(idx);
        }
        if self.conns[idx].phase == Phase::Sending {
            self.send_request(idx);
        }
        let phase = self.conns[idx].phase;
        if readable && matches!(phase, Phase::Head | Phase::Body | Phase::ChunkedBody) {
            self.read_all(idx);
        }
    }

    fn finish_connect(&mut self, idx: usize) {
        let Some(stream) = &self.conns[idx].stream else {
            return;
        };
        let connected = match stream.take_error() {
            Ok(None) => stream.peer_addr().map(drop),
            Ok(Some(e)) | Err(e) => Err(e),
        };
        match connected {
            Ok(()) => self.conns[idx].phase = Phase::Sending,
            // Woken before the handshake finished.
            Err(e) if e.kind() == ErrorKind::NotConnected => {}
            Err(e) => {
                log::debug!("connection {idx}: connect: {e}");
                self.close(idx, Fail::Connect);
            }
        }
    }

    fn send_request(&mut self, idx: usize) {
        let a = self.args;
        let index = idx as u64 + a.index_offset;
        let path = expand(&a.path, index).expect("--path is checked when parsed");
        self.request.clear();
        _ = write!(self.request, "GET {path} HTTP/1.1\r\nHost: {}\r\n", a.addr);
        if !self.tokens.is_empty() {
            let token = &self.tokens[(index % self.tokens.len() as u64) as usize];
            _ = match &a.cookie {
                Some(name) => write!(self.request, "Cookie: {name}={token}\r\n"),
                None => write!(self.request, "Authorization: Bearer {token}\r\n"),
            };
        }
        self.request
            .extend_from_slice(b"Accept: text/event-stream\r\n\r\n");
        let conn = &mut self.conns[idx];
        let Some(stream) = conn.stream.as_mut() else {
            return;
        };
        let error = loop {
            let rest = &self.request[usize::from(conn.sent)..];
            if rest.is_empty() {
                conn.phase = Phase::Head;
                return;
            }
            match Io::new(stream, &mut self.tls_conns, idx).write(rest) {
                Ok(0) => break io::Error::from(ErrorKind::WriteZero),
                Ok(n) => conn.sent += n as u16,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // BrokenPipe or ConnectionReset: the server hung up before reading the request.
                Err(e) => break e,
            }
        };
        log::debug!("connection {idx}: sending request: {error}");
        self.close(idx, Fail::Closed);
    }

    /// Reads until WouldBlock, as edge-triggered readiness is not reported again before that.
    fn read_all(&mut self, idx: usize) {
        loop {
            let conn = &mut self.conns[idx];
            let Some(stream) = conn.stream.as_mut() else {
                return;
            };
            let n = match Io::new(stream, &mut self.tls_conns, idx).read(&mut self.read_buf) {
                Ok(0) => return self.close(idx, Fail::Closed),
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // ConnectionReset and the like: the server dropped us.
                Err(e) => {
                    log::debug!("connection {idx}: read: {e}");
                    return self.close(idx, Fail::Closed);
                }
            };
            let now_us = unix_micros();
            let still_open = if conn.phase == Phase::Head {
                self.on_head_bytes(idx, n, now_us)
            } else {
                let (hb, summary) = (self.args.heartbeat_event.as_bytes(), &mut self.summary);
                let before = conn.sse.events;
                let data = &self.read_buf[..n];
                let fed = conn.feed_body(data, hb, &mut |t| summary.record_delivery(t, now_us));
                self.after_body(idx, before, fed)
            };
            if !still_open {
                return;
            }
        }
    }

    fn on_head_bytes(&mut self, idx: usize, n: usize, now_us: u64) -> bool {
        let mut pending = self.partial_heads.remove(&idx);
        if let Some(pending) = &mut pending {
            pending.extend_from_slice(&self.read_buf[..n]);
        }
        let input = pending.as_deref().unwrap_or(&self.read_buf[..n]);
        let rejected = match parse_head(input) {
            Ok(None) => {
                self.partial_heads.insert(idx, input.to_vec());
                return true;
            }
            Ok(Some(head)) if head.status == 200 && head.event_stream => {
                self.opening -= 1;
                self.summary.established += 1;
                self.below_target += u64::from(self.args.expect_events > 0);
                let conn = &mut self.conns[idx];
                conn.phase = if head.chunked {
                    Phase::ChunkedBody
                } else {
                    Phase::Body
                };
                let (hb, summary) = (self.args.heartbeat_event.as_bytes(), &mut self.summary);
                let body = &input[head.len..];
                let fed = conn.feed_body(body, hb, &mut |t| summary.record_delivery(t, now_us));
                return self.after_body(idx, 0, fed);
            }
            Ok(Some(head)) if head.status == 200 => Fail::ContentType,
            Ok(Some(head)) => {
                log::debug!("connection {idx}: status {}", head.status);
                Fail::Status
            }
            Err(e) => {
                log::debug!("connection {idx}: {e}");
                Fail::Status
            }
        };
        self.close(idx, rejected);
        false
    }

    fn after_body(
        &mut self,
        idx: usize,
        events_before: u32,
        fed: Result<bool, ProtocolError>,
    ) -> bool {
        let (target, events) = (self.args.expect_events, self.conns[idx].sse.events);
        if target > 0 && u64::from(events_before) < target && u64::from(events) >= target {
            self.below_target -= 1;
        }
        match fed {
            Ok(true) => return true,
            Ok(false) => log::debug!("connection {idx}: chunked body ended"),
            Err(e) => log::debug!("connection {idx}: {e}"),
        }
        self.close(idx, Fail::Closed);
        false
    }

    /// Ends a connection: a failure counted under `reason` before its head was accepted, a
    /// drop after.
    fn close(&mut self, idx: usize, reason: Fail) {
        let conn = &mut self.conns[idx];
        if let Some(mut stream) = conn.stream.take() {
            _ = self.poll.registry().deregister(&mut stream);
        }
        self.partial_heads.remove(&idx);
        if let Some(tls) = self.tls_conns.get_mut(idx) {
            *tls = None;
        }
        match conn.phase {
            Phase::Body | Phase::ChunkedBody => {
                conn.phase = Phase::Dropped;
                self.summary.dropped += 1;
                if u64::from(conn.sse.events) < self.args.expect_events {
                    self.below_target -= 1;
                }
            }
            phase => {
                if matches!(phase, Phase::Connecting | Phase::Sending | Phase::Head) {
                    self.opening -= 1;
                }
                conn.phase = Phase::Failed;
                self.summary.fails[reason as usize] += 1;
            }
        }
    }

    /// TLS bytes left over when the socket last would block (the handshake's, the request's),
    /// sent now that the connection has an event again.
    fn flush_tls(&mut self, idx: usize) {
        let Some(stream) = self.conns[idx].stream.as_mut() else {
            return;
        };
        if let Err(e) = Io::new(stream, &mut self.tls_conns, idx).flush_tls() {
            log::debug!("connection {idx}: TLS write: {e}");
            self.close(idx, Fail::Closed);
        }
    }

    fn fail_unsettled(&mut self, reason: Fail) {
        for idx in 0..self.conns.len() {
            let phase = self.conns[idx].phase;
            if matches!(
                phase,
                Phase::Idle | Phase::Connecting | Phase::Sending | Phase::Head
            ) {
                self.close(idx, reason);
            }
        }
        self.next_to_open = self.conns.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conn_stays_small() {
        // Debug builds of mio add a selector id to every stream.
        let budget = if cfg!(debug_assertions) { 64 } else { 48 };
        assert!(std::mem::size_of::<Conn>() <= budget);
    }
}
