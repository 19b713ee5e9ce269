//! Real tokens for every algorithm family, with keys made by the `openssl` command at test time.

use super::*;
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const SECRET: &str = "0123456789abcdef0123456789abcdef";

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// A fresh directory under the system temp dir, unique to this process and call.
fn temp_dir(tag: &str) -> PathBuf {
    use std::sync::atomic::AtomicUsize;
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "ssed-auth-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("the auth tests need the openssl command (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Key pairs, generated once: NAME.pem (private, PKCS#8) and NAME.pub.
fn keys() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = temp_dir("keys");
        let gens: [(&str, &[&str]); 7] = [
            (
                "rsa1024",
                &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"],
            ),
            (
                "rsa",
                &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            ),
            (
                "rsa2",
                &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            ),
            (
                "p256",
                &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            ),
            (
                "p384",
                &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
            ),
            ("ed", &["-algorithm", "ed25519"]),
            ("ed2", &["-algorithm", "ed25519"]),
        ];
        for (name, alg) in gens {
            let private = dir.join(format!("{name}.pem"));
            let public = dir.join(format!("{name}.pub"));
            let mut args = vec!["genpkey"];
            args.extend_from_slice(alg);
            args.extend_from_slice(&["-out", private.to_str().unwrap()]);
            openssl(&args);
            openssl(&[
                "pkey",
                "-in",
                private.to_str().unwrap(),
                "-pubout",
                "-out",
                public.to_str().unwrap(),
            ]);
        }
        dir
    })
}

fn key(name: &str) -> PathBuf {
    keys().join(name)
}

fn signer(private: &str, alg: Option<Algorithm>) -> Signer {
    Signer::from_pem(&std::fs::read(key(private)).unwrap(), alg).unwrap()
}

fn hs() -> Signer {
    Signer::from_secret(SECRET.as_bytes(), None).unwrap()
}

fn file(spec: &str) -> KeyFile {
    let (id, name) = match spec.split_once('=') {
        Some((id, name)) => (Some(id.to_string()), name),
        None => (None, spec),
    };
    KeyFile {
        id,
        path: key(name),
    }
}

fn config(secret: bool, files: &[&str]) -> AuthConfig {
    AuthConfig {
        jwt_key: secret.then(|| SECRET.to_string()),
        jwt_key_files: files.iter().map(|f| file(f)).collect(),
        jwt_cookie: "ssed_token".into(),
        ..AuthConfig::default()
    }
}

fn authorizer(c: &AuthConfig) -> Authorizer {
    Authorizer::from_config(c, None).unwrap()
}

/// Grants as the claims of a token valid for an hour.
fn claims(subscribe: &[&str], publish: &[&str]) -> Value {
    json!({ "exp": now() + 3600, "ssed": { "subscribe": subscribe, "publish": publish } })
}

fn sign(s: &Signer, claims: &Value) -> String {
    s.sign(None, claims).unwrap()
}

/// Checks `action` on `topic` with `headers` and `query`, from a non-loopback peer.
fn check_with(
    a: &Authorizer,
    headers: &[(&str, &[u8])],
    query: &str,
    action: Action,
    topic: &str,
) -> Result<Grant, Denial> {
    a.check(&Credentials::new(headers, query), action, topic, false)
}

fn bearer(a: &Authorizer, token: &str, action: Action, topic: &str) -> Result<Grant, Denial> {
    let value = format!("Bearer {token}");
    check_with(a, &[("Authorization", value.as_bytes())], "", action, topic)
}

fn failure(r: Result<Grant, Denial>) -> (u16, AuthFailure) {
    let d = r.expect_err("expected a denial");
    (d.status, d.metric)
}

