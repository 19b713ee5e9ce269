//! `ssed token`: signing tokens that ssed accepts, for tests, scripts and operators. Real
//! deployments mint tokens in their own backend (docs/auth.md shows how); this is the reference
//! for the claim format and a way to try a configuration by hand.

use super::keys::pem_label;
use super::valid_selector;
use jsonwebtoken::{Algorithm, AlgorithmFamily, EncodingKey, Header};
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;

/// `ssed token ...`: prints a signed token on stdout.
#[derive(clap::Parser, Debug, Clone)]
#[command(
    name = "ssed token",
    bin_name = "ssed token",
    about = "Print a signed token (JWT) granting subscribe and publish rights to topics.",
    after_help = "Examples:\n  ssed token --jwt-key SECRET --subscribe users/42 --subscribe news --ttl 3600\n  ssed token --jwt-private-key-file key.pem --publish '*' --ttl 600\n\
A selector is a topic name, a prefix ending in `*` (users/42/*), or `*` for every topic."
)]
pub struct TokenArgs {
    /// HMAC secret to sign with (the daemon's --jwt-key).
    #[arg(
        long,
        env = "SSED_JWT_KEY",
        value_name = "SECRET",
        hide_env_values = true,
        required_unless_present = "jwt_private_key_file",
        conflicts_with = "jwt_private_key_file"
    )]
    pub jwt_key: Option<String>,

    /// PEM private key to sign with (PKCS#8, or PKCS#1 for RSA); the daemon verifies with its
    /// public key.
    #[arg(long, value_name = "PATH")]
    pub jwt_private_key_file: Option<PathBuf>,

    /// Signing algorithm [default: HS256 with a secret; with a key file from the key: RSA RS256,
    /// P-256 ES256, P-384 ES384, Ed25519 EdDSA].
    #[arg(long, value_name = "ALG", value_parser = parse_algorithm)]
    pub alg: Option<Algorithm>,

    /// Topic selector the token may subscribe to (repeatable).
    #[arg(long = "subscribe", value_name = "SELECTOR")]
    pub subscribe: Vec<String>,

    /// Topic selector the token may publish to (repeatable).
    #[arg(long = "publish", value_name = "SELECTOR")]
    pub publish: Vec<String>,

    /// Seconds the token is valid (its exp); 0 leaves exp out, so it never expires.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    pub ttl: u64,

    /// `kid` header: the id given to the verifying key (--jwt-key-file KID=PATH) [default: none].
    #[arg(long)]
    pub kid: Option<String>,

    /// `aud` claim [default: none].
    #[arg(long)]
    pub aud: Option<String>,

    /// `iss` claim [default: none].
    #[arg(long)]
    pub iss: Option<String>,

    /// `sub` claim, e.g. the user id, for your own logs [default: none].
    #[arg(long)]
    pub sub: Option<String>,
}

fn parse_algorithm(s: &str) -> Result<Algorithm, String> {
    Algorithm::from_str(s).map_err(|_| {
        "one of HS256 HS384 HS512 RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 EdDSA".into()
    })
}

/// A signing key and the algorithm it signs with.
pub struct Signer {
    key: EncodingKey,
    alg: Algorithm,
}

impl Signer {
    /// HMAC; `alg` must be HS256 (the default), HS384 or HS512.
    pub fn from_secret(secret: &[u8], alg: Option<Algorithm>) -> Result<Signer, String> {
        let alg = alg.unwrap_or(Algorithm::HS256);
        if alg.family() != AlgorithmFamily::Hmac {
            return Err(format!("{alg:?} needs a private key file, not a secret"));
        }
        let key =
            EncodingKey::from_secret(secret).map_err(|_| "the secret is empty".to_string())?;
        Ok(Signer { key, alg })
    }

