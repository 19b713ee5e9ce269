//! HTTP/1.1 as publishers and browsers use it: persistent and pipelined requests, chunked bodies,
//! `Expect: 100-continue`, CORS, health and metrics, and a clean shutdown.

mod common;
use common::*;
use std::io::{Read, Write};

#[test]
fn pipelined_publishes_on_one_connection_are_answered_in_order() {
    let daemon = Daemon::start(&[]);
    let mut sub = daemon.subscribe("p");
    let mut conn = daemon.connect();
    let mut batch = Vec::new();
    for i in 0..3 {
        batch.extend_from_slice(
            format!("POST /events/p HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\np{i}")
                .as_bytes(),
        );
    }
    conn.write_all(&batch).unwrap();
    let mut ids: Vec<String> = (0..3)
        .map(|_| read_response(&mut conn))
        .map(|r| r.body_text())
        .collect();
    // The connection stays open for more.
    conn.write_all(b"POST /events/p HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\np3")
        .unwrap();
    let fourth = read_response(&mut conn);
    assert_eq!(fourth.status, 200);
    assert!(
        fourth.header("connection").is_none(),
        "a persistent connection is not closed"
    );
    ids.push(fourth.body_text());
    for (i, id) in ids.iter().enumerate() {
        let event = sub.next_event();
        assert_eq!(
            (event.data, event.id.as_deref()),
            (format!("p{i}"), Some(id.as_str()))
        );
    }
}

