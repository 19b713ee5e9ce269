//! The event buffer: each topic's already-encoded events, kept as one contiguous byte stream.
//!
//! An event is encoded to SSE wire format exactly once, when it is published, and appended to its
//! topic's [`EventLog`]. Every byte in a topic's stream has an absolute offset that never changes,
//! so a subscriber's whole delivery state is one `u64`: the offset of the next byte it must be sent.
//! Fan-out is then `write(log[offset..end])` per subscriber, one syscall for all of its pending
//! events, with no per-subscriber copy or queue.
//!
//! Retention trims whole events from the front (by count and by bytes). A subscriber whose offset
//! falls below the retained base has lost events and is disconnected by the caller; it comes back
//! with `Last-Event-ID`, which [`EventLog::offset_after`] turns back into an offset.

use std::collections::VecDeque;
use std::fmt;

/// An event id, `<milliseconds>-<sequence>` like a Redis stream id.
///
/// Ids start from the wall clock, so they keep increasing across restarts of the daemon and a
/// client reconnecting with an id from before a restart never waits for ids to "catch up".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId {
    pub ms: u64,
    pub seq: u64,
}

impl EventId {
    /// Parses `ms-seq`, or a bare `ms` (taken as `ms-0`).
    pub fn parse(text: &str) -> Option<EventId> {
        let (ms, seq) = match text.split_once('-') {
            Some((ms, seq)) => (ms, seq),
            None => (text, "0"),
        };
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(ms) || !digits(seq) {
            return None;
        }
        Some(EventId {
            ms: ms.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }

    /// The id just before this one (nothing lies between them).
    pub fn before(self) -> EventId {
        match self.seq {
            0 => EventId {
                ms: self.ms.saturating_sub(1),
                seq: u64::MAX,
            },
            seq => EventId {
                ms: self.ms,
                seq: seq - 1,
            },
        }
    }

    /// The id just after this one (nothing lies between them).
    pub fn after(self) -> EventId {
        match self.seq {
            u64::MAX => EventId {
                ms: self.ms.saturating_add(1),
                seq: 0,
            },
            seq => EventId {
                ms: self.ms,
                seq: seq + 1,
            },
        }
    }

    /// The next id after `self` at wall-clock time `now_ms`: never goes backwards, even if the
    /// clock does.
    pub fn next(self, now_ms: u64) -> EventId {
        if now_ms > self.ms {
            EventId { ms: now_ms, seq: 0 }
        } else {
            self.after()
        }
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// An event's id and its bytes in SSE wire format.
pub type EncodedEvent = (EventId, Box<[u8]>);

/// Encodes one event in SSE wire format (WHATWG HTML §9.2.5, "Parsing an event stream").
///
/// The data is split on CRLF, CR and LF, each piece becoming its own `data:` line, so that a client
/// reassembles exactly the published text (a trailing newline becomes a trailing empty line).
pub fn encode_event(id: EventId, event_type: Option<&str>, data: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 48);
    out.extend_from_slice(format!("id: {id}\n").as_bytes());
    if let Some(event_type) = event_type {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(event_type.as_bytes());
        out.push(b'\n');
    }
    let mut rest = data.as_bytes();
    loop {
        let line_end = rest.iter().position(|&b| b == b'\r' || b == b'\n');
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&rest[..line_end.unwrap_or(rest.len())]);
        out.push(b'\n');
        match line_end {
            None => break,
            Some(i) => {
                let skip = if rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                rest = &rest[i + skip..];
            }
        }
    }
    out.push(b'\n');
    out
}

/// The event that tells a client it may have missed events of `topic` (docs/design.md, "No
/// silent gaps"). It has no `id:` field, so the client's Last-Event-ID stays the last real event
/// it received.
pub fn encode_gap(topic: &str) -> Vec<u8> {
    format!("event: ssed-gap\ndata: {topic}\n\n").into_bytes()
}

/// Retention limits of one topic's log.
#[derive(Clone, Copy, Debug)]
pub struct Retention {
    pub max_events: usize,
    pub max_bytes: usize,
}

/// Where every topic's stream starts. Offsets start high so that older events fetched later (from
/// Redis, see [`EventLog::prepend`]) can be placed in front without moving anyone's offset.
pub const STREAM_ORIGIN: u64 = 1 << 40;

/// One topic's retained events as a byte stream with absolute offsets.
#[derive(Debug)]
pub struct EventLog {
    bytes: VecDeque<u8>,
    /// Absolute stream offset of `bytes[0]`.
    base: u64,
    /// Id and absolute start offset of every retained event, in id order.
    events: VecDeque<(EventId, u64)>,
    /// The newest event this log no longer has (or cannot vouch for): a client that last saw
    /// an older id may have missed events.
    horizon: EventId,
    /// The newest event ever appended, retained or not.
    newest: EventId,
}

impl Default for EventLog {
    fn default() -> EventLog {
        EventLog {
            bytes: VecDeque::new(),
            base: STREAM_ORIGIN,
            events: VecDeque::new(),
            horizon: EventId::default(),
            newest: EventId::default(),
        }
    }
}

impl EventLog {
    /// An empty log that cannot vouch for anything before `horizon`.
    pub fn with_horizon(horizon: EventId) -> EventLog {
        EventLog {
            horizon,
            ..EventLog::default()
        }
    }

    /// A client whose last seen id is older than this may have missed events this log no
    /// longer has.
    pub fn horizon(&self) -> EventId {
        self.horizon
    }

    pub fn newest_id(&self) -> EventId {
        self.newest
    }

    /// Offset one past the last retained byte: where a caught-up subscriber stands.
    pub fn end(&self) -> u64 {
        self.base + self.bytes.len() as u64
    }

    pub fn first_id(&self) -> Option<EventId> {
        self.events.front().map(|&(id, _)| id)
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Appends an encoded event, then trims the oldest events beyond the retention limits (always
    /// keeping the newest, even if it alone is larger than `max_bytes`).
    pub fn append(&mut self, id: EventId, encoded: &[u8], retention: Retention) {
        self.events.push_back((id, self.end()));
        self.bytes.extend(encoded);
        self.newest = self.newest.max(id);
        self.enforce(retention);
    }

    fn enforce(&mut self, retention: Retention) {
        while self.events.len() > 1
            && (self.events.len() > retention.max_events || self.bytes.len() > retention.max_bytes)
        {
            self.drop_oldest();
        }
    }

    /// Places older events (ascending ids) in front of the retained ones, skipping any that are not
    /// older than the first retained event. Offsets already handed out keep their meaning: the
    /// stream grows backwards from its base. Retention then applies as usual. `complete` says
    /// whether `older` is all there was; if not, the log cannot vouch for what came before it.
    /// Events newer than `up_to` are left out: they arrive live.
    pub fn prepend(
        &mut self,
        older: &[EncodedEvent],
        retention: Retention,
        complete: bool,
        up_to: EventId,
    ) {
        if let (false, Some((oldest, _))) = (complete, older.first()) {
            self.horizon = self.horizon.max(oldest.before());
        }
        let first = self.first_id();
        let older: Vec<_> = older
            .iter()
            .filter(|(id, _)| *id <= up_to && first.is_none_or(|first| *id < first))
            .collect();
        let total: usize = older.iter().map(|(_, bytes)| bytes.len()).sum();
        if older.is_empty() || total as u64 > self.base {
            return;
        }
        let mut bytes = VecDeque::with_capacity(total + self.bytes.len());
        let mut events = VecDeque::with_capacity(older.len() + self.events.len());
        let mut offset = self.base - total as u64;
        self.base = offset;
        for (id, encoded) in older {
            events.push_back((*id, offset));
            bytes.extend(encoded.iter());
            offset += encoded.len() as u64;
        }
        bytes.extend(self.bytes.drain(..));
        events.extend(self.events.drain(..));
        self.bytes = bytes;
        self.events = events;
        self.enforce(retention);
    }

    /// Drops every retained event; the stream's offsets carry on from where they were.
    pub fn clear(&mut self) {
        self.horizon = self.horizon.max(self.newest);
        self.base = self.end();
        self.bytes = VecDeque::new();
        self.events = VecDeque::new();
    }

    fn drop_oldest(&mut self) {
        if let Some((id, _)) = self.events.pop_front() {
            self.horizon = self.horizon.max(id);
        }
        let new_base = self.events.front().map_or(self.end(), |&(_, start)| start);
        self.bytes.drain(..(new_base - self.base) as usize);
        self.base = new_base;
    }

    /// Where to start a subscriber that last saw `last_seen`: the first retained event after it.
    /// An id older than everything retained replays everything retained.
    pub fn offset_after(&self, last_seen: EventId) -> u64 {
        let first_unseen = self.events.partition_point(|&(id, _)| id <= last_seen);
        self.events
            .get(first_unseen)
            .map_or(self.end(), |&(_, start)| start)
    }

    /// The retained event the byte at `offset` belongs to: its id, where it starts, and the
    /// offset just past it. `None` at the end of the log, or if `offset` has been trimmed away.
    pub fn event_at(&self, offset: u64) -> Option<(EventId, u64, u64)> {
        if offset < self.base || offset >= self.end() {
            return None;
        }
        let index = self
            .events
            .partition_point(|&(_, start)| start <= offset)
            .checked_sub(1)?;
        let end = self
            .events
            .get(index + 1)
            .map_or(self.end(), |&(_, start)| start);
        let (id, start) = self.events[index];
        Some((id, start, end))
    }

    /// Where the first retained event with an id of at least `id` starts (the end if none).
    pub fn offset_of_first_from(&self, id: EventId) -> u64 {
        let index = self.events.partition_point(|&(event, _)| event < id);
        self.events
            .get(index)
            .map_or(self.end(), |&(_, start)| start)
    }

    /// The bytes from `from` to `to` (both within the retained stream), as ring halves.
    pub fn range(&self, from: u64, to: u64) -> (&[u8], &[u8]) {
        let (a, b) = (
            (from.saturating_sub(self.base)) as usize,
            (to.saturating_sub(self.base)) as usize,
        );
        let (front, back) = self.bytes.as_slices();
        let f = front.len();
        let clamp = |x: usize| x.min(f);
        let front_part = &front[clamp(a)..clamp(b)];
        let back_part = &back[a.max(f) - f..(b.max(f) - f).min(back.len())];
        (front_part, back_part)
    }

    /// The bytes from `offset` to the end, as the two halves of the ring, or `None` if `offset`
    /// has already been trimmed away (the subscriber fell behind retention).
    pub fn pending_from(&self, offset: u64) -> Option<(&[u8], &[u8])> {
        if offset < self.base || offset > self.end() {
            return None;
        }
        let skip = (offset - self.base) as usize;
        let (front, back) = self.bytes.as_slices();
        Some(if skip < front.len() {
            (&front[skip..], back)
        } else {
            (&back[skip - front.len()..], &[][..])
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(seq: u64) -> EventId {
        EventId { ms: 7, seq }
    }

    fn pending(log: &EventLog, offset: u64) -> Vec<u8> {
        let (a, b) = log.pending_from(offset).unwrap();
        [a, b].concat()
    }

    #[test]
    fn encodes_each_line_of_data_as_its_own_data_field() {
        let encoded = encode_event(id(1), Some("note"), "a\r\nb\rc\nd\n");
        assert_eq!(
            String::from_utf8(encoded).unwrap(),
            "id: 7-1\nevent: note\ndata: a\ndata: b\ndata: c\ndata: d\ndata: \n\n"
        );
        assert_eq!(encode_event(id(2), None, ""), b"id: 7-2\ndata: \n\n");
    }

    #[test]
    fn ids_parse_print_and_advance() {
        assert_eq!(EventId::parse("12-3"), Some(EventId { ms: 12, seq: 3 }));
        assert_eq!(EventId::parse("12"), Some(EventId { ms: 12, seq: 0 }));
        for bad in [
            "",
            "-",
            "1-",
            "a-1",
            "1-2-3",
            " 1",
            "99999999999999999999999",
        ] {
            assert_eq!(EventId::parse(bad), None, "{bad:?}");
        }
        assert_eq!(id(3).to_string(), "7-3");
        assert_eq!(id(3).next(7), id(4));
        assert_eq!(
            id(3).next(5),
            id(4),
            "a clock going backwards must not reuse ids"
        );
        assert_eq!(id(3).next(9), EventId { ms: 9, seq: 0 });
    }

    #[test]
    fn replays_from_the_first_event_after_the_given_id() {
        let retention = Retention {
            max_events: 3,
            max_bytes: 1 << 20,
        };
        let mut log = EventLog::default();
        for seq in 1..=5 {
            log.append(id(seq), format!("e{seq};").as_bytes(), retention);
        }
        assert_eq!(log.len(), 3);
        assert_eq!(pending(&log, log.offset_after(id(3))), b"e4;e5;");
        assert_eq!(
            pending(&log, log.offset_after(id(1))),
            b"e3;e4;e5;",
            "older than retention: all"
        );
        assert_eq!(log.offset_after(id(5)), log.end());
        assert!(
            log.pending_from(0).is_none(),
            "trimmed offsets are reported as lost"
        );
    }

    #[test]
    fn trims_by_bytes_but_keeps_the_newest_event() {
        let retention = Retention {
            max_events: 100,
            max_bytes: 10,
        };
        let mut log = EventLog::default();
        log.append(id(1), b"aaaa", retention);
        log.append(id(2), b"bbbb", retention);
        log.append(id(3), b"cccc", retention);
        assert_eq!(
            pending(&log, log.offset_after(EventId::default())),
            b"bbbbcccc"
        );
        log.append(id(4), &[b'x'; 50], retention);
        assert_eq!(log.len(), 1);
        assert_eq!(log.end(), STREAM_ORIGIN + 62);
        log.clear();
        assert_eq!((log.end(), log.len()), (STREAM_ORIGIN + 62, 0));
        assert_eq!(pending(&log, STREAM_ORIGIN + 62), b"");
    }

    #[test]
    fn older_events_go_in_front_without_moving_existing_offsets() {
        let retention = Retention {
            max_events: 4,
            max_bytes: 1 << 20,
        };
        let mut log = EventLog::default();
        log.append(id(3), b"c;", retention);
        let reader_at = log.offset_after(id(3));
        let older: Vec<EncodedEvent> = [(1, "a;"), (2, "b;"), (3, "dup;")]
            .iter()
            .map(|&(seq, text)| (id(seq), text.as_bytes().into()))
            .collect();
        log.prepend(&older, retention, true, id(99));
        assert_eq!(
            pending(&log, log.offset_after(EventId::default())),
            b"a;b;c;",
            "the duplicate is skipped"
        );
        assert_eq!(pending(&log, log.offset_after(id(1))), b"b;c;");
        log.append(id(4), b"d;", retention);
        assert_eq!(
            pending(&log, reader_at),
            b"d;",
            "an existing offset still points at the same byte"
        );
    }
}
