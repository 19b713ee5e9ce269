//! The daemon as an operator meets it: --help, startup errors, and running out of descriptors.

mod common;
use common::*;
use std::io::{Read, Write};
use std::process::Command;

#[test]
fn help_documents_every_flag_with_its_default() {
    let output = Command::new(env!("CARGO_BIN_EXE_ssed"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for (flag, default) in [
        ("--listen", Some("127.0.0.1:8080")),
        ("--workers", None),
        ("--heartbeat ", Some("15")),
        ("--heartbeat-event", None),
        ("--retry-ms", None),
        ("--history ", Some("1000")),
        ("--history-bytes", Some("1048576")),
        ("--topic-ttl", Some("300")),
        ("--max-event-bytes", Some("65536")),
        ("--send-buffer", Some("65536")),
        ("--max-connections", None),
        ("--header-timeout", Some("10")),
        ("--publish-token", None),
        ("--cors-origin", None),
        ("--redis ", None),
        ("--redis-stream-len", Some("100000")),
    ] {
        let at = help
            .find(flag)
            .unwrap_or_else(|| panic!("--help lacks {flag}"));
        let entry = &help[at..help[at..].find("\n  -").map_or(help.len(), |end| at + end)];
        assert!(
            entry.contains("default"),
            "{flag} states no default: {entry}"
        );
        if let Some(default) = default {
            assert!(
                entry.contains(&format!("[default: {default}]")),
                "{flag}: {entry}"
            );
        }
    }
}

#[test]
fn an_address_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let output = Command::new(env!("CARGO_BIN_EXE_ssed"))
        .args(["--listen", &addr])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
}

#[test]
fn running_out_of_descriptors_pauses_accepting_and_recovers() {
    // A hard limit of 64 descriptors, far below --max-connections: accept() hits EMFILE.
    let mut command = Command::new("bash");
    command.args([
        "-c",
        &format!(
            "ulimit -n 64 && exec {} --listen 127.0.0.1:0 --workers 1 --max-connections 1000",
            env!("CARGO_BIN_EXE_ssed")
        ),
    ]);
    let (daemon, log) = Daemon::spawn_logging(command);
    let mut clients: Vec<std::net::TcpStream> = (0..80)
        .map(|_| {
            let mut stream = daemon.connect();
            stream
                .write_all(b"GET /events/fd HTTP/1.1\r\nHost: t\r\n\r\n")
                .unwrap();
            stream
        })
        .collect();
    wait_for("an accept to fail with EMFILE", || {
        log.try_iter()
            .any(|line| line.contains("accept failed") && line.contains("Too many open files"))
            .then_some(())
    });
    // Freeing descriptors lets the server take the rest of the backlog: every remaining client
    // gets its stream.
    clients.truncate(40);
    for client in &mut clients {
        let mut head = [0u8; 12];
        client.read_exact(&mut head).unwrap();
        assert_eq!(&head, b"HTTP/1.1 200");
    }
    assert!(daemon.metric("ssed_accept_errors_total") >= 1.0);
}

#[test]
fn a_worker_that_dies_takes_the_process_down_with_a_non_zero_status() {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ssed"));
    command
        .args(["--listen", "127.0.0.1:0", "--workers", "2"])
        .env("SSED_DEBUG_PANIC", "1");
    let (mut daemon, log) = Daemon::spawn_logging(command);
    let _ = exchange(daemon.addr, b"GET /debug/panic HTTP/1.1\r\nHost: t\r\n\r\n");
    let (status, _) = wait_for("ssed to exit", || daemon.child.try_wait().unwrap());
    assert!(!status.success(), "exit status {status:?}");
    let lines: Vec<String> = log.iter().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("stopped unexpectedly") && l.contains("supervisor")),
        "{lines:#?}"
    );
    let refused = std::net::TcpStream::connect(daemon.addr);
    assert!(refused.is_err(), "no listener is left behind");
}
