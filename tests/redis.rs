//! `--redis`: several ssed processes sharing one event stream through a real redis-server
//! (started here on a free loopback port, without persistence).

mod common;
use common::*;
use std::collections::HashSet;
use std::net::{SocketAddr, TcpListener};
use std::process::Command;

/// Open sockets of a process, from /proc.
fn open_sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter(|fd| {
            std::fs::read_link(fd.as_ref().unwrap().path())
                .is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
        })
        .count()
}

fn post(addr: SocketAddr, topic: &str, data: &str) -> Response {
    request(
        addr,
        "POST",
        &format!("/events/{topic}"),
        &[],
        data.as_bytes(),
    )
}

#[test]
fn two_processes_on_one_port_deliver_every_event_once_in_order_with_the_same_ids() {
    let redis = RedisServer::start();
    let a = Daemon::with_redis(&redis, "127.0.0.1:0", &[]);
    let before_a = open_sockets(a.child.id());
    let b = Daemon::with_redis(&redis, &a.addr.to_string(), &[]);
    let before_b = open_sockets(b.child.id());
    let mut subs: Vec<_> = (0..40).map(|_| a.subscribe("shared")).collect();
    assert!(
        open_sockets(a.child.id()) > before_a && open_sockets(b.child.id()) > before_b,
        "both processes hold subscribers"
    );

    // Publishes spread over both processes the same way.
    let acked: Vec<String> = (0..30)
        .map(|i| {
            let response = post(a.addr, "shared", &format!("m{i}"));
            assert_eq!(response.status, 200);
            response.body_text()
        })
        .collect();
    for sub in &mut subs {
        let got: Vec<(String, String)> = (0..30)
            .map(|_| sub.next_event())
            .map(|e| (e.id.unwrap(), e.data))
            .collect();
        let expected: Vec<(String, String)> = acked
            .iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), format!("m{i}")))
            .collect();
        assert_eq!(got, expected);
    }
}

#[test]
fn a_process_started_later_replays_from_redis() {
    let redis = RedisServer::start();
    let first = Daemon::with_redis(&redis, "127.0.0.1:0", &[]);
    let ids: Vec<String> = (0..6)
        .map(|i| first.publish("late", &format!("old{i}")))
        .collect();
    let later = Daemon::with_redis(&redis, "127.0.0.1:0", &[]);
    let mut sub = Subscription::open(later.addr, "/events/late", &[("Last-Event-ID", &ids[2])]);
    let live = first.publish("late", "new");
    let got: Vec<String> = (0..4).map(|_| sub.next_event().data).collect();
    assert_eq!(got, ["old3", "old4", "old5", "new"]);
    // A second subscriber of the same topic finds the history already merged.
    let mut again = Subscription::open(later.addr, "/events/late", &[("Last-Event-ID", &ids[4])]);
    assert_eq!(again.next_event().data, "old5");
    assert_eq!(again.next_event().id.unwrap(), live);
}

#[test]
fn losing_redis_mid_stream_loses_and_duplicates_nothing_that_was_acknowledged() {
    let mut redis = RedisServer::start();
    let a = Daemon::with_redis(&redis, "127.0.0.1:0", &["--heartbeat", "1"]);
    let b = Daemon::with_redis(&redis, "127.0.0.1:0", &["--heartbeat", "1"]);
    let mut subs: Vec<_> = (0..5)
        .flat_map(|_| [a.subscribe("flow"), b.subscribe("flow")])
        .collect();
    let mut idle = b.subscribe("idle");

    let mut acked: Vec<(String, String)> = Vec::new();
    // Publishes event i to `daemon`; an acknowledged one is recorded with its id.
    fn publish(daemon: &Daemon, i: usize, acked: &mut Vec<(String, String)>) -> u16 {
        let response = post(daemon.addr, "flow", &format!("n{i}"));
        match response.status {
            200 => acked.push((response.body_text(), format!("n{i}"))),
            503 => {}
            other => panic!("unexpected status {other}"),
        }
        response.status
    }
    let received = |subs: &mut Vec<Subscription>, expected: &[(String, String)]| {
        for sub in subs.iter_mut() {
            let got: Vec<(String, String)> = (0..expected.len())
                .map(|_| sub.next_event())
                .map(|e| (e.id.unwrap(), e.data))
                .collect();
            assert_eq!(got, expected, "every acknowledged event, once, in order");
        }
    };
    for i in 0..10 {
        assert_eq!(
            publish(if i % 2 == 0 { &a } else { &b }, i, &mut acked),
            200
        );
    }
    // Kill Redis once these have been read: without persistence, an event Redis acknowledged
    // but no process had read yet dies with it (docs/operations.md).
    let before_loss = acked.clone();
    received(&mut subs, &before_loss);
    redis.kill();
    wait_for("/healthz to report the loss", || {
        (request(b.addr, "GET", "/healthz", &[], b"").status == 503).then_some(())
    });
    assert_eq!(
        publish(&a, 10, &mut acked),
        503,
        "publishing without Redis is refused, not lost"
    );
    assert!(
        idle.next_comment().contains("heartbeat"),
        "subscribers keep their heartbeats"
    );
    redis.restart();
    wait_for("/healthz to recover", || {
        [&a, &b]
            .iter()
            .all(|d| request(d.addr, "GET", "/healthz", &[], b"").status == 200)
            .then_some(())
    });
    for i in 11..21 {
        publish(if i % 2 == 0 { &a } else { &b }, i, &mut acked);
    }
    assert!(
        acked.len() >= 15,
        "most publishes after recovery succeed: {}",
        acked.len()
    );

    // Redis came back without its stream (no persistence): an event it acknowledged but no
    // process had read yet would have died with it, and ssed cannot tell whether there was one,
    // so every subscriber is told it may have missed events before the stream goes on.
    for sub in &mut subs {
        let gap = sub.next_event();
        assert_eq!(
            (gap.event.as_deref(), gap.data.as_str(), gap.id),
            (Some("ssed-gap"), "flow", None)
        );
    }
    received(&mut subs, &acked[before_loss.len()..]);
    // Nothing more is pending: a marker published now is the very next event everywhere.
    let marker = post(a.addr, "flow", "marker");
    assert_eq!(marker.status, 200);
    let unique: HashSet<_> = acked.iter().map(|(id, _)| id).collect();
    assert_eq!(unique.len(), acked.len());
    for sub in &mut subs {
        assert_eq!(sub.next_event().data, "marker");
    }
}

#[test]
fn an_unreachable_redis_at_startup_is_a_clear_error() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let output = Command::new(env!("CARGO_BIN_EXE_ssed"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--redis",
            &format!("redis://127.0.0.1:{port}/0"),
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot reach Redis at redis://127.0.0.1:"),
        "{stderr}"
    );
}
