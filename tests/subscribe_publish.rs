//! Subscribing and publishing over real sockets: the stream head, event encoding, ids, fan-out,
//! heartbeats and Last-Event-ID replay.

mod common;
use common::*;

#[test]
fn the_stream_head_is_what_eventsource_curl_and_proxies_expect() {
    let daemon = Daemon::start(&["--retry-ms", "2500"]);
    let mut sub = daemon.subscribe("news");
    let head = sub.head.to_ascii_lowercase();
    for line in [
        "content-type: text/event-stream",
        "cache-control: no-cache",
        "x-accel-buffering: no",
        "connection: close",
    ] {
        assert!(head.contains(line), "missing {line:?} in {head:?}");
    }
    assert!(
        !head.contains("content-length"),
        "the body is delimited by closing the connection"
    );
    daemon.publish("news", "first");
    assert_eq!(sub.next_event().data, "first");
    assert_eq!(sub.retry, Some(2500), "retry: is sent first");
}

#[test]
fn an_event_reaches_every_subscriber_of_its_topic_and_no_other() {
    let daemon = Daemon::start(&[]);
    let mut readers: Vec<_> = (0..20).map(|_| daemon.subscribe("room/1")).collect();
    let mut other = daemon.subscribe("room/2");
    daemon.publish("room/1", "for room 1");
    daemon.publish("room/2", "for room 2");
    for reader in &mut readers {
        assert_eq!(reader.next_event().data, "for room 1");
    }
    assert_eq!(
        other.next_event().data,
        "for room 2",
        "room 2 sees only its own event"
    );
}

#[test]
fn data_lines_event_types_and_ids_follow_the_sse_format() {
    let daemon = Daemon::start(&[]);
    let mut sub = daemon.subscribe("t");
    let response = request(
        daemon.addr,
        "POST",
        "/events/t?event=price%20update",
        &[],
        b"a\r\nb\rc\nd",
    );
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("content-type").as_deref(),
        Some("text/plain")
    );
    let first_id = response.body_text();
    let event = sub.next_event();
    assert_eq!(
        event.data, "a\nb\nc\nd",
        "CRLF, CR and LF each end a data line"
    );
    assert_eq!(event.event.as_deref(), Some("price update"));
    assert_eq!(
        event.id.as_deref(),
        Some(first_id.as_str()),
        "the publish answer is the event's id"
    );

    let mut previous = first_id;
    for i in 0..50 {
        let id = daemon.publish("t", &format!("n{i}"));
        assert!(parse_id(&id) > parse_id(&previous), "{id} after {previous}");
        assert_eq!(sub.next_event().id.unwrap(), id);
        previous = id;
    }
    daemon.publish("t", "");
    assert_eq!(
        sub.next_event().data,
        "",
        "an empty body is an empty message"
    );
}

fn parse_id(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').expect("ids look like ms-seq");
    (ms.parse().unwrap(), seq.parse().unwrap())
}

#[test]
fn heartbeats_are_comments_by_default() {
    let daemon = Daemon::start(&["--heartbeat", "1"]);
    let mut sub = daemon.subscribe("quiet");
    assert_eq!(sub.next_comment(), "heartbeat");
    assert_eq!(sub.next_comment(), "heartbeat");
}

#[test]
fn heartbeats_can_reproduce_the_original_keep_alive_event() {
    let daemon = Daemon::start(&["--heartbeat", "1", "--heartbeat-event", "keep-alive"]);
    let mut sub = daemon.subscribe("quiet");
    for _ in 0..2 {
        let event = sub.next_event();
        assert_eq!(
            (event.event.as_deref(), event.data.as_str(), event.id),
            (Some("keep-alive"), "null", None)
        );
    }
}

