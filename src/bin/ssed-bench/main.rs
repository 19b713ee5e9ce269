//! `ssed-bench`: load generator for ssed and the baseline SSE servers it is compared with.
//!
//! * `subscribe` opens N subscriptions (`GET /events/<topic>`), prints
//!   `ready established=E failed=F attempted=N` once each has received a
//!   `200 text/event-stream` head or failed, then holds them while counting events, comments
//!   and bytes and timing every event whose data is `t=<unix micros>`. It ends with one JSON
//!   summary line.
//! * `publish` POSTs `t=<unix micros>` events over one persistent HTTP/1.1 connection at a
//!   fixed rate and ends with one JSON summary line.
//!
//! Shape: `subscribe` is one edge-triggered mio loop per process. A connection is a 48-byte
//! `Conn` in a Vec indexed by its mio token, all reads share one buffer, and the SSE parser is
//! a byte-at-a-time state machine, so the tool adds little memory per connection next to the
//! server it measures. Connection i binds to source address `--source-base + i / --per-source`
//! so that one source's ~28k ephemeral ports are no ceiling; `--processes P` re-executes the
//! binary P times on disjoint source ranges to get past the per-process open-file limit, and
//! merges what the children report. `publish` has one connection, so it is a blocking loop.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream as StdTcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicI32, Ordering::Relaxed};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Args, Parser, Subcommand};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use socket2::{Domain, Protocol, Socket, Type};

/// Leaves headroom under the 20,000 open-file hard limit of the benchmark machines.
const MAX_PER_PROCESS: u64 = 19_000;
/// A response head larger than this is garbage.
const MAX_HEAD: usize = 16 * 1024;
/// Bounds the per-event table should a run publish far more than the tens of thousands planned.
const MAX_TRACKED_EVENTS: usize = 1 << 20;

#[derive(Parser)]
#[command(name = "ssed-bench", version, about = "Load generator for SSE servers")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Open and hold SSE subscriptions, count what arrives and measure delivery latency
    // Later flags win, so the parent can re-run its own argv with per-child overrides.
    #[command(args_override_self = true, after_help = SUBSCRIBE_OUTPUT)]
    Subscribe(SubscribeArgs),
    /// POST `t=<unix micros>` events over one persistent HTTP/1.1 connection
    Publish(PublishArgs),
}

const SUBSCRIBE_OUTPUT: &str = "\
Output: `ready established=E failed=F attempted=N` once every connection is established or
failed, then one JSON summary line. `events` excludes heartbeats (`event: <heartbeat-event>`),
`bytes` counts body bytes as received (chunk framing included), latencies are microseconds.
Exit status: 0 completed, 1 fatal (e.g. nothing could connect), 2 usage error.";

#[derive(Args)]
struct SubscribeArgs {
    /// Server address, HOST:PORT
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8080")]
    addr: String,
    /// Subscribe path; `{i}` is replaced by the connection index (one topic per connection)
    #[arg(long, value_name = "PATH", default_value = "/events/bench")]
    path: String,
    /// Number of subscriptions
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = positive())]
    connections: u32,
    /// First source address (127.0.0.0/8 only); connection i binds to it + i / per-source
    #[arg(long, value_name = "A.B.C.D", default_value = "127.0.0.2")]
    source_base: Ipv4Addr,
    /// Connections per source address (a source has ~28k ephemeral ports)
    #[arg(long, value_name = "K", default_value_t = 20000, value_parser = positive())]
    per_source: u32,
    /// Most connections connecting or awaiting their response head at once
    #[arg(long, value_name = "B", default_value_t = 500, value_parser = positive())]
    connect_batch: u32,
    /// Seconds for the whole establish phase; stragglers count as failed (timeout)
    #[arg(long, value_name = "SECS", default_value_t = 30.0, value_parser = parse_secs)]
    connect_timeout: f64,
    /// Seconds to hold after ready; 0 = until another stop condition
    #[arg(long, value_name = "SECS", default_value_t = 0.0, value_parser = parse_secs)]
    hold: f64,
    /// Stop once every open connection has received this many events (0 = off)
    #[arg(long, value_name = "K", default_value_t = 0)]
    expect_events: u64,
    /// Hard bound on the whole run, in seconds
    #[arg(long, value_name = "SECS", default_value_t = 600.0, value_parser = parse_secs)]
    max_seconds: f64,
    /// Event type counted as a heartbeat rather than an event
    #[arg(long, value_name = "NAME", default_value = "keep-alive")]
    heartbeat_event: String,
    /// Processes to split the connections over (each holds at most 19000)
    #[arg(long, value_name = "P", default_value_t = 1, value_parser = positive())]
    processes: u32,
    /// Added to the connection index in `{i}`; set by the parent for its children
    #[arg(long, default_value_t = 0, hide = true)]
    index_offset: u64,
    /// Report as a `raw ...` line for a parent to merge; set by the parent for its children
    #[arg(long, hide = true)]
    report_raw: bool,
}

#[derive(Args)]
struct PublishArgs {
    /// Server address, HOST:PORT
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8080")]
    addr: String,
    /// Publish path
    #[arg(long, value_name = "PATH", default_value = "/events/bench")]
    path: String,
    /// Events to publish
    #[arg(long, value_name = "K", default_value_t = 100)]
    count: u64,
    /// Events per second; 0 = as fast as the pipeline allows
    #[arg(long, value_name = "R", default_value_t = 10.0, value_parser = parse_secs)]
    rate: f64,
    /// Stop publishing after this many seconds; 0 = when --count is reached
    #[arg(long, value_name = "SECS", default_value_t = 0.0, value_parser = parse_secs)]
    duration: f64,
    /// Event data size in bytes; 0 = just `t=<micros>`, else padded with a space and x's
    #[arg(long, value_name = "BYTES", default_value_t = 0)]
    size: usize,
    /// Requests in flight on the connection
    #[arg(long, value_name = "W", default_value_t = 1, value_parser = positive())]
    pipeline: u32,
    /// Hard bound on the whole run, in seconds
    #[arg(long, value_name = "SECS", default_value_t = 600.0, value_parser = parse_secs)]
    max_seconds: f64,
    /// Send `Authorization: Bearer TOKEN` [default: none]
    #[arg(long, value_name = "TOKEN")]
    token: Option<String>,
}

