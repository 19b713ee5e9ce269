//! `--tls`: the same load over HTTPS, with rustls (aws-lc-rs provider) as the client.
//!
//! `subscribe` keeps its mio loop: a connection's `TcpStream` stays in its `Conn` and the TLS
//! state, when there is one, sits beside it in a table indexed like the connections, so the
//! plain path keeps its 48-byte `Conn`. `Io` puts the two together for one read or write; a
//! TLS read takes records off the socket until there is plaintext or the socket would block,
//! which is what edge-triggered readiness needs. The handshake needs no phase of its own:
//! the request is written into rustls before it completes (rustls holds it until the
//! handshake is done) and every read also writes whatever the handshake owes the server.
//!
//! `publish` is blocking, so it uses rustls' `StreamOwned`, with the handshake completed at
//! connect time under the same timeouts as the plain connect.
//!
//! The buffered `ClientConnection` costs the load generator about 10 KB per connection (its
//! receive buffer alone is 4 KiB): ~170 MB for a 17,000-connection process. The server's
//! memory is what is measured; this is modest next to it.

use std::fs::File;
use std::io::{self, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream as StdTcpStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use mio::net::TcpStream;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{aws_lc_rs, verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, StreamOwned};

use crate::Failure;

#[derive(Args, Clone, Debug)]
pub struct TlsArgs {
    /// Speak HTTPS: TLS (rustls) on every connection; needs --ca or --insecure
    #[arg(long)]
    pub tls: bool,
    /// PEM file of the CA certificate(s) to trust, with --tls
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls",
        conflicts_with = "insecure"
    )]
    pub ca: Option<PathBuf>,
    /// Do not verify the server's certificate, with --tls (signatures are still checked)
    #[arg(long, requires = "tls")]
    pub insecure: bool,
    /// Server name sent in the handshake (SNI) and verified against the certificate
    #[arg(long, value_name = "NAME", default_value = "localhost")]
    pub sni: String,
}

/// What every TLS connection of a run is made from; `None` when the run is plain.
pub struct Client {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl Client {
    pub fn from_args(a: &TlsArgs) -> Result<Option<Client>, Failure> {
        if !a.tls {
            return Ok(None);
        }
        let provider = Arc::new(aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| fatal!("TLS setup: {e}"))?;
        let config = match (&a.ca, a.insecure) {
            (Some(path), _) => {
                let mut roots = RootCertStore::empty();
                let file = File::open(path).map_err(|e| usage!("--ca {}: {e}", path.display()))?;
                for cert in CertificateDer::pem_reader_iter(BufReader::new(file)) {
                    let cert = cert.map_err(|e| usage!("--ca {}: {e}", path.display()))?;
                    roots
                        .add(cert)
                        .map_err(|e| usage!("--ca {}: {e}", path.display()))?;
                }
                if roots.is_empty() {
                    return Err(usage!("--ca {}: no certificate in it", path.display()));
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
            (None, true) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth(),
            (None, false) => return Err(usage!("--tls needs --ca FILE or --insecure")),
        };
        let name =
            ServerName::try_from(a.sni.clone()).map_err(|e| usage!("--sni {}: {e}", a.sni))?;
        // One connection now, so that a configuration rustls refuses is an error here, once,
        // rather than a failure of every connection.
        ClientConnection::new(Arc::new(config.clone()), name.clone())
            .map_err(|e| fatal!("TLS setup: {e}"))?;
        Ok(Some(Client {
            config: Arc::new(config),
            name,
        }))
    }

    pub fn connection(&self) -> ClientConnection {
        ClientConnection::new(self.config.clone(), self.name.clone())
            .expect("the configuration made a connection in from_args")
    }
}

/// `publish`'s one connection: blocking, with the timeouts of its socket.
pub enum Blocking {
    Plain(StdTcpStream),
    Tls(Box<StreamOwned<ClientConnection, StdTcpStream>>),
}

impl Blocking {
    /// Over TLS if `client`, with the handshake done here, within the socket's timeouts.
    pub fn new(mut sock: StdTcpStream, client: Option<&Client>) -> io::Result<Blocking> {
        let Some(client) = client else {
            return Ok(Blocking::Plain(sock));
        };
        let mut tls = client.connection();
        sock.set_read_timeout(Some(Duration::from_secs(5)))?;
        while tls.is_handshaking() {
            tls.complete_io(&mut sock).inspect_err(warn_once)?;
        }
        Ok(Blocking::Tls(Box::new(StreamOwned::new(tls, sock))))
    }

    pub fn socket(&self) -> &StdTcpStream {
        match self {
            Blocking::Plain(sock) => sock,
            Blocking::Tls(stream) => stream.get_ref(),
        }
    }
}

impl Read for Blocking {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Blocking::Plain(sock) => sock.read(buf),
            Blocking::Tls(stream) => stream.read(buf),
        }
    }
}

impl Write for Blocking {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Blocking::Plain(sock) => sock.write(buf),
            Blocking::Tls(stream) => stream.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Blocking::Plain(sock) => sock.flush(),
            Blocking::Tls(stream) => stream.flush(),
        }
    }
}

