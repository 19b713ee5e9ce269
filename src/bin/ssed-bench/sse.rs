//! The SSE parser: a byte-at-a-time state machine over the WHATWG event-stream rules, keeping
//! only what the counters need (events, heartbeats, comments, and the `t=<micros>` stamp of an
//! event's first data line). It holds no buffer, so it costs a few bytes per connection and is
//! fed whatever slices the reads happen to return.

/// Per-connection parser and counters, fed arbitrary slices of the stream.
#[derive(Clone, Copy, Default)]
pub struct SseParser {
    pub events: u32,
    pub heartbeats: u32,
    pub comments: u32,
    /// The stamp being read from the current event's first data line.
    t: u64,
    state: u8,
    /// Bytes matched so far of the field name, the heartbeat type or the `t=` stamp.
    pos: u8,
    flags: u8,
}

const LINE_START: u8 = 0;
const FIELD_DATA: u8 = 1;
const FIELD_EVENT: u8 = 2;
/// After `data:`; `pos` is 1 on the event's first data line, the only one that can carry `t=`.
const DATA_VALUE_START: u8 = 3;
const DATA_T: u8 = 4;
const EVENT_VALUE_START: u8 = 5;
const EVENT_VALUE: u8 = 6;
const SKIP_LINE: u8 = 7;

const HAS_DATA: u8 = 1;
const HAS_T: u8 = 2;
const HEARTBEAT: u8 = 4;
/// The last byte was CR, so an LF now ends nothing.
const SAW_CR: u8 = 8;

impl SseParser {
    /// Counts what `input` completes and calls `on_stamp` with each stamped event's `t`.
    pub fn feed(&mut self, mut input: &[u8], heartbeat: &[u8], on_stamp: &mut impl FnMut(u64)) {
        while let Some((&b, rest)) = input.split_first() {
            input = rest;
            if self.flags & SAW_CR != 0 {
                self.flags &= !SAW_CR;
                if b == b'\n' {
                    continue;
                }
            }
            if b == b'\r' || b == b'\n' {
                self.flags |= if b == b'\r' { SAW_CR } else { 0 };
                self.end_line(heartbeat, on_stamp);
                continue;
            }
            match self.state {
                LINE_START => {
                    self.comments += u32::from(b == b':');
                    self.pos = 1;
                    self.state = match b {
                        b'd' => FIELD_DATA,
                        b'e' => FIELD_EVENT,
                        _ => SKIP_LINE,
                    };
                }
                FIELD_DATA | FIELD_EVENT => {
                    let name: &[u8] = if self.state == FIELD_DATA {
                        b"data"
                    } else {
                        b"event"
                    };
                    if b == b':' && usize::from(self.pos) == name.len() {
                        self.begin_value();
                    } else if name.get(usize::from(self.pos)) == Some(&b) {
                        self.pos += 1;
                    } else {
                        self.state = SKIP_LINE;
                    }
                }
                DATA_VALUE_START | EVENT_VALUE_START => {
                    self.state = match (self.state, self.pos) {
                        (DATA_VALUE_START, 1) => DATA_T,
                        (DATA_VALUE_START, _) => SKIP_LINE,
                        _ => EVENT_VALUE,
                    };
                    self.pos = 0;
                    // One leading space is syntax, not value.
                    if b != b' ' {
                        self.value_byte(b, heartbeat);
                    }
                }
                DATA_T | EVENT_VALUE => self.value_byte(b, heartbeat),
                _ => {
                    // Padding can be kilobytes: jump straight to the line end.
                    let end = input.iter().position(|&c| c == b'\r' || c == b'\n');
                    input = &input[end.unwrap_or(input.len())..];
                }
            }
        }
    }

    fn begin_value(&mut self) {
        if self.state == FIELD_DATA {
            let first = self.flags & HAS_DATA == 0;
            self.pos = u8::from(first);
            self.t = if first { 0 } else { self.t };
            self.flags |= HAS_DATA;
            self.state = DATA_VALUE_START;
        } else {
            self.flags &= !HEARTBEAT;
            self.state = EVENT_VALUE_START;
        }
    }

