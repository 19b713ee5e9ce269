//! Authorization of the running daemon over real sockets: tokens minted by the real `ssed token`
//! (HMAC, and PEM keys made with the openssl command), where a token may travel (header,
//! cookies, query), each refusal with its challenge and counter, forged tokens, selectors and
//! public topics, streams ended at their token's exp, publish rights, the loopback rule, key
//! reload on SIGHUP, kid, and CORS with credentials.
//!
//! The verification logic itself is unit-tested in depth in src/auth/tests.rs; these tests are
//! about the daemon wiring it to requests.

mod common;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use common::keys::*;
use common::*;
use std::io::Write as _;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const CHALLENGE: &str = r#"Bearer realm="ssed""#;
const INVALID: &str = r#"Bearer realm="ssed", error="invalid_token""#;
const SCOPE: &str = r#"Bearer realm="ssed", error="insufficient_scope""#;

// ---- minting (`ssed token` and the keys: common::keys) ------------------------------------------

/// A token put together by hand (claims `ssed token` cannot write, like a past `exp` or an
/// `nbf`), signed HS256 by the openssl command; `secret` None leaves the signature empty.
fn hand_made(
    header: &serde_json::Value,
    claims: &serde_json::Value,
    secret: Option<&[u8]>,
) -> String {
    let input = format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    );
    let Some(secret) = secret else {
        return format!("{input}.");
    };
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-mac", "HMAC", "-macopt"])
        .arg(format!("hexkey:{hex}"))
        .arg("-binary")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("these tests need the openssl command");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.len() == 32,
        "openssl dgst failed"
    );
    format!("{input}.{}", B64.encode(out.stdout))
}

fn hs256_header() -> serde_json::Value {
    serde_json::json!({"alg": "HS256", "typ": "JWT"})
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The claims of a token, decoded (not verified).
fn claims_of(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&B64.decode(payload).unwrap()).unwrap()
}

// ---- requests and refusals ------------------------------------------------------------------

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A subscribe request; a 200 comes back with its head only (the stream is not read).
fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response {
    request(addr, "GET", path, headers, b"")
}

