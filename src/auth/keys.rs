//! The verification keys: reading `--jwt-key` and the `--jwt-key-file` PEM files, deciding which
//! algorithms each key may verify, and verifying a token against them.
//!
//! The algorithm comes from the key, never from the token: each key carries the list of
//! algorithms of its own family (an EC key only those of its curve), and a token whose `alg` is
//! not on a key's list never reaches that key. That is what makes `alg: none` (not an algorithm
//! `jsonwebtoken` knows) and HS256-signed-with-the-public-key (no HMAC key configured) fail.

use super::{AuthFailure, Denial};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use std::path::PathBuf;

/// Seconds of clock skew allowed on `exp` and `nbf`: enough for hosts kept in sync by NTP, small
/// enough that an expired token is not honoured for long.
pub const LEEWAY_SECS: u64 = 5;

/// One `--jwt-key-file [KID=]PATH`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyFile {
    pub id: Option<String>,
    pub path: PathBuf,
}

/// Parses `PATH` or `KID=PATH`. A `=` before the first `/` introduces an id, so a path that
/// itself holds `=` is written with a leading `./`.
pub fn parse_key_file(arg: &str) -> Result<KeyFile, String> {
    let (id, path) = match arg.split_once('=') {
        Some((id, path)) if !id.contains('/') => (Some(id), path),
        _ => (None, arg),
    };
    if id.is_some_and(str::is_empty) {
        return Err("the key id before `=` is empty (write PATH or KID=PATH)".into());
    }
    if path.is_empty() {
        return Err("no path after the key id (write PATH or KID=PATH)".into());
    }
    Ok(KeyFile {
        id: id.map(str::to_string),
        path: PathBuf::from(path),
    })
}

/// What a token must also satisfy, whichever key verifies it.
#[derive(Clone, Debug, Default)]
pub struct Expectations {
    pub audience: Option<String>,
    pub issuer: Option<String>,
}

struct Key {
    id: Option<String>,
    key: DecodingKey,
    /// Algorithms of this key's family, plus the claim checks (exp, nbf, aud, iss).
    validation: Validation,
}

/// The keys in force; replaced whole by a reload.
pub struct KeySet {
    keys: Vec<Key>,
}

/// The claims ssed reads from a verified token.
#[derive(Deserialize)]
struct Payload {
    #[serde(default)]
    exp: Option<f64>,
    #[serde(default)]
    ssed: Grants,
}

#[derive(Deserialize, Default, Debug, Clone, PartialEq, Eq)]
pub struct Grants {
    #[serde(default)]
    pub subscribe: Vec<String>,
    #[serde(default)]
    pub publish: Vec<String>,
}

/// A verified token's claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub exp: Option<u64>,
    pub grants: Grants,
}

