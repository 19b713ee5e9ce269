//! HTTPS (`--tls-cert`, `--tls-key`): the certificate ssed serves, and one connection's TLS
//! session.
//!
//! [`Certificates`] owns the server configuration built from the two files. Every worker reads
//! it when it accepts a connection, and SIGHUP replaces it (`reload`): connections accepted
//! afterwards get the new certificate, sessions already running keep the configuration they
//! started with, and a file that does not load leaves the old one in force.
//!
//! [`TlsSession`] is one connection's TLS state, rustls' *unbuffered* connection: the caller
//! owns every buffer, so a session holds no buffer of its own while it is idle. Measured (see
//! docs/design.md, "HTTPS"), that is about 3.4 KB per idle connection against 7.6 KB for rustls'
//! buffered API, whose 4 KiB receive buffer never shrinks. The buffers TLS needs while it works
//! belong to the worker thread instead ([`Scratch`], one per thread): received records are
//! decrypted there, and an event is encrypted there from the shared log, once per subscriber,
//! just before it is written. A session keeps bytes of its own only while it must, each freed
//! as soon as it empties:
//! - `partial_in`: the start of a record (or of a handshake message spanning records) that has
//!   not wholly arrived;
//! - `plaintext_in`: decrypted bytes the caller had no room for yet;
//! - `stuck_out`: ciphertext the socket did not take. It cannot be encrypted again later (its
//!   record sequence numbers are spent), so it waits here until the socket drains, and nothing
//!   is encrypted for that connection meanwhile.
//!
//! The crypto provider is aws-lc-rs: jsonwebtoken already builds it for token verification, so
//! TLS adds no second implementation of the same primitives to the binary.
//!
//! Nothing here panics on what a peer sends: every rustls result is matched, and a session
//! that fails is reported to the caller as an `io::Error`, after which its connection closes.

use crate::metrics::TlsFailure;
use mio::net::TcpStream;
use rustls::crypto::aws_lc_rs;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ServerConfig, UnbufferedServerConnection};
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus,
};
use std::cell::RefCell;
use std::io::{self, IoSlice, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// The largest TLS record on the wire: 2^14 bytes of plaintext plus the most TLS 1.2 allows for
/// expansion, plus the 5-byte header (RFC 5246 §6.2.3). One socket read takes at most this much,
/// so what a read decrypts and cannot hand over at once is bounded by one record.
const MAX_RECORD: usize = 5 + 16_384 + 2_048;
/// Received bytes kept across records: a handshake message may span records, and rustls joins
/// them in place, up to its limit of 64 KiB per handshake message.
const INCOMING_SCRATCH: usize = 0x1_0000 + 2 * MAX_RECORD;
/// Plaintext encrypted per write: one full record. A write the socket takes only in part leaves
/// at most this much ciphertext stuck with the connection.
const PLAINTEXT_PER_WRITE: usize = 16_384;
/// Room for the records of one write, and for a handshake flight (several records).
const OUTGOING_SCRATCH: usize = 2 * MAX_RECORD;
/// Ciphertext one read goes through without finding application data before it gives up: far
/// more than any handshake, and rustls bounds the records that carry nothing anyway (empty
/// fragments, warnings, key updates).
const MAX_CIPHERTEXT_WITHOUT_DATA: usize = 64 * 1024;
/// The TLS record type of a handshake message, which a client's first byte must be.
const HANDSHAKE_RECORD: u8 = 0x16;

/// The certificate chain and key ssed serves, as a rustls configuration that SIGHUP replaces.
pub struct Certificates {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<ServerConfig>>,
}

impl std::fmt::Debug for Certificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificates")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl Certificates {
    /// Loads and checks both files; the error names the file at fault.
    pub fn load(cert: &Path, key: &Path) -> Result<Certificates, String> {
        let config = server_config(cert, key)?;
        Ok(Certificates {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            current: RwLock::new(Arc::new(config)),
        })
    }

    /// Reads both files again; logs what it did. A file that does not load leaves the
    /// certificate in force.
    pub fn reload(&self) -> Result<(), String> {
        match server_config(&self.cert, &self.key) {
            Ok(config) => {
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
                log::info!(
                    "reloaded the TLS certificate {} and key {}",
                    self.cert.display(),
                    self.key.display()
                );
                Ok(())
            }
            Err(e) => {
                log::warn!("{e}; keeping the certificate in force");
                Err(e)
            }
        }
    }

    /// A session for a connection just accepted, with the certificate in force now.
    pub fn session(&self) -> Result<TlsSession, String> {
        let config = Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()));
        UnbufferedServerConnection::new(config)
            .map(TlsSession::new)
            .map_err(|e| format!("cannot start a TLS session: {e}"))
    }
}

