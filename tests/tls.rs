//! HTTPS (`--tls-cert`, `--tls-key`): real clients (curl, rustls, Chromium) against the real
//! binary, certificate reload, startup errors, and what a misbehaving client can do to a TLS
//! listener (plaintext, a stalled handshake, never reading), which must never reach anyone else.

mod common;
use common::browser::{open_browser_with, serve_page};
use common::tls::*;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

/// `curl --cacert CA` with `args`, its stdout.
fn curl(ca: &TestCa, args: &[&str]) -> String {
    let output = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "20",
            "--cacert",
            &path_text(&ca.ca_path()),
        ])
        .args(args)
        .output()
        .expect("curl is needed for this test: run ./test.sh, which installs it");
    assert!(output.status.success(), "curl {args:?}: {output:?}");
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn curl_subscribes_and_publishes_over_https_verifying_the_chain() {
    let ca = TestCa::new();
    let leaf = ca.leaf("server");
    let daemon = start_https(&leaf, &[]);
    let client = ca.client(&[]);
    let url = format!("https://127.0.0.1:{}/events/news", daemon.addr.port());

    let mut subscriber = Command::new("curl")
        .args(["-sS", "-N", "--max-time", "30", "--cacert"])
        .arg(ca.ca_path())
        .arg(&url)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_metric_over(&client, &daemon, "ssed_subscribers", 1.0);
    let id = curl(&ca, &["--data-binary", "over https", &url]);
    assert!(!id.is_empty());
    // Published by name too: the certificate covers localhost.
    let by_name = format!("https://localhost:{}/events/news", daemon.addr.port());
    curl(&ca, &["--data-binary", "by name", &by_name]);

    let mut lines = std::io::BufReader::new(subscriber.stdout.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("data: by name\n") {
        let n = std::io::BufRead::read_line(&mut lines, &mut seen).unwrap();
        assert!(n > 0, "curl's stream ended: {seen:?}");
    }
    assert!(
        seen.contains(&format!("id: {id}\ndata: over https\n")),
        "{seen}"
    );
    let _ = subscriber.kill();
    let _ = subscriber.wait();
}

fn wait_for_metric_over(client: &Client, daemon: &Daemon, name: &str, value: f64) {
    client.wait_for_metric(daemon, name, value);
}

#[test]
fn rustls_clients_negotiate_tls_1_3_and_tls_1_2_with_alpn_http_1_1() {
    let ca = TestCa::new();
    let daemon = start_https(&ca.leaf("server"), &[]);
    for (version, expected) in [
        (&rustls::version::TLS13, rustls::ProtocolVersion::TLSv1_3),
        (&rustls::version::TLS12, rustls::ProtocolVersion::TLSv1_2),
    ] {
        let client = ca.client(&[version]);
        let stream = client.connect(daemon.addr);
        assert_eq!(stream.conn.protocol_version(), Some(expected));
        assert_eq!(stream.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
        let mut sub = Subscription::over(stream, "/events/versions", &[]);
        let id = client.publish(&daemon, "versions", &format!("{expected:?}"));
        let event = sub.next_event();
        assert_eq!((event.id, event.data), (Some(id), format!("{expected:?}")));
    }
}

#[test]
fn eventsource_in_chromium_receives_events_over_https() {
    let ca = TestCa::new();
    let page = serve_page(include_str!("browser/eventsource.html"));
    let reporter = Daemon::start(&["--cors-origin", &page]);
    let mut reports = reporter.subscribe("report");
    let daemon = start_https(&ca.leaf("server"), &["--cors-origin", &page]);
    let client = ca.client(&[]);
    let url = format!(
        "{page}/?ssed=https://127.0.0.1:{}&report=http://{}",
        daemon.addr.port(),
        reporter.addr
    );
    // The test CA is not in Chromium's store; the chain itself is checked by the curl and
    // rustls tests.
    let _browser = open_browser_with(&url, &["--ignore-certificate-errors"]);
    let next = |reports: &mut Subscription| {
        let report = browser::next_report(reports);
        let field = |name: &str| report[name].as_str().unwrap_or_default().to_string();
        (field("kind"), field("id"), field("data"))
    };
    assert_eq!(next(&mut reports).0, "open");
    let id = client.publish(&daemon, "browser", "hello over https");
    assert_eq!(
        next(&mut reports),
        ("message".into(), id, "hello over https".into())
    );
}

#[test]
fn sighup_serves_the_new_certificate_to_new_connections_while_old_streams_go_on() {
    let ca = TestCa::new();
    let first = ca.leaf("first");
    let second = ca.leaf("second");
    let mut command = Command::new(env!("CARGO_BIN_EXE_ssed"));
    command.args(["--listen", "127.0.0.1:0"]).args(first.args());
    let (daemon, log) = Daemon::spawn_logging(command);
    let client = ca.client(&[]);

    let old = client.connect(daemon.addr);
    assert_eq!(served_certificate(&old), first.cert);
    let mut old = Subscription::over(old, "/events/reload", &[]);

    // A bad file at reload is logged and the old certificate stays.
    std::fs::write(&first.cert_path, "not a certificate").unwrap();
    unsafe { libc::kill(daemon.child.id() as i32, libc::SIGHUP) };
    let (warning, _) = wait_for("a warning about the bad file", || {
        log.try_iter()
            .find(|line| line.contains("keeping the certificate in force"))
    });
    assert!(
        warning.contains("WARN") && warning.contains(&path_text(&first.cert_path)),
        "{warning}"
    );
    let id = client.publish(&daemon, "reload", "after a bad reload");
    assert_eq!(old.next_event().id, Some(id));
    assert_eq!(served_certificate(&client.connect(daemon.addr)), first.cert);

    // The renewed certificate, as certbot would write it, then SIGHUP.
    std::fs::copy(&second.cert_path, &first.cert_path).unwrap();
    std::fs::copy(&second.key_path, &first.key_path).unwrap();
    unsafe { libc::kill(daemon.child.id() as i32, libc::SIGHUP) };
    wait_for("a new connection to get the new certificate", || {
        (served_certificate(&client.connect(daemon.addr)) == second.cert).then_some(())
    });
    let id = client.publish(&daemon, "reload", "after the reload");
    let event = old.next_event();
    assert_eq!(
        (event.id, event.data.as_str()),
        (Some(id), "after the reload")
    );
}

/// Runs ssed with `args` (and --listen 127.0.0.1:0) until it exits; its status and stderr.
fn run_to_exit(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_ssed"))
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_key_that_does_not_match_or_a_file_that_does_not_load_stops_startup_naming_it() {
    let ca = TestCa::new();
    let one = ca.leaf("one");
    let other = ca.leaf("other");
    let (cert, other_key) = (path_text(&one.cert_path), path_text(&other.key_path));
    let (code, stderr) = run_to_exit(&["--tls-cert", &cert, "--tls-key", &other_key], &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "the TLS key {other_key} does not match the certificate {cert}"
        )),
        "{stderr}"
    );

    let missing = path_text(&ca.dir.join("missing.pem"));
    let key = path_text(&one.key_path);
    let (code, stderr) = run_to_exit(&["--tls-cert", &missing, "--tls-key", &key], &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot read the TLS certificate {missing}")),
        "{stderr}"
    );

    let garbage = ca.dir.join("garbage.key");
    std::fs::write(&garbage, "-----BEGIN PRIVATE KEY-----\nAAAA\n").unwrap();
    let garbage = path_text(&garbage);
    // Through the environment, as every flag can be given.
    let (code, stderr) = run_to_exit(&[], &[("SSED_TLS_CERT", &cert), ("SSED_TLS_KEY", &garbage)]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot read the TLS key {garbage}")),
        "{stderr}"
    );
}

#[test]
fn one_of_the_two_flags_alone_is_a_usage_error_naming_the_other() {
    let ca = TestCa::new();
    let leaf = ca.leaf("alone");
    let (code, stderr) = run_to_exit(&["--tls-cert", &path_text(&leaf.cert_path)], &[]);
    // Like every other usage error (a bad value, an unknown flag): clap's status 2.
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--tls-key"), "{stderr}");
    let (code, stderr) = run_to_exit(&[], &[("SSED_TLS_KEY", &path_text(&leaf.key_path))]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--tls-cert"), "{stderr}");
}

#[test]
fn environment_variables_serve_https_too() {
    let ca = TestCa::new();
    let leaf = ca.leaf("env");
    let daemon = Daemon::start_with_env(
        &[],
        &[
            ("SSED_TLS_CERT", &path_text(&leaf.cert_path)),
            ("SSED_TLS_KEY", &path_text(&leaf.key_path)),
        ],
    );
    let client = ca.client(&[]);
    assert_eq!(served_certificate(&client.connect(daemon.addr)), leaf.cert);
}

#[test]
fn plaintext_http_on_the_https_port_is_closed_and_counted() {
    let ca = TestCa::new();
    let daemon = start_https(&ca.leaf("server"), &[]);
    let client = ca.client(&[]);
    let answer = exchange(daemon.addr, b"GET /events/news HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(
        !answer.contains("HTTP/1.1"),
        "no HTTP answer in plaintext: {answer:?}"
    );
    client.wait_for_metric(&daemon, &handshake_failures("not_tls"), 1.0);
    // Still serving.
    let mut sub = client.subscribe(&daemon, "news");
    client.publish(&daemon, "news", "still here");
    assert_eq!(sub.next_event().data, "still here");
}

/// The first bytes of a real ClientHello.
fn partial_client_hello(client: &Client) -> Vec<u8> {
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(client.config.clone(), name).unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    hello.truncate(hello.len() / 2);
    hello
}

/// Whether the server closed `stream` (EOF or reset), waiting at most PATIENCE.
fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn stalled_handshakes_are_closed_by_the_header_timeout_while_others_keep_receiving() {
    let ca = TestCa::new();
    // The timeout is checked once a second, so --header-timeout 1 may close a connection
    // accepted just before a check within milliseconds: too soon for the publishers here.
    let daemon = start_https(&ca.leaf("server"), &["--header-timeout", "2"]);
    let client = ca.client(&[]);
    let mut sub = client.subscribe(&daemon, "news");

    let mut silent = connect(daemon.addr);
    let mut partial = connect(daemon.addr);
    partial.write_all(&partial_client_hello(&client)).unwrap();
    let stalled = std::thread::spawn(move || {
        (
            closed_by_server(&mut silent),
            closed_by_server(&mut partial),
        )
    });
    // Events flow to the subscriber while the stalled handshakes wait for their timeout.
    let mut sent = 0;
    while !stalled.is_finished() {
        sent += 1;
        client.publish(&daemon, "news", &format!("e{sent}"));
        assert_eq!(sub.next_event().data, format!("e{sent}"));
        assert!(sent < 2000, "the stalled handshakes were never closed");
    }
    assert_eq!(stalled.join().unwrap(), (true, true));
    client.wait_for_metric(&daemon, &handshake_failures("timeout"), 2.0);
    assert_eq!(rejected_over(&client, &daemon, "header_timeout"), 0.0);
    client.publish(&daemon, "news", "after");
    assert_eq!(sub.next_event().data, "after");
}

fn rejected_over(client: &Client, daemon: &Daemon, reason: &str) -> f64 {
    client.metric(
        daemon,
        &format!("ssed_requests_rejected_total{{reason=\"{reason}\"}}"),
    )
}

#[test]
fn a_tls_subscriber_that_never_reads_is_dropped_once_it_falls_out_of_retention() {
    let ca = TestCa::new();
    let daemon = start_https(
        &ca.leaf("server"),
        &[
            "--send-buffer",
            "4096",
            "--history",
            "16",
            "--history-bytes",
            "65536",
        ],
    );
    let client = ca.client(&[]);
    // Subscribes, then never reads again.
    let stalled = client.subscribe(&daemon, "news");
    let mut reader = client.subscribe(&daemon, "news");
    let data = "x".repeat(4000);
    let mut published = 0;
    while client.metric(&daemon, "ssed_slow_subscribers_dropped_total") < 1.0 {
        for _ in 0..16 {
            client.publish(&daemon, "news", &data);
            published += 1;
            assert_eq!(reader.next_event().data.len(), data.len());
        }
        assert!(
            published < 4000,
            "16 MB published and the stalled subscriber is still there"
        );
    }
    client.wait_for_metric(&daemon, "ssed_subscribers", 1.0);
    client.publish(&daemon, "news", "the reader goes on");
    assert_eq!(reader.next_event().data, "the reader goes on");
    drop(stalled);
}

#[test]
fn sigterm_tells_tls_subscribers_to_retry_then_closes_them_cleanly() {
    let ca = TestCa::new();
    let mut daemon = start_https(&ca.leaf("server"), &[]);
    let client = ca.client(&[]);
    let mut sub = client.subscribe(&daemon, "news");
    client.publish(&daemon, "news", "before");
    assert_eq!(sub.next_event().data, "before");
    assert!(daemon.terminate().success());
    // rustls reports a close without close_notify as an error (UnexpectedEof).
    let rest = sub.rest().expect("a clean TLS close (close_notify)");
    assert!(rest.starts_with("retry: "), "{rest:?}");
}

#[test]
fn publish_token_and_metrics_work_over_https() {
    let ca = TestCa::new();
    let daemon = start_https(&ca.leaf("server"), &["--publish-token", "s3cret"]);
    let client = ca.client(&[]);
    let mut sub = client.subscribe(&daemon, "news");
    let refused = client.request(daemon.addr, "POST", "/events/news", &[], b"no token");
    assert_eq!(refused.status, 401);
    let allowed = client.request(
        daemon.addr,
        "POST",
        "/events/news",
        &[("Authorization", "Bearer s3cret")],
        b"with the token",
    );
    assert_eq!(allowed.status, 200);
    assert_eq!(sub.next_event().data, "with the token");
    assert_eq!(client.metric(&daemon, "ssed_events_published_total"), 1.0);
}

#[test]
fn several_topics_on_one_https_connection_merge_and_resume_with_one_id() {
    let ca = TestCa::new();
    let daemon = start_https(&ca.leaf("server"), &["--history", "2"]);
    let client = ca.client(&[]);
    let path = "/events?topic=a&topic=b&topic=c";
    let mut sub = Subscription::over(client.connect(daemon.addr), path, &[]);
    wait_for_metric_over(&client, &daemon, "ssed_subscribers", 1.0);
    let mut published = Vec::new();
    for (i, topic) in ["a", "b", "c", "b", "a", "x"].iter().enumerate() {
        let id = client.publish(&daemon, topic, &format!("{topic}{i}"));
        published.push((id, format!("{topic}{i}")));
    }
    // Every event of a, b and c once, in id order; none of x.
    for (id, data) in &published[..5] {
        let event = sub.next_event();
        assert_eq!((event.id.as_ref(), &event.data), (Some(id), data));
    }
    let last_seen = published[1].0.clone();
    drop(sub);
    wait_for_metric_over(&client, &daemon, "ssed_subscribers", 0.0);
    // While away: three more to a, which retains two, so a cannot vouch for b1's id any more.
    for i in 0..3 {
        let data = format!("a-away{i}");
        published.push((client.publish(&daemon, "a", &data), data));
    }
    let mut back = Subscription::over(
        client.connect(daemon.addr),
        path,
        &[("Last-Event-ID", &last_seen)],
    );
    assert_gap(&back.next_event(), "a");
    // a: what it retains; b, c: exactly what followed b1; merged by id.
    let expected = [&published[2], &published[3], &published[7], &published[8]];
    let mut expected: Vec<_> = expected
        .iter()
        .map(|(id, data)| (id.clone(), data.clone()))
        .collect();
    expected.sort_by_key(|(id, _)| {
        let (ms, seq) = id.split_once('-').unwrap();
        (ms.parse::<u64>().unwrap(), seq.parse::<u64>().unwrap())
    });
    for (id, data) in expected {
        let event = back.next_event();
        assert_eq!((event.id, event.data), (Some(id), data));
    }
    let live = client.publish(&daemon, "c", "live");
    assert_eq!(back.next_event().id, Some(live));
}

#[test]
fn a_reconnecting_client_resumes_its_tls_session() {
    let ca = TestCa::new();
    let daemon = start_https(&ca.leaf("server"), &["--workers", "1"]);
    // One client configuration: its in-memory session store carries the ticket over.
    let client = ca.client(&[]);
    let mut first = client.connect(daemon.addr);
    assert_eq!(
        first.conn.handshake_kind(),
        Some(rustls::HandshakeKind::Full)
    );
    // TLS 1.3 tickets arrive after the handshake: reading the answer takes them in.
    assert_eq!(
        request_over(&mut first, "GET", "/healthz", &[], b"").status,
        200
    );
    let second = client.connect(daemon.addr);
    assert_eq!(
        second.conn.handshake_kind(),
        Some(rustls::HandshakeKind::Resumed),
        "a reconnect with a ticket from this process skips the full handshake"
    );
}

#[test]
fn every_worker_serves_https() {
    let ca = TestCa::new();
    let daemon = start_https(&ca.leaf("server"), &["--workers", "4"]);
    let client = ca.client(&[]);
    let mut subs: Vec<_> = (0..16).map(|_| client.subscribe(&daemon, "news")).collect();
    let id = client.publish(&daemon, "news", "to every worker");
    for sub in &mut subs {
        assert_eq!(sub.next_event().id.as_ref(), Some(&id));
    }
}

#[test]
fn processes_sharing_redis_serve_https() {
    let redis = RedisServer::start();
    let ca = TestCa::new();
    let leaf = ca.leaf("server");
    let args = leaf.args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let first = Daemon::with_redis(&redis, "127.0.0.1:0", &args);
    let second = Daemon::with_redis(&redis, "127.0.0.1:0", &args);
    let client = ca.client(&[]);
    let mut sub = client.subscribe(&second, "news");
    let id = client.publish(&first, "news", "through redis");
    let event = sub.next_event();
    assert_eq!((event.id, event.data.as_str()), (Some(id), "through redis"));
}

#[test]
fn mangled_client_hellos_are_refused_and_never_reach_anyone_else() {
    let ca = TestCa::new();
    let daemon = start_https(&ca.leaf("server"), &["--header-timeout", "2"]);
    let client = ca.client(&[]);
    let mut sub = client.subscribe(&daemon, "news");
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(client.config.clone(), name).unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    // Every byte of a real ClientHello in turn, inverted; then pieces of it repeated.
    let mut mangled: Vec<Vec<u8>> = (0..hello.len())
        .step_by(3)
        .map(|i| {
            let mut bytes = hello.clone();
            bytes[i] ^= 0xff;
            bytes
        })
        .collect();
    mangled.push(hello.repeat(3));
    mangled.push(hello[..5].repeat(100));
    mangled.push([0x16, 0x03, 0x01, 0xff, 0xff].to_vec());
    for bytes in &mangled {
        let mut stream = connect(daemon.addr);
        let _ = stream.write_all(bytes);
    }
    client.publish(&daemon, "news", "unaffected");
    assert_eq!(sub.next_event().data, "unaffected");
    wait_for("the mangled handshakes to be refused", || {
        (client.metric(&daemon, &handshake_failures("protocol")) >= 1.0).then_some(())
    });
}

#[test]
fn a_handshake_in_tiny_records_trickled_in_pieces_completes() {
    let ca = TestCa::new();
    let daemon = start_https(&ca.leaf("server"), &[]);
    let client = ca.client(&[]);
    // Every handshake message spans many records, each arriving in several pieces: the server
    // keeps the incomplete ones between reads and rustls joins them.
    let mut config = (*client.config).clone();
    config.max_fragment_size = Some(64);
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let mut tcp = connect(daemon.addr);
    tcp.set_nodelay(true).unwrap();
    let mut hello = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut hello).unwrap();
    }
    for piece in hello.chunks(7) {
        tcp.write_all(piece).unwrap();
    }
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).expect("the handshake completes");
    }
    let mut sub = Subscription::over(rustls::StreamOwned::new(conn, tcp), "/events/tiny", &[]);
    client.publish(&daemon, "tiny", "in tiny records");
    assert_eq!(sub.next_event().data, "in tiny records");
}