#[test]
fn every_family_verifies_its_own_algorithms() {
    let cases: [(&str, &str, Option<Algorithm>, Algorithm); 8] = [
        ("rsa.pem", "rsa.pub", None, Algorithm::RS256),
        (
            "rsa.pem",
            "rsa.pub",
            Some(Algorithm::RS512),
            Algorithm::RS512,
        ),
        (
            "rsa.pem",
            "rsa.pub",
            Some(Algorithm::PS256),
            Algorithm::PS256,
        ),
        (
            "rsa.pem",
            "rsa.pub",
            Some(Algorithm::PS384),
            Algorithm::PS384,
        ),
        ("p256.pem", "p256.pub", None, Algorithm::ES256),
        ("p384.pem", "p384.pub", None, Algorithm::ES384),
        ("ed.pem", "ed.pub", None, Algorithm::EdDSA),
        ("ed.pem", "ed.pub", Some(Algorithm::EdDSA), Algorithm::EdDSA),
    ];
    for (private, public, asked, expected) in cases {
        let s = signer(private, asked);
        assert_eq!(s.algorithm(), expected, "{private}");
        let a = authorizer(&config(false, &[public]));
        let c = claims(&["news"], &[]);
        let grant = bearer(&a, &sign(&s, &c), Action::Subscribe, "news").unwrap();
        let honoured_until = c["exp"].as_u64().unwrap();
        assert_eq!(
            grant.expires_at_unix,
            Some(honoured_until),
            "{private} {expected:?}"
        );
    }
    let a = authorizer(&config(true, &[]));
    for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
        let s = Signer::from_secret(SECRET.as_bytes(), Some(alg)).unwrap();
        assert!(bearer(
            &a,
            &sign(&s, &claims(&["news"], &[])),
            Action::Subscribe,
            "news"
        )
        .is_ok());
    }
    // A key verifies only its own family's algorithms, and an EC key only its curve's.
    let a = authorizer(&config(false, &["p256.pub", "ed.pub"]));
    let rsa_token = sign(&signer("rsa.pem", None), &claims(&["news"], &[]));
    assert_eq!(
        failure(bearer(&a, &rsa_token, Action::Subscribe, "news")),
        (401, AuthFailure::Algorithm)
    );
    let p384_token = sign(&signer("p384.pem", None), &claims(&["news"], &[]));
    assert_eq!(
        failure(bearer(&a, &p384_token, Action::Subscribe, "news")),
        (401, AuthFailure::Algorithm)
    );
}

#[test]
fn token_sources_header_cookie_and_query_when_allowed() {
    let token = sign(&hs(), &claims(&["news"], &[]));
    let mut c = config(true, &[]);
    let a = authorizer(&c);
    let cookie = format!("theme=dark; ssed_token={token}");
    let query = format!("lastEventId=1-0&access_token={token}");
    assert!(check_with(
        &a,
        &[("Cookie", cookie.as_bytes())],
        "",
        Action::Subscribe,
        "news"
    )
    .is_ok());
    let refused = check_with(&a, &[], &query, Action::Subscribe, "news").unwrap_err();
    assert_eq!(
        (refused.status, refused.metric),
        (401, AuthFailure::QueryTokenRefused)
    );
    assert!(!refused.invalid_token);

    c.allow_query_token = true;
    c.jwt_cookie = "auth".into();
    let a = authorizer(&c);
    assert!(check_with(&a, &[], &query, Action::Subscribe, "news").is_ok());
    // The cookie's name is configurable: the default name is no longer looked at.
    assert_eq!(
        failure(check_with(
            &a,
            &[("Cookie", cookie.as_bytes())],
            "",
            Action::Subscribe,
            "news"
        )),
        (401, AuthFailure::MissingToken)
    );
    let cookie = format!("auth={token}");
    assert!(check_with(
        &a,
        &[("cookie", cookie.as_bytes())],
        "",
        Action::Subscribe,
        "news"
    )
    .is_ok());
}