/// TLS 1.3 and 1.2, ALPN `http/1.1`, aws-lc-rs, the chain and key from the two files.
fn server_config(cert: &Path, key: &Path) -> Result<ServerConfig, String> {
    let (cert_name, key_name) = (cert.display(), key.display());
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read the TLS certificate {cert_name}: {e}"))?;
    if chain.is_empty() {
        return Err(format!(
            "cannot read the TLS certificate {cert_name}: no PEM certificate in it"
        ));
    }
    let private_key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("cannot read the TLS key {key_name}: {e}"))?;
    let provider = Arc::new(aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, private_key)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => {
                format!("the TLS key {key_name} does not match the certificate {cert_name}")
            }
            e => format!("cannot use the TLS certificate {cert_name} with the key {key_name}: {e}"),
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The worker's TLS buffers: every session of the thread decrypts and encrypts here.
struct Scratch {
    incoming: Vec<u8>,
    outgoing: Vec<u8>,
}

thread_local! {
    static SCRATCH: RefCell<Option<Scratch>> = const { RefCell::new(None) };
}

/// Runs `f` with this thread's scratch buffers, allocated on first use.
fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> io::Result<R>) -> io::Result<R> {
    SCRATCH.with(|cell| {
        let mut scratch = cell
            .try_borrow_mut()
            .map_err(|_| io::Error::other("TLS scratch buffers already in use"))?;
        f(scratch.get_or_insert_with(|| Scratch {
            incoming: vec![0; INCOMING_SCRATCH],
            outgoing: vec![0; OUTGOING_SCRATCH],
        }))
    })
}

/// One connection's TLS: the rustls session, and bytes only while they cannot be elsewhere
/// (see the module comment).
pub struct TlsSession {
    conn: UnbufferedServerConnection,
    partial_in: Vec<u8>,
    plaintext_in: Vec<u8>,
    stuck_out: Vec<u8>,
    /// Some bytes have arrived (a connection that sends nothing is not "not TLS").
    received: bool,
    /// The peer sent close_notify or closed its side: nothing more will be read.
    peer_closed: bool,
    sent_close_notify: bool,
    /// rustls reported an error: the session is over, nothing more is sent on it.
    broken: bool,
    failure: Option<TlsFailure>,
}

/// What processing the received records came to.
enum Processed {
    /// Application data was handed over (to the caller's buffer, and `plaintext_in`).
    Data,
    /// More records must arrive first.
    NeedInput,
    /// The peer closed the session.
    Closed,
}

impl TlsSession {
    fn new(conn: UnbufferedServerConnection) -> TlsSession {
        TlsSession {
            conn,
            partial_in: Vec::new(),
            plaintext_in: Vec::new(),
            stuck_out: Vec::new(),
            received: false,
            peer_closed: false,
            sent_close_notify: false,
            broken: false,
            failure: None,
        }
    }

    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// Why the handshake failed, if it did.
    pub fn failure(&self) -> Option<TlsFailure> {
        self.failure
    }

    /// The connection is being closed for taking too long: if that is the handshake's fault,
    /// records it and returns true.
    pub fn handshake_timed_out(&mut self) -> bool {
        if self.is_handshaking() && self.failure.is_none() {
            self.failure = Some(TlsFailure::Timeout);
            return true;
        }
        false
    }

    /// The negotiated protocol version, once the handshake is done.
    pub fn protocol_version(&self) -> Option<rustls::ProtocolVersion> {
        self.conn.protocol_version()
    }

    /// Whether input is waiting that the socket no longer shows (decrypted, or a record begun).
    pub fn has_input(&self) -> bool {
        !self.plaintext_in.is_empty() || !self.partial_in.is_empty()
    }

    pub fn has_stuck_output(&self) -> bool {
        !self.stuck_out.is_empty()
    }

