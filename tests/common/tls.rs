//! HTTPS for the tests: a throwaway CA and leaf certificates made with rcgen, a rustls client
//! that trusts the CA, and requests and subscriptions over it.

use super::{request_over, wait_for, Daemon, Response, Subscription, PATIENCE};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// A test CA in a directory of its own; issues leaf certificates for 127.0.0.1 and localhost.
pub struct TestCa {
    pub dir: PathBuf,
    pub cert: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

/// A leaf certificate and its key, written as PEM files.
pub struct Leaf {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub cert: CertificateDer<'static>,
}

impl TestCa {
    pub fn new() -> TestCa {
        static MADE: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ssed-tls-{}-{}",
            std::process::id(),
            MADE.fetch_add(1, Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "ssed test CA");
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.join("ca.pem"), cert.pem()).unwrap();
        TestCa {
            dir,
            cert: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A leaf named `name` (its common name and file names), its PEM file holding the chain
    /// (leaf, then the CA).
    pub fn leaf(&self, name: &str) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let cert_path = self.dir.join(format!("{name}.pem"));
        let key_path = self.dir.join(format!("{name}.key"));
        let ca_pem = std::fs::read_to_string(self.ca_path()).unwrap();
        std::fs::write(&cert_path, format!("{}{ca_pem}", cert.pem())).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        Leaf {
            cert_path,
            key_path,
            cert: cert.der().clone(),
        }
    }

    /// A rustls client trusting this CA, limited to `versions` (empty: every version rustls has).
    pub fn client(&self, versions: &[&'static rustls::SupportedProtocolVersion]) -> Client {
        let mut roots = RootCertStore::empty();
        roots.add(self.cert.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(provider);
        let builder = if versions.is_empty() {
            builder.with_safe_default_protocol_versions()
        } else {
            builder.with_protocol_versions(versions)
        };
        let mut config = builder
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Client {
            config: Arc::new(config),
        }
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Leaf {
    /// `--tls-cert FILE --tls-key FILE` for this leaf.
    pub fn args(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.cert_path.display().to_string(),
            "--tls-key".into(),
            self.key_path.display().to_string(),
        ]
    }
}

/// Starts ssed serving HTTPS with `leaf`, plus `extra` flags.
pub fn start_https(leaf: &Leaf, extra: &[&str]) -> Daemon {
    let mut args = leaf.args();
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Daemon::start(&args)
}

/// A rustls client configuration.
#[derive(Clone)]
pub struct Client {
    pub config: Arc<ClientConfig>,
}

impl Client {
    /// A TLS connection to `addr` with the handshake done.
    pub fn connect(&self, addr: SocketAddr) -> TlsStream {
        let tcp = TcpStream::connect(addr).expect("connect to ssed");
        tcp.set_read_timeout(Some(PATIENCE)).unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let conn = ClientConnection::new(Arc::clone(&self.config), name).unwrap();
        let mut stream = StreamOwned::new(conn, tcp);
        while stream.conn.is_handshaking() {
            stream
                .conn
                .complete_io(&mut stream.sock)
                .expect("TLS handshake with ssed");
        }
        stream
    }

    /// One request on a fresh connection (`Connection: close`).
    pub fn request(
        &self,
        addr: SocketAddr,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        request_over(&mut self.connect(addr), method, path, headers, body)
    }

    pub fn publish(&self, daemon: &Daemon, topic: &str, data: &str) -> String {
        let response = self.request(
            daemon.addr,
            "POST",
            &format!("/events/{topic}"),
            &[],
            data.as_bytes(),
        );
        assert_eq!(response.status, 200, "publish failed: {response:?}");
        response.body_text()
    }

    pub fn subscribe(&self, daemon: &Daemon, topic: &str) -> Subscription<TlsStream> {
        Subscription::over(self.connect(daemon.addr), &format!("/events/{topic}"), &[])
    }

    /// The metric's value over HTTPS, or None if it is not there.
    pub fn try_metric(&self, daemon: &Daemon, name: &str) -> Option<f64> {
        let body = self
            .request(daemon.addr, "GET", "/metrics", &[], b"")
            .body_text();
        body.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    }

    pub fn metric(&self, daemon: &Daemon, name: &str) -> f64 {
        self.try_metric(daemon, name)
            .unwrap_or_else(|| panic!("no metric {name}"))
    }

    /// Waits until metric `name` has exactly `value`.
    pub fn wait_for_metric(&self, daemon: &Daemon, name: &str, value: f64) {
        wait_for(&format!("{name} to be {value}"), || {
            (self.try_metric(daemon, name) == Some(value)).then_some(())
        });
    }
}

/// `ssed_tls_handshake_failures_total` for `reason`.
pub fn handshake_failures(reason: &str) -> String {
    format!("ssed_tls_handshake_failures_total{{reason=\"{reason}\"}}")
}

/// The certificate `stream`'s server presented (the leaf).
pub fn served_certificate(stream: &TlsStream) -> CertificateDer<'static> {
    stream.conn.peer_certificates().expect("a certificate")[0].clone()
}

pub fn path_text(path: &Path) -> String {
    path.display().to_string()
}
