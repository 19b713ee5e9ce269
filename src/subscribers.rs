//! Subscribers: what one costs, and the per-topic list they form.
//!
//! Once a connection subscribes to one topic, its slab entry is just a [`Subscriber`]: the
//! topic, the offset of the next byte to send in that topic's [`EventLog`], and its links in the
//! topic's [`SubscriberList`]. That is the whole per-subscriber state: no task, queue, buffer or
//! copy of any event (a test pins its size).
//!
//! A connection subscribed to several topics holds one such 20-byte [`Subscriber`] per topic
//! (a *member*), in one boxed slice; each member is linked into its own topic's list and
//! keeps its own offset. Writing to it merges the topics' logs by event id
//! ([`flush_merged`]): ids are issued in one order across all topics, so taking, at each step,
//! the pending event with the smallest id gives one stream whose ids strictly increase and
//! whose single `Last-Event-ID` places the client in every topic at once. An event that went
//! out only in part is always finished first, so SSE framing holds whatever the socket takes.
//!
//! A topic's subscribers form an intrusive doubly linked list through their slab entries, so
//! joining, leaving and fan-out cost no allocation, and leaving is O(1). List links are
//! [node ids](member_node): a connection's token for a single-topic subscriber, or the token
//! and the member's index, tagged, for a member. The list also owns the cursor of a fan-out
//! pass that ran out of budget: a subscriber that leaves mid-pass moves the cursor on, so a
//! pass never follows a dangling link.

use crate::connection::Connection;
use crate::event_log::{EventId, EventLog, STREAM_ORIGIN};
use crate::transport::Transport;
use slab::Slab;
use std::io::{self, IoSlice};

/// Marks the end of a subscriber list (tokens are slab keys, far below this).
pub const NO_SUBSCRIBER: u32 = u32::MAX;

/// The most topics one connection may hold: a member's index takes this many bits of its node
/// id (`--max-topics-per-subscriber` is capped at it).
pub const MAX_MEMBERS: usize = 1 << MEMBER_INDEX_BITS;
const MEMBER_INDEX_BITS: u32 = 6;
const MEMBER_TAG: u32 = 1 << 31;
/// Tokens a member's node id can name (2^25): far above any connection count one process can
/// reach under its open-file limit.
pub const MAX_MEMBER_TOKEN: usize = (MEMBER_TAG >> MEMBER_INDEX_BITS) as usize - 1;

/// The node id of member `index` of connection `token` in a topic's list.
pub fn member_node(token: usize, index: usize) -> u32 {
    debug_assert!(token <= MAX_MEMBER_TOKEN && index < MAX_MEMBERS);
    MEMBER_TAG | (token as u32) << MEMBER_INDEX_BITS | index as u32
}

/// The connection a node id belongs to, and the member's index if it is a member.
pub fn node_parts(node: u32) -> (usize, Option<usize>) {
    if node & MEMBER_TAG == 0 {
        (node as usize, None)
    } else {
        let rest = node & !MEMBER_TAG;
        (
            (rest >> MEMBER_INDEX_BITS) as usize,
            Some((rest & (MAX_MEMBERS as u32 - 1)) as usize),
        )
    }
}

