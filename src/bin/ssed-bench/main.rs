//! `ssed-bench`: load generator for ssed and the baseline SSE servers it is compared with.
//!
//! * `subscribe` opens N subscriptions (`GET /events/<topic>`, with a token if given one), prints
//!   `ready established=E failed=F attempted=N` once each has received a
//!   `200 text/event-stream` head or failed, then holds them while counting events, comments
//!   and bytes and timing every event whose data is `t=<unix micros>`. It ends with one JSON
//!   summary line.
//! * `publish` POSTs `t=<unix micros>` events over one persistent HTTP/1.1 connection at a
//!   fixed rate, round-robin over its paths if given several, and ends with one JSON summary
//!   line.
//!
//! Paths are templates: `{i}` is the connection index (publish: the events sent to that path
//! before), `{i%N}` that index modulo N (`expand`).
//!
//! Shape: `subscribe` is one edge-triggered mio loop per process. A connection is a 48-byte
//! `Conn` in a Vec indexed by its mio token, all reads share one buffer, and the SSE parser is
//! a byte-at-a-time state machine, so the tool adds little memory per connection next to the
//! server it measures. Connection i binds to source address `--source-base + i / --per-source`
//! so that one source's ~28k ephemeral ports are no ceiling; `--processes P` re-executes the
//! binary P times on disjoint source ranges to get past the per-process open-file limit, and
//! merges what the children report. `publish` has one connection, so it is a blocking loop.
//!
//! Modules, in reading order: `sse` and `http` parse what a server sends; `histogram` and
//! `summary` keep the results and print them; `subscribe` is the event loop, `parent` the
//! `--processes` fan-out, `publish` the publisher. This file holds the command line, `main` and
//! the helpers they share.

use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::atomic::{AtomicI32, Ordering::Relaxed};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Args, Parser, Subcommand};

// The macros come before the modules so that the modules can use them.

macro_rules! usage {
    ($($fmt:tt)*) => { $crate::Failure::Usage(format!($($fmt)*)) };
}

macro_rules! fatal {
    ($($fmt:tt)*) => { $crate::Failure::Fatal(format!($($fmt)*)) };
}

/// Formats `{"key":value,...}`. Values are written with Display: strings bring their quotes.
macro_rules! json {
    ($($key:literal: $value:expr),* $(,)?) => {{
        let fields: Vec<String> = vec![$(format!("\"{}\":{}", $key, $value)),*];
        format!("{{{}}}", fields.join(","))
    }};
}

mod histogram;
mod http;
mod parent;
mod publish;
mod sse;
mod subscribe;
mod summary;
mod tls;

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
    /// Subscribe path; `{i}` is replaced by the connection index (one topic per connection),
    /// `{i%N}` by the index modulo N (e.g. `/events?topic=all&topic=group/{i%100}`)
    #[arg(long, value_name = "PATH", default_value = "/events/bench", value_parser = template)]
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
    #[arg(long, value_name = "SECS", default_value_t = 30.0, value_parser = non_negative)]
    connect_timeout: f64,
    /// Seconds to hold after ready; 0 = until another stop condition
    #[arg(long, value_name = "SECS", default_value_t = 0.0, value_parser = non_negative)]
    hold: f64,
    /// Stop once every open connection has received this many events (0 = off)
    #[arg(long, value_name = "K", default_value_t = 0)]
    expect_events: u64,
    /// Hard bound on the whole run, in seconds
    #[arg(long, value_name = "SECS", default_value_t = 600.0, value_parser = non_negative)]
    max_seconds: f64,
    /// Event type counted as a heartbeat rather than an event
    #[arg(long, value_name = "NAME", default_value = "keep-alive")]
    heartbeat_event: String,
    /// Processes to split the connections over (each holds at most 19000)
    #[arg(long, value_name = "P", default_value_t = 1, value_parser = positive())]
    processes: u32,
    /// Send `Authorization: Bearer TOKEN` with every subscribe [default: none]
    #[arg(long, value_name = "TOKEN", conflicts_with = "token_file")]
    token: Option<String>,
    /// Tokens, one per line: connection i sends line i (cycling), like --token
    #[arg(long, value_name = "FILE")]
    token_file: Option<std::path::PathBuf>,
    /// Send the token as the cookie NAME instead of an Authorization header
    #[arg(long, value_name = "NAME")]
    cookie: Option<String>,
    /// Added to the connection index in `{i}`; set by the parent for its children
    #[arg(long, default_value_t = 0, hide = true)]
    index_offset: u64,
    /// Report as a `raw ...` line for a parent to merge; set by the parent for its children
    #[arg(long, hide = true)]
    report_raw: bool,
    #[command(flatten)]
    tls: tls::TlsArgs,
}

