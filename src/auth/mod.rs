//! Who may subscribe to and publish on which topic: JWT verification, the `--publish-token`, and
//! the loopback rule when nothing is configured.
//!
//! It owns the auth flags ([`AuthConfig`]), the keys (read at startup, re-read by
//! [`Authorizer::reload`] on SIGHUP), finding the token in a request, the decision and its
//! answer (401/403/400/431 with the `WWW-Authenticate` value), the failure counters, and minting
//! tokens for `ssed token` ([`mint`]).
//!
//! It knows nothing of sockets or the event loop: the connection state machine hands it the
//! parsed request's headers and query ([`Credentials`]), the action, the topic(s) and whether the
//! peer is on loopback, and gets back a [`Grant`] (small and `Copy`: at most the token's expiry
//! is kept per subscriber) or a [`Denial`] to answer with. A request naming several topics is
//! verified once and each topic matched against the claims ([`Authorizer::check_all`]), since
//! the signature check is the only costly step.

mod credentials;
mod expiry;
mod keys;
mod mint;

pub use credentials::{Credentials, Found, Source, MAX_TOKEN_BYTES};
pub use expiry::Expiries;
pub use keys::{parse_key_file, Claims, Expectations, Grants, KeyFile, KeySet, LEEWAY_SECS};
pub use mint::{mint, run_token_command, Signer, TokenArgs};

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};

/// The auth flags, flattened into the daemon's command line.
#[derive(clap::Args, Debug, Clone)]
pub struct AuthConfig {
    /// HMAC secret that verifies HS256/HS384/HS512 tokens; once set, subscribing needs a token
    /// (see --public-topic) and loopback clients may no longer publish without one
    /// [default: none].
    #[arg(
        long,
        env = "SSED_JWT_KEY",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub jwt_key: Option<String>,

    /// PEM public key that verifies tokens (repeatable; comma-separated in the environment):
    /// RSA for RS*/PS*, EC P-256 for ES256, P-384 for ES384, Ed25519 for EdDSA. Prefix an id
    /// (`KID=PATH`) to have tokens whose `kid` names it checked against that key alone. Re-read
    /// on SIGHUP [default: none].
    #[arg(
        long = "jwt-key-file",
        env = "SSED_JWT_KEY_FILE",
        value_name = "[KID=]PATH",
        value_delimiter = ',',
        value_parser = parse_key_file
    )]
    pub jwt_key_files: Vec<KeyFile>,

    /// Cookie that may carry the token (after the Authorization header), for browsers, whose
    /// EventSource cannot set headers.
    #[arg(
        long,
        env = "SSED_JWT_COOKIE",
        value_name = "NAME",
        default_value = "ssed_token"
    )]
    pub jwt_cookie: String,

    /// Also accept the token in the `access_token` query parameter. Off by default: URLs end up
    /// in access logs, proxies and browser history.
    #[arg(long, env = "SSED_ALLOW_QUERY_TOKEN")]
    pub allow_query_token: bool,

    /// Tokens must carry this `aud` [default: aud is not checked].
    #[arg(long, env = "SSED_JWT_AUDIENCE", value_name = "AUD")]
    pub jwt_audience: Option<String>,

    /// Tokens must carry this `iss` [default: iss is not checked].
    #[arg(long, env = "SSED_JWT_ISSUER", value_name = "ISS")]
    pub jwt_issuer: Option<String>,

    /// Topics anyone may subscribe to without a token, as selectors: `news`, `public/*`, `*`
    /// (repeatable; comma-separated in the environment) [default: none].
    #[arg(
        long = "public-topic",
        env = "SSED_PUBLIC_TOPIC",
        value_name = "SELECTOR",
        value_delimiter = ','
    )]
    pub public_topics: Vec<String>,
}

/// The cookie looked at when --jwt-cookie is not given.
pub const DEFAULT_COOKIE: &str = "ssed_token";

/// Nothing configured: today's behaviour (anyone subscribes, loopback publishes). Handy for
/// embedding and tests; the command line gives the same.
impl Default for AuthConfig {
    fn default() -> AuthConfig {
        AuthConfig {
            jwt_key: None,
            jwt_key_files: Vec::new(),
            jwt_cookie: DEFAULT_COOKIE.to_string(),
            allow_query_token: false,
            jwt_audience: None,
            jwt_issuer: None,
            public_topics: Vec::new(),
        }
    }
}

/// What a request wants to do with a topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Subscribe,
    Publish,
}

/// Permission to go on. `expires_at_unix` (Unix seconds) is the token's `exp`: a stream opened
/// with it ends then (within a second), and its EventSource reconnects with whatever cookie the
/// application has set by then. The verification leeway ([`LEEWAY_SECS`]) is for clocks that
/// disagree, not an extension: an application refreshes its cookie before `exp`. `None`: no
/// token was needed, or it has no `exp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Grant {
    pub expires_at_unix: Option<u64>,
}

