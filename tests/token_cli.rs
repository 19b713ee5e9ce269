//! `ssed token` and the auth flags as an operator meets them: the real binary prints tokens the
//! verifier accepts, and a bad key file stops the daemon at startup with a message naming it.

mod common;
use common::keys::{ssed_output, KeyDir, KeyKind, SECRET};
use common::*;
use ssed::auth::{Action, AuthConfig, Authorizer, Credentials, KeyFile};
use std::process::{Command, Output};

fn subscribe_with(a: &Authorizer, token: &str, topic: &str) -> Result<Option<u64>, u16> {
    let value = format!("Bearer {token}");
    let headers: &[(&str, &[u8])] = &[("Authorization", value.as_bytes())];
    a.check(
        &Credentials::new(headers, ""),
        Action::Subscribe,
        topic,
        false,
    )
    .map(|g| g.expires_at_unix)
    .map_err(|d| d.status)
}

fn printed_token(out: &Output) -> String {
    assert!(
        out.status.success(),
        "ssed token failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    assert_eq!(text.lines().count(), 1, "one line: {text}");
    text.trim().to_string()
}

#[test]
fn ssed_token_with_a_secret_prints_a_token_the_verifier_accepts() {
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let out = ssed_output(&[
        "token",
        "--jwt-key",
        SECRET,
        "--subscribe",
        "users/42",
        "--subscribe",
        "news",
        "--ttl",
        "60",
    ]);
    let token = printed_token(&out);
    let a = Authorizer::from_config(
        &AuthConfig {
            jwt_key: Some(SECRET.into()),
            ..AuthConfig::default()
        },
        None,
    )
    .unwrap();
    let exp = subscribe_with(&a, &token, "users/42").unwrap().unwrap();
    // The stream ends at exp itself.
    assert!((before + 60..=before + 62).contains(&exp), "exp {exp}");
    assert!(subscribe_with(&a, &token, "news").is_ok());
    assert_eq!(subscribe_with(&a, &token, "users/43"), Err(403));
}

#[test]
fn ssed_token_with_a_private_key_file() {
    let keys = KeyDir::new("token-cli-pem");
    let (private, public) = keys.pair("p256", KeyKind::Es256);
    let (private_s, public_s) = (private.to_str().unwrap(), public.to_str().unwrap());
    let out = ssed_output(&[
        "token",
        "--jwt-private-key-file",
        private_s,
        "--publish",
        "*",
        "--subscribe",
        "*",
        "--kid",
        "2025",
        "--ttl",
        "600",
    ]);
    let token = printed_token(&out);
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(format!("{:?}", header.alg), "ES256");
    assert_eq!(header.kid.as_deref(), Some("2025"));
    let a = Authorizer::from_config(
        &AuthConfig {
            jwt_key_files: vec![KeyFile {
                id: Some("2025".into()),
                path: public.clone(),
            }],
            ..AuthConfig::default()
        },
        None,
    )
    .unwrap();
    assert!(subscribe_with(&a, &token, "anything").is_ok());

    // The daemon takes the same key file from the command line and starts.
    let mut daemon = Daemon::start(&["--jwt-key-file", &format!("2025={public_s}")]);
    daemon.terminate();
}

#[test]
fn the_auth_flags_are_read_from_the_environment() {
    let out = Command::new(env!("CARGO_BIN_EXE_ssed"))
        .args(["--listen", "127.0.0.1:0"])
        .env(
            "SSED_JWT_KEY_FILE",
            "k1=/nonexistent/first.pub,/nonexistent/second.pub",
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/first.pub"), "{stderr}");
    let mut daemon = Daemon::start_with_env(
        &[],
        &[
            ("SSED_JWT_KEY", SECRET),
            ("SSED_ALLOW_QUERY_TOKEN", "true"),
            ("SSED_PUBLIC_TOPIC", "news,public/*"),
            ("SSED_JWT_AUDIENCE", "ssed"),
        ],
    );
    daemon.terminate();
}

#[test]
fn ssed_token_refuses_a_token_granting_nothing_and_usage_errors() {
    let out = ssed_output(&["token", "--jwt-key", SECRET]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--subscribe"), "{stderr}");
    // No key at all: clap's usage error.
    let out = ssed_output(&["token", "--subscribe", "news"]);
    assert_eq!(out.status.code(), Some(2));
    // A secret is not echoed back by --help.
    let out = Command::new(env!("CARGO_BIN_EXE_ssed"))
        .args(["token", "--help"])
        .env("SSED_JWT_KEY", "do-not-print-me")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("do-not-print-me"));
}

#[test]
fn a_bad_key_file_at_startup_exits_1_naming_the_file() {
    let keys = KeyDir::new("token-cli-bad");
    let missing = keys.path("missing.pub");
    let (private, _) = keys.pair("private", KeyKind::Ed25519);
    for (path, says) in [(&missing, "cannot read"), (&private, "private key")] {
        let path = path.to_str().unwrap();
        let out = ssed_output(&["--listen", "127.0.0.1:0", "--jwt-key-file", path]);
        assert_eq!(out.status.code(), Some(1), "{path}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(path) && stderr.contains(says), "{stderr}");
    }
}
