//! Every flag can come from the environment as SSED_<FLAG>, which is how systemd's
//! EnvironmentFile, Docker and Kubernetes configure a daemon; a flag on the command line wins.

mod common;
use common::*;
use std::process::Command;

/// Flags whose environment name does not follow the SSED_<FLAG> rule (none).
const EXCEPTIONS: &[(&str, &str)] = &[];

#[test]
fn help_names_the_environment_variable_of_every_flag() {
    let output = Command::new(env!("CARGO_BIN_EXE_ssed"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(output.stdout).unwrap();
    let mut checked = 0;
    // A flag's entry is its `--name <VALUE>` line (indented by at most six spaces) and the
    // more deeply indented help text under it.
    let mut entries: Vec<String> = Vec::new();
    for line in help.lines() {
        let indent = line.len() - line.trim_start().len();
        if line.trim_start().starts_with('-') && indent <= 6 {
            entries.push(String::new());
        }
        if let Some(entry) = entries.last_mut() {
            entry.push_str(line);
            entry.push('\n');
        }
    }
    for entry in &entries {
        let flag = entry
            .split_whitespace()
            .find(|w| w.starts_with("--"))
            .unwrap();
        if !flag.starts_with("--") || flag == "--help" || flag == "--version" {
            continue;
        }
        let expected = EXCEPTIONS.iter().find(|(f, _)| *f == flag).map_or_else(
            || format!("SSED_{}", flag[2..].replace('-', "_").to_uppercase()),
            |(_, env)| env.to_string(),
        );
        assert!(
            entry.contains(&format!("[env: {expected}")),
            "{flag} must be settable as {expected} and say so in --help: {entry}"
        );
        checked += 1;
    }
    assert!(
        checked >= 17,
        "only {checked} flags found in --help:\n{help}"
    );
}

#[test]
fn secrets_given_in_the_environment_stay_out_of_help() {
    let output = Command::new(env!("CARGO_BIN_EXE_ssed"))
        .arg("--help")
        .env("SSED_PUBLISH_TOKEN", "hunter2")
        .env("SSED_REDIS", "redis://:hunter3@127.0.0.1:1/0")
        .output()
        .unwrap();
    let help = String::from_utf8(output.stdout).unwrap();
    assert!(!help.contains("hunter"), "{help}");
}

#[test]
fn the_environment_configures_the_daemon_when_no_flag_is_given() {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ssed"));
    command.env("SSED_LISTEN", "127.0.0.1:0");
    let daemon = Daemon::spawn(
        command,
        &[
            ("SSED_HEARTBEAT", "1"),
            ("SSED_HEARTBEAT_EVENT", "from-env"),
            ("SSED_RETRY_MS", "1234"),
        ],
    );
    assert!(daemon.addr.ip().is_loopback() && daemon.addr.port() != 0);
    let mut sub = daemon.subscribe("env");
    let heartbeat = sub.next_event();
    assert_eq!(heartbeat.event.as_deref(), Some("from-env"));
    assert_eq!(sub.retry, Some(1234));
}

#[test]
fn a_flag_wins_over_the_environment() {
    // Common's start passes `--listen 127.0.0.1:0`, which must win over an address that could
    // not even be parsed.
    let daemon = Daemon::start_with_env(
        &["--heartbeat-event", "from-flag"],
        &[
            ("SSED_LISTEN", "not an address"),
            ("SSED_HEARTBEAT", "1"),
            ("SSED_HEARTBEAT_EVENT", "from-env"),
        ],
    );
    let mut sub = daemon.subscribe("env");
    assert_eq!(sub.next_event().event.as_deref(), Some("from-flag"));
}

#[test]
fn several_cors_origins_are_given_in_one_variable_separated_by_commas() {
    let daemon = Daemon::start_with_env(
        &[],
        &[("SSED_CORS_ORIGIN", "https://a.example,https://b.example")],
    );
    for origin in ["https://a.example", "https://b.example"] {
        let sub = Subscription::open(daemon.addr, "/events/x", &[("Origin", origin)]);
        assert!(
            sub.head
                .contains(&format!("Access-Control-Allow-Origin: {origin}\r\n")),
            "{}",
            sub.head
        );
    }
    let stranger = Subscription::open(
        daemon.addr,
        "/events/x",
        &[("Origin", "https://a.example,https://b.example")],
    );
    assert!(!stranger.head.contains("Access-Control-Allow-Origin"));
}

#[test]
fn a_bad_value_in_the_environment_is_a_usage_error_naming_the_flag() {
    let output = Command::new(env!("CARGO_BIN_EXE_ssed"))
        .env("SSED_WORKERS", "many")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--workers"), "{stderr}");
}

#[test]
fn the_earlier_name_of_the_redis_variable_is_still_read() {
    // An unreachable Redis is a startup error naming it: proof that the variable was read.
    for name in ["SSED_REDIS", "SSED_REDIS_URL"] {
        let output = Command::new(env!("CARGO_BIN_EXE_ssed"))
            .args(["--listen", "127.0.0.1:0"])
            .env(name, "redis://127.0.0.1:1/0")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "{name}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("cannot reach Redis at redis://127.0.0.1:1/0"),
            "{name}: {stderr}"
        );
    }
}