/// A refusal: the status, a one-line reason for the body and the log (never the token), whether
/// a token was presented but is not valid (RFC 6750 `error="invalid_token"`), and its metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Denial {
    pub status: u16,
    pub reason: &'static str,
    pub invalid_token: bool,
    pub metric: AuthFailure,
}

impl Denial {
    fn new(status: u16, metric: AuthFailure, reason: &'static str) -> Denial {
        Denial {
            status,
            reason,
            invalid_token: false,
            metric,
        }
    }

    fn invalid(metric: AuthFailure, reason: &'static str) -> Denial {
        Denial {
            status: 401,
            reason,
            invalid_token: true,
            metric,
        }
    }

    /// The `WWW-Authenticate` value to send with this answer, if any (RFC 6750 §3).
    pub fn www_authenticate(&self) -> Option<&'static str> {
        match (self.status, self.invalid_token, self.metric) {
            (401, true, _) => Some(r#"Bearer realm="ssed", error="invalid_token""#),
            (401, false, _) => Some(r#"Bearer realm="ssed""#),
            (400, _, _) => Some(r#"Bearer realm="ssed", error="invalid_request""#),
            (403, _, AuthFailure::NotGranted) => {
                Some(r#"Bearer realm="ssed", error="insufficient_scope""#)
            }
            _ => None,
        }
    }
}

/// Why a request was refused; the `reason` label of `ssed_auth_failures_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthFailure {
    /// No token where one is needed (401).
    MissingToken,
    /// A token in the URL without --allow-query-token (401).
    QueryTokenRefused,
    /// Two Authorization headers, or Bearer with nothing after it (400).
    MalformedRequest,
    /// Longer than [`MAX_TOKEN_BYTES`] (431).
    TokenTooLong,
    /// Not a JWT, `alg: none`, unparsable claims, a `crit` header (401 invalid_token).
    MalformedToken,
    /// No configured key verifies the token's alg (401 invalid_token).
    Algorithm,
    /// No key verifies the signature (401 invalid_token).
    BadSignature,
    Expired,
    NotYetValid,
    Audience,
    Issuer,
    /// Neither the --publish-token nor a JWT (401 invalid_token).
    WrongPublishToken,
    /// A valid token that does not grant the topic (403).
    NotGranted,
    /// Publishing from a non-loopback (or proxied) client with nothing configured (403).
    NotLoopback,
}

impl AuthFailure {
    pub const ALL: [AuthFailure; 14] = [
        AuthFailure::MissingToken,
        AuthFailure::QueryTokenRefused,
        AuthFailure::MalformedRequest,
        AuthFailure::TokenTooLong,
        AuthFailure::MalformedToken,
        AuthFailure::Algorithm,
        AuthFailure::BadSignature,
        AuthFailure::Expired,
        AuthFailure::NotYetValid,
        AuthFailure::Audience,
        AuthFailure::Issuer,
        AuthFailure::WrongPublishToken,
        AuthFailure::NotGranted,
        AuthFailure::NotLoopback,
    ];

    pub fn label(self) -> &'static str {
        match self {
            AuthFailure::MissingToken => "missing_token",
            AuthFailure::QueryTokenRefused => "query_token_refused",
            AuthFailure::MalformedRequest => "malformed_request",
            AuthFailure::TokenTooLong => "token_too_long",
            AuthFailure::MalformedToken => "malformed_token",
            AuthFailure::Algorithm => "algorithm",
            AuthFailure::BadSignature => "bad_signature",
            AuthFailure::Expired => "expired",
            AuthFailure::NotYetValid => "not_yet_valid",
            AuthFailure::Audience => "audience",
            AuthFailure::Issuer => "issuer",
            AuthFailure::WrongPublishToken => "wrong_publish_token",
            AuthFailure::NotGranted => "not_granted",
            AuthFailure::NotLoopback => "not_loopback",
        }
    }
}

/// Failure counters. One per worker (its only writer, like `WorkerStats`), or one shared: the
/// adds are relaxed and failures are rare.
#[derive(Debug, Default)]
pub struct AuthFailures {
    counts: [AtomicU64; AuthFailure::ALL.len()],
}

impl AuthFailures {
    pub fn count(&self, failure: AuthFailure) {
        self.counts[failure as usize].fetch_add(1, Relaxed);
    }

