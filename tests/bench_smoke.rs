//! Smoke test of the load generator against the real daemon: `ssed-bench subscribe` opens 300
//! subscriptions, `ssed-bench publish` sends one event, and the subscriber's summary must count
//! exactly one delivery per connection. Every wait is on a line from a child's stdout.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};

use common::{wait_for, Daemon, PATIENCE};

/// A running `ssed-bench`, its stdout arriving line by line; killed on drop.
struct Bench {
    child: Child,
    lines: Receiver<String>,
}

impl Bench {
    fn start(args: &[&str]) -> Bench {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ssed-bench"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start ssed-bench");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Bench { child, lines }
    }

    /// The next stdout line; fails the test if none comes within PATIENCE.
    fn next_line(&self, what: &str) -> String {
        self.lines
            .recv_timeout(PATIENCE)
            .unwrap_or_else(|e| panic!("no {what} from ssed-bench within {PATIENCE:?}: {e}"))
    }

    fn wait(&mut self) -> ExitStatus {
        wait_for("ssed-bench to exit", || self.child.try_wait().unwrap()).0
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn three_hundred_subscribers_each_count_the_one_published_event() {
    let daemon = Daemon::start(&[]);
    let addr = daemon.addr.to_string();
    let path = "/events/smoke";
    let subscribe = [
        "subscribe",
        "--addr",
        &addr,
        "--path",
        path,
        "--connections",
        "300",
        "--expect-events",
        "1",
        "--max-seconds",
        "60",
    ];
    let mut subscriber = Bench::start(&subscribe);
    assert_eq!(
        subscriber.next_line("ready line"),
        "ready established=300 failed=0 attempted=300"
    );

    let publish = ["publish", "--addr", &addr, "--path", path, "--count", "1"];
    let mut publisher = Bench::start(&publish);
    let published = publisher.next_line("publish summary");
    assert!(
        published.contains(r#""published":1,"errors":0,"#),
        "{published}"
    );
    assert!(publisher.wait().success());

    // --expect-events 1: the subscriber stops by itself once every connection has the event.
    let summary = subscriber.next_line("subscribe summary");
    for part in [
        r#""established":300,"failed":0,"#,
        r#""events":300,"#,
        r#""min_events_per_conn":1,"#,
        r#""samples":300}"#,
    ] {
        assert!(summary.contains(part), "{part} not in {summary}");
    }
    assert!(subscriber.wait().success());
}

/// `ssed token` with the test secret and these arguments.
fn mint(secret: &str, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ssed"))
        .args(["token", "--jwt-key", secret])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn subscribers_present_tokens_from_the_command_line_a_file_or_as_a_cookie() {
    let secret = "an HMAC secret of at least 32 bytes!";
    let daemon = Daemon::start(&["--jwt-key", secret]);
    let addr = daemon.addr.to_string();
    // Connection i subscribes to t{i}, and line i of the file grants exactly that topic.
    let dir = std::env::temp_dir().join(format!("ssed-bench-tokens-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("tokens");
    let lines: Vec<String> = (0..4)
        .map(|i| mint(secret, &["--subscribe", &format!("t{i}")]))
        .collect();
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let any = mint(secret, &["--subscribe", "*"]);
    let file_arg = file.to_str().unwrap();
    let runs: [(&[&str], &str); 5] = [
        (&["--token", &any], "established=4 failed=0"),
        (&["--token-file", file_arg], "established=4 failed=0"),
        (
            &["--token-file", file_arg, "--cookie", "ssed_token"],
            "established=4 failed=0",
        ),
        (
            &["--token", &any, "--cookie", "other"],
            "established=0 failed=4",
        ),
        (&[], "established=0 failed=4"),
    ];
    for (extra, expected) in runs {
        let mut args = vec!["subscribe", "--addr", &addr, "--path", "/events/t{i}"];
        args.extend_from_slice(&["--connections", "4", "--hold", "0.1", "--max-seconds", "60"]);
        args.extend_from_slice(extra);
        let mut bench = Bench::start(&args);
        let ready = bench.next_line("ready line");
        assert!(ready.contains(expected), "{extra:?}: {ready}");
        bench.wait();
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn path_templates_spread_subscribers_and_published_events_over_topics() {
    let daemon = Daemon::start(&[]);
    let addr = daemon.addr.to_string();
    // Six subscribers, two on each of g0, g1, g2 ({i%3}).
    let subscribe = [
        "subscribe",
        "--addr",
        &addr,
        "--path",
        "/events/g{i%3}",
        "--connections",
        "6",
        "--expect-events",
        "2",
        "--max-seconds",
        "60",
    ];
    let mut subscriber = Bench::start(&subscribe);
    assert_eq!(
        subscriber.next_line("ready line"),
        "ready established=6 failed=0 attempted=6"
    );
    // Round-robin: events 0, 2, 4, ... to `none` (no subscriber), 1, 3, 5, ... to g0, g1, g2, g0, ...
    let publish = [
        "publish",
        "--addr",
        &addr,
        "--path",
        "/events/none",
        "--path",
        "/events/g{i%3}",
        "--count",
        "12",
        "--rate",
        "0",
    ];
    let mut publisher = Bench::start(&publish);
    let published = publisher.next_line("publish summary");
    assert!(
        published.contains(r#""published":12,"errors":0,"#),
        "{published}"
    );
    assert!(publisher.wait().success());
    // Each g topic got 2 of the 6 events there, each of which reached its 2 subscribers.
    let summary = subscriber.next_line("subscribe summary");
    for part in [
        r#""events":12,"#,
        r#""min_events_per_conn":2,"#,
        r#""max_events_per_conn":2,"#,
    ] {
        assert!(summary.contains(part), "{part} not in {summary}");
    }
    assert!(subscriber.wait().success());
}

#[test]
fn subscribers_of_three_topics_each_count_what_their_topics_get() {
    let daemon = Daemon::start(&[]);
    let addr = daemon.addr.to_string();
    // fanout.sh --topics multi's shape in small: 20 subscribers of all, group/<i mod 2>, user/<i>.
    let subscribe = [
        "subscribe",
        "--addr",
        &addr,
        "--path",
        "/events?topic=all&topic=group/{i%2}&topic=user/{i}",
        "--connections",
        "20",
        "--expect-events",
        "3",
        "--max-seconds",
        "60",
    ];
    let mut subscriber = Bench::start(&subscribe);
    assert_eq!(
        subscriber.next_line("ready line"),
        "ready established=20 failed=0 attempted=20"
    );
    // all, group/0, all, group/1: every subscriber gets both to all and the one to its group.
    let publish = [
        "publish",
        "--addr",
        &addr,
        "--path",
        "/events/all",
        "--path",
        "/events/group/{i%2}",
        "--count",
        "4",
        "--rate",
        "0",
    ];
    let mut publisher = Bench::start(&publish);
    let published = publisher.next_line("publish summary");
    assert!(
        published.contains(r#""published":4,"errors":0,"#),
        "{published}"
    );
    assert!(publisher.wait().success());
    let summary = subscriber.next_line("subscribe summary");
    for part in [
        r#""events":60,"#,
        r#""min_events_per_conn":3,"#,
        r#""max_events_per_conn":3,"#,
    ] {
        assert!(summary.contains(part), "{part} not in {summary}");
    }
    assert!(subscriber.wait().success());
}