    /// Reads application data into `buf`, doing whatever handshake or TLS bookkeeping the
    /// arriving records call for. `Ok(0)` is the end of the peer's data (close_notify or EOF);
    /// `WouldBlock` means the socket is drained and no application data is ready.
    pub fn read(&mut self, socket: &mut TcpStream, buf: &mut [u8]) -> io::Result<usize> {
        if !self.plaintext_in.is_empty() {
            return Ok(self.take_plaintext(buf));
        }
        if self.broken {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "TLS session failed",
            ));
        }
        if self.peer_closed {
            return Ok(0);
        }
        with_scratch(|scratch| self.read_records(socket, scratch, buf))
    }

    fn take_plaintext(&mut self, buf: &mut [u8]) -> usize {
        let n = buf.len().min(self.plaintext_in.len());
        buf[..n].copy_from_slice(&self.plaintext_in[..n]);
        if n == self.plaintext_in.len() {
            self.plaintext_in = Vec::new();
        } else {
            self.plaintext_in.drain(..n);
        }
        n
    }

    fn read_records(
        &mut self,
        socket: &mut TcpStream,
        scratch: &mut Scratch,
        buf: &mut [u8],
    ) -> io::Result<usize> {
        let Scratch { incoming, outgoing } = scratch;
        // What an earlier read left incomplete goes back in front, unchanged: rustls' progress
        // through it is counted from the start of the buffer.
        let mut filled = self.partial_in.len();
        if filled > incoming.len() {
            return Err(self.fail(TlsFailure::Protocol, "TLS input larger than any record"));
        }
        incoming[..filled].copy_from_slice(&self.partial_in);
        self.partial_in = Vec::new();
        let mut got = 0;
        let mut without_data = 0;
        let outcome = loop {
            match self.process(socket, outgoing, incoming, &mut filled, buf, &mut got) {
                Ok(Processed::Data) => break Ok(got),
                Ok(Processed::Closed) => break Ok(got),
                Ok(Processed::NeedInput) => {}
                Err(e) => break Err(e),
            }
            if without_data >= MAX_CIPHERTEXT_WITHOUT_DATA {
                break Err(self.fail(TlsFailure::Protocol, "TLS records without data"));
            }
            let end = (filled + MAX_RECORD).min(incoming.len());
            if filled == end {
                break Err(self.fail(TlsFailure::Protocol, "a TLS message too large"));
            }
            match socket.read(&mut incoming[filled..end]) {
                Ok(0) => {
                    if self.is_handshaking() {
                        self.failure.get_or_insert(TlsFailure::Closed);
                    }
                    self.peer_closed = true;
                    break Ok(0);
                }
                Ok(n) => {
                    if !self.received && incoming[filled] != HANDSHAKE_RECORD {
                        break Err(self.fail(TlsFailure::NotTls, "not a TLS handshake"));
                    }
                    self.received = true;
                    filled += n;
                    without_data += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Err(e),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if self.is_handshaking() {
                        self.failure.get_or_insert(TlsFailure::Closed);
                    }
                    break Err(e);
                }
            }
        };
        // Kept whatever the outcome: rustls counts its progress through these bytes, and any
        // later call (a close_notify) must give it the same ones.
        if filled > 0 {
            self.partial_in = incoming[..filled].to_vec();
        }
        outcome
    }

    /// Runs the received records through rustls until it needs more: application data goes to
    /// `buf` (then `plaintext_in`), handshake records out to the socket.
    fn process(
        &mut self,
        socket: &mut TcpStream,
        outgoing: &mut Vec<u8>,
        incoming: &mut [u8],
        filled: &mut usize,
        buf: &mut [u8],
        got: &mut usize,
    ) -> io::Result<Processed> {
        let mut encoded = 0;
        loop {
            let UnbufferedStatus { mut discard, state } =
                self.conn.process_tls_records(&mut incoming[..*filled]);
            let mut outcome = None;
            match state {
                Ok(ConnectionState::ReadTraffic(mut traffic)) => {
                    while let Some(record) = traffic.next_record() {
                        let record = match record {
                            Ok(record) => record,
                            Err(e) => {
                                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                            }
                        };
                        discard += record.discard;
                        let n = (buf.len() - *got).min(record.payload.len());
                        buf[*got..*got + n].copy_from_slice(&record.payload[..n]);
                        *got += n;
                        self.plaintext_in.extend_from_slice(&record.payload[n..]);
                    }
                }
                Ok(ConnectionState::EncodeTlsData(mut encode)) => loop {
                    match encode.encode(&mut outgoing[encoded..]) {
                        Ok(n) => {
                            encoded += n;
                            break;
                        }
                        Err(EncodeError::InsufficientSize(InsufficientSizeError {
                            required_size,
                        })) => {
                            if encoded > 0 {
                                send(&mut self.stuck_out, socket, &outgoing[..encoded])?;
                                encoded = 0;
                            } else if required_size > outgoing.len() {
                                outgoing.resize(required_size, 0);
                            } else {
                                return Err(io::Error::other("TLS record does not fit"));
                            }
                        }
                        Err(EncodeError::AlreadyEncoded) => break,
                    }
                },
                Ok(ConnectionState::TransmitTlsData(transmit)) => {
                    send(&mut self.stuck_out, socket, &outgoing[..encoded])?;
                    encoded = 0;
                    transmit.done();
                }
                Ok(ConnectionState::BlockedHandshake | ConnectionState::WriteTraffic(_)) => {
                    outcome = Some(if *got > 0 || !self.plaintext_in.is_empty() {
                        Processed::Data
                    } else {
                        Processed::NeedInput
                    });
                }
                Ok(ConnectionState::PeerClosed | ConnectionState::Closed) => {
                    self.peer_closed = true;
                    outcome = Some(if *got > 0 {
                        Processed::Data
                    } else {
                        Processed::Closed
                    });
                }
                Ok(_) => {
                    // Early data is not enabled, and no other state can come.
                    return Err(self.fail(TlsFailure::Protocol, "unexpected TLS state"));
                }
                Err(e) => {
                    self.broken = true;
                    if self.is_handshaking() {
                        self.failure.get_or_insert(TlsFailure::Protocol);
                    }
                    if discard <= *filled {
                        incoming.copy_within(discard..*filled, 0);
                        *filled -= discard;
                        self.send_alert(socket, outgoing, &mut incoming[..*filled]);
                    }
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                }
            }
            if discard > *filled {
                return Err(self.fail(TlsFailure::Protocol, "TLS input out of step"));
            }
            incoming.copy_within(discard..*filled, 0);
            *filled -= discard;
            if let Some(outcome) = outcome {
                return Ok(outcome);
            }
        }
    }

    /// After an error, sends the alert rustls queued for the peer, if any and if it fits: a
    /// client offering only what ssed refuses learns why (e.g. `protocol_version`). `incoming`
    /// is what is left of the received bytes: rustls may still be partway through them, and
    /// must be given the same bytes again.
    fn send_alert(&mut self, socket: &mut TcpStream, outgoing: &mut [u8], incoming: &mut [u8]) {
        if let Ok(ConnectionState::EncodeTlsData(mut encode)) =
            self.conn.process_tls_records(incoming).state
        {
            if let Ok(n) = encode.encode(outgoing) {
                let _ = send(&mut self.stuck_out, socket, &outgoing[..n]);
            }
        }
    }

    /// Drops what rustls is done with from the front of the kept input.
    fn discard_partial(&mut self, discard: usize) -> io::Result<()> {
        if discard > self.partial_in.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "TLS input out of step",
            ));
        }
        if discard == self.partial_in.len() {
            self.partial_in = Vec::new();
        } else {
            self.partial_in.drain(..discard);
        }
        Ok(())
    }

    fn fail(&mut self, failure: TlsFailure, what: &str) -> io::Error {
        if self.is_handshaking() {
            self.failure.get_or_insert(failure);
        }
        io::Error::new(io::ErrorKind::InvalidData, what.to_string())
    }

    /// Sends the ciphertext a short write left behind. Returns whether all of it is out.
    pub fn flush(&mut self, socket: &mut TcpStream) -> io::Result<bool> {
        flush_stuck(&mut self.stuck_out, socket)
    }

    /// Encrypts as much of `bufs` as the socket takes, a record at a time, and writes it.
    /// Returns the plaintext bytes consumed, or `None` if nothing could be (ciphertext from
    /// before is still stuck). A record the socket takes only in part is consumed all the same:
    /// its rest waits in `stuck_out`.
    pub fn write(
        &mut self,
        socket: &mut TcpStream,
        bufs: &[IoSlice<'_>],
    ) -> io::Result<Option<usize>> {
        if self.broken {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "TLS session failed",
            ));
        }
        if !flush_stuck(&mut self.stuck_out, socket)? {
            return Ok(None);
        }
        with_scratch(|scratch| self.write_records(socket, &mut scratch.outgoing, bufs))
    }

    fn write_records(
        &mut self,
        socket: &mut TcpStream,
        outgoing: &mut Vec<u8>,
        bufs: &[IoSlice<'_>],
    ) -> io::Result<Option<usize>> {
        let mut consumed = 0;
        let (mut slice, mut at) = (0, 0);
        loop {
            while slice < bufs.len() && at == bufs[slice].len() {
                (slice, at) = (slice + 1, 0);
            }
            if slice == bufs.len() || !self.stuck_out.is_empty() {
                break;
            }
            let mut encrypted = 0;
            let mut taken = 0;
            let mut ready = false;
            // Settles whatever rustls has queued (a key update, the end of a handshake) before
            // application data may be encrypted.
            while !ready {
                // Given the bytes of an incomplete record kept from the last read, not an empty
                // buffer: rustls may be partway through them (a handshake message spanning
                // records), and counts its progress from their start.
                let UnbufferedStatus { discard, state } =
                    self.conn.process_tls_records(&mut self.partial_in);
                match state {
                    Ok(ConnectionState::WriteTraffic(mut traffic)) => {
                        ready = true;
                        while slice < bufs.len() && taken < PLAINTEXT_PER_WRITE {
                            let rest = &bufs[slice][at..];
                            let n = rest.len().min(PLAINTEXT_PER_WRITE - taken);
                            match traffic.encrypt(&rest[..n], &mut outgoing[encrypted..]) {
                                Ok(len) => {
                                    encrypted += len;
                                    taken += n;
                                    at += n;
                                    if at == bufs[slice].len() {
                                        slice += 1;
                                        at = 0;
                                    }
                                }
                                Err(EncryptError::InsufficientSize(InsufficientSizeError {
                                    required_size,
                                })) if encrypted + required_size > outgoing.len() => {
                                    outgoing.resize(encrypted + required_size, 0);
                                }
                                Err(e) => return Err(io::Error::other(e)),
                            }
                        }
                    }
                    Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                        match encode.encode(&mut outgoing[encrypted..]) {
                            Ok(n) => encrypted += n,
                            Err(e) => return Err(io::Error::other(e)),
                        }
                    }
                    Ok(ConnectionState::TransmitTlsData(transmit)) => transmit.done(),
                    Ok(ConnectionState::ReadTraffic(mut traffic)) => {
                        while let Some(Ok(record)) = traffic.next_record() {
                            self.plaintext_in.extend_from_slice(record.payload);
                        }
                    }
                    Ok(ConnectionState::PeerClosed) => self.peer_closed = true,
                    Ok(ConnectionState::BlockedHandshake) => {
                        return Err(io::Error::other("TLS handshake not finished"))
                    }
                    Ok(_) => return Err(io::ErrorKind::BrokenPipe.into()),
                    Err(e) => {
                        self.broken = true;
                        return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                    }
                }
                self.discard_partial(discard)?;
            }
            send(&mut self.stuck_out, socket, &outgoing[..encrypted])?;
            consumed += taken;
        }
        Ok(Some(consumed))
    }

    /// Tells the peer the stream ends here (close_notify), if nothing is stuck before it and
    /// the socket takes it; a TCP close follows either way.
    pub fn close_notify(&mut self, socket: &mut TcpStream) {
        if self.sent_close_notify || self.broken || self.is_handshaking() {
            return;
        }
        self.sent_close_notify = true;
        if !matches!(self.flush(socket), Ok(true)) {
            return;
        }
        let _ = with_scratch(|scratch| {
            let outgoing = &mut scratch.outgoing;
            let UnbufferedStatus { discard, state } =
                self.conn.process_tls_records(&mut self.partial_in);
            if let Ok(ConnectionState::WriteTraffic(mut traffic)) = state {
                if let Ok(n) = traffic.queue_close_notify(outgoing) {
                    send(&mut self.stuck_out, socket, &outgoing[..n])?;
                }
            }
            self.discard_partial(discard)
        });
    }
}