fn positive() -> clap::builder::RangedI64ValueParser<u32> {
    clap::value_parser!(u32).range(1..)
}

fn parse_secs(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("`{s}` is not a non-negative number")),
    }
}

/// Ends the run: `Usage` exits 2, `Fatal` exits 1, each with its message on stderr.
enum Failure {
    Usage(String),
    Fatal(String),
}

macro_rules! usage {
    ($($fmt:tt)*) => { Failure::Usage(format!($($fmt)*)) };
}

macro_rules! fatal {
    ($($fmt:tt)*) => { Failure::Fatal(format!($($fmt)*)) };
}

/// Formats `{"key":value,...}`. Values are written with Display: strings bring their quotes.
macro_rules! json {
    ($($key:literal: $value:expr),* $(,)?) => {{
        let fields: Vec<String> = vec![$(format!("\"{}\":{}", $key, $value)),*];
        format!("{{{}}}", fields.join(","))
    }};
}

/// What went wrong in the bytes a server sent.
type ProtocolError = &'static str;

static SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    SIGNAL.store(sig, Relaxed);
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
    let outcome = match &cli.command {
        Cmd::Subscribe(a) if a.processes > 1 => run_parent(a),
        Cmd::Subscribe(a) => run_subscribe(a),
        Cmd::Publish(a) => run_publish(a),
    };
    let (code, msg) = match outcome {
        Ok(()) => return ExitCode::SUCCESS,
        Err(Failure::Usage(msg)) => (2, msg),
        Err(Failure::Fatal(msg)) => (1, msg),
    };
    eprintln!("ssed-bench: {msg}");
    ExitCode::from(code)
}

fn unix_micros() -> u64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH);
    since_epoch.map_or(0, |d| d.as_micros() as u64)
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn resolve(addr: &str) -> Result<SocketAddr, Failure> {
    let mut found = addr
        .to_socket_addrs()
        .map_err(|e| usage!("--addr {addr}: {e}"))?;
    found
        .find(SocketAddr::is_ipv4)
        .ok_or_else(|| usage!("--addr {addr}: no IPv4 address"))
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:")?.strip_suffix("kB"));
    kib.and_then(|k| k.trim().parse::<u64>().ok()).unwrap_or(0) * 1024
}