#[derive(Args)]
struct PublishArgs {
    /// Server address, HOST:PORT
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8080")]
    addr: String,
    /// Publish path; given several times, events go to the paths in turn. `{i}` / `{i%N}` as
    /// in subscribe, the index being the number of events sent to that path before
    #[arg(long = "path", value_name = "PATH", default_value = "/events/bench", value_parser = template)]
    paths: Vec<String>,
    /// Events to publish
    #[arg(long, value_name = "K", default_value_t = 100)]
    count: u64,
    /// Events per second; 0 = as fast as the pipeline allows
    #[arg(long, value_name = "R", default_value_t = 10.0, value_parser = non_negative)]
    rate: f64,
    /// Stop publishing after this many seconds; 0 = when --count is reached
    #[arg(long, value_name = "SECS", default_value_t = 0.0, value_parser = non_negative)]
    duration: f64,
    /// Event data size in bytes; 0 = just `t=<micros>`, else padded with a space and x's
    #[arg(long, value_name = "BYTES", default_value_t = 0)]
    size: usize,
    /// Requests in flight on the connection
    #[arg(long, value_name = "W", default_value_t = 1, value_parser = positive())]
    pipeline: u32,
    /// Hard bound on the whole run, in seconds
    #[arg(long, value_name = "SECS", default_value_t = 600.0, value_parser = non_negative)]
    max_seconds: f64,
    /// Send `Authorization: Bearer TOKEN` [default: none]
    #[arg(long, value_name = "TOKEN")]
    token: Option<String>,
    #[command(flatten)]
    tls: tls::TlsArgs,
}

/// The tokens subscriptions present (--token, --token-file), in order; empty: none.
fn load_tokens(a: &SubscribeArgs) -> Result<Vec<String>, Failure> {
    let tokens = match (&a.token, &a.token_file) {
        (Some(token), _) => vec![token.clone()],
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| usage!("--token-file {}: {e}", path.display()))?;
            let tokens: Vec<String> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect();
            if tokens.is_empty() {
                return Err(usage!("--token-file {}: no token in it", path.display()));
            }
            tokens
        }
        (None, None) if a.cookie.is_some() => {
            return Err(usage!("--cookie needs --token or --token-file"))
        }
        (None, None) => Vec::new(),
    };
    if let Some(bad) = tokens
        .iter()
        .find(|t| t.len() > 8192 || !t.bytes().all(|b| b.is_ascii_graphic()))
    {
        return Err(usage!(
            "a token of {} bytes is not printable ASCII up to 8192 bytes",
            bad.len()
        ));
    }
    Ok(tokens)
}

/// Checks a `--path` template: its `{...}` fields are `{i}` or `{i%N}` with N ≥ 1.
fn template(s: &str) -> Result<String, String> {
    if s.len() > 8192 {
        return Err("longer than 8192 bytes".into());
    }
    expand(s, 0).map(|_| s.to_string())
}

/// `template` with `{i}` replaced by `index` and `{i%N}` by `index % N`.
fn expand(template: &str, index: u64) -> Result<String, String> {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let Some(len) = rest[open..].find('}') else {
            return Err(format!("unclosed `{{` in `{template}`"));
        };
        let field = &rest[open + 1..open + len];
        let value = match field
            .strip_prefix('i')
            .map(|m| m.strip_prefix('%').map(str::parse::<u64>))
        {
            Some(None) if field == "i" => index,
            Some(Some(Ok(n))) if n > 0 => index % n,
            _ => {
                return Err(format!(
                    "`{{{field}}}` in `{template}`: not {{i}} or {{i%N}}, N ≥ 1"
                ))
            }
        };
        out.push_str(&value.to_string());
        rest = &rest[open + len + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn positive() -> clap::builder::RangedI64ValueParser<u32> {
    clap::value_parser!(u32).range(1..)
}

fn non_negative(s: &str) -> Result<f64, String> {
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

/// The last SIGINT or SIGTERM received, 0 if none: the run loops poll it to wind down.
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
        Cmd::Subscribe(a) if a.processes > 1 => parent::run_parent(a),
        Cmd::Subscribe(a) => subscribe::run_subscribe(a),
        Cmd::Publish(a) => publish::run_publish(a),
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

/// `base + offset`, refused outside 127.0.0.0/8: this tool only ever loads loopback.
fn source_ip(base: Ipv4Addr, offset: u64) -> Result<Ipv4Addr, Failure> {
    match u32::try_from(u64::from(u32::from(base)) + offset).map(Ipv4Addr::from) {
        Ok(ip) if ip.octets()[0] == 127 => Ok(ip),
        _ => Err(usage!(
            "source {base} + {offset} is outside 127.0.0.0/8, the only one allowed"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::expand;

    #[test]
    fn path_templates_expand_the_index_and_the_index_modulo_n() {
        let three = "/events?topic=all&topic=group/{i%100}&topic=user/{i}";
        assert_eq!(
            expand(three, 12345).unwrap(),
            "/events?topic=all&topic=group/45&topic=user/12345"
        );
        assert_eq!(
            expand(three, 7).unwrap(),
            "/events?topic=all&topic=group/7&topic=user/7"
        );
        assert_eq!(expand("/events/t{i}", 0).unwrap(), "/events/t0");
        assert_eq!(expand("/{i%1}/{i%3}{i}", 5).unwrap(), "/0/25");
        assert_eq!(expand("/events/bench", 9).unwrap(), "/events/bench");
        assert_eq!(expand("", 9).unwrap(), "");
        // %2F and the like pass through: only `{...}` fields are expanded.
        assert_eq!(
            expand("/events?topic=a%2F{i}", 4).unwrap(),
            "/events?topic=a%2F4"
        );
    }

    #[test]
    fn path_templates_refuse_unknown_fields() {
        for bad in [
            "/{i%0}", "/{i%}", "/{i%x}", "/{j}", "/{}", "/{i", "/{i%-1}", "/{ i}",
        ] {
            let err = expand(bad, 1).unwrap_err();
            assert!(err.contains(bad), "{bad}: {err}");
        }
    }
}
