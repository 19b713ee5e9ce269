//! `--redis` hardening: gaps after an outage, back-off against a Redis that is loading, readiness,
//! the password kept out of messages, and a Last-Event-ID that cannot be placed. Uses a real
//! redis-server (started on a free port), a fake one speaking RESP, and a proxy the test can cut.

mod common;
use common::*;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn status(daemon: &Daemon, path: &str) -> u16 {
    request(daemon.addr, "GET", path, &[], b"").status
}

/// Reads one RESP command (an array of bulk strings); None at the end of the connection.
fn read_command(reader: &mut impl BufRead) -> Option<Vec<String>> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let count: usize = line.trim_end().strip_prefix('*')?.parse().ok()?;
    let mut args = Vec::with_capacity(count);
    for _ in 0..count {
        line.clear();
        reader.read_line(&mut line).ok()?;
        let len: usize = line.trim_end().strip_prefix('$')?.parse().ok()?;
        let mut arg = vec![0u8; len + 2];
        reader.read_exact(&mut arg).ok()?;
        arg.truncate(len);
        args.push(String::from_utf8_lossy(&arg).into_owned());
    }
    Some(args)
}

/// Sends one command to a real Redis and returns the first line of its reply.
fn redis_line(port: u16, args: &[&str]) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut text = format!("*{}\r\n", args.len());
    for arg in args {
        text.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    stream.write_all(text.as_bytes()).unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    line.trim_end().to_string()
}

/// Publishes `count` events to `topic` on one keep-alive connection.
fn publish_many(daemon: &Daemon, topic: &str, count: usize) {
    let stream = daemon.connect();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    for i in 0..count {
        let body = format!("{i}");
        writer
            .write_all(
                format!(
                    "POST /events/{topic} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            )
            .unwrap();
        let response = read_response(&mut reader);
        assert_eq!(response.status, 200, "publish {i}: {response:?}");
    }
}

// ---- a proxy the test can cut --------------------------------------------------------------------

#[derive(Default)]
struct ProxyState {
    cut: bool,
    open: Vec<TcpStream>,
}

/// Forwards connections to a Redis port; `cut` closes them all and closes new ones at once
/// until `restore`.
struct Proxy {
    port: u16,
    state: Arc<Mutex<ProxyState>>,
}

impl Proxy {
    fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(ProxyState::default()));
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let mut state = shared.lock().unwrap();
                if state.cut {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                for (from, to) in [(&client, &server), (&server, &client)] {
                    let (mut from, mut to) = (from.try_clone().unwrap(), to.try_clone().unwrap());
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(Shutdown::Both);
                        let _ = from.shutdown(Shutdown::Both);
                    });
                }
                state.open.push(client);
                state.open.push(server);
            }
        });
        Proxy { port, state }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn cut(&self) {
        let mut state = self.state.lock().unwrap();
        state.cut = true;
        for stream in state.open.drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.state.lock().unwrap().cut = false;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
    }
}

// ---- 9. a stream trimmed during an outage --------------------------------------------------------

#[test]
fn a_stream_trimmed_during_an_outage_gives_every_subscriber_the_gap_event() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port);
    let a = Daemon::with_redis_url(&proxy.url(), "127.0.0.1:0", &["--redis-stream-len", "10"]);
    let b = Daemon::with_redis_url(&redis.url(), "127.0.0.1:0", &["--redis-stream-len", "10"]);
    let mut sub = a.subscribe("a");
    a.publish("a", "1");
    assert_eq!(sub.next_event().data, "1");

    proxy.cut();
    wait_for_metric(&a, "ssed_redis_connected", 0.0);
    // `MAXLEN ~ 10` trims whole macro nodes (100 entries by default): 1,000 events really trim.
    publish_many(&b, "b", 1000);
    let len: u64 = redis_line(redis.port, &["XLEN", "ssed:events"])
        .strip_prefix(':')
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(
        len < 1000,
        "events published during the outage were trimmed ({len} left)"
    );

    proxy.restore();
    assert_gap(&sub.next_event(), "a");
    wait_for_metric(&a, "ssed_redis_connected", 1.0);
    assert_eq!(a.metric("ssed_gaps_total"), 1.0);
    // The stream goes on after the gap. The command connection died in the cut: a publish may be
    // answered 503 (never acknowledged, so never lost) until it reconnects, as a publisher retries.
    wait_for("a publish to be taken again", || {
        let answer = request(a.addr, "POST", "/events/a", &[], b"2");
        (answer.status == 200).then_some(())
    });
    assert_eq!(sub.next_event().data, "2");
}

// ---- 8. back-off against a Redis that is loading -------------------------------------------------

/// A fake Redis: answers the startup read with an empty stream and every XREAD with LOADING.
/// Returns its port and the times of the XREADs it received.
fn loading_redis() -> (u16, Arc<Mutex<Vec<Instant>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let xreads = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&xreads);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let seen = Arc::clone(&seen);
            std::thread::spawn(move || {
                let mut writer = stream.try_clone().unwrap();
                let mut reader = BufReader::new(stream);
                while let Some(command) = read_command(&mut reader) {
                    let name = command.first().map(|c| c.to_ascii_uppercase());
                    let reply: &[u8] = match name.as_deref() {
                        Some("XREVRANGE") => b"*0\r\n",
                        Some("XREAD") => {
                            seen.lock().unwrap().push(Instant::now());
                            b"-LOADING Redis is loading the dataset in memory\r\n"
                        }
                        Some("PING") => b"+PONG\r\n",
                        Some("XINFO") => b"-ERR no such key\r\n",
                        Some("HELLO") => b"-ERR unknown command 'HELLO'\r\n",
                        _ => b"+OK\r\n",
                    };
                    if writer.write_all(reply).is_err() {
                        break;
                    }
                }
            });
        }
    });
    (port, xreads)
}

