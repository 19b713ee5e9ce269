//! A connection's byte stream: its socket, what is known of the peer, and, on an HTTPS
//! listener, its TLS session.
//!
//! The connection machine (`connection.rs`) and the write paths (`subscribers.rs`,
//! `delivery.rs`, `event_loop.rs`) see only plaintext and the same few operations a socket
//! offers (read, a vectored write that reports what it consumed or `None` for "would block",
//! peek for more input, shut down the write side); whether bytes are encrypted on the way is
//! decided here, once, and nowhere else.
//!
//! **Where sessions live.** A `Transport` is the socket and two flags: 8 bytes, so a plain
//! connection's slab entry stays 32 bytes (a test pins it, `subscribers::tests`). A TLS
//! connection's session is kept by its worker thread, in a table indexed by the socket's file
//! descriptor ([`SESSIONS`]): a descriptor names one open socket at a time in the process, a
//! connection lives and dies on the thread that accepted it, and its session leaves the table
//! before its descriptor is closed (`Drop`), so a reused descriptor never finds a stale session.
//! A pointer in every connection instead would cost every plain subscriber 8 bytes, a quarter of
//! its slab entry; the table costs 8 bytes per descriptor, and only on a worker that has served
//! TLS.
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
use std::cell::RefCell;
use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;
use std::os::fd::AsRawFd;

thread_local! {
    /// This worker's TLS sessions, by socket descriptor (see the module docs).
    static SESSIONS: RefCell<Vec<Option<Box<TlsSession>>>> = const { RefCell::new(Vec::new()) };
}

pub struct Transport {
    socket: TcpStream,
    peer: Peer,
    /// Whether this connection has a session in [`SESSIONS`].
    tls: bool,
}

impl Transport {
    /// Plain HTTP, or a TLS session with the certificate in force when `tls` is given.
    pub fn new(
        socket: TcpStream,
        peer: Peer,
        tls: Option<&Certificates>,
    ) -> Result<Transport, String> {
        let Some(certificates) = tls else {
            return Ok(Transport {
                socket,
                peer,
                tls: false,
            });
        };
        let session = Box::new(certificates.session()?);
        let fd = slot(&socket);
        SESSIONS.with_borrow_mut(|sessions| {
            if sessions.len() <= fd {
                sessions.resize_with(fd + 1, || None);
            }
            debug_assert!(
                sessions[fd].is_none(),
                "descriptor {fd} already has a session"
            );
            sessions[fd] = Some(session);
        });
        Ok(Transport {
            socket,
            peer,
            tls: true,
        })
    }

    /// Runs `f` on this connection's TLS session with its socket; `None` for plain HTTP.
    fn with_tls<R>(&mut self, f: impl FnOnce(&mut TlsSession, &mut TcpStream) -> R) -> Option<R> {
        if !self.tls {
            return None;
        }
        let fd = slot(&self.socket);
        let socket = &mut self.socket;
        SESSIONS.with_borrow_mut(|sessions| {
            let session = sessions.get_mut(fd)?.as_deref_mut()?;
            Some(f(session, socket))
        })
    }

    /// The socket itself, for registering with the poll and setting options.
    pub fn socket(&mut self) -> &mut TcpStream {
        &mut self.socket
    }

    pub fn peer(&self) -> Peer {
        self.peer
    }

    /// Reads plaintext. `Ok(0)` is the end of the peer's data.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.with_tls(|tls, socket| tls.read(socket, buf)) {
            Some(result) => result,
            None => self.socket.read(buf),
        }
    }

    /// Whether the peer has sent bytes not read yet.
    pub fn has_more_input(&mut self) -> bool {
        if self.with_tls(|tls, _| tls.has_input()) == Some(true) {
            return true;
        }
        let mut byte = [0u8; 1];
        matches!(self.socket.peek(&mut byte), Ok(n) if n > 0)
    }

    /// One vectored write of plaintext: `Some(bytes consumed)`, or `None` if the socket would
    /// block.
    pub fn write_some(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<Option<usize>> {
        if let Some(result) = self.with_tls(|tls, socket| tls.write(socket, bufs)) {
            return result;
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
        self.with_tls(|tls, socket| tls.flush(socket))
            .unwrap_or(Ok(true))
    }

    pub fn has_pending_output(&mut self) -> bool {
        self.with_tls(|tls, _| tls.has_stuck_output()) == Some(true)
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
        self.with_tls(|tls, socket| tls.close_notify(socket));
    }

    /// Whether this is a TLS connection still in its handshake (the costly part of a
    /// connection's life: its reads are budgeted per turn of the loop).
    pub fn is_handshaking(&mut self) -> bool {
        self.with_tls(|tls, _| tls.is_handshaking()) == Some(true)
    }

    /// Why this connection's TLS handshake failed, if it did.
    pub fn handshake_failure(&mut self) -> Option<TlsFailure> {
        self.with_tls(|tls, _| tls.failure()).flatten()
    }

    /// The connection is closed for taking too long: returns true (and counts it so) if it was
    /// still in its TLS handshake.
    pub fn handshake_timed_out(&mut self) -> bool {
        self.with_tls(|tls, _| tls.handshake_timed_out()) == Some(true)
    }
}

impl Drop for Transport {
    /// The session leaves the table before the socket (a field, dropped after this) closes its
    /// descriptor, which may then be reused at once.
    fn drop(&mut self) {
        if self.tls {
            let fd = slot(&self.socket);
            let _ = SESSIONS.try_with(|sessions| {
                if let Some(session) = sessions.borrow_mut().get_mut(fd) {
                    *session = None;
                }
            });
        }
    }
}

/// A socket's index in [`SESSIONS`].
fn slot(socket: &TcpStream) -> usize {
    socket.as_raw_fd() as usize
}