/// A subscriber: its topic, its links in the topic's list, and the offset of the next byte to
/// send in the topic's event stream. Packed to 4-byte alignment so that, with the connection's
/// state tag and socket, a slab entry is 32 bytes.
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

    pub fn topic(&self) -> u32 {
        self.topic
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

/// Runs of events one merged write carries at most (each run is up to two slices of a ring).
const RUNS_PER_WRITE: usize = 16;

/// Writes a multi-topic connection's pending events, merged by id from its topics' shared logs,
/// until done or the socket would block. `logs` gives a topic's log.
///
/// Each step takes the member whose next event has the smallest id (one whose event went out
/// only in part comes first, whatever its id) and a *run* of its events: up to the next
/// member's smallest pending id. Up to [`RUNS_PER_WRITE`] runs go out in one `writev`; the
/// bytes the socket took are then handed back to the members in the same order.
pub fn flush_merged<'a>(
    members: &mut [Subscriber],
    stream: &mut Transport,
    logs: impl Fn(u32) -> Option<&'a EventLog>,
    bytes_sent: &mut u64,
) -> io::Result<Flush> {
    loop {
        // Where each member's next event starts in this write's plan.
        let mut cursor = [0u64; MAX_MEMBERS];
        for (c, m) in cursor.iter_mut().zip(members.iter()) {
            *c = m.offset;
        }
        let mut slices = [IoSlice::new(&[]); 2 * RUNS_PER_WRITE];
        let mut runs = [(0u8, 0u64); RUNS_PER_WRITE];
        let (mut n_slices, mut n_runs, mut total) = (0, 0, 0u64);
        while n_runs < RUNS_PER_WRITE {
            // The member to take from, and the smallest head id among the others.
            let mut best: Option<(usize, bool, EventId, u64)> = None;
            let mut runner_up: Option<EventId> = None;
            for (i, m) in members.iter().enumerate() {
                let Some(log) = logs(m.topic) else { continue };
                let at = cursor[i];
                if at == log.end() {
                    continue;
                }
                let Some((id, start, end)) = log.event_at(at) else {
                    return Ok(Flush::FellBehind);
                };
                // Mid-event: the rest of a partly sent event, which goes before anything.
                let partial = start != at;
                let better = match best {
                    None => true,
                    Some((_, best_partial, best_id, _)) => {
                        (partial, std::cmp::Reverse(id))
                            > (best_partial, std::cmp::Reverse(best_id))
                    }
                };
                if better {
                    if let Some((_, _, best_id, _)) = best {
                        runner_up = Some(runner_up.map_or(best_id, |r| r.min(best_id)));
                    }
                    best = Some((i, partial, id, end));
                } else {
                    runner_up = Some(runner_up.map_or(id, |r| r.min(id)));
                }
            }
            let Some((i, _, _, first_end)) = best else {
                break;
            };
            let Some(log) = logs(members[i].topic) else {
                break;
            };
            // The run: this member's events until another member has an older one pending (at
            // least the first, so equal ids cannot stall the merge).
            let run_end = runner_up
                .map_or(log.end(), |r| log.offset_of_first_from(r))
                .max(first_end);
            let (front, back) = log.range(cursor[i], run_end);
            for part in [front, back] {
                if !part.is_empty() {
                    slices[n_slices] = IoSlice::new(part);
                    n_slices += 1;
                }
            }
            runs[n_runs] = (i as u8, run_end - cursor[i]);
            n_runs += 1;
            total += run_end - cursor[i];
            cursor[i] = run_end;
        }
        if n_runs == 0 {
            return caught_up(stream);
        }
        let Some(written) = write_some(stream, &slices[..n_slices])? else {
            return Ok(Flush::Blocked);
        };
        *bytes_sent += written as u64;
        let mut left = written as u64;
        for &(i, len) in &runs[..n_runs] {
            let took = len.min(left);
            members[i as usize].offset += took;
            left -= took;
            if left == 0 {
                break;
            }
        }
        if (written as u64) < total {
            // The socket took part of it: it will take nothing more now.
            return Ok(Flush::Blocked);
        }
    }
}