    pub fn get(&self, failure: AuthFailure) -> u64 {
        self.counts[failure as usize].load(Relaxed)
    }
}

/// `ssed_auth_failures_total{reason=...}` over all the given counters, in the Prometheus text
/// format, for appending to /metrics (e.g. as `metrics::render`'s `extra`).
pub fn render_failures(counters: &[&AuthFailures]) -> String {
    let mut out = String::from("# HELP ssed_auth_failures_total Requests refused by authorisation, by reason.\n# TYPE ssed_auth_failures_total counter\n");
    for failure in AuthFailure::ALL {
        let n: u64 = counters.iter().map(|c| c.get(failure)).sum();
        let _ = writeln!(
            out,
            "ssed_auth_failures_total{{reason=\"{}\"}} {n}",
            failure.label()
        );
    }
    out
}

/// Does `selector` (`name`, `prefix*` or `*`) match `topic`? `users/42/*` matches `users/42/a`
/// but not `users/42`: the selector is a plain prefix.
pub fn selector_matches(selector: &str, topic: &str) -> bool {
    match selector.strip_suffix('*') {
        Some(prefix) => topic.starts_with(prefix),
        None => selector == topic,
    }
}

impl Claims {
    /// Whether these claims allow `action` on `topic`.
    pub fn grants(&self, action: Action, topic: &str) -> bool {
        let selectors = match action {
            Action::Subscribe => &self.grants.subscribe,
            Action::Publish => &self.grants.publish,
        };
        selectors.iter().any(|s| selector_matches(s, topic))
    }

