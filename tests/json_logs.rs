//! `--log-format json`: every line the daemon writes to stderr is one JSON object that a log
//! collector can parse, from startup to a SIGTERM shutdown.

mod common;
use common::*;
use std::process::{Command, Stdio};

const KEYS: [&str; 5] = ["timestamp", "level", "target", "message", "fields"];

fn parse_line(line: &str) -> serde_json::Map<String, serde_json::Value> {
    let value: serde_json::Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line:?}"));
    let object = value.as_object().expect("a JSON object").clone();
    for key in KEYS {
        assert!(object.contains_key(key), "no {key} in {line}");
    }
    assert_eq!(object.len(), KEYS.len(), "unexpected keys in {line}");
    let timestamp = object["timestamp"].as_str().unwrap();
    // RFC 3339 in UTC with milliseconds: 2026-01-02T03:04:05.678Z
    assert_eq!(timestamp.len(), 24, "{timestamp}");
    assert!(
        timestamp.ends_with('Z')
            && timestamp.as_bytes()[10] == b'T'
            && timestamp.as_bytes()[19] == b'.',
        "{timestamp}"
    );
    assert!(
        ["ERROR", "WARN", "INFO", "DEBUG", "TRACE"].contains(&object["level"].as_str().unwrap())
    );
    assert!(object["fields"].is_object());
    object
}

#[test]
fn every_line_from_startup_to_shutdown_is_a_json_object() {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ssed"));
    command.args([
        "--listen",
        "127.0.0.1:0",
        "--workers",
        "2",
        "--log-format",
        "json",
    ]);
    let (mut daemon, log) = Daemon::spawn_logging(command);
    // A subscriber, so that the shutdown has someone to tell to come back later.
    let mut sub = daemon.subscribe("logs");
    daemon.publish("logs", "hello");
    assert_eq!(sub.next_event().data, "hello");
    assert!(daemon.terminate().success());
    assert!(sub.try_next_event().is_none());

    let lines: Vec<String> = log.iter().collect();
    let records: Vec<_> = lines.iter().map(|line| parse_line(line)).collect();
    let messages: Vec<&str> = records
        .iter()
        .map(|r| r["message"].as_str().unwrap())
        .collect();
    for expected in [
        "listening on",
        "shutting down",
        "told to retry later",
        "stopped",
    ] {
        assert!(
            messages.iter().any(|m| m.contains(expected)),
            "no log line about {expected:?}: {lines:#?}"
        );
    }
}

#[test]
fn a_startup_error_is_a_json_line_too() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let output = Command::new(env!("CARGO_BIN_EXE_ssed"))
        .args(["--listen", &addr])
        .env("SSED_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    let records: Vec<_> = stderr.lines().map(parse_line).collect();
    let error = records
        .iter()
        .find(|r| r["level"] == "ERROR")
        .unwrap_or_else(|| panic!("no error line: {stderr}"));
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
}

#[test]
fn rust_log_still_filters_json_lines() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ssed"))
        .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert!(line.starts_with("listening on"), "{line:?}");
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    // A clean start and stop logs only at info, which RUST_LOG=warn hides.
    assert_eq!(String::from_utf8_lossy(&output.stderr), "");
}