#[test]
fn chunked_bodies_and_expect_continue_are_understood() {
    let daemon = Daemon::start(&[]);
    let mut sub = daemon.subscribe("c");
    let mut conn = daemon.connect();
    conn.write_all(b"POST /events/c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1;ext=1\r\n \r\n5\r\nworld\r\n0\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut conn).status, 200);
    assert_eq!(sub.next_event().data, "hello world");

    conn.write_all(
        b"POST /events/c HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n",
    )
    .unwrap();
    let interim = read_response(&mut conn);
    assert_eq!(interim.status, 100);
    conn.write_all(b"body").unwrap();
    assert_eq!(read_response(&mut conn).status, 200);
    assert_eq!(sub.next_event().data, "body");
}

#[test]
fn cors_is_off_by_default_and_answers_preflight_when_configured() {
    let plain = Daemon::start(&[]);
    let sub = Subscription::open(
        plain.addr,
        "/events/x",
        &[("Origin", "https://app.example")],
    );
    assert!(
        !sub.head.to_ascii_lowercase().contains("access-control"),
        "{}",
        sub.head
    );

    let daemon = Daemon::start(&["--cors-origin", "https://app.example"]);
    let sub = Subscription::open(
        daemon.addr,
        "/events/x",
        &[("Origin", "https://app.example")],
    );
    assert!(
        sub.head
            .contains("Access-Control-Allow-Origin: https://app.example\r\n"),
        "{}",
        sub.head
    );
    let stranger = Subscription::open(
        daemon.addr,
        "/events/x",
        &[("Origin", "https://evil.example")],
    );
    assert!(
        !stranger.head.contains("Access-Control-Allow-Origin"),
        "{}",
        stranger.head
    );
    let preflight = request(
        daemon.addr,
        "OPTIONS",
        "/events/x",
        &[
            ("Origin", "https://app.example"),
            ("Access-Control-Request-Method", "POST"),
        ],
        b"",
    );
    assert_eq!(preflight.status, 204);
    assert_eq!(
        preflight.header("access-control-allow-origin").as_deref(),
        Some("https://app.example")
    );
    assert!(preflight
        .header("access-control-allow-headers")
        .unwrap()
        .contains("Authorization"));
    let publish = request(
        daemon.addr,
        "POST",
        "/events/x",
        &[("Origin", "https://app.example")],
        b"hi",
    );
    assert_eq!(
        publish.header("access-control-allow-origin").as_deref(),
        Some("https://app.example")
    );
}

#[test]
fn health_and_metrics_are_served() {
    let daemon = Daemon::start(&[]);
    let health = request(daemon.addr, "GET", "/healthz", &[], b"");
    assert_eq!((health.status, health.body_text().as_str()), (200, "ok\n"));
    daemon.publish("m", "one");
    let metrics = request(daemon.addr, "GET", "/metrics", &[], b"").body_text();
    for name in [
        "ssed_connections ",
        "ssed_connections_accepted_total ",
        "ssed_events_published_total 1",
        "ssed_bytes_sent_total ",
        "ssed_slow_subscribers_dropped_total ",
        "ssed_requests_rejected_total{reason=\"bad_request\"} ",
        "ssed_topics ",
        "process_resident_memory_bytes ",
        "process_open_fds ",
    ] {
        assert!(metrics.contains(name), "missing {name:?} in\n{metrics}");
    }
}

#[test]
fn sigterm_tells_subscribers_to_come_back_later_and_exits_cleanly() {
    let mut daemon = Daemon::start(&[]);
    let mut subs: Vec<_> = (0..10)
        .map(|i| daemon.subscribe(&format!("s{}", i % 2)))
        .collect();
    let status = daemon.terminate();
    assert!(status.success(), "exit status {status:?}");
    let mut delays = std::collections::HashSet::new();
    for sub in &mut subs {
        assert_eq!(sub.try_next_event(), None, "the stream ends");
        let retry = sub.retry.expect("a retry: field before closing");
        assert!((1000..5000).contains(&retry), "retry {retry}");
        delays.insert(retry);
    }
    assert!(delays.len() > 1, "delays are spread, got {delays:?}");
    let mut refused = [0u8; 1];
    let reconnect =
        std::net::TcpStream::connect(daemon.addr).and_then(|mut s| s.read(&mut refused));
    assert!(
        !matches!(reconnect, Ok(1)),
        "nothing is served after shutdown"
    );
}

#[test]
fn readiness_turns_503_at_sigterm_while_streams_go_on_until_the_shutdown_delay() {
    let mut daemon = Daemon::start(&["--shutdown-delay", "30"]);
    let get = |path: &str| request(daemon.addr, "GET", path, &[], b"");
    assert_eq!((get("/readyz").status, get("/livez").status), (200, 200));
    let mut sub = daemon.subscribe("drain");
    unsafe { libc::kill(daemon.child.id() as i32, libc::SIGTERM) };
    let (answer, _) = wait_for("/readyz to answer 503", || {
        let answer = get("/readyz");
        (answer.status == 503).then_some(answer)
    });
    assert_eq!(answer.body_text(), "shutting down\n");
    assert_eq!(get("/healthz").status, 503, "/healthz is readiness too");
    assert_eq!(get("/livez").status, 200, "draining is not dead");
    daemon.publish("drain", "still flowing");
    assert_eq!(sub.next_event().data, "still flowing");
    // A second signal ends the delay: the process exits cleanly and the stream is told to retry.
    let status = daemon.terminate();
    assert!(status.success(), "exit status {status:?}");
    assert_eq!(sub.try_next_event(), None);
    assert!(sub.retry.is_some(), "a retry: field before closing");
}

#[test]
fn publishes_are_honoured_even_if_the_publisher_closed_before_they_were_read() {
    let daemon = Daemon::start(&["--workers", "1"]);
    let mut sub = daemon.subscribe("gone");
    // Freeze the daemon so that the publisher's requests wait unread while it disconnects.
    unsafe { libc::kill(daemon.child.id() as i32, libc::SIGSTOP) };
    let conn = daemon.connect();
    let mut pipelined = Vec::new();
    for i in 0..3 {
        pipelined.extend_from_slice(
            format!("POST /events/gone HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\ng{i}")
                .as_bytes(),
        );
    }
    (&conn).write_all(&pipelined).unwrap();
    drop(conn);
    unsafe { libc::kill(daemon.child.id() as i32, libc::SIGCONT) };
    for i in 0..3 {
        assert_eq!(sub.next_event().data, format!("g{i}"));
    }
    assert_eq!(
        daemon.metric("ssed_requests_rejected_total{reason=\"forbidden\"}"),
        0.0
    );
}