    pub fn grant(&self) -> Grant {
        Grant {
            expires_at_unix: self.exp,
        }
    }
}

/// The decision maker, built once at startup and shared by every worker (it is `Sync`).
pub struct Authorizer {
    /// Swapped whole on reload; a check clones the `Arc` under a read lock that is held for
    /// nanoseconds, so a reload never waits on a verification nor the reverse.
    keys: RwLock<Arc<KeySet>>,
    /// Whether any JWT key was configured; fixed at startup (a reload cannot remove keys).
    has_keys: bool,
    secret: Option<String>,
    files: Vec<KeyFile>,
    expect: Expectations,
    cookie: String,
    allow_query: bool,
    public: Vec<String>,
    publish_token: Option<String>,
}

impl std::fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secrets.
        f.debug_struct("Authorizer")
            .field("keys", &self.keys.read().map(|k| k.len()).unwrap_or(0))
            .field("files", &self.files)
            .field("cookie", &self.cookie)
            .field("allow_query", &self.allow_query)
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl Authorizer {
    /// Reads the keys. `publish_token` is the daemon's `--publish-token`, which predates this
    /// module and stays in `Config`. An error names the file and says what to do.
    pub fn from_config(c: &AuthConfig, publish_token: Option<&str>) -> Result<Authorizer, String> {
        let expect = Expectations {
            audience: c.jwt_audience.clone(),
            issuer: c.jwt_issuer.clone(),
        };
        let keys = KeySet::load(c.jwt_key.as_deref(), &c.jwt_key_files, &expect)?;
        if c.jwt_cookie.is_empty()
            || !c
                .jwt_cookie
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
        {
            return Err(format!(
                "--jwt-cookie {:?} is not a cookie name (RFC 6265: letters, digits and !#$%&'*+-.^_`|~)",
                c.jwt_cookie
            ));
        }
        if let Some(bad) = c.public_topics.iter().find(|s| !valid_selector(s)) {
            return Err(format!(
                "--public-topic {bad:?} is not a topic selector (`name`, `prefix*` or `*`)"
            ));
        }
        let has_keys = !keys.is_empty();
        if !has_keys && !c.public_topics.is_empty() {
            log::warn!("--public-topic has no effect without --jwt-key or --jwt-key-file: every topic is public");
        }
        Ok(Authorizer {
            keys: RwLock::new(Arc::new(keys)),
            has_keys,
            secret: c.jwt_key.clone(),
            files: c.jwt_key_files.clone(),
            expect,
            cookie: c.jwt_cookie.clone(),
            allow_query: c.allow_query_token,
            public: c.public_topics.clone(),
            publish_token: publish_token.filter(|t| !t.is_empty()).map(str::to_string),
        })
    }

    /// Re-reads the key files (SIGHUP). On error the keys in force stay and the error is logged
    /// and returned; on success the new keys apply to every request checked from now on.
    pub fn reload(&self) -> Result<(), String> {
        if self.files.is_empty() {
            return Ok(());
        }
        match KeySet::load(self.secret.as_deref(), &self.files, &self.expect) {
            Ok(keys) => {
                let n = keys.len();
                *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
                log::info!("reloaded {n} verification key(s)");
                Ok(())
            }
            Err(e) => {
                log::warn!("{e}; keeping the keys in force");
                Err(e)
            }
        }
    }

    /// Whether any key or publish token is configured, i.e. whether anything is checked.
    pub fn enabled(&self) -> bool {
        self.has_keys || self.publish_token.is_some()
    }

    /// Whether anyone may subscribe to `topic` without a token.
    pub fn is_public(&self, topic: &str) -> bool {
        !self.has_keys || self.public.iter().any(|s| selector_matches(s, topic))
    }

    /// Decides `action` on one topic. `peer_is_loopback` is the TCP peer's address; forwarding
    /// headers in `creds` are looked at here, so a proxied request is never a loopback client.
    pub fn check(
        &self,
        creds: &Credentials<'_>,
        action: Action,
        topic: &str,
        peer_is_loopback: bool,
    ) -> Result<Grant, Denial> {
        self.check_all(creds, action, &[topic], peer_is_loopback)
    }

    /// Decides `action` on every topic: all must be allowed, the first refusal refuses the
    /// request. The token is verified at most once.
    pub fn check_all(
        &self,
        creds: &Credentials<'_>,
        action: Action,
        topics: &[&str],
        peer_is_loopback: bool,
    ) -> Result<Grant, Denial> {
        match action {
            Action::Subscribe if topics.iter().all(|t| self.is_public(t)) => {
                return Ok(Grant::default())
            }
            Action::Publish if !self.enabled() => {
                return if peer_is_loopback && !creds.forwarded() {
                    Ok(Grant::default())
                } else {
                    Err(Denial::new(
                        403,
                        AuthFailure::NotLoopback,
                        "only loopback clients may publish unless a --jwt-key or --publish-token is set",
                    ))
                };
            }
            _ => {}
        }
        let token = match creds.find(&self.cookie, self.allow_query) {
            Found::Token(_, Source::Query) if !self.allow_query => {
                return Err(Denial::new(
                    401,
                    AuthFailure::QueryTokenRefused,
                    "tokens in the URL are refused (--allow-query-token is off); send Authorization: Bearer or the cookie",
                ));
            }
            Found::Token(token, _) => token,
            Found::None => {
                let reason = match action {
                    Action::Subscribe => {
                        "this topic needs a token: send Authorization: Bearer <token> or the cookie"
                    }
                    Action::Publish => {
                        "publishing needs a token: send Authorization: Bearer <token>"
                    }
                };
                return Err(Denial::new(401, AuthFailure::MissingToken, reason));
            }
            Found::Malformed(reason) => {
                return Err(Denial::new(400, AuthFailure::MalformedRequest, reason))
            }
            Found::TooLong => {
                const _: () = assert!(MAX_TOKEN_BYTES == 4096, "update the reason below");
                return Err(Denial::new(
                    431,
                    AuthFailure::TokenTooLong,
                    "the token is longer than 4096 bytes",
                ));
            }
        };
        if action == Action::Publish {
            if let Some(expected) = &self.publish_token {
                if constant_time_eq(token, expected.as_bytes()) {
                    return Ok(Grant::default());
                }
            }
            if !self.has_keys {
                return Err(Denial::invalid(
                    AuthFailure::WrongPublishToken,
                    "wrong publish token",
                ));
            }
        }
        let claims = self.verify(token).map_err(|denial| {
            // A publisher that sent a wrong static token should hear about that, not about JWTs.
            match (action, &self.publish_token, denial.metric) {
                (Action::Publish, Some(_), AuthFailure::MalformedToken) => Denial::invalid(
                    AuthFailure::WrongPublishToken,
                    "neither the publish token nor a valid JWT",
                ),
                _ => denial,
            }
        })?;
        let allowed = |t: &&str| {
            claims.grants(action, t) || (action == Action::Subscribe && self.is_public(t))
        };
        if !topics.iter().all(allowed) {
            let reason = match action {
                Action::Subscribe => "the token does not grant subscribing to this topic",
                Action::Publish => "the token does not grant publishing to this topic",
            };
            return Err(Denial::new(403, AuthFailure::NotGranted, reason));
        }
        Ok(claims.grant())
    }

    /// Verifies a token against the keys in force (signature, exp, nbf, aud, iss).
    pub fn verify(&self, token: &[u8]) -> Result<Claims, Denial> {
        let keys = Arc::clone(&self.keys.read().unwrap_or_else(|e| e.into_inner()));
        keys.verify(token)
    }
}

/// A topic selector: `*`, or a name without spaces or controls, optionally ending in `*`.
pub fn valid_selector(s: &str) -> bool {
    let name = s.strip_suffix('*').unwrap_or(s);
    (s == "*" || !name.is_empty())
        && name.len() <= 256
        && name.bytes().all(|b| b.is_ascii_graphic() && b != b'*')
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests;