#[test]
fn answers_and_their_challenges() {
    let a = authorizer(&config(true, &[]));
    let missing = check_with(&a, &[], "", Action::Subscribe, "news").unwrap_err();
    assert_eq!(
        (missing.status, missing.metric),
        (401, AuthFailure::MissingToken)
    );
    assert_eq!(missing.www_authenticate(), Some(r#"Bearer realm="ssed""#));

    let invalid = bearer(&a, "not.a.jwt", Action::Subscribe, "news").unwrap_err();
    assert_eq!(
        (invalid.status, invalid.metric),
        (401, AuthFailure::MalformedToken)
    );
    assert_eq!(
        invalid.www_authenticate(),
        Some(r#"Bearer realm="ssed", error="invalid_token""#)
    );

    let other = sign(&hs(), &claims(&["sport"], &[]));
    let forbidden = bearer(&a, &other, Action::Subscribe, "news").unwrap_err();
    assert_eq!(
        (forbidden.status, forbidden.metric),
        (403, AuthFailure::NotGranted)
    );
    assert!(!forbidden.invalid_token);

    let twice: &[(&str, &[u8])] = &[
        ("Authorization", b"Bearer a"),
        ("Authorization", b"Bearer b"),
    ];
    let bad = check_with(&a, twice, "", Action::Subscribe, "news").unwrap_err();
    assert_eq!(
        (bad.status, bad.metric),
        (400, AuthFailure::MalformedRequest)
    );

    // Reasons are fixed text: they cannot echo the token.
    for d in [missing, invalid, forbidden, bad] {
        assert!(!d.reason.contains('\n') && !d.reason.is_empty());
    }
}

#[test]
fn alg_none_is_never_accepted() {
    use base64::Engine;
    let b64 = |v: &Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    };
    let body = b64(&claims(&["*"], &["*"]));
    let a = authorizer(&config(true, &["rsa.pub"]));
    for alg in ["none", "None", "NONE"] {
        let header = b64(&json!({ "alg": alg, "typ": "JWT" }));
        for token in [format!("{header}.{body}."), format!("{header}.{body}")] {
            let d = bearer(&a, &token, Action::Subscribe, "news").unwrap_err();
            assert_eq!(d.status, 401, "{alg}");
            assert!(d.invalid_token);
        }
    }
}

#[test]
fn hs256_signed_with_the_public_key_is_refused_where_only_public_keys_are_configured() {
    for public in ["rsa.pub", "p256.pub", "ed.pub"] {
        let pem = std::fs::read(key(public)).unwrap();
        let forged = Signer::from_secret(&pem, Some(Algorithm::HS256)).unwrap();
        let token = sign(&forged, &claims(&["*"], &["*"]));
        let a = authorizer(&config(false, &[public]));
        assert_eq!(
            failure(bearer(&a, &token, Action::Subscribe, "news")),
            (401, AuthFailure::Algorithm),
            "{public}"
        );
        assert_eq!(
            failure(bearer(&a, &token, Action::Publish, "news")),
            (401, AuthFailure::Algorithm)
        );
    }
}

#[test]
fn a_token_from_another_key_is_refused() {
    let a = authorizer(&config(true, &["rsa.pub"]));
    let other_rsa = sign(&signer("rsa2.pem", None), &claims(&["news"], &[]));
    assert_eq!(
        failure(bearer(&a, &other_rsa, Action::Subscribe, "news")),
        (401, AuthFailure::BadSignature)
    );
    let other_secret = Signer::from_secret(b"another secret, also 32 bytes long", None).unwrap();
    let token = sign(&other_secret, &claims(&["news"], &[]));
    assert_eq!(
        failure(bearer(&a, &token, Action::Subscribe, "news")),
        (401, AuthFailure::BadSignature)
    );
    // A token whose claims were changed after signing.
    let good = sign(&hs(), &claims(&["news"], &[]));
    let parts: Vec<&str> = good.split('.').collect();
    let sneaky = sign(&hs(), &claims(&["*"], &["*"]));
    let swapped = format!(
        "{}.{}.{}",
        parts[0],
        sneaky.split('.').nth(1).unwrap(),
        parts[2]
    );
    assert_eq!(
        failure(bearer(&a, &swapped, Action::Subscribe, "news")),
        (401, AuthFailure::BadSignature)
    );
}

#[test]
fn exp_and_nbf_are_honoured_with_the_leeway() {
    let a = authorizer(&config(true, &[]));
    let t = now();
    let with = |extra: Value| {
        let mut c = claims(&["news"], &[]);
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        bearer(&a, &sign(&hs(), &c), Action::Subscribe, "news")
    };
    assert_eq!(
        failure(with(json!({ "exp": t - 60 }))),
        (401, AuthFailure::Expired)
    );
    assert!(with(json!({ "exp": t - LEEWAY_SECS + 2 })).is_ok());
    assert_eq!(
        failure(with(json!({ "nbf": t + 60 }))),
        (401, AuthFailure::NotYetValid)
    );
    assert!(with(json!({ "nbf": t + LEEWAY_SECS - 2 })).is_ok());
    let expired = with(json!({ "exp": t - 60 })).unwrap_err();
    assert!(expired.invalid_token);
    // No exp: valid, and the grant has no end.
    let forever = sign(&hs(), &json!({ "ssed": { "subscribe": ["news"] } }));
    assert_eq!(
        bearer(&a, &forever, Action::Subscribe, "news").unwrap(),
        Grant {
            expires_at_unix: None
        }
    );
    assert_eq!(
        failure(with(json!({ "exp": "tomorrow" }))).1,
        AuthFailure::MalformedToken
    );
}

#[test]
fn audience_and_issuer_must_match_when_configured() {
    let mut c = config(true, &[]);
    let token = |extra: Value| {
        let mut claims = claims(&["news"], &[]);
        for (k, v) in extra.as_object().unwrap() {
            claims[k] = v.clone();
        }
        sign(&hs(), &claims)
    };
    // Not configured: aud and iss are not looked at.
    let a = authorizer(&c);
    assert!(bearer(
        &a,
        &token(json!({ "aud": "x", "iss": "y" })),
        Action::Subscribe,
        "news"
    )
    .is_ok());

    c.jwt_audience = Some("ssed-prod".into());
    c.jwt_issuer = Some("https://auth.example".into());
    let a = authorizer(&c);
    let both = json!({ "aud": "ssed-prod", "iss": "https://auth.example" });
    assert!(bearer(&a, &token(both), Action::Subscribe, "news").is_ok());
    let in_list = json!({ "aud": ["other", "ssed-prod"], "iss": "https://auth.example" });
    assert!(bearer(&a, &token(in_list), Action::Subscribe, "news").is_ok());
    let cases = [
        (
            json!({ "iss": "https://auth.example" }),
            AuthFailure::Audience,
        ),
        (
            json!({ "aud": "ssed-dev", "iss": "https://auth.example" }),
            AuthFailure::Audience,
        ),
        (json!({ "aud": "ssed-prod" }), AuthFailure::Issuer),
        (
            json!({ "aud": "ssed-prod", "iss": "https://evil.example" }),
            AuthFailure::Issuer,
        ),
    ];
    for (extra, why) in cases {
        assert_eq!(
            failure(bearer(&a, &token(extra.clone()), Action::Subscribe, "news")),
            (401, why),
            "{extra}"
        );
    }
}

#[test]
fn selectors_exact_prefix_and_star() {
    assert!(selector_matches("news", "news"));
    assert!(!selector_matches("news", "news2"));
    assert!(selector_matches("users/42/*", "users/42/inbox"));
    assert!(!selector_matches("users/42/*", "users/42"));
    assert!(!selector_matches("users/42/*", "users/421/inbox"));
    assert!(selector_matches("*", "anything/at/all"));

    let a = authorizer(&config(true, &[]));
    let token = sign(&hs(), &claims(&["users/42/*"], &[]));
    assert!(bearer(&a, &token, Action::Subscribe, "users/42/inbox").is_ok());
    assert_eq!(
        failure(bearer(&a, &token, Action::Subscribe, "users/43/inbox")),
        (403, AuthFailure::NotGranted)
    );
    let all = sign(&hs(), &claims(&["*"], &[]));
    assert!(bearer(&a, &all, Action::Subscribe, "whatever").is_ok());
    assert_eq!(
        failure(bearer(&a, &all, Action::Publish, "whatever")),
        (403, AuthFailure::NotGranted)
    );
}

#[test]
fn public_topics_need_no_token_for_reading_only() {
    let mut c = config(true, &[]);
    c.public_topics = vec!["news".into(), "public/*".into()];
    let a = authorizer(&c);
    for topic in ["news", "public/weather"] {
        let g = check_with(&a, &[], "", Action::Subscribe, topic).unwrap();
        assert_eq!(g.expires_at_unix, None, "{topic}");
        assert_eq!(
            failure(check_with(&a, &[], "", Action::Publish, topic)),
            (401, AuthFailure::MissingToken)
        );
    }
    assert_eq!(
        failure(check_with(&a, &[], "", Action::Subscribe, "private")),
        (401, AuthFailure::MissingToken)
    );
    // A public topic is readable even with a bad token; the token is not even looked at.
    assert!(bearer(&a, "garbage", Action::Subscribe, "news").is_ok());
    assert!(Authorizer::from_config(
        &AuthConfig {
            public_topics: vec!["bad topic".into()],
            ..config(true, &[])
        },
        None
    )
    .is_err());
}

#[test]
fn several_topics_are_granted_all_or_nothing() {
    let mut c = config(true, &[]);
    c.public_topics = vec!["news".into()];
    let a = authorizer(&c);
    let c = claims(&["users/42/*"], &[]);
    let token = sign(&hs(), &c);
    let value = format!("Bearer {token}");
    let headers: &[(&str, &[u8])] = &[("Authorization", value.as_bytes())];
    let creds = Credentials::new(headers, "");
    let ok = a.check_all(
        &creds,
        Action::Subscribe,
        &["news", "users/42/a", "users/42/b"],
        false,
    );
    assert_eq!(ok.unwrap().expires_at_unix, c["exp"].as_u64());
    let mixed = a.check_all(
        &creds,
        Action::Subscribe,
        &["users/42/a", "users/7/a"],
        false,
    );
    assert_eq!(failure(mixed), (403, AuthFailure::NotGranted));
    assert!(a
        .check_all(
            &Credentials::new(&[], ""),
            Action::Subscribe,
            &["news"],
            false
        )
        .is_ok());

    // verify once, then match: the lower-level API the lead may use directly.
    let claims = a.verify(token.as_bytes()).unwrap();
    assert!(claims.grants(Action::Subscribe, "users/42/x"));
    assert!(!claims.grants(Action::Publish, "users/42/x"));
}

#[test]
fn publishing_needs_a_publish_claim_or_the_publish_token() {
    let a = Authorizer::from_config(&config(true, &[]), Some("static-token")).unwrap();
    let token = sign(&hs(), &claims(&["news"], &["news"]));
    assert!(bearer(&a, &token, Action::Publish, "news").is_ok());
    assert_eq!(
        failure(bearer(&a, &token, Action::Publish, "sport")),
        (403, AuthFailure::NotGranted)
    );
    let reader = sign(&hs(), &claims(&["news"], &[]));
    assert_eq!(
        failure(bearer(&a, &reader, Action::Publish, "news")),
        (403, AuthFailure::NotGranted)
    );
    assert!(bearer(&a, "static-token", Action::Publish, "anything").is_ok());
    let wrong = bearer(&a, "static-tokem", Action::Publish, "news").unwrap_err();
    assert_eq!(
        (wrong.status, wrong.metric),
        (401, AuthFailure::WrongPublishToken)
    );
    // The publish token does not let anyone read.
    assert_eq!(
        failure(bearer(&a, "static-token", Action::Subscribe, "news")),
        (401, AuthFailure::MalformedToken)
    );
}

#[test]
fn publish_token_alone_keeps_todays_behaviour_for_subscribers() {
    let a = Authorizer::from_config(&AuthConfig::default(), Some("s3cret")).unwrap();
    assert!(a.enabled());
    assert!(check_with(&a, &[], "", Action::Subscribe, "news").is_ok());
    assert!(bearer(&a, "s3cret", Action::Publish, "news").is_ok());
    let from_loopback = a.check(&Credentials::new(&[], ""), Action::Publish, "news", true);
    assert_eq!(failure(from_loopback), (401, AuthFailure::MissingToken));
    let wrong = bearer(&a, "s3cre", Action::Publish, "news").unwrap_err();
    assert_eq!(
        (wrong.status, wrong.metric),
        (401, AuthFailure::WrongPublishToken)
    );
    assert!(wrong.invalid_token);
}

#[test]
fn loopback_is_not_special_once_a_key_is_set() {
    let a = authorizer(&config(true, &[]));
    assert!(a.enabled());
    let creds = Credentials::new(&[], "");
    assert_eq!(
        failure(a.check(&creds, Action::Publish, "news", true)),
        (401, AuthFailure::MissingToken)
    );
    assert_eq!(
        failure(a.check(&creds, Action::Subscribe, "news", true)),
        (401, AuthFailure::MissingToken)
    );
}

#[test]
fn with_nothing_configured_loopback_publishes_unless_forwarded() {
    let a = Authorizer::from_config(&AuthConfig::default(), None).unwrap();
    assert!(!a.enabled());
    let none = Credentials::new(&[], "");
    assert!(a.check(&none, Action::Subscribe, "news", false).is_ok());
    assert!(a.check(&none, Action::Publish, "news", true).is_ok());
    assert_eq!(
        failure(a.check(&none, Action::Publish, "news", false)),
        (403, AuthFailure::NotLoopback)
    );
    for name in ["Forwarded", "X-Forwarded-For", "x-real-ip"] {
        let headers: &[(&str, &[u8])] = &[(name, b"203.0.113.9")];
        let proxied = Credentials::new(headers, "");
        let d = a
            .check(&proxied, Action::Publish, "news", true)
            .unwrap_err();
        assert_eq!(
            (d.status, d.metric),
            (403, AuthFailure::NotLoopback),
            "{name}"
        );
        assert_eq!(d.www_authenticate(), None);
    }
}

#[test]
fn kid_selects_one_key_and_unknown_kids_try_them_all() {
    let a = authorizer(&config(false, &["k1=ed.pub", "k2=ed2.pub", "rsa.pub"]));
    let c = claims(&["news"], &[]);
    let one = signer("ed.pem", None);
    let two = signer("ed2.pem", None);
    let ok = |t: String| bearer(&a, &t, Action::Subscribe, "news");
    assert!(ok(one.sign(Some("k1"), &c).unwrap()).is_ok());
    assert!(ok(two.sign(Some("k2"), &c).unwrap()).is_ok());
    assert!(ok(one.sign(None, &c).unwrap()).is_ok());
    assert!(ok(two.sign(Some("retired"), &c).unwrap()).is_ok());
    // Named, the other key is never tried.
    assert_eq!(
        failure(ok(one.sign(Some("k2"), &c).unwrap())),
        (401, AuthFailure::BadSignature)
    );
    // A kid naming a key of another family: that key cannot verify the alg.
    let rsa = signer("rsa.pem", None);
    assert!(ok(rsa.sign(None, &c).unwrap()).is_ok());
    assert_eq!(
        failure(ok(rsa.sign(Some("k1"), &c).unwrap())),
        (401, AuthFailure::Algorithm)
    );
}

#[test]
fn reload_swaps_keys_and_keeps_the_old_ones_on_a_bad_file() {
    let dir = temp_dir("reload");
    let path = dir.join("current.pub");
    std::fs::copy(key("ed.pub"), &path).unwrap();
    let c = AuthConfig {
        jwt_key_files: vec![KeyFile {
            id: None,
            path: path.clone(),
        }],
        ..config(false, &[])
    };
    let a = authorizer(&c);
    let old = sign(&signer("ed.pem", None), &claims(&["news"], &[]));
    let new = sign(&signer("ed2.pem", None), &claims(&["news"], &[]));
    assert!(bearer(&a, &old, Action::Subscribe, "news").is_ok());

    std::fs::write(
        &path,
        "-----BEGIN PUBLIC KEY-----\nbroken\n-----END PUBLIC KEY-----\n",
    )
    .unwrap();
    let e = a.reload().unwrap_err();
    assert!(e.contains(path.to_str().unwrap()), "{e}");
    assert!(bearer(&a, &old, Action::Subscribe, "news").is_ok());
    std::fs::remove_file(&path).unwrap();
    assert!(a.reload().unwrap_err().contains("cannot read"));
    assert!(bearer(&a, &old, Action::Subscribe, "news").is_ok());

    std::fs::copy(key("ed2.pub"), &path).unwrap();
    a.reload().unwrap();
    assert!(bearer(&a, &new, Action::Subscribe, "news").is_ok());
    assert_eq!(
        failure(bearer(&a, &old, Action::Subscribe, "news")),
        (401, AuthFailure::BadSignature)
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn over_long_tokens_are_refused_before_verification() {
    let a = authorizer(&config(true, &[]));
    let long = "a".repeat(MAX_TOKEN_BYTES + 1);
    let d = bearer(&a, &long, Action::Subscribe, "news").unwrap_err();
    assert_eq!((d.status, d.metric), (431, AuthFailure::TokenTooLong));
}

#[test]
fn startup_errors_name_the_file_and_say_what_to_do() {
    let err = |files: &[&str]| Authorizer::from_config(&config(false, files), None).unwrap_err();
    let e = err(&["rsa.pem"]);
    assert!(e.contains("rsa.pem") && e.contains("-pubout"), "{e}");
    let e = err(&["rsa1024.pub"]);
    assert!(e.contains("rsa1024.pub") && e.contains("1024-bit"), "{e}");
    let e = Signer::from_pem(&std::fs::read(key("rsa1024.pem")).unwrap(), None).err();
    assert!(e.unwrap().contains("2048 to 8192"));
    let e = err(&["missing.pub"]);
    assert!(
        e.contains("missing.pub") && e.contains("cannot read"),
        "{e}"
    );
    let dir = temp_dir("bad");
    let junk = dir.join("junk.pub");
    std::fs::write(&junk, "hello").unwrap();
    let c = AuthConfig {
        jwt_key_files: vec![KeyFile {
            id: None,
            path: junk.clone(),
        }],
        ..config(false, &[])
    };
    let e = Authorizer::from_config(&c, None).unwrap_err();
    assert!(e.contains("junk.pub") && e.contains("not a PEM"), "{e}");
    let c = AuthConfig {
        jwt_cookie: "a b".into(),
        ..config(true, &[])
    };
    assert!(Authorizer::from_config(&c, None)
        .unwrap_err()
        .contains("--jwt-cookie"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn failures_are_counted_and_rendered_with_every_label() {
    let counts = AuthFailures::default();
    counts.count(AuthFailure::Expired);
    counts.count(AuthFailure::Expired);
    counts.count(AuthFailure::NotGranted);
    let other = AuthFailures::default();
    other.count(AuthFailure::Expired);
    let text = render_failures(&[&counts, &other]);
    assert!(text.contains("ssed_auth_failures_total{reason=\"expired\"} 3\n"));
    assert!(text.contains("ssed_auth_failures_total{reason=\"not_granted\"} 1\n"));
    for f in AuthFailure::ALL {
        assert!(text.contains(&format!("reason=\"{}\"", f.label())));
        assert_eq!(AuthFailure::ALL[f as usize], f);
    }
}

#[test]
fn grant_is_small_and_copy() {
    fn copy<T: Copy>() {}
    copy::<Grant>();
    assert!(std::mem::size_of::<Grant>() <= 16);
    fn sync<T: Send + Sync>() {}
    sync::<Authorizer>();
}

#[test]
fn mint_picks_the_algorithm_from_the_key_and_writes_the_claims() {
    use clap::Parser;
    let args = |extra: &[&str]| TokenArgs::try_parse_from(["token"].iter().chain(extra)).unwrap();
    let t = now();
    let a = authorizer(&config(
        true,
        &["rsa.pub", "p256.pub", "p384.pub", "ed.pub"],
    ));
    for (file, alg) in [
        ("rsa.pem", "RS256"),
        ("p256.pem", "ES256"),
        ("p384.pem", "ES384"),
        ("ed.pem", "EdDSA"),
    ] {
        let path = key(file);
        let minted = mint(
            &args(&[
                "--jwt-private-key-file",
                path.to_str().unwrap(),
                "--subscribe",
                "users/42/*",
            ]),
            t,
        )
        .unwrap();
        assert_eq!(
            format!("{:?}", jsonwebtoken::decode_header(&minted).unwrap().alg),
            alg
        );
        let g = bearer(&a, &minted, Action::Subscribe, "users/42/x").unwrap();
        assert_eq!(g.expires_at_unix, Some(t + 3600));
    }
    let minted = mint(
        &args(&[
            "--jwt-key",
            SECRET,
            "--publish",
            "*",
            "--ttl",
            "0",
            "--kid",
            "k",
            "--aud",
            "A",
            "--iss",
            "I",
            "--sub",
            "user-1",
        ]),
        t,
    )
    .unwrap();
    let header = jsonwebtoken::decode_header(&minted).unwrap();
    assert_eq!(
        (header.alg, header.kid.as_deref()),
        (Algorithm::HS256, Some("k"))
    );
    let body: Value = jsonwebtoken::dangerous::insecure_decode_claims(&minted).unwrap();
    assert_eq!(
        body,
        json!({ "iat": t, "aud": "A", "iss": "I", "sub": "user-1",
                "ssed": { "subscribe": [], "publish": ["*"] } })
    );
    assert!(mint(&args(&["--jwt-key", SECRET]), t)
        .unwrap_err()
        .contains("grant nothing"));
    assert!(mint(&args(&["--jwt-key", SECRET, "--subscribe", "a*b"]), t).is_err());
    let ed = key("ed.pem");
    let wrong = args(&[
        "--jwt-private-key-file",
        ed.to_str().unwrap(),
        "--alg",
        "ES256",
        "--publish",
        "x",
    ]);
    assert!(mint(&wrong, t).unwrap_err().contains("cannot sign ES256"));
    let public = key("ed.pub");
    let public = args(&[
        "--jwt-private-key-file",
        public.to_str().unwrap(),
        "--publish",
        "x",
    ]);
    assert!(mint(&public, t).unwrap_err().contains("public key"));
    assert!(Signer::from_secret(b"x", Some(Algorithm::RS256)).is_err());
}

#[test]
fn a_crit_header_is_refused() {
    let mut header = jsonwebtoken::Header::new(Algorithm::HS256);
    header.crit = Some(vec!["exp".into()]);
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()).unwrap();
    let token = jsonwebtoken::encode(&header, &claims(&["news"], &[]), &key).unwrap();
    let a = authorizer(&config(true, &[]));
    assert_eq!(
        failure(bearer(&a, &token, Action::Subscribe, "news")),
        (401, AuthFailure::MalformedToken)
    );
}
