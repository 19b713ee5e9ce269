//! A real browser's EventSource (headless Chromium) against ssed: the stream head, event
//! fields and types, CORS, and a reconnect with Last-Event-ID to another ssed process (sharing
//! the port through SO_REUSEPORT and Redis) that replays what the browser missed.
//!
//! The page (tests/browser/eventsource.html) reports every EventSource callback by publishing it
//! to the topic `report` on a third ssed process, which this test subscribes to.

mod common;
use common::*;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};

const PAGE: &str = include_str!("browser/eventsource.html");

/// Serves the page to whoever asks, on a free port; returns its origin.
fn serve_page() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{PAGE}",
                PAGE.len()
            );
            let _ = reader.get_mut().write_all(response.as_bytes());
        }
    });
    origin
}

/// Headless Chromium with a throwaway profile, killed and cleaned up on drop.
struct Browser {
    child: Child,
    profile: std::path::PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

fn open_browser(url: &str) -> Browser {
    let profile = std::env::temp_dir().join(format!("ssed-chromium-{}", std::process::id()));
    let child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            &format!("--user-data-dir={}", profile.display()),
            "--remote-debugging-port=0",
            url,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium is needed for this test: run ./test.sh, which installs it");
    Browser { child, profile }
}

/// The next report from the page, as (kind, id, data).
fn next_report(reports: &mut Subscription) -> (String, String, String) {
    let json = reports.next_event().data;
    let field = |name: &str| -> String {
        let key = format!("\"{name}\":");
        let Some(at) = json.find(&key) else {
            return String::new();
        };
        let rest = &json[at + key.len()..];
        if let Some(text) = rest.strip_prefix('"') {
            // The page's strings are plain: no escaped quotes except \n.
            text[..text.find('"').unwrap()].replace("\\n", "\n")
        } else {
            rest.split([',', '}']).next().unwrap().to_string()
        }
    };
    (field("kind"), field("id"), field("data"))
}

#[test]
fn eventsource_in_chromium_receives_events_and_replays_after_reconnecting_elsewhere() {
    let redis = RedisServer::start();
    let page = serve_page();
    let reporter = Daemon::with_redis(&redis, "127.0.0.1:0", &["--cors-origin", &page]);
    let mut reports = reporter.subscribe("report");
    let mut first = Daemon::with_redis(&redis, "127.0.0.1:0", &["--cors-origin", &page]);
    let shared_port = first.addr.to_string();

    let url = format!(
        "{page}/?ssed=http://{shared_port}&report=http://{}",
        reporter.addr
    );
    let _browser = open_browser(&url);
    assert_eq!(next_report(&mut reports).0, "open");

    let id1 = first.publish("browser", "hello");
    let typed = request(
        first.addr,
        "POST",
        "/events/browser?event=custom",
        &[],
        b"two\nlines",
    );
    assert_eq!(typed.status, 200);
    let id2 = typed.body_text();
    assert_eq!(
        next_report(&mut reports),
        ("message".into(), id1, "hello".into())
    );
    assert_eq!(
        next_report(&mut reports),
        ("custom".into(), id2.clone(), "two\nlines".into())
    );

    // A second process joins the port; the first leaves, telling the browser to come back in
    // 1-5 s. What is published meanwhile is replayed by the second, from Redis.
    let second = Daemon::with_redis(&redis, &shared_port, &["--cors-origin", &page]);
    assert!(first.terminate().success());
    let missed = second.publish("browser", "while you were away");
    assert_eq!(
        next_report(&mut reports).0,
        "error",
        "EventSource noticed the close"
    );
    assert_eq!(next_report(&mut reports).0, "open", "and reconnected");
    assert_eq!(
        next_report(&mut reports),
        ("message".into(), missed, "while you were away".into())
    );
    let live = second.publish("browser", "live again");
    assert_eq!(
        next_report(&mut reports),
        ("message".into(), live, "live again".into())
    );
}