#[test]
fn last_event_id_replays_what_was_missed_then_continues_live() {
    let daemon = Daemon::start(&["--history", "5"]);
    let ids: Vec<String> = (0..8)
        .map(|i| daemon.publish("r", &format!("e{i}")))
        .collect();

    // By header: the events after ids[4], then live, with no gap or duplicate.
    let mut by_header = Subscription::open(daemon.addr, "/events/r", &[("Last-Event-ID", &ids[4])]);
    // By query parameter, for clients that cannot set headers.
    let mut by_query = Subscription::open(
        daemon.addr,
        &format!("/events/r?lastEventId={}", ids[5]),
        &[],
    );
    // Older than retention (only the last 5 are kept): everything retained.
    let mut too_old = Subscription::open(daemon.addr, "/events/r", &[("Last-Event-ID", &ids[0])]);
    // The header wins over the query (it is what EventSource updates on reconnect).
    let mut both = Subscription::open(
        daemon.addr,
        &format!("/events/r?lastEventId={}", ids[0]),
        &[("Last-Event-ID", &ids[6])],
    );
    let live = daemon.publish("r", "live");

    let received = |sub: &mut Subscription, n: usize| -> Vec<String> {
        (0..n).map(|_| sub.next_event().data).collect()
    };
    assert_eq!(received(&mut by_header, 4), ["e5", "e6", "e7", "live"]);
    assert_eq!(received(&mut by_query, 3), ["e6", "e7", "live"]);
    // Older than the retained history: the client is told it may have missed events, then
    // gets everything retained.
    let gap = too_old.next_event();
    assert_eq!(
        (gap.event.as_deref(), gap.data.as_str(), gap.id),
        (Some("ssed-gap"), "r", None)
    );
    assert_eq!(
        received(&mut too_old, 6),
        ["e3", "e4", "e5", "e6", "e7", "live"]
    );
    let last = both.next_event();
    assert_eq!(
        (last.data.as_str(), last.id.as_deref()),
        ("e7", Some(ids[7].as_str()))
    );
    assert_eq!(both.next_event().id.unwrap(), live);
}

#[test]
fn a_stalled_subscriber_is_dropped_while_the_others_keep_receiving() {
    let daemon = Daemon::start(&[
        "--history",
        "4",
        "--history-bytes",
        "65536",
        "--send-buffer",
        "4096",
    ]);
    // A client with a tiny receive window that never reads.
    let stalled = {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        socket.connect(&daemon.addr.into()).unwrap();
        let mut stream: std::net::TcpStream = socket.into();
        use std::io::Write;
        stream
            .write_all(b"GET /events/firehose HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        stream
    };
    wait_for("the stalled client to subscribe", || {
        (daemon.metric("ssed_subscribers") == 1.0).then_some(())
    });
    let mut healthy = daemon.subscribe("firehose");
    let payload = "x".repeat(16 * 1024);
    for i in 0..40 {
        daemon.publish("firehose", &format!("{i} {payload}"));
        assert!(healthy.next_event().data.starts_with(&format!("{i} ")));
    }
    wait_for("the stalled subscriber to be dropped", || {
        (daemon.metric("ssed_slow_subscribers_dropped_total") == 1.0).then_some(())
    });
    assert_eq!(daemon.metric("ssed_subscribers"), 1.0);
    daemon.publish("firehose", "still here");
    assert_eq!(healthy.next_event().data, "still here");
    drop(stalled);
}

#[test]
fn the_connection_gauge_returns_to_zero_when_clients_leave() {
    let daemon = Daemon::start(&[]);
    let subs: Vec<_> = (0..10)
        .map(|i| daemon.subscribe(&format!("t{}", i % 3)))
        .collect();
    // The /metrics request itself is one connection.
    assert_eq!(daemon.metric("ssed_connections"), 11.0);
    assert_eq!(daemon.metric("ssed_subscribers"), 10.0);
    drop(subs);
    wait_for("the gauge to drop", || {
        (daemon.metric("ssed_connections") == 1.0).then_some(())
    });
    assert_eq!(daemon.metric("ssed_subscribers"), 0.0);
}
