//! Token verifications per second on one thread, for HS256, ES256, RS256 and EdDSA, through
//! `Authorizer::check` (finding the Bearer token, header and claims decoding, signature, exp,
//! matching the topic): what a subscribe costs the event loop. Keys are made with the `openssl`
//! command in a temporary directory. Prints one JSON line per algorithm.
//!
//!     cargo run --release --example verify_bench -- [SECONDS_PER_ALG] [ALG,...]
//!
//! bench-scripts/auth-verify.sh runs it several times and reports medians.

use ssed::auth::{Action, AuthConfig, Authorizer, Credentials, KeyFile, Signer};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const SECRET: &str = "0123456789abcdef0123456789abcdef";

fn openssl(args: &[&str]) -> Result<(), String> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run openssl (apt-get install openssl): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Makes NAME.pem and NAME.pub in `dir`.
fn key_pair(dir: &Path, name: &str, genpkey: &[&str]) -> Result<(PathBuf, PathBuf), String> {
    let private = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub"));
    let mut args = vec!["genpkey"];
    args.extend_from_slice(genpkey);
    args.extend_from_slice(&["-out", private.to_str().unwrap()]);
    openssl(&args)?;
    openssl(&[
        "pkey",
        "-in",
        private.to_str().unwrap(),
        "-pubout",
        "-out",
        public.to_str().unwrap(),
    ])?;
    Ok((private, public))
}

fn setup(alg: &str, dir: &Path) -> Result<(Authorizer, String), String> {
    let mut config = AuthConfig::default();
    let signer = if alg == "HS256" {
        config.jwt_key = Some(SECRET.into());
        Signer::from_secret(SECRET.as_bytes(), None)?
    } else {
        let genpkey: &[&str] = match alg {
            "ES256" => &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            "RS256" => &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            "EdDSA" => &["-algorithm", "ed25519"],
            other => {
                return Err(format!(
                    "unknown algorithm {other}; use HS256, ES256, RS256, EdDSA"
                ))
            }
        };
        let (private, public) = key_pair(dir, alg, genpkey)?;
        config.jwt_key_files = vec![KeyFile {
            id: None,
            path: public,
        }];
        Signer::from_pem(&std::fs::read(private).map_err(|e| e.to_string())?, None)?
    };
    let now = jsonwebtoken::get_current_timestamp();
    // A realistic token: a user's own topics and a shared one, an hour of validity.
    let claims = serde_json::json!({
        "sub": "user-42", "iat": now, "exp": now + 3600,
        "ssed": { "subscribe": ["users/42/*", "news"], "publish": [] },
    });
    let token = signer.sign(None, &claims)?;
    Ok((Authorizer::from_config(&config, None)?, token))
}

fn measure(authorizer: &Authorizer, token: &str, seconds: f64) -> (u64, f64) {
    let value = format!("Bearer {token}");
    let headers: &[(&str, &[u8])] = &[("Host", b"ssed"), ("Authorization", value.as_bytes())];
    let creds = Credentials::new(headers, "");
    let check = || authorizer.check(&creds, Action::Subscribe, "users/42/inbox", false);
    check().expect("the bench token must verify");
    let budget = Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut n = 0u64;
    // Check the clock every 64 verifications: HS256 takes about a microsecond.
    while start.elapsed() < budget {
        for _ in 0..64 {
            std::hint::black_box(check().is_ok());
        }
        n += 64;
    }
    (n, start.elapsed().as_secs_f64())
}

fn main() {
    let mut args = std::env::args().skip(1);
    let seconds: f64 = args
        .next()
        .map_or(2.0, |s| s.parse().expect("SECONDS_PER_ALG is a number"));
    let algs = args
        .next()
        .unwrap_or_else(|| "HS256,ES256,RS256,EdDSA".into());
    let dir = std::env::temp_dir().join(format!("ssed-verify-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temporary directory");
    let mut failed = false;
    for alg in algs.split(',') {
        match setup(alg, &dir) {
            Ok((authorizer, token)) => {
                let (n, secs) = measure(&authorizer, &token, seconds);
                println!(
                    "{{\"alg\":\"{alg}\",\"verifications\":{n},\"seconds\":{secs:.3},\"per_second\":{:.0},\"token_bytes\":{}}}",
                    n as f64 / secs,
                    token.len()
                );
            }
            Err(e) => {
                eprintln!("verify_bench: {alg}: {e}");
                failed = true;
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    if failed {
        std::process::exit(1);
    }
}
