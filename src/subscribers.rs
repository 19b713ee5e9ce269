//! Subscribers: what one costs, and the per-topic list they form.
//!
//! Once a connection subscribes, its slab entry is just a [`Subscriber`]: the topic, the offset
//! of the next byte to send in that topic's [`EventLog`], and its links in the topic's
//! [`SubscriberList`]. That is the whole per-subscriber state: no task, queue, buffer or copy of
//! any event (a test pins its size).
//!
//! A topic's subscribers form an intrusive doubly linked list through their slab entries, so
//! joining, leaving and fan-out cost no allocation, and leaving is O(1). The list also owns the
//! cursor of a fan-out pass that ran out of budget: a subscriber that leaves mid-pass moves the
//! cursor on, so a pass never follows a dangling link.

use crate::connection::Connection;
use crate::event_log::{EventLog, STREAM_ORIGIN};
use crate::transport::Transport;
use slab::Slab;
use std::io::{self, IoSlice};

/// Marks the end of a subscriber list (tokens are slab keys, far below this).
pub const NO_SUBSCRIBER: u32 = u32::MAX;

/// A subscriber: its topic, its links in the topic's list, and the offset of the next byte to
/// send in the topic's event stream. Packed to 4-byte alignment so that, with the connection's
/// state tag, socket and TLS session pointer, a slab entry is 40 bytes.
#[derive(Debug, Clone, Copy)]
#[repr(C, packed(4))]
pub struct Subscriber {
    offset: u64,
    pub topic: u32,
    prev: u32,
    next: u32,
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
    pub fn new(topic: u32, offset: u64) -> Subscriber {
        Subscriber {
            offset,
            topic,
            prev: NO_SUBSCRIBER,
            next: NO_SUBSCRIBER,
        }
    }

    pub fn next(&self) -> u32 {
        self.next
    }

    pub fn is_caught_up(&self, log: Option<&EventLog>) -> bool {
        self.offset == log.map_or(STREAM_ORIGIN, EventLog::end)
    }

