//! A connection's byte stream: its socket, what is known of the peer, and, on an HTTPS
//! listener, its TLS session.
//!
//! The connection machine (`connection.rs`) and the write paths (`subscribers.rs`,
//! `delivery.rs`, `event_loop.rs`) see only plaintext and the same few operations a socket
//! offers (read, a vectored write that reports what it consumed or `None` for "would block",
//! peek for more input, shut down the write side); whether bytes are encrypted on the way is
//! decided here, once, and nowhere else. Plain HTTP costs one pointer more per connection (the
//! absent session), which a test pins (`subscribers::tests`).
//!
//! One difference shows through, and only to the writable path: a TLS write may consume
//! plaintext whose ciphertext the socket has not wholly taken. That ciphertext is sent before
//! anything else ([`Transport::write_some`] drains it first and reports "would block" while it
//! cannot), and a subscriber with nothing more to send still has it flushed when the socket
//! drains ([`Transport::flush_pending`]).

use crate::metrics::TlsFailure;
use crate::requests::Peer;
use crate::tls::{Certificates, TlsSession};
use mio::net::TcpStream;
use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;

pub struct Transport {
    socket: TcpStream,
    peer: Peer,
    tls: Option<Box<TlsSession>>,
}

impl Transport {
    /// Plain HTTP, or a TLS session with the certificate in force when `tls` is given.
    pub fn new(
        socket: TcpStream,
        peer: Peer,
        tls: Option<&Certificates>,
    ) -> Result<Transport, String> {
        let tls = match tls {
            Some(certificates) => Some(Box::new(certificates.session()?)),
            None => None,
        };
        Ok(Transport { socket, peer, tls })
    }

    /// The socket itself, for registering with the poll and setting options.
    pub fn socket(&mut self) -> &mut TcpStream {
        &mut self.socket
    }

    pub fn peer(&self) -> Peer {
        self.peer
    }

    pub fn tls(&self) -> Option<&TlsSession> {
        self.tls.as_deref()
    }

    /// Reads plaintext. `Ok(0)` is the end of the peer's data.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.tls {
            None => self.socket.read(buf),
            Some(tls) => tls.read(&mut self.socket, buf),
        }
    }

    /// Whether the peer has sent bytes not read yet.
    pub fn has_more_input(&mut self) -> bool {
        if self.tls.as_ref().is_some_and(|tls| tls.has_input()) {
            return true;
        }
        let mut byte = [0u8; 1];
        matches!(self.socket.peek(&mut byte), Ok(n) if n > 0)
    }

    /// One vectored write of plaintext: `Some(bytes consumed)`, or `None` if the socket would
    /// block.
    pub fn write_some(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<Option<usize>> {
        if let Some(tls) = &mut self.tls {
            return tls.write(&mut self.socket, bufs);
        }
        loop {
            match self.socket.write_vectored(bufs) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => return Ok(Some(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends what an earlier write left encrypted but unsent; returns whether nothing is left.
    /// Always true for plain HTTP, which never holds bytes back.
    pub fn flush_pending(&mut self) -> io::Result<bool> {
        match &mut self.tls {
            None => Ok(true),
            Some(tls) => tls.flush(&mut self.socket),
        }
    }

    pub fn has_pending_output(&self) -> bool {
        self.tls.as_ref().is_some_and(|tls| tls.has_stuck_output())
    }

    /// Ends the stream: close_notify over TLS (when it can go out in order), then the TCP write
    /// side.
    pub fn shutdown_write(&mut self) -> io::Result<()> {
        self.close_notify();
        self.socket.shutdown(Shutdown::Write)
    }

    /// Over TLS, tells the peer the stream ends here, so that it sees a clean end rather than
    /// a possibly truncated one; nothing for plain HTTP. Best effort: the connection closes
    /// right after.
    pub fn close_notify(&mut self) {
        if let Some(tls) = &mut self.tls {
            tls.close_notify(&mut self.socket);
        }
    }

    /// Why this connection's TLS handshake failed, if it did.
    pub fn handshake_failure(&self) -> Option<TlsFailure> {
        self.tls.as_ref().and_then(|tls| tls.failure())
    }

    /// The connection is closed for taking too long: returns true (and counts it so) if it was
    /// still in its TLS handshake.
    pub fn handshake_timed_out(&mut self) -> bool {
        self.tls
            .as_mut()
            .is_some_and(|tls| tls.handshake_timed_out())
    }
}