#[test]
fn a_redis_that_answers_loading_is_retried_with_back_off() {
    let (port, xreads) = loading_redis();
    let daemon = Daemon::with_redis_url(&format!("redis://127.0.0.1:{port}/0"), "127.0.0.1:0", &[]);
    // It keeps trying (100 ms, then 200 ms, ...).
    let (first, _) = wait_for("three XREADs", || {
        let times = xreads.lock().unwrap();
        (times.len() >= 3).then(|| times[0])
    });
    wait_for_metric(&daemon, "ssed_redis_connected", 0.0);
    assert_eq!(status(&daemon, "/readyz"), 503);
    // A bounded observation window: the claim is about how many attempts fit in 3 s, so the
    // test has to look at 3 s of them. Attempts are counted by their own timestamps, so a slow
    // test thread changes nothing; a loaded machine can only make fewer. With back-off from
    // 100 ms doubling to 5 s, 3 s hold about 5 attempts; a reader that retries at once makes
    // thousands.
    let window = Duration::from_secs(3);
    std::thread::sleep((first + window).saturating_duration_since(Instant::now()));
    let attempts = xreads
        .lock()
        .unwrap()
        .iter()
        .filter(|&&at| at < first + window)
        .count();
    assert!(attempts < 20, "{attempts} XREADs in {window:?}");
    assert_eq!(status(&daemon, "/livez"), 200);
}

// ---- 7. the password is never printed -------------------------------------------------------------

#[test]
fn the_redis_password_is_never_printed() {
    let output = Command::new(env!("CARGO_BIN_EXE_ssed"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--redis",
            "redis://:s3cr@t@127.0.0.1:1/0",
        ])
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stderr.contains("***"), "{stderr}");
    for text in [&stderr, &stdout] {
        assert!(!text.contains("s3cr@t") && !text.contains("cr@t"), "{text}");
    }
}

// ---- 5. the largest Last-Event-ID with Redis -------------------------------------------------------

#[test]
fn the_largest_last_event_id_with_redis_gets_the_gap_event_and_the_process_stays_up() {
    let redis = RedisServer::start();
    let daemon = Daemon::with_redis(&redis, "127.0.0.1:0", &[]);
    common::the_largest_last_event_id_gets_the_gap_event_and_the_retained_events(&daemon);
}

// ---- 14. readiness follows Redis, liveness does not ----------------------------------------------

#[test]
fn readyz_follows_redis_and_livez_does_not() {
    let mut redis = RedisServer::start();
    let daemon = Daemon::with_redis(&redis, "127.0.0.1:0", &[]);
    for path in ["/livez", "/readyz", "/healthz"] {
        assert_eq!(status(&daemon, path), 200, "{path}");
    }
    redis.kill();
    wait_for("/readyz to report the loss", || {
        (status(&daemon, "/readyz") == 503).then_some(())
    });
    assert_eq!(status(&daemon, "/healthz"), 503);
    assert_eq!(status(&daemon, "/livez"), 200);
    redis.restart();
    wait_for("/readyz and /healthz to recover", || {
        (status(&daemon, "/readyz") == 200 && status(&daemon, "/healthz") == 200).then_some(())
    });
    assert_eq!(status(&daemon, "/livez"), 200);
}

// ---- history reads are bounded in bytes ----------------------------------------------------------

#[test]
fn history_read_from_redis_is_bounded_in_bytes_and_says_so_with_the_gap_event() {
    let redis = RedisServer::start();
    let a = Daemon::with_redis(&redis, "127.0.0.1:0", &[]);
    let big = "x".repeat(10_000);
    let ids: Vec<String> = (0..10)
        .map(|i| {
            let answer = request(
                a.addr,
                "POST",
                "/events/big",
                &[],
                format!("{i}{big}").as_bytes(),
            );
            assert_eq!(answer.status, 200, "{answer:?}");
            answer.body_text()
        })
        .collect();
    // A process started later has none of it: a replay reads the topic's history from Redis,
    // and --history-bytes 25000 holds two of these events, not ten.
    let b = Daemon::with_redis(&redis, "127.0.0.1:0", &["--history-bytes", "25000"]);
    let mut sub = Subscription::open(b.addr, "/events/big", &[("Last-Event-ID", &ids[0])]);
    // The read stopped short of the client's id: it is told it may have missed events.
    assert_gap(&sub.next_event(), "big");
    for (i, id) in ids.iter().enumerate().skip(8) {
        let event = sub.next_event();
        assert_eq!(
            (event.id.as_deref(), event.data.chars().next()),
            (Some(id.as_str()), char::from_digit(i as u32, 10))
        );
    }
    a.publish("big", "live");
    assert_eq!(sub.next_event().data, "live");
}
