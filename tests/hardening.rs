//! Regression tests for the hardening fixes: each one drives the real binary over loopback TCP
//! into the situation a defect was about, and checks the fixed behaviour.

mod common;
use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

/// Waits (at most `patience`) for the socket to become writable again; false if it did not.
fn writable_within(stream: &TcpStream, patience: Duration) -> bool {
    use std::os::fd::AsRawFd;
    let mut pollfd = libc::pollfd {
        fd: stream.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    let n = unsafe { libc::poll(&mut pollfd, 1, patience.as_millis() as i32) };
    n > 0 && pollfd.revents & libc::POLLOUT != 0
}

// ---- 1. pipelined requests never read ----------------------------------------------------------

#[test]
fn pipelined_requests_never_read_are_bounded_and_none_is_lost() {
    let daemon = Daemon::start(&["--workers", "1"]);
    let mut bystander = daemon.subscribe("calm");
    let stream = daemon.connect();
    // Our own send buffer is fixed (setting it turns its autotuning off; Linux doubles the value:
    // 256 KiB). The daemon's receive buffer starts at tcp_rmem's default (128 KiB here) and only
    // grows when the daemon reads a lot, which a daemon that stops reading does not. So a daemon
    // that stops reading once ~2 KiB of answers are unsent lets the kernel accept a few hundred
    // KiB (both buffers, plus the answers that fit in its send buffer and our receive buffer,
    // ~40 bytes of request per ~3 KiB answer). One that buffers everything takes all 8 MiB.
    let socket = socket2::SockRef::from(&stream);
    socket.set_send_buffer_size(128 * 1024).unwrap();
    let rmem_default: usize = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_rmem")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(128 * 1024);
    let bound = 4 * (socket.send_buffer_size().unwrap() + rmem_default);
    assert!(
        bound <= 4 << 20,
        "a bound well below the 8 MiB limit: {bound}"
    );
    stream.set_nonblocking(true).unwrap();

    let one = b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n";
    let batch = one.repeat(1024);
    const LIMIT: usize = 8 << 20;
    let mut written = 0;
    while written < LIMIT {
        match (&stream).write(&batch[written % one.len()..]) {
            Ok(n) => written += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                // Writability may come back a moment later when the daemon is merely slow (a
                // loaded machine); it stops for good once the daemon stops reading.
                if !writable_within(&stream, Duration::from_secs(2)) {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("writing requests: {e}"),
        }
    }
    assert!(
        written < bound,
        "the kernel accepted {written} bytes of requests (bound {bound}): the daemon kept reading"
    );
    let requests = written / one.len();
    assert!(requests > 0);

    // Meanwhile the worker serves others, and its memory stays small.
    daemon.publish("calm", "still served");
    assert_eq!(bystander.next_event().data, "still served");
    let rss = daemon.metric("process_resident_memory_bytes");
    assert!(rss < 64.0 * 1024.0 * 1024.0, "resident memory {rss}");

    // Every complete request is answered once we read (an incomplete last one is dropped when we
    // shut our side).
    stream.set_nonblocking(false).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let mut reader = BufReader::with_capacity(64 * 1024, &stream);
    let mut answered = 0;
    while !reader.fill_buf().unwrap().is_empty() {
        let response = read_response(&mut reader);
        assert_eq!(response.status, 200, "{}", response.head);
        answered += 1;
    }
    assert_eq!(answered, requests, "one answer per request the kernel took");
}

// ---- 2. subscribers must not talk --------------------------------------------------------------

#[test]
fn a_client_that_never_reads_its_answers_is_closed_by_the_header_timeout() {
    let daemon = Daemon::start(&["--workers", "1", "--header-timeout", "1"]);
    let mut stream = daemon.connect();
    // Enough answers to fill the socket buffers, the last request asking to close: the answers
    // pile up unsent and the connection is closing, with a client that never reads.
    let mut requests = b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n".repeat(2000);
    requests.extend_from_slice(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    stream.set_nonblocking(true).unwrap();
    let mut written = 0;
    wait_for("the requests to be sent or the socket to fill", || {
        match stream.write(&requests[written..]) {
            Ok(n) => written += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Some(()),
            Err(e) => panic!("{e}"),
        }
        (written == requests.len()).then_some(())
    });
    // Only the connection asking for /metrics is left.
    wait_for_metric(&daemon, "ssed_connections", 1.0);
    drop(stream);
}

#[test]
fn a_subscriber_that_sends_bytes_is_closed_and_counted_and_others_go_on() {
    let daemon = Daemon::start(&["--workers", "1"]);
    let mut bystander = daemon.subscribe("calm");
    let mut chatty = daemon.subscribe("calm");
    chatty.stream().write_all(b"hello?").unwrap();
    while chatty.try_next_event().is_some() {}
    assert_eq!(rejected(&daemon, "subscriber_input"), 1.0);
    daemon.publish("calm", "after the chatter");
    assert_eq!(bystander.next_event().data, "after the chatter");
}

#[test]
fn bytes_sent_along_with_a_subscribe_request_close_it_and_leave_no_topic() {
    let daemon = Daemon::start(&["--workers", "1"]);
    let bystander = daemon.subscribe("calm");
    // The topics gauge is refreshed once a second: seeing 1 here proves a refresh after `calm`
    // came, so the 0 at the end cannot be the gauge's initial value.
    wait_for_metric(&daemon, "ssed_topics", 1.0);
    let _ = exchange(
        daemon.addr,
        b"GET /events/talkative HTTP/1.1\r\nHost: t\r\n\r\nmore",
    );
    assert_eq!(rejected(&daemon, "subscriber_input"), 1.0, "counted");
    // The talkative connection is gone (the bystander and this /metrics request remain); once
    // the bystander leaves too, no topic may be left.
    wait_for_metric(&daemon, "ssed_connections", 2.0);
    drop(bystander);
    wait_for_metric(&daemon, "ssed_topics", 0.0);
}

// ---- 3. topics ---------------------------------------------------------------------------------

#[test]
fn one_shot_subscribes_leave_no_topic_behind() {
    let daemon = Daemon::start(&["--workers", "1"]);
    // The topics gauge is refreshed once a second. Seeing 1 with the marker held proves a
    // refresh after it came; the marker leaves only once every one-shot connection is closed,
    // so the final 0 is a refresh after all of them.
    let marker = daemon.subscribe("marker");
    wait_for_metric(&daemon, "ssed_topics", 1.0);
    let salt = std::process::id();
    for i in 0..100 {
        // Read the stream head, then leave.
        drop(daemon.subscribe(&format!("once-{salt}-{i}")));
    }
    for i in 100..200 {
        // Ask and leave at once, without reading anything.
        let mut stream = daemon.connect();
        stream
            .write_all(
                format!("GET /events/once-{salt}-{i} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes(),
            )
            .unwrap();
    }
    // The marker and this /metrics request.
    wait_for_metric(&daemon, "ssed_connections", 2.0);
    drop(marker);
    wait_for_metric(&daemon, "ssed_topics", 0.0);
}

/// Status of a subscribe request (the connection is held open while `hold` is true).
fn subscribe_status(daemon: &Daemon, topic: &str) -> (u16, String, TcpStream) {
    let mut stream = daemon.connect();
    stream
        .write_all(format!("GET /events/{topic} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut head = String::new();
    while !head.ends_with("\r\n\r\n") {
        assert!(reader.read_line(&mut head).unwrap() > 0, "{head:?}");
    }
    (head[9..12].parse().unwrap(), head, stream)
}

#[test]
fn max_topics_refuses_a_new_topic_but_not_an_existing_one() {
    let daemon = Daemon::start(&["--workers", "1", "--max-topics", "5"]);
    let mut held: Vec<Subscription> = (0..5).map(|i| daemon.subscribe(&format!("t{i}"))).collect();
    let (status, head, _) = subscribe_status(&daemon, "t5");
    assert_eq!(status, 503, "{head}");
    assert!(head.contains("Retry-After: "), "{head}");
    assert_eq!(rejected(&daemon, "too_many_topics"), 1.0);
    let mut existing = daemon.subscribe("t2");
    daemon.publish("t2", "shared");
    assert_eq!(existing.next_event().data, "shared");
    assert_eq!(held[2].next_event().data, "shared");
    // A topic whose last subscriber left makes room again.
    drop(held.remove(0));
    wait_for("room for a new topic", || {
        let (status, _, stream) = subscribe_status(&daemon, "t5");
        (status == 200).then_some(stream)
    });
}

// ---- 4. trickled bodies ------------------------------------------------------------------------

#[test]
fn bodies_trickled_a_few_bytes_at_a_time_are_published_whole() {
    let daemon = Daemon::start(&[]);
    let mut sub = daemon.subscribe("slow");
    let body: String = (0..3000u32)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let mut stream = daemon.connect();
    stream.set_nodelay(true).unwrap();
    stream
        .write_all(b"POST /events/slow HTTP/1.1\r\nHost: t\r\nContent-Length: 3000\r\nConnection: close\r\n\r\n")
        .unwrap();
    for piece in body.as_bytes().chunks(7) {
        stream.write_all(piece).unwrap();
        stream.flush().unwrap();
    }
    assert_eq!(read_response(&mut stream).status, 200);
    assert_eq!(sub.next_event().data, body);

    let chunked_body: String = (0..600u32)
        .map(|i| char::from(b'A' + (i % 26) as u8))
        .collect();
    let mut stream = daemon.connect();
    stream.set_nodelay(true).unwrap();
    stream
        .write_all(b"POST /events/slow HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
        .unwrap();
    for byte in chunked_body.bytes() {
        stream
            .write_all(format!("1\r\n{}\r\n", char::from(byte)).as_bytes())
            .unwrap();
        stream.flush().unwrap();
    }
    stream.write_all(b"0\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut stream).status, 200);
    assert_eq!(sub.next_event().data, chunked_body);
}

// ---- 5, 6. Last-Event-IDs that cannot be placed --------------------------------------------------

#[test]
fn the_largest_last_event_id_gets_the_gap_event_and_the_retained_events() {
    let daemon = Daemon::start(&[]);
    common::the_largest_last_event_id_gets_the_gap_event_and_the_retained_events(&daemon);
}

#[test]
fn a_malformed_last_event_id_gets_the_gap_event_then_everything_then_live_events() {
    let daemon = Daemon::start(&[]);
    daemon.publish("m", "e1");
    daemon.publish("m", "e2");
    let mut by_header =
        Subscription::open(daemon.addr, "/events/m", &[("Last-Event-ID", "yesterday")]);
    let mut by_query = Subscription::open(daemon.addr, "/events/m?lastEventId=%zz", &[]);
    for sub in [&mut by_header, &mut by_query] {
        assert_gap(&sub.next_event(), "m");
        assert_eq!(sub.next_event().data, "e1");
        assert_eq!(sub.next_event().data, "e2");
    }
    daemon.publish("m", "e3");
    for sub in [&mut by_header, &mut by_query] {
        assert_eq!(sub.next_event().data, "e3");
    }
}

// ---- 10. lingering close at the connection limit -----------------------------------------------

#[test]
fn a_client_refused_at_the_connection_limit_reads_the_whole_503_despite_its_body() {
    let daemon = Daemon::start(&["--workers", "1", "--max-connections", "2"]);
    let _held: Vec<_> = (0..2).map(|_| daemon.subscribe("full")).collect();
    let mut stream = daemon.connect();
    let mut request =
        b"POST /events/full HTTP/1.1\r\nHost: t\r\nContent-Length: 65536\r\n\r\n".to_vec();
    request.extend(std::iter::repeat_n(b'x', 65536));
    stream.write_all(&request).unwrap();
    let mut answer = Vec::new();
    let outcome = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(outcome.is_ok(), "{outcome:?} after {answer:?}");
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer:?}");
    assert!(answer.contains("Retry-After: "), "{answer:?}");
    assert!(
        answer.ends_with("\r\n\r\nserver at connection limit\n"),
        "{answer:?}"
    );
}

// ---- 11. HTTP details --------------------------------------------------------------------------

#[test]
fn http_details() {
    let daemon = Daemon::start(&["--workers", "1", "--publish-token", "s3cret"]);

    let preflight = exchange(
        daemon.addr,
        b"OPTIONS /events/a HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert!(preflight.starts_with("HTTP/1.1 204 "), "{preflight:?}");
    assert!(
        !preflight.to_ascii_lowercase().contains("content-length"),
        "{preflight:?}"
    );

    // HEAD: the length of what GET would send, no body; the next answer follows at once.
    let both = exchange(
        daemon.addr,
        b"HEAD /healthz HTTP/1.1\r\nHost: t\r\n\r\nGET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    let (head, rest) = both.split_once("\r\n\r\n").expect("an answer to HEAD");
    assert!(head.starts_with("HTTP/1.1 200 "), "{both:?}");
    assert!(head.contains("Content-Length: 3"), "{both:?}");
    assert!(
        rest.starts_with("HTTP/1.1 200 "),
        "no body after HEAD: {both:?}"
    );
    assert!(rest.ends_with("\r\n\r\nok\n"), "{both:?}");

    let te10 = exchange(
        daemon.addr,
        b"POST /events/a HTTP/1.0\r\nAuthorization: Bearer s3cret\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",
    );
    assert!(te10.starts_with("HTTP/1.1 400 "), "{te10:?}");
    let gzip = exchange(
        daemon.addr,
        b"POST /events/a HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer s3cret\r\nTransfer-Encoding: gzip, chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",
    );
    assert!(gzip.starts_with("HTTP/1.1 501 "), "{gzip:?}");

    // Expect: 100-continue. The head is sent alone; a request on another connection to the
    // same (single) worker, answered after it, shows that the head has been handled before the
    // body is sent. Over HTTP/1.1 (the control) that gives 100 Continue; over HTTP/1.0, nothing.
    let expect = |version: &str| -> String {
        let mut stream = daemon.connect();
        stream
            .write_all(format!("POST /events/a {version}\r\nHost: t\r\nAuthorization: Bearer s3cret\r\nContent-Length: 2\r\nConnection: close\r\nExpect: 100-continue\r\n\r\n").as_bytes())
            .unwrap();
        assert_eq!(
            request(daemon.addr, "GET", "/healthz", &[], b"").status,
            200
        );
        stream.write_all(b"hi").unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    };
    let control = expect("HTTP/1.1");
    assert!(
        control.starts_with("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 "),
        "{control:?}"
    );
    let http10 = expect("HTTP/1.0");
    assert!(http10.starts_with("HTTP/1.1 200 "), "{http10:?}");
    assert!(!http10.contains("100 Continue"), "{http10:?}");

    // A refused publish is refused on its head, with no 100 Continue first.
    let mut stream = daemon.connect();
    stream
        .write_all(b"POST /events/a HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer wrong\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
        .unwrap();
    let refused = read_response(&mut stream);
    // A wrong token is an invalid one (RFC 6750 §3.1).
    assert_eq!(refused.status, 401, "{refused:?}");
    let mut stream = daemon.connect();
    stream
        .write_all(b"POST /events/a HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
        .unwrap();
    let refused = read_response(&mut stream);
    assert_eq!(refused.status, 401, "{refused:?}");
}

// ---- 12. the slab is not sized from the limit --------------------------------------------------

#[test]
fn a_huge_connection_limit_costs_no_memory_at_startup() {
    let daemon = Daemon::start(&["--max-connections", "1000000000"]);
    let rss = daemon.metric("process_resident_memory_bytes");
    assert!(rss < 32.0 * 1024.0 * 1024.0, "resident memory {rss}");
    let mut sub = daemon.subscribe("big");
    daemon.publish("big", "fine");
    assert_eq!(sub.next_event().data, "fine");
}

// ---- 13. publish on one worker, resume on another ------------------------------------------------

/// Per-worker values of a metric with a `worker` label.
fn per_worker(body: &str, name: &str) -> [f64; 2] {
    let mut values = [0.0; 2];
    for (worker, value) in values.iter_mut().enumerate() {
        let prefix = format!("{name}{{worker=\"{worker}\"}} ");
        *value = body
            .lines()
            .find_map(|l| l.strip_prefix(&prefix)?.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix}"));
    }
    values
}

#[test]
fn resuming_on_another_worker_right_after_publishing_gets_exactly_what_follows() {
    let daemon = Daemon::start(&["--workers", "2"]);
    let metrics = || request(daemon.addr, "GET", "/metrics", &[], b"").body_text();
    let mut crossed = 0;
    let mut held = Vec::new();
    for attempt in 0..60 {
        let topic = format!("race{attempt}");
        let before = metrics();
        let id = daemon.publish(&topic, "a");
        let mut sub = Subscription::open(
            daemon.addr,
            &format!("/events/{topic}"),
            &[("Last-Event-ID", &id)],
        );
        let after = metrics();
        // Which worker took what: the subscriber is where ssed_subscribers grew; the publish and
        // the second /metrics request are the other two accepts. When those two landed on the
        // same worker, the publish's worker is known.
        let accepted = |body: &str| per_worker(body, "ssed_connections_accepted_total");
        let subs = |body: &str| per_worker(body, "ssed_subscribers");
        let sub_worker = usize::from(subs(&after)[1] > subs(&before)[1]);
        let (accepted_before, accepted_after) = (accepted(&before), accepted(&after));
        let mut others = [0, 1].map(|w| accepted_after[w] - accepted_before[w]);
        others[sub_worker] -= 1.0;
        let publish_worker = others.iter().position(|&n| n == 2.0);
        if publish_worker.is_some_and(|w| w != sub_worker) {
            crossed += 1;
        }
        let next = daemon.publish(&topic, "b");
        let event = sub.next_event();
        assert_eq!(
            (event.event, event.id, event.data.as_str()),
            (None, Some(next), "b"),
            "attempt {attempt}: exactly the events after the id, no gap, no duplicate"
        );
        held.push(sub);
        if crossed >= 3 {
            break;
        }
    }
    assert!(crossed >= 1, "no attempt resumed on the other worker");
}

// ---- 14. liveness and readiness ----------------------------------------------------------------

#[test]
fn livez_and_readyz_answer_200_normally() {
    let daemon = Daemon::start(&[]);
    for path in ["/livez", "/readyz", "/healthz"] {
        let response = request(daemon.addr, "GET", path, &[], b"");
        assert_eq!(response.status, 200, "{path}: {response:?}");
    }
}
