//! Test harness: runs the real `ssed` binary on a free loopback port and talks to it over TCP.
//!
//! Nothing here sleeps for correctness: reads carry generous timeouts, and `wait_for` polls a
//! condition until it holds or a deadline passes.
#![allow(dead_code)]

pub mod browser;
pub mod keys;
pub mod tls;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const PATIENCE: Duration = Duration::from_secs(20);

pub struct Daemon {
    pub addr: SocketAddr,
    pub child: Child,
}

impl Daemon {
    pub fn start(args: &[&str]) -> Daemon {
        Daemon::start_with_env(args, &[])
    }

    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ssed"));
        command.args(["--listen", "127.0.0.1:0"]).args(args);
        Daemon::spawn(command, env)
    }

    /// Starts ssed with exactly these arguments (no default --listen).
    pub fn spawn(mut command: Command, env: &[(&str, &str)]) -> Daemon {
        command.stderr(Stdio::inherit());
        Daemon::spawn_with(command, env)
    }

    /// Starts ssed with its log lines (at `info`) arriving on the returned channel.
    pub fn spawn_logging(mut command: Command) -> (Daemon, std::sync::mpsc::Receiver<String>) {
        command.stderr(Stdio::piped());
        let mut daemon = Daemon::spawn_with(command, &[("RUST_LOG", "info")]);
        let stderr = BufReader::new(daemon.child.stderr.take().unwrap());
        let (lines, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                eprintln!("{line}");
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        (daemon, receiver)
    }

    fn spawn_with(mut command: Command, env: &[(&str, &str)]) -> Daemon {
        command
            .env(
                "RUST_LOG",
                std::env::var("SSED_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        let mut child = command.spawn().expect("start ssed");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("read ssed's first line");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .unwrap();
        Daemon { addr, child }
    }

    /// One event loop (`--workers 1`) following `redis`, listening on `listen`.
    pub fn with_redis(redis: &RedisServer, listen: &str, extra: &[&str]) -> Daemon {
        Daemon::with_redis_url(&redis.url(), listen, extra)
    }

    /// One event loop (`--workers 1`) following the Redis at `url`, listening on `listen`.
    pub fn with_redis_url(url: &str, listen: &str, extra: &[&str]) -> Daemon {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ssed"));
        command
            .args(["--listen", listen, "--workers", "1", "--redis", url])
            .args(extra);
        Daemon::spawn(command, &[])
    }

    pub fn connect(&self) -> TcpStream {
        connect(self.addr)
    }

    pub fn subscribe(&self, topic: &str) -> Subscription {
        Subscription::open(self.addr, &format!("/events/{topic}"), &[])
    }

    pub fn publish(&self, topic: &str, data: &str) -> String {
        let response = request(
            self.addr,
            "POST",
            &format!("/events/{topic}"),
            &[],
            data.as_bytes(),
        );
        assert_eq!(response.status, 200, "publish failed: {response:?}");
        response.body_text()
    }

    pub fn metric(&self, name: &str) -> f64 {
        metric(self.addr, name)
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        wait_for("ssed to exit", || self.child.try_wait().unwrap()).0
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect to ssed");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream
}

/// Polls `probe` until it returns Some, panicking after PATIENCE.
pub fn wait_for<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> (T, Duration) {
    let start = Instant::now();
    loop {
        if let Some(value) = probe() {
            return (value, start.elapsed());
        }
        assert!(start.elapsed() < PATIENCE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Response {
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

/// Reads one response with a Content-Length body from `stream`.
pub fn read_response(stream: &mut impl Read) -> Response {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            other => panic!(
                "connection ended inside a response head ({other:?}): {:?}",
                String::from_utf8_lossy(&head)
            ),
        }
    }
    let head = String::from_utf8(head).unwrap();
    let status = head[9..12].parse().unwrap();
    let mut response = Response {
        status,
        head,
        body: Vec::new(),
    };
    let length: usize = response
        .header("content-length")
        .map_or(0, |v| v.parse().unwrap());
    response.body.resize(length, 0);
    stream.read_exact(&mut response.body).unwrap();
    response
}

/// One request on a fresh connection (`Connection: close`).
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    request_over(&mut connect(addr), method, path, headers, body)
}

/// One request (`Connection: close`) over a connected stream, plain or TLS, and its answer.
pub fn request_over(
    stream: &mut (impl Read + Write),
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut text = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("\r\n");
    stream.write_all(text.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    stream.flush().unwrap();
    read_response(stream)
}

/// Sends raw bytes and returns everything the server sends until it closes.
pub fn exchange(addr: SocketAddr, raw: &[u8]) -> String {
    let mut stream = connect(addr);
    stream.write_all(raw).unwrap();
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

pub fn metric(addr: SocketAddr, name: &str) -> f64 {
    try_metric(addr, name).unwrap_or_else(|| panic!("no metric {name}"))
}

/// The metric's value, or None if the server did not answer /metrics with it (e.g. a 503).
pub fn try_metric(addr: SocketAddr, name: &str) -> Option<f64> {
    let body = request(addr, "GET", "/metrics", &[], b"").body_text();
    body.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// Waits until metric `name` has exactly `value`.
pub fn wait_for_metric(daemon: &Daemon, name: &str, value: f64) {
    wait_for(&format!("{name} to be {value}"), || {
        (try_metric(daemon.addr, name) == Some(value)).then_some(())
    });
}

/// `ssed_requests_rejected_total` for `reason`.
pub fn rejected(daemon: &Daemon, reason: &str) -> f64 {
    daemon.metric(&format!(
        "ssed_requests_rejected_total{{reason=\"{reason}\"}}"
    ))
}

/// `ssed_auth_failures_total` for `reason`.
pub fn auth_failures(daemon: &Daemon, reason: &str) -> f64 {
    daemon.metric(&format!("ssed_auth_failures_total{{reason=\"{reason}\"}}"))
}

/// A dispatched SSE event, as EventSource would see it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

/// Asserts that `event` is the gap event for `topic`.
pub fn assert_gap(event: &Event, topic: &str) {
    assert_eq!(
        (
            event.event.as_deref(),
            event.data.as_str(),
            event.id.as_deref()
        ),
        (Some("ssed-gap"), topic, None),
        "the gap event: event: ssed-gap, data: <topic>, no id"
    );
}

/// Two events published to `far`, then a subscriber resuming from the largest Last-Event-ID:
/// it gets the gap event and both retained events, and the process is still up and delivering
/// to it and to a new subscriber.
pub fn the_largest_last_event_id_gets_the_gap_event_and_the_retained_events(daemon: &Daemon) {
    let ids: Vec<String> = (1..=2)
        .map(|i| daemon.publish("far", &format!("e{i}")))
        .collect();
    let mut sub = Subscription::open(
        daemon.addr,
        "/events/far",
        &[("Last-Event-ID", "18446744073709551615")],
    );
    assert_gap(&sub.next_event(), "far");
    for (i, id) in ids.iter().enumerate() {
        let event = sub.next_event();
        assert_eq!(
            (event.id.as_ref(), event.data),
            (Some(id), format!("e{}", i + 1))
        );
    }
    // The process is still up and delivering.
    let mut other = daemon.subscribe("far");
    daemon.publish("far", "e3");
    assert_eq!(sub.next_event().data, "e3");
    assert_eq!(other.next_event().data, "e3");
}

/// An open SSE stream with a WHATWG-style parser over it: over TCP, or any other stream (TLS).
pub struct Subscription<S: Read = TcpStream> {
    pub head: String,
    reader: BufReader<S>,
    pub comments: Vec<String>,
    pub retry: Option<u64>,
}

impl Subscription {
    pub fn open(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Subscription {
        Subscription::over(connect(addr), path, headers)
    }

    pub fn stream(&self) -> &TcpStream {
        self.reader.get_ref()
    }
}

impl<S: Read + Write> Subscription<S> {
    /// Subscribes over an open connection.
    pub fn over(mut stream: S, path: &str, headers: &[(&str, &str)]) -> Subscription<S> {
        let mut text =
            format!("GET {path} HTTP/1.1\r\nHost: test\r\nAccept: text/event-stream\r\n");
        for (name, value) in headers {
            text.push_str(&format!("{name}: {value}\r\n"));
        }
        text.push_str("\r\n");
        stream.write_all(text.as_bytes()).unwrap();
        let mut reader = BufReader::new(stream);
        let mut head = String::new();
        while !head.ends_with("\r\n\r\n") {
            let n = reader.read_line(&mut head).expect("read stream head");
            assert!(n > 0, "connection closed before the stream head: {head:?}");
        }
        assert!(head.starts_with("HTTP/1.1 200 "), "not a stream: {head:?}");
        Subscription {
            head,
            reader,
            comments: Vec::new(),
            retry: None,
        }
    }

    /// Everything the server sends until it ends the stream; an error if it was not a clean
    /// end (over TLS: no close_notify).
    pub fn rest(&mut self) -> std::io::Result<String> {
        let mut rest = String::new();
        self.reader.read_to_string(&mut rest)?;
        Ok(rest)
    }

    pub fn get_mut(&mut self) -> &mut S {
        self.reader.get_mut()
    }

    /// The next dispatched event (comments and retry fields are collected on the way).
    pub fn next_event(&mut self) -> Event {
        self.try_next_event()
            .expect("stream ended before the next event")
    }

    /// The next event, or None if the server closed the stream.
    pub fn try_next_event(&mut self) -> Option<Event> {
        let mut event = Event::default();
        let mut data: Option<String> = None;
        // Heartbeats keep the socket's read timeout from firing: bound the whole wait.
        let deadline = Instant::now() + PATIENCE;
        loop {
            assert!(Instant::now() < deadline, "no event within {PATIENCE:?}");
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("reading the stream: {e}"),
            }
            let line = line.trim_end_matches('\n');
            if line.is_empty() {
                if let Some(data) = data.take() {
                    event.data = data;
                    return Some(event);
                }
                event = Event::default();
                continue;
            }
            if let Some(comment) = line.strip_prefix(':') {
                self.comments.push(comment.trim_start().to_string());
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value).to_string();
            match field {
                "id" => event.id = Some(value),
                "event" => event.event = Some(value),
                "data" => match &mut data {
                    Some(d) => {
                        d.push('\n');
                        d.push_str(&value);
                    }
                    None => data = Some(value),
                },
                "retry" => self.retry = value.parse().ok(),
                _ => {}
            }
        }
    }

    /// Reads until the next comment line arrives; returns it.
    pub fn next_comment(&mut self) -> String {
        let before = self.comments.len();
        let mut line = String::new();
        while self.comments.len() == before {
            line.clear();
            assert!(
                self.reader.read_line(&mut line).unwrap() > 0,
                "stream ended"
            );
            if let Some(comment) = line.trim_end().strip_prefix(':') {
                self.comments.push(comment.trim_start().to_string());
            }
        }
        self.comments.last().unwrap().clone()
    }
}

/// A redis-server of its own on a free loopback port, without persistence.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = RedisServer { port, child: None };
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is needed for these tests: run ./test.sh, which installs it");
        self.child = Some(child);
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        wait_for("redis-server to answer PING", || {
            let mut conn = TcpStream::connect(addr).ok()?;
            conn.write_all(b"PING\r\n").ok()?;
            let mut reply = [0u8; 7];
            conn.read_exact(&mut reply).ok()?;
            (&reply == b"+PONG\r\n").then_some(())
        });
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