/// One connection's reads and writes: the socket itself, or TLS over it.
pub enum Io<'a> {
    Plain(&'a mut TcpStream),
    Tls(&'a mut TcpStream, &'a mut ClientConnection),
}

impl<'a> Io<'a> {
    /// `tls`: the connection's entry in the run's TLS table (an empty table: a plain run).
    pub fn new(
        sock: &'a mut TcpStream,
        tls: &'a mut [Option<ClientConnection>],
        idx: usize,
    ) -> Self {
        match tls.get_mut(idx).and_then(Option::as_mut) {
            Some(tls) => Io::Tls(sock, tls),
            None => Io::Plain(sock),
        }
    }

    /// Sends what TLS still owes the server (handshake messages, the request, alerts) until
    /// the socket would block; the next event on the connection resumes it.
    pub fn flush_tls(&mut self) -> io::Result<()> {
        match self {
            Io::Plain(_) => Ok(()),
            Io::Tls(sock, tls) => flush(sock, tls),
        }
    }
}

fn flush(sock: &mut TcpStream, tls: &mut ClientConnection) -> io::Result<()> {
    while tls.wants_write() {
        match tls.write_tls(sock) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl Read for Io<'_> {
    /// Plaintext if any; `WouldBlock` only once the socket itself would block.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let (sock, tls) = match self {
            Io::Plain(sock) => return sock.read(buf),
            Io::Tls(sock, tls) => (sock, tls),
        };
        loop {
            match tls.reader().read(buf) {
                // Ok(0): the server's close_notify.
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if tls.read_tls(*sock)? == 0 {
                return Ok(0);
            }
            if let Err(e) = tls.process_new_packets() {
                warn_once(&io::Error::other(e.clone()));
                _ = tls.write_tls(*sock); // the alert, best effort
                return Err(io::Error::new(ErrorKind::InvalidData, e));
            }
            flush(sock, tls)?;
        }
    }
}

impl Write for Io<'_> {
    /// Plaintext goes into rustls whole (buffered until the handshake is done), then as much
    /// of it out as the socket takes.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = match self {
            Io::Plain(sock) => return sock.write(buf),
            Io::Tls(_, tls) => tls.writer().write(buf)?,
        };
        self.flush_tls()?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_tls()
    }
}

/// The first TLS failure of a process is worth a line on stderr (a wrong --ca or --sni fails
/// every connection the same way); the rest go to the debug log with their connection.
fn warn_once(e: &io::Error) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.swap(true, Relaxed) {
        log::warn!("TLS: {e}");
    }
}

/// `--insecure`: any certificate for any name, but the handshake signatures are still
/// verified, so the server does all the work a real client would make it do.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.0.signature_verification_algorithms;
        verify_tls12_signature(message, cert, dss, algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.0.signature_verification_algorithms;
        verify_tls13_signature(message, cert, dss, algs)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