/// Writes `bytes` after whatever is stuck; keeps what the socket does not take.
fn send(stuck: &mut Vec<u8>, socket: &mut TcpStream, bytes: &[u8]) -> io::Result<()> {
    if !flush_stuck(stuck, socket)? {
        stuck.extend_from_slice(bytes);
        return Ok(());
    }
    let mut sent = 0;
    while sent < bytes.len() {
        match socket.write(&bytes[sent..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if sent < bytes.len() {
        *stuck = bytes[sent..].to_vec();
    }
    Ok(())
}

/// Writes stuck ciphertext; frees the buffer once it is all out. Returns whether it is.
fn flush_stuck(stuck: &mut Vec<u8>, socket: &mut TcpStream) -> io::Result<bool> {
    while !stuck.is_empty() {
        match socket.write(stuck) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) if n == stuck.len() => *stuck = Vec::new(),
            Ok(n) => {
                stuck.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_a_pointer_in_the_connection_and_a_few_hundred_bytes_beyond_rustls() {
        use std::mem::size_of;
        // The worker's table holds an Option<Box<TlsSession>> per descriptor (transport.rs).
        assert_eq!(size_of::<Option<Box<TlsSession>>>(), 8);
        let beyond_rustls = size_of::<TlsSession>() - size_of::<UnbufferedServerConnection>();
        assert!(
            beyond_rustls <= 80,
            "a session holds {beyond_rustls} bytes besides rustls' connection"
        );
    }
}