    /// Writes every pending event, from the shared log, until done or the socket would block.
    /// All pending events go out in one `writev`.
    pub fn flush(
        &mut self,
        stream: &mut Transport,
        log: Option<&EventLog>,
        bytes_sent: &mut u64,
    ) -> io::Result<Flush> {
        let Some(log) = log else {
            return caught_up(stream);
        };
        loop {
            let Some((front, back)) = log.pending_from(self.offset) else {
                return Ok(Flush::FellBehind);
            };
            if front.is_empty() {
                return caught_up(stream);
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
}

/// Nothing is left to hand over; over TLS, ciphertext of what was handed over may still wait
/// for the socket (a write takes the plaintext whole and keeps what the socket did not take).
fn caught_up(stream: &mut Transport) -> io::Result<Flush> {
    Ok(if stream.flush_pending()? {
        Flush::CaughtUp
    } else {
        Flush::Blocked
    })
}

/// Sends bytes that are not in the log (a heartbeat, a gap notice) to a caught-up subscriber.
/// They must go out whole or not at all, so that they never interleave with an event: a socket
/// that takes only part of a few dozen bytes belongs to a client that has stopped reading, and is
/// reported as fallen behind.
pub fn send_whole(stream: &mut Transport, bytes: &[u8], bytes_sent: &mut u64) -> io::Result<Flush> {
    match write_some(stream, &[IoSlice::new(bytes)])? {
        Some(n) if n == bytes.len() => {
            *bytes_sent += n as u64;
            Ok(Flush::CaughtUp)
        }
        Some(_) => Ok(Flush::FellBehind),
        None => Ok(Flush::Blocked),
    }
}

/// One vectored write: `Some(bytes)`, or `None` if the socket would block.
pub fn write_some(stream: &mut Transport, bufs: &[IoSlice<'_>]) -> io::Result<Option<usize>> {
    stream.write_some(bufs)
}

/// A topic's subscribers: the head of the intrusive list, how many there are (parked ones
/// included), and where an unfinished fan-out pass resumes.
#[derive(Debug)]
pub struct SubscriberList {
    first: u32,
    count: u32,
    /// The next subscriber an unfinished pass writes to; `NO_SUBSCRIBER` when no pass is
    /// under way.
    cursor: u32,
    /// On the fan-out run queue; and asked for another pass while on it.
    queued: bool,
    rerun: bool,
}

impl Default for SubscriberList {
    fn default() -> SubscriberList {
        SubscriberList {
            first: NO_SUBSCRIBER,
            count: 0,
            cursor: NO_SUBSCRIBER,
            queued: false,
            rerun: false,
        }
    }
}

fn sub(conns: &mut Slab<Connection>, token: u32) -> Option<&mut Subscriber> {
    conns.get_mut(token as usize)?.subscriber_mut()
}

impl SubscriberList {
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Counts a subscriber that is not linked yet (parked until its replay can start).
    pub fn add_parked(&mut self) {
        self.count += 1;
    }

    /// Links a subscriber that was counted by [`add_parked`](Self::add_parked).
    pub fn link_parked(&mut self, conns: &mut Slab<Connection>, token: usize) {
        self.count -= 1;
        self.link(conns, token);
    }

    pub fn remove_parked(&mut self) {
        self.count -= 1;
    }

    /// Puts `token`, whose state is already `Subscriber`, at the head of the list. A pass under
    /// way does not reach it, which is right: it joined at the log's current end.
    pub fn link(&mut self, conns: &mut Slab<Connection>, token: usize) {
        let old_first = self.first;
        if let Some(s) = sub(conns, token as u32) {
            s.prev = NO_SUBSCRIBER;
            s.next = old_first;
        }
        if let Some(next) = sub(conns, old_first) {
            next.prev = token as u32;
        }
        self.first = token as u32;
        self.count += 1;
    }

    /// Takes a subscriber out of the list, given its (already detached) entry.
    pub fn unlink(&mut self, conns: &mut Slab<Connection>, token: usize, gone: &Subscriber) {
        if self.cursor == token as u32 {
            self.cursor = gone.next;
        }
        if gone.prev == NO_SUBSCRIBER {
            self.first = gone.next;
        } else if let Some(prev) = sub(conns, gone.prev) {
            prev.next = gone.next;
        }
        if let Some(next) = sub(conns, gone.next) {
            next.prev = gone.prev;
        }
        self.count -= 1;
    }

    /// Asks for a fan-out pass over the whole list. Returns true if the topic must be put on
    /// the run queue; false if a pass is queued or under way already, in which case another
    /// pass follows it, for the subscribers it has passed already.
    pub fn request_pass(&mut self) -> bool {
        if self.queued {
            self.rerun = true;
            return false;
        }
        self.queued = true;
        self.cursor = self.first;
        true
    }

    /// Whether events arrived while a pass was under way (another pass is owed).
    pub fn rerun_pending(&self) -> bool {
        self.rerun
    }

    /// The subscriber the pass writes next; `None` when the pass is over, after which the
    /// caller calls [`pass_over`](Self::pass_over).
    pub fn cursor(&self) -> Option<usize> {
        (self.cursor != NO_SUBSCRIBER).then_some(self.cursor as usize)
    }

    pub fn advance(&mut self, next: u32) {
        self.cursor = next;
    }

    /// Ends a pass; returns true if another one was asked for meanwhile and has begun.
    pub fn pass_over(&mut self) -> bool {
        if std::mem::take(&mut self.rerun) {
            self.cursor = self.first;
            return true;
        }
        self.queued = false;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subscriber_entry_stays_small() {
        // The whole user-space cost of an idle plain-HTTP subscriber is one of these in the
        // slab: the socket (mio's TcpStream is the fd in release builds, plus a registry id in
        // debug ones), the pointer to a TLS session (absent for plain HTTP) and the state. A
        // TLS subscriber adds its session (tls::tests).
        use mio::net::TcpStream;
        use std::mem::size_of;
        assert_eq!(size_of::<Subscriber>(), 20);
        let beyond_socket = size_of::<Connection>() - size_of::<TcpStream>();
        assert!(
            beyond_socket <= 40,
            "a connection holds {beyond_socket} bytes besides its socket"
        );
        // In release builds, the socket is 4 bytes: an entry is 40 bytes, 8 more than before
        // TLS (the session pointer).
        #[cfg(not(debug_assertions))]
        assert!(size_of::<Connection>() <= 40, "{}", size_of::<Connection>());
    }
}