fn post(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response {
    request(addr, "POST", path, headers, b"hello")
}

fn assert_stream(response: &Response) {
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(
        response.header("content-type").as_deref(),
        Some("text/event-stream")
    );
}

/// A refusal: its status, its challenge (None: no WWW-Authenticate), a one-line reason that
/// does not repeat the token.
#[track_caller]
fn assert_refused(response: &Response, status: u16, challenge: Option<&str>, token: &str) {
    assert_eq!(response.status, status, "{response:?}");
    assert_eq!(
        response.header("www-authenticate").as_deref(),
        challenge,
        "{response:?}"
    );
    let body = response.body_text();
    assert!(!body.trim().is_empty(), "a refusal says why");
    if !token.is_empty() {
        assert!(!body.contains(token), "the body repeats the token: {body}");
        for part in token.split('.').filter(|p| p.len() > 8) {
            assert!(
                !body.contains(part),
                "the body repeats part of the token: {body}"
            );
        }
    }
}

/// Publishes with the static publish token; returns the event id.
fn publish(daemon: &Daemon, topic: &str, data: &str) -> String {
    let auth = bearer(PUBLISH_TOKEN);
    let response = request(
        daemon.addr,
        "POST",
        &format!("/events/{topic}"),
        &[("Authorization", &auth)],
        data.as_bytes(),
    );
    assert_eq!(response.status, 200, "{response:?}");
    response.body_text()
}

fn hmac_daemon(extra: &[&str]) -> Daemon {
    let mut args = vec!["--jwt-key", SECRET, "--publish-token", PUBLISH_TOKEN];
    args.extend_from_slice(extra);
    Daemon::start(&args)
}

// ---- where the token goes -------------------------------------------------------------------

#[test]
fn hs256_token_opens_a_private_stream_from_the_header_or_the_cookie() {
    let daemon = hmac_daemon(&[]);
    let token = hs256(&["--subscribe", "users/42/*"]);
    let auth = bearer(&token);
    let mut by_header = Subscription::open(
        daemon.addr,
        "/events/users/42/inbox",
        &[("Authorization", &auth)],
    );
    let lowercase = format!("bearer {token}");
    let mut any_case = Subscription::open(
        daemon.addr,
        "/events/users/42/inbox",
        &[("Authorization", &lowercase)],
    );
    let cookie = format!("theme=dark; ssed_token={token}; lang=en");
    let mut by_cookie = Subscription::open(
        daemon.addr,
        "/events/users/42/inbox",
        &[("Cookie", &cookie)],
    );
    let id = publish(&daemon, "users/42/inbox", "for 42");
    for stream in [&mut by_header, &mut any_case, &mut by_cookie] {
        let event = stream.next_event();
        assert_eq!(
            (event.id.as_deref(), event.data.as_str()),
            (Some(&*id), "for 42")
        );
    }
}

#[test]
fn a_custom_cookie_name_replaces_the_default() {
    let daemon = hmac_daemon(&["--jwt-cookie", "sid"]);
    let token = hs256(&["--subscribe", "news"]);
    let custom = format!("sid={token}");
    assert_stream(&get(daemon.addr, "/events/news", &[("Cookie", &custom)]));
    let default = format!("ssed_token={token}");
    let refused = get(daemon.addr, "/events/news", &[("Cookie", &default)]);
    assert_refused(&refused, 401, Some(CHALLENGE), &token);
    assert_eq!(auth_failures(&daemon, "missing_token"), 1.0);
}

#[test]
fn query_tokens_are_refused_unless_allowed() {
    let token = hs256(&["--subscribe", "news"]);
    let path = format!("/events/news?access_token={token}");

    let strict = hmac_daemon(&[]);
    let refused = get(strict.addr, &path, &[]);
    assert_refused(&refused, 401, Some(CHALLENGE), &token);
    assert!(
        refused.body_text().contains("--allow-query-token"),
        "{refused:?}"
    );
    assert_eq!(auth_failures(&strict, "query_token_refused"), 1.0);

    let lenient = hmac_daemon(&["--allow-query-token"]);
    assert_stream(&get(lenient.addr, &path, &[]));
    assert_eq!(auth_failures(&lenient, "query_token_refused"), 0.0);
}

// ---- one subscribe per algorithm family ---------------------------------------------------------

fn subscribes_with_a_pem_key(kind: KeyKind, tag: &str) {
    let keys = KeyDir::new(tag);
    let (private, public) = keys.pair("app", kind);
    let daemon = Daemon::start(&[
        "--jwt-key-file",
        public.to_str().unwrap(),
        "--publish-token",
        PUBLISH_TOKEN,
    ]);
    let token = signed_by(&private, &["--subscribe", "news"]);
    let auth = bearer(&token);
    let mut stream = Subscription::open(daemon.addr, "/events/news", &[("Authorization", &auth)]);
    let id = publish(&daemon, "news", tag);
    assert_eq!(stream.next_event().id, Some(id));
    let refused = get(daemon.addr, "/events/other", &[("Authorization", &auth)]);
    assert_refused(&refused, 403, Some(SCOPE), &token);
}

#[test]
fn es256_token_subscribes() {
    subscribes_with_a_pem_key(KeyKind::Es256, "es256");
}

#[test]
fn rs256_token_subscribes() {
    subscribes_with_a_pem_key(KeyKind::Rs256, "rs256");
}

#[test]
fn eddsa_token_subscribes() {
    subscribes_with_a_pem_key(KeyKind::Ed25519, "eddsa");
}

// ---- refusals ---------------------------------------------------------------------------------

#[test]
fn every_refusal_has_its_challenge_and_its_counter() {
    let daemon = hmac_daemon(&[]);
    let now = unix_now();
    let grants = serde_json::json!({"subscribe": ["*"]});
    // The hand-made tokens are right but for the one claim under test: the same recipe with
    // good claims is accepted.
    let good = hand_made(
        &hs256_header(),
        &serde_json::json!({"exp": now + 3600, "ssed": grants}),
        Some(SECRET.as_bytes()),
    );
    let auth = bearer(&good);
    assert_stream(&get(
        daemon.addr,
        "/events/news",
        &[("Authorization", &auth)],
    ));

    let none = hand_made(
        &serde_json::json!({"alg": "none", "typ": "JWT"}),
        &serde_json::json!({"exp": now + 3600, "ssed": grants}),
        None,
    );
    let expired = hand_made(
        &hs256_header(),
        &serde_json::json!({"exp": now - 600, "ssed": grants}),
        Some(SECRET.as_bytes()),
    );
    let early = hand_made(
        &hs256_header(),
        &serde_json::json!({"nbf": now + 600, "exp": now + 3600, "ssed": grants}),
        Some(SECRET.as_bytes()),
    );
    let wrong_key = ssed_token(&[
        "--jwt-key",
        "another secret, also 32 bytes long",
        "--subscribe",
        "*",
    ]);
    let hs512 = hs256(&["--alg", "HS512", "--subscribe", "*"]);
    let not_granted = hs256(&["--subscribe", "sports"]);
    let cases: &[(&str, u16, &str, &str)] = &[
        ("", 401, CHALLENGE, "missing_token"),
        ("not-a-jwt", 401, INVALID, "malformed_token"),
        (&none, 401, INVALID, "malformed_token"),
        (&expired, 401, INVALID, "expired"),
        (&early, 401, INVALID, "not_yet_valid"),
        (&wrong_key, 401, INVALID, "bad_signature"),
        (&not_granted, 403, SCOPE, "not_granted"),
    ];
    for &(token, status, challenge, reason) in cases {
        let before = auth_failures(&daemon, reason);
        let auth = bearer(token);
        let headers: &[(&str, &str)] = if token.is_empty() {
            &[]
        } else {
            &[("Authorization", &auth)]
        };
        let response = get(daemon.addr, "/events/news", headers);
        assert_refused(&response, status, Some(challenge), token);
        assert_eq!(auth_failures(&daemon, reason), before + 1.0, "{reason}");
    }
    // HS512 with the same secret is fine: the secret verifies the whole HMAC family.
    let auth = bearer(&hs512);
    assert_stream(&get(
        daemon.addr,
        "/events/news",
        &[("Authorization", &auth)],
    ));
    // The same refusals in a cookie.
    let cookie = format!("ssed_token={expired}");
    let response = get(daemon.addr, "/events/news", &[("Cookie", &cookie)]);
    assert_refused(&response, 401, Some(INVALID), &expired);
    assert_eq!(auth_failures(&daemon, "expired"), 2.0);
}

#[test]
fn an_hmac_token_signed_with_the_public_key_is_refused() {
    let keys = KeyDir::new("confusion");
    let (private, public) = keys.pair("app", KeyKind::Es256);
    let daemon = Daemon::start(&["--jwt-key-file", public.to_str().unwrap()]);
    // The classic forgery: the public key's PEM text used as the HMAC secret.
    let pem = std::fs::read_to_string(&public).unwrap();
    // (`--jwt-key=`: the PEM starts with dashes.)
    let forged = ssed_token(&[&format!("--jwt-key={pem}"), "--subscribe", "*"]);
    let header: serde_json::Value =
        serde_json::from_slice(&B64.decode(forged.split('.').next().unwrap()).unwrap()).unwrap();
    assert_eq!(header["alg"], "HS256");
    let auth = bearer(&forged);
    let response = get(daemon.addr, "/events/news", &[("Authorization", &auth)]);
    assert_refused(&response, 401, Some(INVALID), &forged);
    assert_eq!(auth_failures(&daemon, "algorithm"), 1.0);
    // Also without the trailing newline, and as the secret's bytes in a hand-made token.
    let trimmed = hand_made(
        &hs256_header(),
        &serde_json::json!({"exp": unix_now() + 3600, "ssed": {"subscribe": ["*"]}}),
        Some(pem.trim().as_bytes()),
    );
    let auth = bearer(&trimmed);
    assert_refused(
        &get(daemon.addr, "/events/news", &[("Authorization", &auth)]),
        401,
        Some(INVALID),
        &trimmed,
    );
    assert_eq!(auth_failures(&daemon, "algorithm"), 2.0);
    // The genuine article passes.
    let genuine = signed_by(&private, &["--subscribe", "*"]);
    let auth = bearer(&genuine);
    assert_stream(&get(
        daemon.addr,
        "/events/news",
        &[("Authorization", &auth)],
    ));
}

// ---- selectors and public topics --------------------------------------------------------------

#[test]
fn prefix_and_star_selectors_and_public_topics() {
    let daemon = hmac_daemon(&["--public-topic", "news", "--public-topic", "open/*"]);
    let prefix = hs256(&["--subscribe", "users/42/*"]);
    let auth = bearer(&prefix);
    let with_prefix = |topic: &str| {
        get(
            daemon.addr,
            &format!("/events/{topic}"),
            &[("Authorization", &auth)],
        )
    };
    assert_stream(&with_prefix("users/42/inbox"));
    assert_stream(&with_prefix("users/42/a/b"));
    for topic in ["users/42", "users/421/x", "users/4", "sports"] {
        assert_refused(&with_prefix(topic), 403, Some(SCOPE), &prefix);
    }

    let star = hs256(&["--subscribe", "*"]);
    let auth = bearer(&star);
    for topic in ["users/42/inbox", "users/7", "sports", "a/b/c"] {
        assert_stream(&get(
            daemon.addr,
            &format!("/events/{topic}"),
            &[("Authorization", &auth)],
        ));
    }

    // Public topics: readable by anyone, even with a bad token (it is not looked at)...
    assert_stream(&get(daemon.addr, "/events/news", &[]));
    assert_stream(&get(daemon.addr, "/events/open/room", &[]));
    assert_stream(&get(
        daemon.addr,
        "/events/news",
        &[("Authorization", "Bearer garbage")],
    ));
    // ... but only those, and publishing to them still needs a token.
    assert_refused(
        &get(daemon.addr, "/events/newsroom", &[]),
        401,
        Some(CHALLENGE),
        "",
    );
    assert_refused(
        &get(daemon.addr, "/events/open", &[]),
        401,
        Some(CHALLENGE),
        "",
    );
    assert_refused(
        &post(daemon.addr, "/events/news", &[]),
        401,
        Some(CHALLENGE),
        "",
    );
    assert_eq!(auth_failures(&daemon, "malformed_token"), 0.0);
}

// ---- streams end at exp -----------------------------------------------------------------------

/// Reads each stream to its end, on threads of their own; returns when each ended (Unix time).
fn ends_of(streams: Vec<Subscription>) -> Vec<Duration> {
    let watchers: Vec<_> = streams
        .into_iter()
        .map(|mut stream| {
            std::thread::spawn(move || {
                // try_next_event bounds each wait by PATIENCE: the stream must end.
                while stream.try_next_event().is_some() {}
                SystemTime::now().duration_since(UNIX_EPOCH).unwrap()
            })
        })
        .collect();
    watchers.into_iter().map(|w| w.join().unwrap()).collect()
}

#[test]
fn a_stream_ends_once_its_token_expires_while_others_go_on() {
    let daemon = hmac_daemon(&[]);
    let lasting = bearer(&hs256(&["--subscribe", "news", "--ttl", "3600"]));
    let mut survivor =
        Subscription::open(daemon.addr, "/events/news", &[("Authorization", &lasting)]);
    let short = hs256(&["--subscribe", "news", "--ttl", "2"]);
    let auth = bearer(&short);
    let mut ending = Subscription::open(daemon.addr, "/events/news", &[("Authorization", &auth)]);
    let id = publish(&daemon, "news", "before exp");
    assert_eq!(ending.next_event().id.as_deref(), Some(&*id));
    assert_eq!(survivor.next_event().id.as_deref(), Some(&*id));

    ends_of(vec![ending]);

    let id = publish(&daemon, "news", "after exp");
    let event = survivor.next_event();
    assert_eq!(
        (event.id.as_deref(), event.data.as_str()),
        (Some(&*id), "after exp")
    );
    // Past exp and the 5 s leeway, the token is refused on reconnect.
    wait_for("the short token to be refused", || {
        let response = get(daemon.addr, "/events/news", &[("Authorization", &auth)]);
        (response.status == 401).then_some(response)
    });
    assert_eq!(auth_failures(&daemon, "expired"), 1.0);
}

#[test]
fn no_stream_ends_before_its_tokens_exp() {
    let daemon = hmac_daemon(&["--workers", "1"]);
    // Streams opened at ten points spread over one second, so that however the daemon's own
    // clock is phased against the wall clock, some stream is opened just after a second turns
    // and some just before.
    let short = hs256(&["--subscribe", "news", "--ttl", "3"]);
    let exp = claims_of(&short)["exp"].as_u64().unwrap();
    let auth = bearer(&short);
    let mut streams = Vec::new();
    for tenth in 0..10u32 {
        wait_for("the clock to reach the next tenth of a second", || {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
            (now.subsec_millis() / 100 == tenth).then_some(())
        });
        let headers = [("Authorization", auth.as_str())];
        streams.push(Subscription::open(daemon.addr, "/events/news", &headers));
    }
    for (i, ended) in ends_of(streams).iter().enumerate() {
        // Not a timing measure: a stream that ends before its token expires is cut short.
        assert!(
            ended.as_secs_f64() >= exp as f64,
            "stream {i} (opened at .{i} s) ended at {:.3}, before its token's exp {exp}",
            ended.as_secs_f64()
        );
    }
}

// ---- publishing -------------------------------------------------------------------------------

#[test]
fn publish_claims_and_the_publish_token_both_work() {
    let daemon = hmac_daemon(&[]);
    let publisher = hs256(&["--publish", "news"]);
    let auth = bearer(&publisher);
    assert_eq!(
        post(daemon.addr, "/events/news", &[("Authorization", &auth)]).status,
        200
    );
    let refused = post(daemon.addr, "/events/sports", &[("Authorization", &auth)]);
    assert_refused(&refused, 403, Some(SCOPE), &publisher);
    assert_eq!(auth_failures(&daemon, "not_granted"), 1.0);
    // A subscribe right is no publish right.
    let reader = hs256(&["--subscribe", "news"]);
    let auth = bearer(&reader);
    assert_refused(
        &post(daemon.addr, "/events/news", &[("Authorization", &auth)]),
        403,
        Some(SCOPE),
        &reader,
    );

    let auth = bearer(PUBLISH_TOKEN);
    assert_eq!(
        post(daemon.addr, "/events/sports", &[("Authorization", &auth)]).status,
        200
    );
    let wrong = "not-the-publish-token";
    let auth = bearer(wrong);
    let refused = post(daemon.addr, "/events/sports", &[("Authorization", &auth)]);
    assert_refused(&refused, 401, Some(INVALID), wrong);
    assert_eq!(auth_failures(&daemon, "wrong_publish_token"), 1.0);
}

#[test]
fn loopback_is_not_special_once_a_key_is_set() {
    let daemon = Daemon::start(&["--jwt-key", SECRET]);
    assert_refused(
        &post(daemon.addr, "/events/news", &[]),
        401,
        Some(CHALLENGE),
        "",
    );
    assert_eq!(auth_failures(&daemon, "missing_token"), 1.0);
    let only_publish_token = Daemon::start(&["--publish-token", PUBLISH_TOKEN]);
    assert_refused(
        &post(only_publish_token.addr, "/events/news", &[]),
        401,
        Some(CHALLENGE),
        "",
    );
    // Subscribing stays open there: no JWT key.
    assert_stream(&get(only_publish_token.addr, "/events/news", &[]));
}

#[test]
fn a_forwarded_request_is_never_loopback() {
    let daemon = Daemon::start(&[]);
    assert_eq!(post(daemon.addr, "/events/news", &[]).status, 200);
    for header in [
        ("X-Forwarded-For", "203.0.113.9"),
        ("Forwarded", "for=203.0.113.9"),
        ("X-Real-IP", "203.0.113.9"),
        ("x-forwarded-for", "127.0.0.1"),
    ] {
        assert_refused(&post(daemon.addr, "/events/news", &[header]), 403, None, "");
    }
    assert_eq!(auth_failures(&daemon, "not_loopback"), 4.0);
    assert_eq!(post(daemon.addr, "/events/news", &[]).status, 200);
    // Subscribing is open to all, forwarded or not.
    assert_stream(&get(
        daemon.addr,
        "/events/news",
        &[("X-Forwarded-For", "203.0.113.9")],
    ));
}

// ---- keys: reload and kid ---------------------------------------------------------------------

#[test]
fn sighup_reloads_key_files_and_a_bad_file_keeps_the_old_keys() {
    let keys = KeyDir::new("reload");
    let (a_private, a_public) = keys.pair("a", KeyKind::Ed25519);
    let (b_private, b_public) = keys.pair("b", KeyKind::Ed25519);
    let file = keys.path("current.pub");
    std::fs::copy(&a_public, &file).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_ssed"));
    command.args([
        "--listen",
        "127.0.0.1:0",
        "--jwt-key-file",
        file.to_str().unwrap(),
    ]);
    let (daemon, log) = Daemon::spawn_logging(command);
    let hup = || unsafe { libc::kill(daemon.child.id() as i32, libc::SIGHUP) };

    let by_a = signed_by(&a_private, &["--subscribe", "news"]);
    let by_b = signed_by(&b_private, &["--subscribe", "news"]);
    let status = |token: &str| {
        get(
            daemon.addr,
            "/events/news",
            &[("Authorization", &bearer(token))],
        )
        .status
    };
    assert_eq!(status(&by_a), 200);
    assert_refused(
        &get(
            daemon.addr,
            "/events/news",
            &[("Authorization", &bearer(&by_b))],
        ),
        401,
        Some(INVALID),
        &by_b,
    );
    assert_eq!(auth_failures(&daemon, "bad_signature"), 1.0);

    std::fs::copy(&b_public, &file).unwrap();
    assert_eq!(hup(), 0);
    wait_for("the token signed by B to be accepted", || {
        (status(&by_b) == 200).then_some(())
    });
    assert_eq!(status(&by_a), 401, "A's key was replaced");

    std::fs::write(
        &file,
        "-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n",
    )
    .unwrap();
    assert_eq!(hup(), 0);
    wait_for("the reload error in the log", || {
        let line = log.recv_timeout(PATIENCE).ok()?;
        line.contains("keeping the keys in force").then_some(line)
    });
    assert_eq!(status(&by_b), 200, "the keys in force stay");
}

#[test]
fn a_kid_selects_its_key() {
    let keys = KeyDir::new("kid");
    let (_, a_public) = keys.pair("a", KeyKind::Es256);
    let (b_private, b_public) = keys.pair("b", KeyKind::Es256);
    let k1 = format!("k1={}", a_public.display());
    let k2 = format!("k2={}", b_public.display());
    let daemon = Daemon::start(&["--jwt-key-file", &k1, "--jwt-key-file", &k2]);
    let status = |token: &str| {
        get(
            daemon.addr,
            "/events/news",
            &[("Authorization", &bearer(token))],
        )
    };
    assert_stream(&status(&signed_by(
        &b_private,
        &["--kid", "k2", "--subscribe", "news"],
    )));
    // Without a kid, or with one no key has, every key of the family is tried.
    assert_stream(&status(&signed_by(&b_private, &["--subscribe", "news"])));
    assert_stream(&status(&signed_by(
        &b_private,
        &["--kid", "k9", "--subscribe", "news"],
    )));
    // A kid naming a key is checked against that key alone.
    let misnamed = signed_by(&b_private, &["--kid", "k1", "--subscribe", "news"]);
    assert_refused(&status(&misnamed), 401, Some(INVALID), &misnamed);
    assert_eq!(auth_failures(&daemon, "bad_signature"), 1.0);
}

// ---- CORS -------------------------------------------------------------------------------------

#[test]
fn an_explicit_cors_origin_allows_credentials_and_star_does_not() {
    let token = hs256(&["--subscribe", "news"]);
    let cookie = format!("ssed_token={token}");
    let explicit = hmac_daemon(&["--cors-origin", "https://app.test"]);
    let from_app = [("Origin", "https://app.test"), ("Cookie", cookie.as_str())];
    let response = get(explicit.addr, "/events/news", &from_app);
    assert_stream(&response);
    assert_eq!(
        response.header("access-control-allow-origin").as_deref(),
        Some("https://app.test")
    );
    assert_eq!(
        response
            .header("access-control-allow-credentials")
            .as_deref(),
        Some("true")
    );
    // A refusal carries them too, so that the page can read it.
    let refused = get(explicit.addr, "/events/sports", &from_app);
    assert_refused(&refused, 403, Some(SCOPE), &token);
    assert_eq!(
        refused
            .header("access-control-allow-credentials")
            .as_deref(),
        Some("true")
    );
    // Another origin gets no CORS headers.
    let other = get(
        explicit.addr,
        "/events/news",
        &[("Origin", "https://evil.test"), ("Cookie", &cookie)],
    );
    assert_eq!(other.header("access-control-allow-origin"), None);
    assert_eq!(other.header("access-control-allow-credentials"), None);

    let star = hmac_daemon(&["--cors-origin", "*"]);
    let response = get(star.addr, "/events/news", &from_app);
    assert_stream(&response);
    assert_eq!(
        response.header("access-control-allow-origin").as_deref(),
        Some("*")
    );
    assert_eq!(response.header("access-control-allow-credentials"), None);
}
