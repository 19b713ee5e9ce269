//! A real browser's EventSource (headless Chromium) against ssed: the stream head, event
//! fields and types, CORS, and a reconnect with Last-Event-ID to another ssed process (sharing
//! the port through SO_REUSEPORT and Redis) that replays what the browser missed.
//!
//! The page (tests/browser/eventsource.html) reports every EventSource callback by publishing it
//! to the topic `report` on a third ssed process, which this test subscribes to.

mod common;
use common::browser::{open_browser, serve_page};
use common::*;

const PAGE: &str = include_str!("browser/eventsource.html");

/// The next report from the page, as (kind, id, data).
fn next_report(reports: &mut Subscription) -> (String, String, String) {
    let report = browser::next_report(reports);
    let field = |name: &str| report[name].as_str().unwrap_or_default().to_string();
    (field("kind"), field("id"), field("data"))
}

#[test]
fn eventsource_in_chromium_receives_events_and_replays_after_reconnecting_elsewhere() {
    let redis = RedisServer::start();
    let page = serve_page(PAGE);
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