/// Whether every member is caught up with its topic.
pub fn all_caught_up<'a>(
    members: &[Subscriber],
    logs: impl Fn(u32) -> Option<&'a EventLog>,
) -> bool {
    members.iter().all(|m| m.is_caught_up(logs(m.topic)))
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

/// The subscriber (or member) a node id names.
fn sub(conns: &mut Slab<Connection>, node: u32) -> Option<&mut Subscriber> {
    if node == NO_SUBSCRIBER {
        return None;
    }
    let (token, member) = node_parts(node);
    conns.get_mut(token)?.node_mut(member)
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
    pub fn link_parked(&mut self, conns: &mut Slab<Connection>, node: u32) {
        self.count -= 1;
        self.link(conns, node);
    }

    pub fn remove_parked(&mut self) {
        self.count -= 1;
    }

    /// Puts `node`, whose connection is already a subscriber, at the head of the list. A pass
    /// under way does not reach it, which is right: it joined at the log's current end (or is
    /// flushed by whoever linked it).
    pub fn link(&mut self, conns: &mut Slab<Connection>, node: u32) {
        let old_first = self.first;
        if let Some(s) = sub(conns, node) {
            s.prev = NO_SUBSCRIBER;
            s.next = old_first;
        }
        if let Some(next) = sub(conns, old_first) {
            next.prev = node;
        }
        self.first = node;
        self.count += 1;
    }

    /// Takes a subscriber out of the list, given its (already detached) entry.
    pub fn unlink(&mut self, conns: &mut Slab<Connection>, node: u32, gone: &Subscriber) {
        if self.cursor == node {
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
    pub fn cursor(&self) -> Option<u32> {
        (self.cursor != NO_SUBSCRIBER).then_some(self.cursor)
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

    /// Three topics' logs merged onto a real socket whose buffers are tiny, read back in
    /// pieces of every size while events keep arriving: every event once, whole, in id order.
    #[test]
    fn merged_writes_keep_id_order_and_framing_whatever_the_socket_takes() {
        use crate::event_log::{encode_event, Retention};
        use std::io::Read;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        socket2::SockRef::from(&server)
            .set_send_buffer_size(8192)
            .unwrap();
        socket2::SockRef::from(&client)
            .set_recv_buffer_size(32 * 1024)
            .unwrap();
        server.set_nonblocking(true).unwrap();
        server.set_nodelay(true).unwrap();
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let peer = crate::requests::Peer { loopback: true };
        let mut server = Transport::new(mio::net::TcpStream::from_std(server), peer, None).unwrap();
        let retention = Retention {
            max_events: 100_000,
            max_bytes: 1 << 30,
        };
        let mut logs: Vec<EventLog> = (0..3).map(|_| EventLog::default()).collect();
        let mut members: Vec<Subscriber> = (0..3)
            .map(|t| Subscriber::new(t, logs[t as usize].end()))
            .collect();
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = |bound: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % bound
        };
        let (mut published, mut received, mut sent) = (Vec::new(), Vec::new(), 0);
        let mut blocked = 0;
        let mut buf = vec![0u8; 8192];
        for seq in 0..3000u64 {
            let topic = next(3) as usize;
            let id = EventId {
                ms: 1,
                seq: 2 * seq,
            };
            // Sizes from a few bytes to several socket buffers.
            let data = "x".repeat(next(if seq % 50 == 0 { 150_000 } else { 300 }) as usize);
            logs[topic].append(
                id,
                &encode_event(id, Some(&format!("t{topic}")), &data),
                retention,
            );
            published.push((id, topic));
            if seq % 97 == 0 {
                // One id in every topic, as the gap notice after a Redis outage is: a tie the
                // merge must not break inside an event it has begun.
                let id = EventId {
                    ms: 1,
                    seq: 2 * seq + 1,
                };
                for (topic, log) in logs.iter_mut().enumerate().rev() {
                    let encoded = encode_event(id, Some(&format!("t{topic}")), &data);
                    log.append(id, &encoded, retention);
                    published.push((id, topic));
                }
            }
            if next(4) == 0 {
                let flushed = flush_merged(
                    &mut members,
                    &mut server,
                    |t| logs.get(t as usize),
                    &mut sent,
                );
                match flushed {
                    Ok(Flush::Blocked) => blocked += 1,
                    Ok(Flush::CaughtUp) => {}
                    other => panic!("{other:?}"),
                }
                let n = client.read(&mut buf[..1 + next(8191) as usize]).unwrap();
                received.extend_from_slice(&buf[..n]);
            }
        }
        while !all_caught_up(&members, |t| logs.get(t as usize)) {
            flush_merged(
                &mut members,
                &mut server,
                |t| logs.get(t as usize),
                &mut sent,
            )
            .unwrap();
            let n = client.read(&mut buf).unwrap();
            received.extend_from_slice(&buf[..n]);
        }
        drop(server);
        client.read_to_end(&mut received).unwrap();
        assert_eq!(sent, received.len() as u64);
        assert!(
            blocked > 100,
            "the socket must have taken part of a write often: {blocked}"
        );
        let text = String::from_utf8(received).unwrap();
        let events: Vec<(EventId, usize)> = text
            .split_terminator("\n\n")
            .map(|event| {
                let mut lines = event.lines();
                let id = EventId::parse(lines.next().unwrap().strip_prefix("id: ").unwrap());
                let topic = lines.next().unwrap().strip_prefix("event: t").unwrap();
                assert!(lines.all(|line| line.starts_with("data: ")), "{event:?}");
                (id.unwrap(), topic.parse().unwrap())
            })
            .collect();
        assert!(events.windows(2).all(|w| w[0].0 <= w[1].0), "ids in order");
        let mut sorted = events.clone();
        sorted.sort();
        published.sort();
        assert_eq!(sorted, published, "each event once");
    }

    #[test]
    fn a_subscriber_entry_stays_small() {
        // The whole user-space cost of an idle plain-HTTP subscriber is one of these in the
        // slab: the socket (mio's TcpStream is the fd in release builds, plus a registry id in
        // debug ones), two flags, and the state. A TLS subscriber adds its session, kept
        // outside the entry (transport.rs; its size in tls::tests).
        use mio::net::TcpStream;
        use std::mem::size_of;
        // Also the state of one (connection, topic) pair of a multi-topic connection: its
        // members are a boxed slice of these, and nothing else is kept per topic.
        assert_eq!(size_of::<Subscriber>(), 20);
        assert_eq!(size_of::<Box<[Subscriber]>>(), 16);
        let beyond_socket = size_of::<Connection>() - size_of::<TcpStream>();
        assert!(
            beyond_socket <= 32,
            "a connection holds {beyond_socket} bytes besides its socket"
        );
        // In release builds the socket is its 4-byte descriptor: an entry is 32 bytes.
        #[cfg(not(debug_assertions))]
        assert_eq!(size_of::<Connection>(), 32);
    }
}