/// `base + offset`, refused outside 127.0.0.0/8: this tool only ever loads loopback.
fn source_ip(base: Ipv4Addr, offset: u64) -> Result<Ipv4Addr, Failure> {
    match u32::try_from(u64::from(u32::from(base)) + offset).map(Ipv4Addr::from) {
        Ok(ip) if ip.octets()[0] == 127 => Ok(ip),
        _ => Err(usage!(
            "source {base} + {offset} is outside 127.0.0.0/8, the only one allowed"
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// SSE parsing: WHATWG event-stream rules, keeping only what the counters need.

/// Per-connection parser and counters, fed arbitrary slices of the stream.
#[derive(Clone, Copy, Default)]
struct SseParser {
    events: u32,
    heartbeats: u32,
    comments: u32,
    /// The stamp being read from the current event's first data line.
    t: u64,
    state: u8,
    /// Bytes matched so far of the field name, the heartbeat type or the `t=` stamp.
    pos: u8,
    flags: u8,
}

const LINE_START: u8 = 0;
const FIELD_DATA: u8 = 1;
const FIELD_EVENT: u8 = 2;
/// After `data:`; `pos` is 1 on the event's first data line, the only one that can carry `t=`.
const DATA_VALUE_START: u8 = 3;
const DATA_T: u8 = 4;
const EVENT_VALUE_START: u8 = 5;
const EVENT_VALUE: u8 = 6;
const SKIP_LINE: u8 = 7;

const HAS_DATA: u8 = 1;
const HAS_T: u8 = 2;
const HEARTBEAT: u8 = 4;
/// The last byte was CR, so an LF now ends nothing.
const SAW_CR: u8 = 8;

impl SseParser {
    /// Counts what `input` completes and calls `on_stamp` with each stamped event's `t`.
    fn feed(&mut self, mut input: &[u8], heartbeat: &[u8], on_stamp: &mut impl FnMut(u64)) {
        while let Some((&b, rest)) = input.split_first() {
            input = rest;
            if self.flags & SAW_CR != 0 {
                self.flags &= !SAW_CR;
                if b == b'\n' {
                    continue;
                }
            }
            if b == b'\r' || b == b'\n' {
                self.flags |= if b == b'\r' { SAW_CR } else { 0 };
                self.end_line(heartbeat, on_stamp);
                continue;
            }
            match self.state {
                LINE_START => {
                    self.comments += u32::from(b == b':');
                    self.pos = 1;
                    self.state = match b {
                        b'd' => FIELD_DATA,
                        b'e' => FIELD_EVENT,
                        _ => SKIP_LINE,
                    };
                }
                FIELD_DATA | FIELD_EVENT => {
                    let name: &[u8] = if self.state == FIELD_DATA {
                        b"data"
                    } else {
                        b"event"
                    };
                    if b == b':' && usize::from(self.pos) == name.len() {
                        self.begin_value();
                    } else if name.get(usize::from(self.pos)) == Some(&b) {
                        self.pos += 1;
                    } else {
                        self.state = SKIP_LINE;
                    }
                }
                DATA_VALUE_START | EVENT_VALUE_START => {
                    self.state = match (self.state, self.pos) {
                        (DATA_VALUE_START, 1) => DATA_T,
                        (DATA_VALUE_START, _) => SKIP_LINE,
                        _ => EVENT_VALUE,
                    };
                    self.pos = 0;
                    // One leading space is syntax, not value.
                    if b != b' ' {
                        self.value_byte(b, heartbeat);
                    }
                }
                DATA_T | EVENT_VALUE => self.value_byte(b, heartbeat),
                _ => {
                    // Padding can be kilobytes: jump straight to the line end.
                    let end = input.iter().position(|&c| c == b'\r' || c == b'\n');
                    input = &input[end.unwrap_or(input.len())..];
                }
            }
        }
    }

    fn begin_value(&mut self) {
        if self.state == FIELD_DATA {
            let first = self.flags & HAS_DATA == 0;
            self.pos = u8::from(first);
            self.t = if first { 0 } else { self.t };
            self.flags |= HAS_DATA;
            self.state = DATA_VALUE_START;
        } else {
            self.flags &= !HEARTBEAT;
            self.state = EVENT_VALUE_START;
        }
    }

    fn value_byte(&mut self, b: u8, heartbeat: &[u8]) {
        match (self.state, self.pos, b) {
            (EVENT_VALUE, pos, b) if heartbeat.get(usize::from(pos)) == Some(&b) => self.pos += 1,
            // DATA_T: pos 0 wants `t`, 1 wants `=`, 2 a digit, 3 more digits or a space.
            (DATA_T, 0, b't') | (DATA_T, 1, b'=') => self.pos += 1,
            (DATA_T, 2 | 3, b'0'..=b'9') => {
                let digit = u64::from(b - b'0');
                match self.t.checked_mul(10).and_then(|t| t.checked_add(digit)) {
                    Some(t) => (self.t, self.pos) = (t, 3),
                    None => self.state = SKIP_LINE,
                }
            }
            (DATA_T, 3, b' ') => {
                self.flags |= HAS_T;
                self.state = SKIP_LINE;
            }
            _ => self.state = SKIP_LINE,
        }
    }

    fn end_line(&mut self, heartbeat: &[u8], on_stamp: &mut impl FnMut(u64)) {
        match (self.state, usize::from(self.pos)) {
            (LINE_START, _) => self.dispatch(on_stamp),
            // A field name without a colon is that field with an empty value.
            (FIELD_DATA, 4) | (FIELD_EVENT, 5) => self.begin_value(),
            (DATA_T, 3) => self.flags |= HAS_T,
            (EVENT_VALUE, pos) if pos > 0 && pos == heartbeat.len() => self.flags |= HEARTBEAT,
            _ => {}
        }
        (self.state, self.pos) = (LINE_START, 0);
    }

    fn dispatch(&mut self, on_stamp: &mut impl FnMut(u64)) {
        if self.flags & (HAS_DATA | HEARTBEAT) == HAS_DATA | HEARTBEAT {
            self.heartbeats += 1;
        } else if self.flags & HAS_DATA != 0 {
            self.events += 1;
            if self.flags & HAS_T != 0 {
                on_stamp(self.t);
            }
        }
        self.flags &= SAW_CR;
    }
}

/// Streaming `Transfer-Encoding: chunked` decoder.
#[derive(Clone, Copy, Default)]
struct Dechunker {
    state: u8,
    /// Chunk size being read, payload bytes left, or in trailers whether the line has text.
    n: u32,
}

const CHUNK_SIZE: u8 = 0;
const CHUNK_EXT: u8 = 1;
const CHUNK_DATA: u8 = 2;
const CHUNK_DATA_END: u8 = 3;
const CHUNK_TRAILER: u8 = 4;

impl Dechunker {
    /// Hands payload to `out`; once the last chunk and trailers are through, returns how much
    /// of `input` the body used.
    fn feed(
        &mut self,
        input: &[u8],
        out: &mut impl FnMut(&[u8]),
    ) -> Result<Option<usize>, ProtocolError> {
        let mut i = 0;
        while i < input.len() {
            if self.state == CHUNK_DATA {
                let take = (self.n as usize).min(input.len() - i);
                out(&input[i..i + take]);
                i += take;
                self.n -= take as u32;
                self.state = if self.n == 0 {
                    CHUNK_DATA_END
                } else {
                    CHUNK_DATA
                };
                continue;
            }
            let b = input[i];
            i += 1;
            match (self.state, b) {
                (CHUNK_SIZE | CHUNK_EXT, b'\n') if self.n == 0 => self.state = CHUNK_TRAILER,
                (CHUNK_SIZE | CHUNK_EXT, b'\n') => self.state = CHUNK_DATA,
                (CHUNK_SIZE, b';' | b' ' | b'\t') => self.state = CHUNK_EXT,
                (CHUNK_SIZE, b) if b != b'\r' => {
                    let digit = (b as char).to_digit(16).ok_or("bad chunk size")?;
                    let n = self.n.checked_mul(16).and_then(|n| n.checked_add(digit));
                    self.n = n.ok_or("chunk too large")?;
                }
                (CHUNK_DATA_END, b'\n') => self.state = CHUNK_SIZE,
                (CHUNK_DATA_END, b) if b != b'\r' => return Err("no CRLF after chunk data"),
                (CHUNK_TRAILER, b'\n') if self.n == 0 => return Ok(Some(i)),
                (CHUNK_TRAILER, b'\n') => self.n = 0,
                (CHUNK_TRAILER, b) if b != b'\r' => self.n = 1,
                _ => {}
            }
        }
        Ok(None)
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP/1 response heads

#[derive(Debug, Default)]
struct Head {
    status: u16,
    /// Bytes up to and including the blank line.
    len: usize,
    event_stream: bool,
    chunked: bool,
    content_length: Option<usize>,
    close: bool,
}

fn parse_head(buf: &[u8]) -> Result<Option<Head>, ProtocolError> {
    let end = (0..buf.len()).find_map(|i| match &buf[i..] {
        [b'\n', b'\n', ..] => Some(i + 2),
        [b'\n', b'\r', b'\n', ..] => Some(i + 3),
        _ => None,
    });
    let Some(len) = end else {
        return if buf.len() > MAX_HEAD {
            Err("response head too large")
        } else {
            Ok(None)
        };
    };
    let text = std::str::from_utf8(&buf[..len]).map_err(|_| "response head is not UTF-8")?;
    let mut lines = text.lines();
    let mut status_line = lines.next().unwrap_or_default().split(' ');
    let version = status_line.next().unwrap_or_default();
    let status = status_line.next().and_then(|s| s.parse().ok());
    let (Some(status), true) = (status, version.starts_with("HTTP/1.")) else {
        return Err("malformed status line");
    };
    let close = version == "HTTP/1.0";
    let mut head = Head {
        status,
        len,
        close,
        ..Head::default()
    };
    for (name, value) in lines.filter_map(|l| l.split_once(':')) {
        let value = value.trim().to_ascii_lowercase();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-type" => head.event_stream = value.starts_with("text/event-stream"),
            "transfer-encoding" => head.chunked = value.ends_with("chunked"),
            "content-length" => head.content_length = value.parse().ok(),
            "connection" if value.contains("close") => head.close = true,
            "connection" if value.contains("keep-alive") => head.close = false,
            _ => {}
        }
    }
    Ok(Some(head))
}

/// The first complete response in `rx` and the bytes it spans. One framed by neither length
/// nor chunking ends with the connection, so it is complete only at `eof`.
fn take_response(rx: &[u8], eof: bool) -> Result<Option<(Head, usize)>, ProtocolError> {
    let Some(mut head) = parse_head(rx)? else {
        return Ok(None);
    };
    let body = &rx[head.len..];
    let body_len = if head.status < 200 || head.status == 204 || head.status == 304 {
        Some(0)
    } else if head.chunked {
        Dechunker::default().feed(body, &mut |_| {})?
    } else if let Some(n) = head.content_length {
        (body.len() >= n).then_some(n)
    } else {
        head.close = true;
        eof.then_some(body.len())
    };
    Ok(body_len.map(|body_len| {
        let used = head.len + body_len;
        (head, used)
    }))
}

// ---------------------------------------------------------------------------------------------
// Results

/// Log-linear histogram: exact below 256, then 128 buckets per power of two, so a bucket's
/// midpoint is within 0.4% of every value in it.
#[derive(Default)]
struct Histogram {
    buckets: Vec<u64>,
    count: u64,
    max: u64,
}

const SUB_BITS: u32 = 7;

impl Histogram {
    fn bucket(v: u64) -> usize {
        if v < 2 << SUB_BITS {
            return v as usize;
        }
        let shift = 63 - v.leading_zeros() - SUB_BITS;
        ((shift as usize) << SUB_BITS) + (v >> shift) as usize
    }

    fn midpoint(i: usize) -> u64 {
        if i < 2 << SUB_BITS {
            return i as u64;
        }
        let shift = (i >> SUB_BITS) as u32 - 1;
        let low = ((i & ((1 << SUB_BITS) - 1)) as u64 + (1 << SUB_BITS)) << shift;
        low + ((1u64 << shift) - 1) / 2
    }

    fn add(&mut self, bucket: usize, n: u64) {
        if self.buckets.len() <= bucket {
            self.buckets.resize(bucket + 1, 0);
        }
        self.buckets[bucket] += n;
        self.count += n;
    }

    fn record(&mut self, v: u64) {
        self.add(Self::bucket(v), 1);
        self.max = self.max.max(v);
    }

    fn percentile(&self, q: f64) -> u64 {
        let rank = ((q * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Self::midpoint(i).min(self.max);
            }
        }
        self.max
    }
}

/// Why a connection never got established; names in `FAIL_REASONS`, same order.
#[derive(Clone, Copy, Debug)]
enum Fail {
    Connect,
    Emfile,
    Status,
    ContentType,
    Closed,
    Timeout,
    Aborted,
}

const FAIL_REASONS: [&str; 7] = [
    "connect",
    "emfile",
    "status",
    "content_type",
    "closed",
    "timeout",
    "aborted",
];

#[derive(Default)]
struct Summary {
    attempted: u64,
    established: u64,
    fails: [u64; FAIL_REASONS.len()],
    /// Established connections that ended before the run did.
    dropped: u64,
    events: u64,
    heartbeats: u64,
    comments: u64,
    bytes: u64,
    rss_bytes: u64,
    min_events: Option<u64>,
    max_events: u64,
    latency: Histogram,
    /// Event stamp → (latency to the last subscriber that got it, subscribers that got it).
    per_event: HashMap<u64, (u64, u64)>,
    stop_reason: String,
    elapsed_s: f64,
    children_rss: Vec<u64>,
}

impl Summary {
    fn record_delivery(&mut self, t: u64, now_us: u64) {
        let latency = now_us.saturating_sub(t);
        self.latency.record(latency);
        if self.per_event.len() < MAX_TRACKED_EVENTS || self.per_event.contains_key(&t) {
            let (slowest, receivers) = self.per_event.entry(t).or_default();
            (*slowest, *receivers) = (latency.max(*slowest), *receivers + 1);
        }
    }

    /// The counters that add up across processes, listed once for merging and the hand-off.
    fn sums(&mut self) -> impl Iterator<Item = &mut u64> {
        let s = self;
        let counts = [
            &mut s.attempted,
            &mut s.established,
            &mut s.dropped,
            &mut s.events,
        ];
        let more = [
            &mut s.heartbeats,
            &mut s.comments,
            &mut s.bytes,
            &mut s.rss_bytes,
        ];
        counts.into_iter().chain(more).chain(&mut s.fails)
    }

    fn merge(&mut self, mut other: Summary) {
        self.sums()
            .zip(other.sums())
            .for_each(|(sum, v)| *sum += *v);
        self.min_events = self.min_events.into_iter().chain(other.min_events).min();
        self.max_events = self.max_events.max(other.max_events);
        for (i, &n) in other.latency.buckets.iter().enumerate() {
            self.latency.add(i, n);
        }
        self.latency.max = self.latency.max.max(other.latency.max);
        for (t, (latency, receivers)) in other.per_event {
            let (slowest, total) = self.per_event.entry(t).or_default();
            (*slowest, *total) = (latency.max(*slowest), *total + receivers);
        }
        if self.stop_reason.is_empty() {
            self.stop_reason = other.stop_reason;
        } else if self.stop_reason != other.stop_reason {
            self.stop_reason = "mixed".into();
        }
        self.children_rss.push(other.rss_bytes);
    }

    /// What a child prints for its parent: `raw <min> <max> <latency max> <sums>... |
    /// <bucket count>... | <stamp latency receivers>... | <stop reason>`.
    fn raw_line(&mut self) -> String {
        let (min, max) = (self.min_events.unwrap_or(0), self.max_events);
        let mut line = format!("raw {min} {max} {}", self.latency.max);
        self.sums().for_each(|v| _ = write!(line, " {v}"));
        line += " |";
        for (i, &n) in self.latency.buckets.iter().enumerate() {
            if n > 0 {
                _ = write!(line, " {i} {n}");
            }
        }
        line += " |";
        for (t, (latency, receivers)) in &self.per_event {
            _ = write!(line, " {t} {latency} {receivers}");
        }
        line + " | " + &self.stop_reason
    }

    fn from_raw(line: &str) -> Option<Summary> {
        let parts: Vec<&str> = line.strip_prefix("raw ")?.split('|').collect();
        let [counts, buckets, events, stop_reason] = parts[..] else {
            return None;
        };
        let numbers = |s: &str| -> Option<Vec<u64>> {
            s.split_whitespace().map(|v| v.parse().ok()).collect()
        };
        let (counts, buckets, events) = (numbers(counts)?, numbers(buckets)?, numbers(events)?);
        let [min, max_events, latency_max, ref sums @ ..] = counts[..] else {
            return None;
        };
        let stop_reason = stop_reason.trim().to_string();
        let mut s = Summary {
            max_events,
            stop_reason,
            ..Summary::default()
        };
        s.sums().zip(sums).for_each(|(sum, &v)| *sum = v);
        s.min_events = (s.established > 0).then_some(min);
        buckets
            .chunks_exact(2)
            .for_each(|b| s.latency.add(b[0] as usize, b[1]));
        s.latency.max = latency_max;
        s.per_event
            .extend(events.chunks_exact(3).map(|e| (e[0], (e[1], e[2]))));
        Some(s)
    }

    fn to_json(&self) -> String {
        let fails = FAIL_REASONS
            .iter()
            .zip(self.fails)
            .map(|(k, v)| format!("\"{k}\":{v}"));
        let fails = format!("{{{}}}", fails.collect::<Vec<_>>().join(","));
        let mut last: Vec<u64> = self.per_event.values().map(|v| v.0).collect();
        last.sort_unstable();
        let min_receivers = self.per_event.values().map(|v| v.1).min().unwrap_or(0);
        let children: Vec<String> = self.children_rss.iter().map(u64::to_string).collect();
        let lat = &self.latency;
        json! {
            "mode": "\"subscribe\"",
            "attempted": self.attempted,
            "established": self.established,
            "failed": self.fails.iter().sum::<u64>(),
            "fail_reasons": fails,
            "dropped": self.dropped,
            "events": self.events,
            "heartbeats": self.heartbeats,
            "comments": self.comments,
            "bytes": self.bytes,
            "min_events_per_conn": self.min_events.unwrap_or(0),
            "max_events_per_conn": self.max_events,
            "latency_us": json! {
                "p50": lat.percentile(0.5),
                "p99": lat.percentile(0.99),
                "max": lat.max,
                "samples": lat.count,
            },
            "last_subscriber_latency_us": json! {
                "p50": last.get(last.len().saturating_sub(1) / 2).unwrap_or(&0),
                "max": last.last().unwrap_or(&0),
                "events": last.len(),
                "min_receivers": min_receivers,
            },
            "stop_reason": format!("\"{}\"", self.stop_reason),
            "elapsed_s": format!("{:.3}", self.elapsed_s),
            "rss_bytes": self.rss_bytes,
            "processes": children.len().max(1),
            "children_rss_bytes": format!("[{}]", children.join(",")),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// subscribe, one process

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
    /// Response heads that arrived in pieces: rare, and only while connecting.
    partial_heads: HashMap<usize, Vec<u8>>,
    next_to_open: usize,
    /// Connections between socket() and an accepted response head.
    opening: usize,
    /// Open established connections that have not yet seen --expect-events events.
    below_target: u64,
    summary: Summary,
}

fn run_subscribe(a: &SubscribeArgs) -> Result<(), Failure> {
    let n = u64::from(a.connections);
    let addr = resolve(&a.addr)?;
    source_ip(a.source_base, 0)?;
    source_ip(a.source_base, (n - 1) / u64::from(a.per_source))?;
    if a.heartbeat_event.len() > 64 || a.path.len() > 8192 {
        return Err(usage!("--heartbeat-event or --path is too long"));
    }
    ensure_fd_room(n)?;
    let start = Instant::now();
    let mut sub = Subscriber {
        args: a,
        addr,
        poll: Poll::new().map_err(|e| fatal!("epoll: {e}"))?,
        conns: (0..n).map(|_| Conn::default()).collect(),
        read_buf: vec![0; 64 * 1024],
        request: Vec::new(),
        partial_heads: HashMap::new(),
        next_to_open: 0,
        opening: 0,
        below_target: 0,
        summary: Summary::default(),
    };
    let stop_reason = sub.run(start)?;
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
    s.stop_reason = stop_reason.into();
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
    fn run(&mut self, start: Instant) -> Result<&'static str, Failure> {
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
                }
            }
            let mut wake_by = establish_by;
            if let Some(ready) = ready_at {
                let hold_end = (a.hold > 0.0).then(|| ready + secs(a.hold));
                let all_closed = self.summary.established == self.summary.dropped;
                let stop = [
                    (SIGNAL.load(Relaxed) != 0, "signal"),
                    (now >= hard_stop, "max_seconds"),
                    (all_closed, "all_closed"),
                    (hold_end.is_some_and(|end| now >= end), "hold"),
                    (
                        a.expect_events > 0 && self.below_target == 0,
                        "expect_events",
                    ),
                ];
                if let Some((_, reason)) = stop.into_iter().find(|(stop, _)| *stop) {
                    return Ok(reason);
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
                    self.conns[idx].stream = Some(stream);
                    self.conns[idx].phase = Phase::Connecting;
                    self.opening += 1;
                }
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                    if self.summary.fails[Fail::Emfile as usize] == 0 {
                        log::warn!("out of file descriptors ({e}); raise --processes");
                    }
                    self.close(idx, Fail::Emfile);
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
        let path = a
            .path
            .replace("{i}", &(idx as u64 + a.index_offset).to_string());
        self.request.clear();
        _ = write!(self.request, "GET {path} HTTP/1.1\r\nHost: {}\r\n", a.addr);
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
            match stream.write(rest) {
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
            let n = match stream.read(&mut self.read_buf) {
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
        let mut pending = self.partial_heads.remove(&idx).unwrap_or_default();
        if !pending.is_empty() {
            pending.extend_from_slice(&self.read_buf[..n]);
        }
        let input = if pending.is_empty() {
            &self.read_buf[..n]
        } else {
            &pending[..]
        };
        let rejected = match parse_head(input) {
            Ok(None) => {
                let keep = if pending.is_empty() {
                    input.to_vec()
                } else {
                    pending
                };
                self.partial_heads.insert(idx, keep);
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

// ---------------------------------------------------------------------------------------------
// subscribe --processes P: a parent that fans out to children and merges their reports

fn run_parent(a: &SubscribeArgs) -> Result<(), Failure> {
    let (n, p) = (u64::from(a.connections), u64::from(a.processes));
    resolve(&a.addr)?;
    if p > n {
        return Err(usage!("--processes is larger than --connections"));
    }
    let shares: Vec<u64> = (0..p).map(|j| n / p + u64::from(j < n % p)).collect();
    if shares[0] > MAX_PER_PROCESS {
        return Err(usage!(
            "{} connections per process is over 19000; raise --processes",
            shares[0]
        ));
    }
    // Each child starts on a fresh source address, so no two processes share one.
    let sources: Vec<u64> = shares
        .iter()
        .map(|s| s.div_ceil(a.per_source.into()))
        .collect();
    source_ip(a.source_base, sources.iter().sum::<u64>() - 1)?;
    let exe = std::env::current_exe().map_err(|e| fatal!("current_exe: {e}"))?;
    let start = Instant::now();
    let (tx, rx) = mpsc::channel::<(usize, Option<String>)>();
    let mut children: Vec<Child> = Vec::new();
    let (mut first_index, mut first_source) = (a.index_offset, 0);
    for (j, &share) in shares.iter().enumerate() {
        let overrides = [
            format!("--connections={share}"),
            format!("--source-base={}", source_ip(a.source_base, first_source)?),
            format!("--index-offset={first_index}"),
            format!("--connect-batch={}", (a.connect_batch / a.processes).max(1)),
            "--processes=1".into(),
            "--report-raw".into(),
        ];
        let mut command = Command::new(&exe);
        command
            .args(std::env::args_os().skip(1))
            .args(overrides)
            .stdout(Stdio::piped());
        let mut child = command.spawn().map_err(|e| {
            signal_all(&children, libc::SIGTERM);
            fatal!("starting child process: {e}")
        })?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                _ = tx.send((j, Some(line)));
            }
            _ = tx.send((j, None));
        });
        children.push(child);
        (first_index, first_source) = (first_index + share, first_source + sources[j]);
    }
    drop(tx);

    let mut ready = vec![None; children.len()];
    let mut reports: Vec<Option<Summary>> = children.iter().map(|_| None).collect();
    let (mut running, mut lost_child) = (children.len(), None);
    let mut kill_at = Some(start + secs(a.max_seconds + 30.0));
    while running > 0 {
        let sig = SIGNAL.swap(0, Relaxed);
        if sig != 0 {
            signal_all(&children, sig);
        }
        if kill_at.is_some_and(|at| Instant::now() >= at) {
            log::warn!("children overran --max-seconds; killing them");
            signal_all(&children, libc::SIGKILL);
            kill_at = None;
        }
        match rx.recv_timeout(secs(0.1)) {
            Ok((j, Some(line))) if line.starts_with("ready ") => {
                ready[j] = Some(line);
                if ready.iter().all(Option::is_some) {
                    let sum = |key| {
                        ready
                            .iter()
                            .flatten()
                            .map(|l| ready_count(l, key))
                            .sum::<u64>()
                    };
                    let (established, failed) = (sum("established"), sum("failed"));
                    println!("ready established={established} failed={failed} attempted={n}");
                    _ = io::stdout().flush();
                }
            }
            Ok((j, Some(line))) => reports[j] = Summary::from_raw(&line),
            Ok((j, None)) => {
                running -= 1;
                if reports[j].is_none() && lost_child.is_none() {
                    lost_child = Some(j);
                    signal_all(&children, libc::SIGTERM);
                }
            }
            Err(_) => {}
        }
    }
    let statuses: Vec<_> = children.iter_mut().map(Child::wait).collect();
    if let Some(j) = lost_child {
        return Err(fatal!(
            "child process {j} ended without a report ({:?})",
            statuses[j]
        ));
    }
    let mut total = Summary::default();
    reports
        .into_iter()
        .flatten()
        .for_each(|report| total.merge(report));
    total.elapsed_s = start.elapsed().as_secs_f64();
    println!("{}", total.to_json());
    if total.established == 0 {
        return Err(fatal!("no connection to {} could be established", a.addr));
    }
    Ok(())
}

/// `key=<count>` from a child's ready line.
fn ready_count(line: &str, key: &str) -> u64 {
    let value = line
        .split(' ')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='));
    value.and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn signal_all(children: &[Child], sig: libc::c_int) {
    for child in children {
        // SAFETY: plain kill(2). Children are reaped only after the last signal is sent, so
        // their pids cannot have been reused.
        unsafe { libc::kill(child.id() as libc::pid_t, sig) };
    }
}

// ---------------------------------------------------------------------------------------------
// publish

fn run_publish(a: &PublishArgs) -> Result<(), Failure> {
    let addr = resolve(&a.addr)?;
    let start = Instant::now();
    let hard_stop = start + secs(a.max_seconds);
    let send_until = if a.duration > 0.0 {
        start + secs(a.duration)
    } else {
        hard_stop
    };
    let (mut sent, mut in_flight, mut published, mut errors) = (0, 0, 0, 0);
    let (mut stream, mut connects, mut connect_failures) = (None::<StdTcpStream>, 0u64, 0);
    let (mut rx, mut buf, mut request) = (Vec::new(), vec![0; 16 * 1024], Vec::new());
    let mut drain_until = None;
    let failure = loop {
        let now = Instant::now();
        let sending = sent < a.count && now < send_until;
        // Once sending is over, answers still owed get a few seconds.
        let drained =
            !sending && (in_flight == 0 || now >= *drain_until.get_or_insert(now + secs(5.0)));
        if SIGNAL.load(Relaxed) != 0 || now >= hard_stop || drained {
            break None;
        }
        let Some(conn) = stream.as_mut() else {
            match StdTcpStream::connect_timeout(&addr, secs(5.0)) {
                Ok(s) => {
                    _ = s.set_nodelay(true);
                    _ = s.set_write_timeout(Some(secs(5.0)));
                    (stream, connects, connect_failures) = (Some(s), connects + 1, 0);
                }
                Err(e) if connects == 0 => return Err(fatal!("connect to {addr}: {e}")),
                Err(e) if connect_failures >= 10 => break Some(fatal!("reconnect to {addr}: {e}")),
                Err(_) => {
                    connect_failures += 1;
                    std::thread::sleep(secs(0.1));
                }
            }
            continue;
        };
        let can_send = sending && in_flight < a.pipeline;
        let due = if a.rate > 0.0 {
            start + secs(sent as f64 / a.rate)
        } else {
            now
        };
        if can_send && now >= due {
            build_publish(&mut request, a, unix_micros());
            sent += 1;
            in_flight += 1;
            if let Err(e) = conn.write_all(&request) {
                log::debug!("publish: write: {e}");
                errors += u64::from(in_flight);
                (stream, in_flight) = (None, 0);
                rx.clear();
            }
            continue;
        }
        // Wait for answers until the next send is due. Reading while idle also notices the
        // server closing the connection between events.
        let wait = if can_send {
            due.saturating_duration_since(now)
        } else {
            secs(0.1)
        };
        _ = conn.set_read_timeout(Some(wait.clamp(secs(0.001), secs(0.1))));
        let eof = match conn.read(&mut buf) {
            Ok(n) => {
                rx.extend_from_slice(&buf[..n]);
                n == 0
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                log::debug!("publish: read: {e}");
                true
            }
        };
        let close = loop {
            match take_response(&rx, eof) {
                Ok(Some((head, used))) => {
                    rx.drain(..used);
                    if head.status >= 200 && in_flight > 0 {
                        in_flight -= 1;
                        let ok = (200..300).contains(&head.status);
                        (published, errors) = (published + u64::from(ok), errors + u64::from(!ok));
                    }
                    if head.close {
                        break true;
                    }
                }
                Ok(None) => break eof,
                Err(e) => {
                    log::debug!("publish: bad response: {e}");
                    break true;
                }
            }
        };
        if close {
            // What is still in flight on a closing connection will never be answered.
            errors += u64::from(in_flight);
            (stream, in_flight) = (None, 0);
            rx.clear();
        }
    };
    errors += u64::from(in_flight);
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "{}",
        json! {
            "mode": "\"publish\"",
            "published": published,
            "errors": errors,
            "reconnects": connects.saturating_sub(1),
            "sent": sent,
            "elapsed_s": format!("{elapsed:.3}"),
            "rate": format!("{:.1}", published as f64 / elapsed.max(1e-9)),
        }
    );
    failure.map_or(Ok(()), Err)
}

fn build_publish(request: &mut Vec<u8>, a: &PublishArgs, t: u64) {
    let stamp = format!("t={t}");
    let padding = a.size.saturating_sub(stamp.len());
    request.clear();
    _ = write!(request, "POST {} HTTP/1.1\r\nHost: {}\r\n", a.path, a.addr);
    if let Some(token) = &a.token {
        _ = write!(request, "Authorization: Bearer {token}\r\n");
    }
    let length = stamp.len() + padding;
    _ = write!(
        request,
        "Content-Type: text/plain\r\nContent-Length: {length}\r\n\r\n{stamp}"
    );
    if padding > 0 {
        request.push(b' ');
        request.resize(request.len() + padding - 1, b'x');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (events, heartbeats, comments, stamps) after feeding `chunks` one after another.
    fn parse(chunks: &[&[u8]]) -> (u32, u32, u32, Vec<u64>) {
        let (mut parser, mut stamps) = (SseParser::default(), Vec::new());
        for chunk in chunks {
            parser.feed(chunk, b"keep-alive", &mut |t| stamps.push(t));
        }
        (parser.events, parser.heartbeats, parser.comments, stamps)
    }

    const STREAM: &[u8] = b": hi\r\n\r\nevent: keep-alive\ndata\n\nid: 7\rdata: t=1700000000000000 xx\r\
        data: second line\r\n\r\nevent:keep-alive2\ndata:t=5\n\nevent: x\r\n\r\ndata:t=1a\n\n:\rdata: t=9\r\r";

    fn expected() -> (u32, u32, u32, Vec<u64>) {
        (4, 1, 2, vec![1_700_000_000_000_000, 5, 9])
    }

    #[test]
    fn sse_handles_line_endings_comments_heartbeats_and_stamps() {
        assert_eq!(parse(&[STREAM]), expected());
    }

    #[test]
    fn sse_is_independent_of_read_boundaries() {
        for split in 0..=STREAM.len() {
            let parsed = parse(&[&STREAM[..split], &STREAM[split..]]);
            assert_eq!(parsed, expected(), "split at {split}");
        }
        let bytes: Vec<&[u8]> = STREAM.chunks(1).collect();
        assert_eq!(parse(&bytes), expected());
    }

    #[test]
    fn sse_edge_cases() {
        // CR and LF in separate reads are one line end; a further CR then LF are two.
        assert_eq!(
            parse(&[b"data: t=1\r", b"\n", b"\r", b"\n"]),
            (1, 0, 0, vec![1])
        );
        // Only the first data line carries the stamp; `t=` alone or two spaces are no stamp.
        let unstamped = parse(&[b"data: x\ndata: t=3\n\ndata: t=\n\ndata:  t=4\n\n"]);
        assert_eq!(unstamped, (3, 0, 0, vec![]));
        // No data, no event; the event type resets after each dispatch.
        assert_eq!(
            parse(&[b"event: keep-alive\n\nid: 1\n\ndata\n\n"]),
            (1, 0, 0, vec![])
        );
        let lookalikes = parse(&[b"dat: 1\ndatax: 2\neventx: keep-alive\ndata: t=1\n\n"]);
        assert_eq!(lookalikes, (1, 0, 0, vec![1]));
        assert_eq!(
            parse(&[b"data: t=99999999999999999999999\n\n"]),
            (1, 0, 0, vec![])
        );
    }

    #[test]
    fn dechunker_handles_every_split() {
        let body = b"5;ext=1\r\ndata:\r\n7\r\n t=42\n\n\r\n0\r\nX-Trailer: 1\r\n\r\nnext";
        for split in 0..=body.len() {
            let (mut d, mut payload) = (Dechunker::default(), Vec::new());
            let mut out = |p: &[u8]| payload.extend_from_slice(p);
            let end = match d.feed(&body[..split], &mut out).unwrap() {
                Some(end) => end,
                None => split + d.feed(&body[split..], &mut out).unwrap().unwrap(),
            };
            assert_eq!(
                (&payload[..], end),
                (&b"data: t=42\n\n"[..], body.len() - 4)
            );
        }
        assert!(Dechunker::default().feed(b"zz\r\n", &mut |_| {}).is_err());
    }

    #[test]
    fn heads_and_responses() {
        let sse = b"HTTP/1.1 200 OK\r\nContent-Type: Text/Event-Stream; charset=utf-8\r\n\r\ndata";
        let head = parse_head(sse).unwrap().unwrap();
        assert!(head.status == 200 && head.event_stream && !head.chunked);
        assert_eq!(head.len, sse.len() - 4);
        let partial = parse_head(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n");
        assert!(partial.unwrap().is_none());
        assert!(parse_head(b"garbage\r\n\r\n").is_err());
        let two = b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\nok\
            HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n";
        let (head, used) = take_response(two, false).unwrap().unwrap();
        assert_eq!((head.status, used), (202, 46));
        let (head, rest) = take_response(&two[46..], false).unwrap().unwrap();
        assert_eq!(
            (head.status, rest, head.close),
            (200, two.len() - 46, false)
        );
        let unframed = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nbye";
        assert!(take_response(unframed, false).unwrap().is_none());
        let (head, used) = take_response(unframed, true).unwrap().unwrap();
        assert!(head.close && used == unframed.len());
    }

    #[test]
    fn histogram_error_and_percentiles() {
        for v in (0..2_000_000u64).step_by(7).chain([u64::MAX / 3, u64::MAX]) {
            let mid = Histogram::midpoint(Histogram::bucket(v));
            assert!(mid.abs_diff(v) as f64 <= v as f64 * 0.004, "{v} -> {mid}");
        }
        let mut h = Histogram::default();
        (1..=1000).for_each(|v| h.record(v * 100));
        assert!(h.percentile(0.5).abs_diff(50_000) <= 200);
        assert!(h.percentile(0.99).abs_diff(99_000) <= 400);
        assert_eq!(
            (h.percentile(1.0), h.max, h.count),
            (100_000, 100_000, 1000)
        );
    }

    #[test]
    fn child_reports_round_trip_and_merge() {
        let mut s = Summary {
            attempted: 10,
            established: 8,
            dropped: 1,
            ..Summary::default()
        };
        (s.events, s.min_events, s.max_events, s.rss_bytes) = (80, Some(9), 11, 4096);
        s.fails[Fail::Timeout as usize] = 2;
        s.stop_reason = "hold".into();
        [(100, 150), (100, 170), (200, 230)]
            .iter()
            .for_each(|&(t, now)| s.record_delivery(t, now));
        let mut total = Summary::default();
        total.merge(Summary::from_raw(&s.raw_line()).unwrap());
        total.merge(Summary::from_raw(&s.raw_line()).unwrap());
        let json = total.to_json();
        for part in [
            r#""attempted":20,"established":16,"failed":4"#,
            r#""timeout":4,"aborted":0},"dropped":2,"events":160"#,
            r#""min_events_per_conn":9,"max_events_per_conn":11"#,
            r#""latency_us":{"p50":50,"p99":70,"max":70,"samples":6}"#,
            r#""last_subscriber_latency_us":{"p50":30,"max":70,"events":2,"min_receivers":2}"#,
            r#""stop_reason":"hold""#,
            r#""rss_bytes":8192,"processes":2,"children_rss_bytes":[4096,4096]}"#,
        ] {
            assert!(json.contains(part), "{part} not in {json}");
        }
    }

    #[test]
    fn conn_stays_small() {
        // Debug builds of mio add a selector id to every stream.
        let budget = if cfg!(debug_assertions) { 64 } else { 48 };
        assert!(std::mem::size_of::<Conn>() <= budget);
    }
}