    /// A PEM private key; `alg` defaults to the key's natural algorithm.
    pub fn from_pem(pem: &[u8], alg: Option<Algorithm>) -> Result<Signer, String> {
        match pem_label(pem) {
            None => return Err("not a PEM file (expected -----BEGIN PRIVATE KEY-----)".into()),
            Some("PRIVATE KEY" | "RSA PRIVATE KEY") => {}
            Some("EC PRIVATE KEY") => {
                return Err("a SEC1 EC key; convert it to PKCS#8: openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.p8".into())
            }
            Some("ENCRYPTED PRIVATE KEY") => {
                return Err("the key is encrypted; decrypt it first: openssl pkey -in KEY -out KEY.plain".into())
            }
            Some(label) if label.contains("PUBLIC") => {
                return Err("this is a public key; signing needs the private key".into())
            }
            Some(other) => return Err(format!("a PEM {other:?} is not a private key")),
        }
        // The crate checks the key type in each constructor, so the first that accepts it
        // tells the family; within EC, only a trial signature tells P-256 from P-384.
        const EC: &[Algorithm] = &[Algorithm::ES256, Algorithm::ES384];
        let (key, natural, unusable) = if let Ok(key) = EncodingKey::from_ec_pem(pem) {
            let why = "unsupported EC curve; ssed verifies P-256 (ES256) and P-384 (ES384)";
            (key, EC, why)
        } else if let Ok(key) = EncodingKey::from_ed_pem(pem) {
            (key, &[Algorithm::EdDSA][..], "damaged Ed25519 key")
        } else if let Ok(key) = EncodingKey::from_rsa_pem(pem) {
            let why = "this RSA key cannot sign; ssed handles RSA keys of 2048 to 8192 bits";
            (key, &[Algorithm::RS256][..], why)
        } else {
            return Err("unsupported or damaged private key; ssed token signs with RSA, EC P-256, EC P-384 and Ed25519 keys".into());
        };
        let works = |alg: Algorithm| jsonwebtoken::crypto::sign(b"probe", &key, alg).is_ok();
        let alg = match alg {
            Some(alg) if alg.family() == key.family() && works(alg) => alg,
            Some(alg) => return Err(format!("this key cannot sign {alg:?}")),
            None => natural
                .iter()
                .copied()
                .find(|&a| works(a))
                .ok_or(unusable)?,
        };
        Ok(Signer { key, alg })
    }

    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// Signs `claims` (any JSON object) with an optional `kid` header.
    pub fn sign(&self, kid: Option<&str>, claims: &serde_json::Value) -> Result<String, String> {
        let mut header = Header::new(self.alg);
        header.kid = kid.map(str::to_string);
        jsonwebtoken::encode(&header, claims, &self.key).map_err(|e| format!("cannot sign: {e}"))
    }
}

/// The token `ssed token` prints for `args`, issued at `now` (Unix seconds).
pub fn mint(args: &TokenArgs, now: u64) -> Result<String, String> {
    if args.subscribe.is_empty() && args.publish.is_empty() {
        return Err("the token would grant nothing; give --subscribe and/or --publish".into());
    }
    if let Some(bad) = args
        .subscribe
        .iter()
        .chain(&args.publish)
        .find(|s| !valid_selector(s))
    {
        return Err(format!(
            "{bad:?} is not a topic selector (`name`, `prefix*` or `*`)"
        ));
    }
    let signer = match (&args.jwt_key, &args.jwt_private_key_file) {
        (Some(secret), _) => Signer::from_secret(secret.as_bytes(), args.alg)?,
        (None, Some(path)) => {
            let shown = path.display();
            let pem = std::fs::read(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
            Signer::from_pem(&pem, args.alg).map_err(|e| format!("{shown}: {e}"))?
        }
        (None, None) => return Err("give --jwt-key SECRET or --jwt-private-key-file PATH".into()),
    };
    let mut claims = serde_json::json!({
        "iat": now,
        "ssed": { "subscribe": args.subscribe, "publish": args.publish },
    });
    if args.ttl > 0 {
        claims["exp"] = now.saturating_add(args.ttl).into();
    }
    for (name, value) in [("aud", &args.aud), ("iss", &args.iss), ("sub", &args.sub)] {
        if let Some(value) = value {
            claims[name] = value.as_str().into();
        }
    }
    signer.sign(args.kid.as_deref(), &claims)
}

/// `ssed token ARGS...` (`args` starts with the word `token`): prints the token, or the reason
/// on stderr with exit status 1 (2 for a usage error, from clap).
pub fn run_token_command(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    use clap::Parser;
    let args = TokenArgs::parse_from(args);
    match mint(&args, jsonwebtoken::get_current_timestamp()) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ssed token: {e}");
            ExitCode::FAILURE
        }
    }
}
