//! `--workers N`: several event loops behind one port, delivering as one.

mod common;
use common::*;
use std::collections::HashSet;
use std::process::Command;

/// Opens subscribers until both workers hold at least one (the kernel spreads connections over
/// the SO_REUSEPORT listeners by hash, so a few dozen are plenty).
fn subscribers_on_both_workers(
    daemon: &Daemon,
    path: &str,
    headers: &[(&str, &str)],
) -> Vec<Subscription> {
    let subs: Vec<_> = (0..40)
        .map(|_| Subscription::open(daemon.addr, path, headers))
        .collect();
    for worker in 0..2 {
        let held = metric(
            daemon.addr,
            &format!("ssed_subscribers{{worker=\"{worker}\"}}"),
        );
        assert!(held > 0.0, "worker {worker} holds no subscriber");
    }
    subs
}

#[test]
fn every_subscriber_gets_every_event_once_in_one_order_whichever_worker_published_it() {
    let daemon = Daemon::start(&["--workers", "2"]);
    let mut subs = subscribers_on_both_workers(&daemon, "/events/all", &[]);
    let addr = daemon.addr;
    // Three publishers at once, each on fresh connections, so publishes land on both workers.
    let publishers: Vec<_> = (0..3)
        .map(|p| {
            std::thread::spawn(move || {
                (0..20)
                    .map(|i| {
                        request(
                            addr,
                            "POST",
                            "/events/all",
                            &[],
                            format!("{p}:{i}").as_bytes(),
                        )
                        .body_text()
                    })
                    .collect::<Vec<String>>()
            })
        })
        .collect();
    let acked: HashSet<String> = publishers
        .into_iter()
        .flat_map(|p| p.join().unwrap())
        .collect();
    assert_eq!(acked.len(), 60, "every publish got its own id");

    let reference: Vec<String> = (0..60).map(|_| subs[0].next_event().id.unwrap()).collect();
    assert_eq!(reference.iter().cloned().collect::<HashSet<_>>(), acked);
    let as_pair = |id: &String| -> (u64, u64) {
        let (ms, seq) = id.split_once('-').unwrap();
        (ms.parse().unwrap(), seq.parse().unwrap())
    };
    assert!(
        reference
            .windows(2)
            .all(|w| as_pair(&w[0]) < as_pair(&w[1])),
        "ids increase"
    );
    for sub in &mut subs[1..] {
        let seen: Vec<String> = (0..60).map(|_| sub.next_event().id.unwrap()).collect();
        assert_eq!(seen, reference, "same events, same order, on every worker");
    }
}

#[test]
fn replay_is_the_same_on_every_worker() {
    let daemon = Daemon::start(&["--workers", "2", "--history", "8"]);
    let ids: Vec<String> = (0..12)
        .map(|i| daemon.publish("r", &format!("e{i}")))
        .collect();
    let mut subs = subscribers_on_both_workers(&daemon, "/events/r", &[("Last-Event-ID", &ids[6])]);
    let expected: Vec<(String, String)> =
        (7..12).map(|i| (ids[i].clone(), format!("e{i}"))).collect();
    for sub in &mut subs {
        let replayed: Vec<(String, String)> = (0..5)
            .map(|_| sub.next_event())
            .map(|e| (e.id.unwrap(), e.data))
            .collect();
        assert_eq!(replayed, expected);
    }
    // Older than retention (8 kept): the same gap notice, then the same 8, everywhere.
    let mut old = subscribers_on_both_workers(&daemon, "/events/r", &[("Last-Event-ID", &ids[0])]);
    for sub in &mut old {
        let gap = sub.next_event();
        assert_eq!(
            (gap.event.as_deref(), gap.data.as_str()),
            (Some("ssed-gap"), "r")
        );
        assert_eq!(sub.next_event().data, "e4");
    }
}

#[test]
fn two_processes_can_share_one_port() {
    let first = Daemon::start(&["--workers", "1"]);
    let mut command = Command::new(env!("CARGO_BIN_EXE_ssed"));
    command.args(["--workers", "1", "--listen", &first.addr.to_string()]);
    let second = Daemon::spawn(command, &[]);
    assert_eq!(second.addr, first.addr);
    // Both answer on the shared port.
    for _ in 0..10 {
        assert_eq!(request(first.addr, "GET", "/healthz", &[], b"").status, 200);
    }
}
