//! The subscriber table: every client connection is one slab entry, indexed by its mio token.
//!
//! A connection starts waiting for its request with no buffer at all; it only gets one (boxed,
//! off the slab entry) while a request arrives in pieces or a response waits to be written. Once it
//! subscribes, the entry is just a [`Subscriber`]: the socket, the topic, the offset of the next byte
//! to send in that topic's [`EventLog`], and its links in the topic's subscriber list. That is the
//! whole per-subscriber state: no task, queue, buffer or copy of any event (a test pins its size).
//!
//! Subscribers of a topic form an intrusive doubly linked list through their entries, so joining,
//! leaving and fan-out cost no allocation, and leaving is O(1).

use crate::event_log::{EventId, EventLog, STREAM_ORIGIN};
use crate::topics::{TopicId, NO_SUBSCRIBER};
use mio::net::TcpStream;
use slab::Slab;
use std::io::{self, IoSlice, Write};

pub struct Connection {
    pub stream: TcpStream,
    /// Whether the peer connected from a loopback address, taken at accept: by the time a
    /// pipelined publish is read the peer may be gone, and with it `getpeername`.
    pub from_loopback: bool,
    pub state: ConnState,
}

pub enum ConnState {
    /// Waiting for (the next) request; nothing of it has been kept yet. `since`: when the wait
    /// began, for the header timeout.
    AwaitingRequest {
        since: u32,
    },
    /// Part of a request has arrived, or a response is still being written.
    Http(Box<HttpConn>),
    Subscriber(Subscriber),
    /// Subscribed with a Last-Event-ID (the head is sent), waiting until its replay can start
    /// (see `Worker::start_replay`); counted as a subscriber of the topic meanwhile.
    Parked {
        topic: TopicId,
        last_seen: EventId,
    },
}

/// Buffers of a connection speaking plain HTTP (publishers, /metrics, a request in pieces).
#[derive(Debug, Default)]
pub struct HttpConn {
    pub input: Vec<u8>,
    pub output: Vec<u8>,
    pub since: u32,
    pub continue_sent: bool,
    pub close_when_flushed: bool,
    pub peer_closed: bool,
    /// A publish handed to the broker, whose answer this connection waits for before it reads
    /// its next request (answers stay in request order).
    pub awaiting: Option<AwaitingPublish>,
}

#[derive(Debug)]
pub struct AwaitingPublish {
    pub serial: u64,
    pub keep_alive: bool,
    pub cors: String,
}

/// A subscriber: its topic, its links in the topic's list, and the offset of the next byte to
/// send in the topic's event stream. Packed to 4-byte alignment so that, with the connection's
/// state tag and socket, a slab entry is 32 bytes.
#[derive(Debug, Clone, Copy)]
#[repr(C, packed(4))]
pub struct Subscriber {
    offset: u64,
    pub topic: TopicId,
    pub prev: u32,
    pub next: u32,
}

/// Where a subscriber stands after a flush.
#[derive(Debug, PartialEq, Eq)]
pub enum Flush {
    /// Everything has been sent.
    CaughtUp,
    /// The socket's send buffer is full; the next writable event resumes.
    Blocked,
    /// It can no longer be given a gapless stream: its next event has been trimmed from the log,
    /// or it has not read even enough to take a heartbeat whole.
    FellBehind,
}

impl Subscriber {
    pub fn new(topic: TopicId, offset: u64) -> Subscriber {
        Subscriber {
            offset,
            topic,
            prev: NO_SUBSCRIBER,
            next: NO_SUBSCRIBER,
        }
    }

    pub fn is_caught_up(&self, log: Option<&EventLog>) -> bool {
        self.offset == log.map_or(STREAM_ORIGIN, EventLog::end)
    }

    /// Writes every pending event, from the shared log, until done or the socket would block.
    /// All pending events go out in one `writev`.
    pub fn flush(
        &mut self,
        stream: &mut TcpStream,
        log: Option<&EventLog>,
        bytes_sent: &mut u64,
    ) -> io::Result<Flush> {
        let Some(log) = log else {
            return Ok(Flush::CaughtUp);
        };
        loop {
            let Some((front, back)) = log.pending_from(self.offset) else {
                return Ok(Flush::FellBehind);
            };
            if front.is_empty() {
                return Ok(Flush::CaughtUp);
            }
            match write_some(stream, &[IoSlice::new(front), IoSlice::new(back)])? {
                Some(n) => {
                    self.offset += n as u64;
                    *bytes_sent += n as u64;
                }
                None => return Ok(Flush::Blocked),
            }
        }
    }

    /// Sends a heartbeat to a caught-up subscriber. Heartbeats are not in the log (they are the
    /// same bytes for everyone, and retaining them would cost memory per topic), so one must go
    /// out whole or not at all: a socket that takes only part of a few dozen bytes belongs to a
    /// client that has stopped reading, and is reported as fallen behind.
    pub fn heartbeat(
        &self,
        stream: &mut TcpStream,
        heartbeat: &[u8],
        bytes_sent: &mut u64,
    ) -> io::Result<Flush> {
        match write_some(stream, &[IoSlice::new(heartbeat)])? {
            Some(n) if n == heartbeat.len() => {
                *bytes_sent += n as u64;
                Ok(Flush::CaughtUp)
            }
            Some(_) => Ok(Flush::FellBehind),
            None => Ok(Flush::Blocked),
        }
    }
}

/// One vectored write: `Some(bytes)`, or `None` if the socket would block.
pub fn write_some(stream: &mut TcpStream, bufs: &[IoSlice<'_>]) -> io::Result<Option<usize>> {
    loop {
        match stream.write_vectored(bufs) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => return Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Puts `token` at the head of the topic's subscriber list.
pub fn link(conns: &mut Slab<Connection>, first: &mut u32, token: usize) {
    let old_first = *first;
    if let ConnState::Subscriber(sub) = &mut conns[token].state {
        sub.prev = NO_SUBSCRIBER;
        sub.next = old_first;
    }
    if old_first != NO_SUBSCRIBER {
        if let ConnState::Subscriber(next) = &mut conns[old_first as usize].state {
            next.prev = token as u32;
        }
    }
    *first = token as u32;
}

/// Takes a subscriber out of its topic's list, given its links.
pub fn unlink(conns: &mut Slab<Connection>, first: &mut u32, sub: &Subscriber) {
    if sub.prev == NO_SUBSCRIBER {
        *first = sub.next;
    } else if let ConnState::Subscriber(prev) = &mut conns[sub.prev as usize].state {
        prev.next = sub.next;
    }
    if sub.next != NO_SUBSCRIBER {
        if let ConnState::Subscriber(next) = &mut conns[sub.next as usize].state {
            next.prev = sub.prev;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subscriber_entry_stays_small() {
        // The whole user-space cost of an idle subscriber is one of these in the slab: the
        // socket (mio's TcpStream is the fd in release builds, plus a registry id in debug ones)
        // and at most 32 bytes of state.
        use std::mem::size_of;
        assert!(size_of::<Subscriber>() <= 24);
        let beyond_socket = size_of::<Connection>() - size_of::<TcpStream>();
        assert!(
            beyond_socket <= 32,
            "a connection holds {beyond_socket} bytes besides its socket"
        );
    }
}