impl KeySet {
    /// Reads every key. An error names the file (or the flag) and says what to do.
    pub fn load(
        secret: Option<&str>,
        files: &[KeyFile],
        expect: &Expectations,
    ) -> Result<KeySet, String> {
        let mut keys = Vec::with_capacity(files.len() + 1);
        if let Some(secret) = secret {
            if secret.len() < 32 {
                log::warn!("--jwt-key is {} bytes; HS256 wants at least 32 random bytes (RFC 7518 §3.2): e.g. openssl rand -base64 32", secret.len());
            }
            let key = DecodingKey::from_secret(secret.as_bytes()).map_err(|_| {
                "--jwt-key is empty; give a secret of at least 32 bytes".to_string()
            })?;
            keys.push(Key {
                id: None,
                key,
                validation: validation(
                    &[Algorithm::HS256, Algorithm::HS384, Algorithm::HS512],
                    expect,
                ),
            });
        }
        for file in files {
            let shown = file.path.display();
            let pem = std::fs::read(&file.path)
                .map_err(|e| format!("cannot read --jwt-key-file {shown}: {e}"))?;
            let (key, algorithms) =
                public_key(&pem).map_err(|why| format!("--jwt-key-file {shown}: {why}"))?;
            keys.push(Key {
                id: file.id.clone(),
                key,
                validation: validation(algorithms, expect),
            });
        }
        Ok(KeySet { keys })
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Verifies `token` (signature first, then exp/nbf/aud/iss) and returns its claims.
    pub fn verify(&self, token: &[u8]) -> Result<Claims, Denial> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| {
            Denial::invalid(
                AuthFailure::MalformedToken,
                "the token is not a JWT with a supported alg (alg none is never accepted)",
            )
        })?;
        if header.crit.is_some() {
            // RFC 7515 §4.1.11: extensions we do not understand must make the token invalid.
            return Err(Denial::invalid(
                AuthFailure::MalformedToken,
                "the token has a crit header ssed does not understand",
            ));
        }
        let fits = |k: &&Key| k.validation.algorithms.contains(&header.alg);
        // A kid that names one of our keys selects that key alone; an unknown kid (or none)
        // leaves every key of the right family to try, which is what rotation without ids needs.
        let named = header
            .kid
            .as_deref()
            .filter(|kid| self.keys.iter().any(|k| k.id.as_deref() == Some(kid)));
        let mut candidates = self
            .keys
            .iter()
            .filter(fits)
            .filter(|k| named.is_none() || k.id.as_deref() == named)
            .peekable();
        if candidates.peek().is_none() {
            return Err(Denial::invalid(
                AuthFailure::Algorithm,
                "no configured key verifies the token's alg",
            ));
        }
        for key in candidates {
            match jsonwebtoken::decode::<Payload>(token, &key.key, &key.validation) {
                Ok(data) => {
                    let exp = data.claims.exp.map(|e| e.max(0.0) as u64);
                    return Ok(Claims {
                        exp,
                        grants: data.claims.ssed,
                    });
                }
                // The signature is checked before anything else, so any other error means this
                // key did verify it, and the token is bad whichever key we try.
                Err(e) => match e.kind() {
                    ErrorKind::InvalidSignature
                    | ErrorKind::InvalidEcdsaKey
                    | ErrorKind::InvalidRsaKey(_)
                    | ErrorKind::InvalidEddsaKey => continue,
                    other => return Err(denial_for(other)),
                },
            }
        }
        Err(Denial::invalid(
            AuthFailure::BadSignature,
            "the token's signature does not verify with any configured key",
        ))
    }
}

fn denial_for(kind: &ErrorKind) -> Denial {
    let (metric, reason) = match kind {
        ErrorKind::ExpiredSignature => (AuthFailure::Expired, "the token has expired"),
        ErrorKind::ImmatureSignature => {
            (AuthFailure::NotYetValid, "the token is not valid yet (nbf)")
        }
        ErrorKind::InvalidAudience => (
            AuthFailure::Audience,
            "the token's aud is not this server's --jwt-audience",
        ),
        ErrorKind::InvalidIssuer => (
            AuthFailure::Issuer,
            "the token's iss is not this server's --jwt-issuer",
        ),
        ErrorKind::MissingRequiredClaim(c) if c == "aud" => (
            AuthFailure::Audience,
            "the token has no aud and --jwt-audience is set",
        ),
        ErrorKind::MissingRequiredClaim(c) if c == "iss" => (
            AuthFailure::Issuer,
            "the token has no iss and --jwt-issuer is set",
        ),
        ErrorKind::InvalidAlgorithm => (
            AuthFailure::Algorithm,
            "no configured key verifies the token's alg",
        ),
        _ => (
            AuthFailure::MalformedToken,
            "the token's claims are malformed (exp, nbf, aud, iss or ssed)",
        ),
    };
    Denial::invalid(metric, reason)
}

fn validation(algorithms: &[Algorithm], expect: &Expectations) -> Validation {
    let mut v = Validation::new(algorithms[0]);
    v.algorithms = algorithms.to_vec();
    v.leeway = LEEWAY_SECS;
    v.validate_exp = true;
    v.validate_nbf = true;
    // exp is optional (a token without one never expires); aud and iss are required exactly
    // when configured, since the crate checks them only when present.
    let mut required = Vec::new();
    v.validate_aud = expect.audience.is_some();
    if let Some(aud) = &expect.audience {
        v.set_audience(&[aud]);
        required.push("aud");
    }
    if let Some(iss) = &expect.issuer {
        v.set_issuer(&[iss]);
        required.push("iss");
    }
    v.set_required_spec_claims(&required);
    v
}

/// The PEM block's label (`PUBLIC KEY`, `RSA PRIVATE KEY`, ...), if the text has one.
pub(super) fn pem_label(pem: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(pem).ok()?;
    let start = text.find("-----BEGIN ")? + "-----BEGIN ".len();
    let len = text[start..].find("-----")?;
    Some(&text[start..start + len])
}