    fn value_byte(&mut self, b: u8, heartbeat: &[u8]) {
        match (self.state, self.pos, b) {
            (EVENT_VALUE, pos, b) if heartbeat.get(usize::from(pos)) == Some(&b) => self.pos += 1,
            // DATA_T: pos 0 wants `t`, 1 wants `=`, 2 a digit, 3 more digits or a space.
            (DATA_T, 0, b't') | (DATA_T, 1, b'=') => self.pos += 1,
            (DATA_T, 2 | 3, b'0'..=b'9') => {
                let digit = u64::from(b - b'0');
                match self.t.checked_mul(10).and_then(|t| t.checked_add(digit)) {
                    Some(t) => (self.t, self.pos) = (t, 3),
                    None => self.state = SKIP_LINE,
                }
            }
            (DATA_T, 3, b' ') => {
                self.flags |= HAS_T;
                self.state = SKIP_LINE;
            }
            _ => self.state = SKIP_LINE,
        }
    }

    fn end_line(&mut self, heartbeat: &[u8], on_stamp: &mut impl FnMut(u64)) {
        match (self.state, usize::from(self.pos)) {
            (LINE_START, _) => self.dispatch(on_stamp),
            // A field name without a colon is that field with an empty value.
            (FIELD_DATA, 4) | (FIELD_EVENT, 5) => self.begin_value(),
            (DATA_T, 3) => self.flags |= HAS_T,
            (EVENT_VALUE, pos) if pos > 0 && pos == heartbeat.len() => self.flags |= HEARTBEAT,
            _ => {}
        }
        (self.state, self.pos) = (LINE_START, 0);
    }

    fn dispatch(&mut self, on_stamp: &mut impl FnMut(u64)) {
        if self.flags & (HAS_DATA | HEARTBEAT) == HAS_DATA | HEARTBEAT {
            self.heartbeats += 1;
        } else if self.flags & HAS_DATA != 0 {
            self.events += 1;
            if self.flags & HAS_T != 0 {
                on_stamp(self.t);
            }
        }
        self.flags &= SAW_CR;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (events, heartbeats, comments, stamps) after feeding `chunks` one after another.
    fn parse(chunks: &[&[u8]]) -> (u32, u32, u32, Vec<u64>) {
        let (mut parser, mut stamps) = (SseParser::default(), Vec::new());
        for chunk in chunks {
            parser.feed(chunk, b"keep-alive", &mut |t| stamps.push(t));
        }
        (parser.events, parser.heartbeats, parser.comments, stamps)
    }

    const STREAM: &[u8] = b": hi\r\n\r\nevent: keep-alive\ndata\n\nid: 7\rdata: t=1700000000000000 xx\r\
        data: second line\r\n\r\nevent:keep-alive2\ndata:t=5\n\nevent: x\r\n\r\ndata:t=1a\n\n:\rdata: t=9\r\r";

    fn expected() -> (u32, u32, u32, Vec<u64>) {
        (4, 1, 2, vec![1_700_000_000_000_000, 5, 9])
    }

    #[test]
    fn sse_handles_line_endings_comments_heartbeats_and_stamps() {
        assert_eq!(parse(&[STREAM]), expected());
    }

    #[test]
    fn sse_is_independent_of_read_boundaries() {
        for split in 0..=STREAM.len() {
            let parsed = parse(&[&STREAM[..split], &STREAM[split..]]);
            assert_eq!(parsed, expected(), "split at {split}");
        }
        let bytes: Vec<&[u8]> = STREAM.chunks(1).collect();
        assert_eq!(parse(&bytes), expected());
    }

    #[test]
    fn sse_edge_cases() {
        // CR and LF in separate reads are one line end; a further CR then LF are two.
        assert_eq!(
            parse(&[b"data: t=1\r", b"\n", b"\r", b"\n"]),
            (1, 0, 0, vec![1])
        );
        // Only the first data line carries the stamp; `t=` alone or two spaces are no stamp.
        let unstamped = parse(&[b"data: x\ndata: t=3\n\ndata: t=\n\ndata:  t=4\n\n"]);
        assert_eq!(unstamped, (3, 0, 0, vec![]));
        // No data, no event; the event type resets after each dispatch.
        assert_eq!(
            parse(&[b"event: keep-alive\n\nid: 1\n\ndata\n\n"]),
            (1, 0, 0, vec![])
        );
        let lookalikes = parse(&[b"dat: 1\ndatax: 2\neventx: keep-alive\ndata: t=1\n\n"]);
        assert_eq!(lookalikes, (1, 0, 0, vec![1]));
        assert_eq!(
            parse(&[b"data: t=99999999999999999999999\n\n"]),
            (1, 0, 0, vec![])
        );
    }
}
