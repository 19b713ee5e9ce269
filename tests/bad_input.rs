//! Every bad input gets its status, is counted, and disturbs no one else.

mod common;
use common::*;
use std::io::Write;

#[test]
fn malformed_requests_get_400_and_the_stream_goes_on() {
    let daemon = Daemon::start(&[]);
    let mut bystander = daemon.subscribe("calm");
    let cases: &[(&str, &[u8])] = &[
        ("garbage", b"\x00\x01\x02 what\r\n\r\n"),
        ("no Host in 1.1", b"GET /events/a HTTP/1.1\r\n\r\n"),
        ("bad topic", b"GET /events/a//b HTTP/1.1\r\nHost: t\r\n\r\n"),
        ("topic with %", b"GET /events/a%20b HTTP/1.1\r\nHost: t\r\n\r\n"),
        ("CR in event type", b"POST /events/a?event=x%0Dy HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nz"),
        ("body not UTF-8", b"POST /events/a HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n\xff\xfe"),
        ("two framings", b"POST /events/a HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"),
        ("bad chunk", b"POST /events/a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n"),
    ];
    for (what, raw) in cases {
        let answer = exchange(daemon.addr, raw);
        assert!(answer.starts_with("HTTP/1.1 400 "), "{what}: {answer:?}");
        assert!(answer.contains("Connection: close"), "{what}: {answer:?}");
    }
    assert_eq!(rejected(&daemon, "bad_request"), cases.len() as f64);
    daemon.publish("calm", "unaffected");
    assert_eq!(bystander.next_event().data, "unaffected");
}

#[test]
fn unknown_paths_wrong_methods_and_oversize_input_get_their_status() {
    let daemon = Daemon::start(&["--max-event-bytes", "100"]);
    assert_eq!(request(daemon.addr, "GET", "/nope", &[], b"").status, 404);
    let put = request(daemon.addr, "PUT", "/events/a", &[], b"x");
    assert_eq!(put.status, 405);
    assert_eq!(put.header("allow").as_deref(), Some("GET, POST, OPTIONS"));
    let delete = request(daemon.addr, "DELETE", "/metrics", &[], b"");
    assert_eq!(
        (delete.status, delete.header("allow").as_deref()),
        (405, Some("GET, HEAD"))
    );
    assert_eq!(
        request(daemon.addr, "POST", "/events/a", &[], &[b'x'; 101]).status,
        413
    );
    assert_eq!(
        request(daemon.addr, "POST", "/events/a", &[], &[b'x'; 100]).status,
        200
    );
    let chunked = exchange(daemon.addr, b"POST /events/a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n40\r\n0123456789012345678901234567890123456789012345678901234567890123\r\n40\r\n");
    assert!(chunked.starts_with("HTTP/1.1 413 "), "{chunked:?}");
    let long_head = format!(
        "GET /events/a HTTP/1.1\r\nHost: t\r\nX-Filler: {}\r\n\r\n",
        "f".repeat(9000)
    );
    assert!(exchange(daemon.addr, long_head.as_bytes()).starts_with("HTTP/1.1 431 "));
    let endless_head = format!(
        "GET /events/a HTTP/1.1\r\nHost: t\r\nX-Filler: {}",
        "f".repeat(20000)
    );
    assert!(exchange(daemon.addr, endless_head.as_bytes()).starts_with("HTTP/1.1 431 "));
    assert_eq!(rejected(&daemon, "not_found"), 1.0);
    assert_eq!(rejected(&daemon, "method_not_allowed"), 2.0);
    assert_eq!(rejected(&daemon, "body_too_large"), 2.0);
    assert_eq!(rejected(&daemon, "head_too_large"), 2.0);
}

#[test]
fn connections_over_the_limit_get_503_and_are_closed() {
    let daemon = Daemon::start(&["--workers", "1", "--max-connections", "3"]);
    let held: Vec<_> = (0..3).map(|_| daemon.subscribe("full")).collect();
    let refused = exchange(daemon.addr, b"");
    assert!(refused.starts_with("HTTP/1.1 503 "), "{refused:?}");
    assert!(refused.contains("Retry-After: "), "{refused:?}");
    drop(held);
    // Once clients leave there is room again (the /metrics request needs a slot itself).
    wait_for("slots to free up", || {
        (try_metric(daemon.addr, "ssed_connections") == Some(1.0)).then_some(())
    });
    assert!(rejected(&daemon, "max_connections") >= 1.0);
}

#[test]
fn publishing_needs_the_token_when_one_is_set() {
    let daemon = Daemon::start_with_env(&[], &[("SSED_PUBLISH_TOKEN", "s3cret")]);
    let mut sub = daemon.subscribe("guarded");
    let none = request(daemon.addr, "POST", "/events/guarded", &[], b"x");
    assert_eq!(none.status, 401);
    assert_eq!(
        none.header("www-authenticate").as_deref(),
        Some("Bearer realm=\"ssed\"")
    );
    let wrong = request(
        daemon.addr,
        "POST",
        "/events/guarded",
        &[("Authorization", "Bearer nope")],
        b"x",
    );
    // A token that is presented but wrong is invalid (RFC 6750 §3.1), not a lack of permission.
    assert_eq!(wrong.status, 401);
    assert_eq!(
        wrong.header("www-authenticate").as_deref(),
        Some("Bearer realm=\"ssed\", error=\"invalid_token\"")
    );
    let right = request(
        daemon.addr,
        "POST",
        "/events/guarded",
        &[("Authorization", "Bearer s3cret")],
        b"ok",
    );
    assert_eq!(right.status, 200);
    assert_eq!(
        sub.next_event().data,
        "ok",
        "refused publishes were not delivered"
    );
    assert_eq!(rejected(&daemon, "unauthorized"), 2.0);
    assert_eq!(rejected(&daemon, "forbidden"), 0.0);
}

#[test]
fn a_request_not_completed_in_time_is_closed() {
    let daemon = Daemon::start(&["--header-timeout", "1"]);
    let mut slow = daemon.connect();
    slow.write_all(b"GET /events/a HTTP/1.1\r\nHost: t\r\n")
        .unwrap();
    let silent = daemon.connect();
    let mut sub = daemon.subscribe("a");
    for mut stream in [slow, silent] {
        let mut rest = Vec::new();
        use std::io::Read;
        let _ = stream.read_to_end(&mut rest);
        assert!(rest.is_empty(), "closed without an answer: {rest:?}");
    }
    assert_eq!(rejected(&daemon, "header_timeout"), 2.0);
    daemon.publish("a", "subscribers are not subject to the request timeout");
    assert!(sub.next_event().data.starts_with("subscribers"));
}
