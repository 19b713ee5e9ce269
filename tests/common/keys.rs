//! Keys and tokens for the auth tests: PEM key pairs made with the `openssl` command in a
//! throwaway directory, and tokens minted by the real `ssed token`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The HMAC secret the auth tests give ssed (`--jwt-key`).
pub const SECRET: &str = "an HMAC secret of at least 32 bytes!";
/// The static publish token the auth tests give ssed (`--publish-token`).
pub const PUBLISH_TOKEN: &str = "static-publish-token-for-tests";

/// Runs `openssl ARGS...`, panicking with its stderr if it fails.
pub fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("these tests need the openssl command (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[derive(Clone, Copy)]
pub enum KeyKind {
    Es256,
    Rs256,
    Ed25519,
}

/// A directory of keys made with openssl, removed on drop.
pub struct KeyDir(PathBuf);

impl KeyDir {
    pub fn new(tag: &str) -> KeyDir {
        let dir = std::env::temp_dir().join(format!("ssed-keys-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        KeyDir(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Makes `NAME.pem` (private, PKCS#8) and `NAME.pub`; returns (private, public).
    pub fn pair(&self, name: &str, kind: KeyKind) -> (PathBuf, PathBuf) {
        let (private, public) = (
            self.path(&format!("{name}.pem")),
            self.path(&format!("{name}.pub")),
        );
        let algorithm: &[&str] = match kind {
            KeyKind::Es256 => &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            KeyKind::Rs256 => &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            KeyKind::Ed25519 => &["-algorithm", "ed25519"],
        };
        openssl(
            &[
                &["genpkey"],
                algorithm,
                &["-out", private.to_str().unwrap()],
            ]
            .concat(),
        );
        openssl(&[
            "pkey",
            "-in",
            private.to_str().unwrap(),
            "-pubout",
            "-out",
            public.to_str().unwrap(),
        ]);
        (private, public)
    }
}

impl Drop for KeyDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `ssed ARGS...` to its end, with no key taken from the environment.
pub fn ssed_output(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ssed"))
        .args(args)
        .env_remove("SSED_JWT_KEY")
        .env_remove("SSED_JWT_KEY_FILE")
        .output()
        .unwrap()
}

/// `ssed token ARGS...`: the token it prints.
pub fn ssed_token(args: &[&str]) -> String {
    let out = ssed_output(&[&["token"], args].concat());
    assert!(
        out.status.success(),
        "ssed token {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// An HS256 token from `ssed token` with the test secret.
pub fn hs256(args: &[&str]) -> String {
    ssed_token(&[&["--jwt-key", SECRET], args].concat())
}

/// A token signed with a PEM private key by `ssed token`.
pub fn signed_by(private: &Path, args: &[&str]) -> String {
    let key = private.to_str().unwrap();
    ssed_token(&[&["--jwt-private-key-file", key], args].concat())
}