/// A public key and the algorithms it verifies.
fn public_key(pem: &[u8]) -> Result<(DecodingKey, &'static [Algorithm]), String> {
    const RSA: &[Algorithm] = &[
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
    ];
    match pem_label(pem) {
        None => return Err("not a PEM file (expected -----BEGIN PUBLIC KEY-----)".into()),
        Some(label) if label.contains("PRIVATE") => {
            return Err("this is a private key; give ssed only the public key (openssl pkey -in KEY -pubout -out KEY.pub)".into())
        }
        Some("CERTIFICATE") => {
            return Err("this is a certificate; give ssed its public key (openssl x509 -in CERT -pubkey -noout > KEY.pub)".into())
        }
        Some("PUBLIC KEY" | "RSA PUBLIC KEY") => {}
        Some(other) => return Err(format!("a PEM {other:?} is not a public key (expected -----BEGIN PUBLIC KEY-----)")),
    }
    if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
        // The backend verifies RSA keys of 2048 to 8192 bits only; a smaller key would load and
        // then fail every token as a bad signature, so say it now.
        return match key.try_get_as_bytes().ok().and_then(rsa_modulus_bits) {
            Some(bits) if (2048..=8192).contains(&bits) => Ok((key, RSA)),
            Some(bits) => Err(format!(
                "a {bits}-bit RSA key; ssed verifies RSA keys of 2048 to 8192 bits"
            )),
            None => Err("damaged RSA public key".into()),
        };
    }
    if let Ok(key) = DecodingKey::from_ec_pem(pem) {
        // The crate keeps the uncompressed point: 1 + 2 × the field size.
        let point = key.try_get_as_bytes().map(<[u8]>::len).unwrap_or(0);
        return match point {
            65 => Ok((key, &[Algorithm::ES256])),
            97 => Ok((key, &[Algorithm::ES384])),
            _ => Err("unsupported EC curve; ssed verifies P-256 (ES256) and P-384 (ES384)".into()),
        };
    }
    if let Ok(key) = DecodingKey::from_ed_pem(pem) {
        return Ok((key, &[Algorithm::EdDSA]));
    }
    Err(
        "unsupported or damaged public key; ssed verifies RSA, EC P-256, EC P-384 and Ed25519 keys"
            .into(),
    )
}

/// The modulus size of a DER `RSAPublicKey` (RFC 8017 A.1.1: SEQUENCE { INTEGER n, INTEGER e }).
fn rsa_modulus_bits(der: &[u8]) -> Option<usize> {
    /// One DER element's tag and contents, and what follows it.
    fn element(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = der.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (first as usize, rest)
        } else {
            let n = (first & 0x7f) as usize;
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let len = rest[..n]
                .iter()
                .fold(0usize, |acc, &b| acc << 8 | b as usize);
            (len, &rest[n..])
        };
        (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
    }
    let (0x30, sequence, _) = element(der)? else {
        return None;
    };
    let (0x02, modulus, _) = element(sequence)? else {
        return None;
    };
    let modulus = &modulus[modulus.iter().position(|&b| b != 0)?..];
    Some(modulus.len() * 8 - modulus[0].leading_zeros() as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_ids_are_optional() {
        assert_eq!(
            parse_key_file("/etc/ssed/a.pem").unwrap(),
            KeyFile {
                id: None,
                path: "/etc/ssed/a.pem".into()
            }
        );
        assert_eq!(
            parse_key_file("2024=/etc/ssed/a.pem").unwrap(),
            KeyFile {
                id: Some("2024".into()),
                path: "/etc/ssed/a.pem".into()
            }
        );
        assert_eq!(
            parse_key_file("./x=y.pem").unwrap(),
            KeyFile {
                id: None,
                path: "./x=y.pem".into()
            }
        );
        assert!(parse_key_file("=a.pem").is_err());
        assert!(parse_key_file("kid=").is_err());
    }

    #[test]
    fn pem_labels_are_read() {
        assert_eq!(
            pem_label(b"-----BEGIN PUBLIC KEY-----\nAAA\n"),
            Some("PUBLIC KEY")
        );
        assert_eq!(pem_label(b"junk"), None);
    }
}
