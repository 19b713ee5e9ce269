//! One connection, several topics: `GET /events?topic=A&topic=B&...` over real sockets.
//!
//! Every test computes the exact sequence each connection must see from the publish answers
//! (a POST answers the event's id): the events of the topics it holds, each once, in id order,
//! nothing else. Streams are compared byte for byte with single-topic subscribers where the
//! bytes matter (framing, slow readers), and resumes are checked to the event: the missed
//! events merged in id order, `ssed-gap` first for a topic whose retention does not reach back,
//! then live.

mod common;
use common::keys::{hs256, PUBLISH_TOKEN, SECRET};
use common::*;
use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Instant;

// ---- publishing and the expected sequences -----------------------------------------------------

/// An event as it was published, with the id its publish was answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Published {
    id: String,
    topic: String,
    event: Option<String>,
    data: String,
}

/// `ms-seq` as a pair that orders like the ids do.
fn id_key(id: &str) -> (u64, u64) {
    let (ms, seq) = id
        .split_once('-')
        .unwrap_or_else(|| panic!("ids look like ms-seq: {id:?}"));
    (ms.parse().unwrap(), seq.parse().unwrap())
}

/// Publishes `data` to `topic` (with the SSE type `event`, if any) on `addr`; returns what was
/// published with its id.
fn publish_to(
    addr: SocketAddr,
    topic: &str,
    event: Option<&str>,
    data: &str,
    headers: &[(&str, &str)],
) -> Published {
    let path = match event {
        Some(event) => format!("/events/{topic}?event={event}"),
        None => format!("/events/{topic}"),
    };
    let response = request(addr, "POST", &path, headers, data.as_bytes());
    assert_eq!(response.status, 200, "publish to {topic}: {response:?}");
    let id = response.body_text();
    id_key(&id);
    Published {
        id,
        topic: topic.into(),
        event: event.map(str::to_string),
        data: data.into(),
    }
}

fn publish(addr: SocketAddr, topic: &str, data: &str) -> Published {
    publish_to(addr, topic, None, data, &[])
}

/// What a connection holding `topics` must receive of `published`: the events of those topics,
/// in id order.
fn expected_for(published: &[Published], topics: &[&str]) -> Vec<Published> {
    let mut expected: Vec<Published> = published
        .iter()
        .filter(|p| topics.contains(&p.topic.as_str()))
        .cloned()
        .collect();
    expected.sort_by_key(|p| id_key(&p.id));
    expected
}

/// The same events, as (id, event type, data): what a client sees of them.
fn seen(events: &[Published]) -> Vec<(String, Option<String>, String)> {
    events
        .iter()
        .map(|p| (p.id.clone(), p.event.clone(), p.data.clone()))
        .collect()
}

/// The next `n` events of `sub`, as (id, event type, data); every one must have an id.
fn next_events(sub: &mut Subscription, n: usize) -> Vec<(String, Option<String>, String)> {
    (0..n)
        .map(|_| {
            let e = sub.next_event();
            let id = e
                .id
                .unwrap_or_else(|| panic!("an event without an id: {:?} {:?}", e.event, e.data));
            (id, e.event, e.data)
        })
        .collect()
}

/// Asserts that the next events of `sub` are exactly `expected` (id, type and data, in this
/// order), with strictly increasing ids.
#[track_caller]
fn assert_exactly(sub: &mut Subscription, expected: &[Published], what: &str) {
    let got = next_events(sub, expected.len());
    assert_eq!(got, seen(expected), "{what}");
    assert!(
        got.windows(2).all(|w| id_key(&w[0].0) < id_key(&w[1].0)),
        "{what}: ids strictly increase: {got:?}"
    );
}

/// `/events?topic=...` for these topics, each percent-encoded (`/` as `%2F`).
fn multi_path(topics: &[&str]) -> String {
    let query: Vec<String> = topics
        .iter()
        .map(|t| format!("topic={}", t.replace('/', "%2F")))
        .collect();
    format!("/events?{}", query.join("&"))
}

// ---- raw streams and a strict SSE parser -------------------------------------------------------

/// A stream read as bytes: its head, then whole `\n\n`-terminated blocks.
struct RawStream {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Every body byte read so far.
    body: Vec<u8>,
}

impl RawStream {
    fn open(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> RawStream {
        RawStream::over(connect(addr), path, headers)
    }

    /// Subscribes over an already connected `stream`.
    fn over(mut stream: TcpStream, path: &str, headers: &[(&str, &str)]) -> RawStream {
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut text = format!("GET {path} HTTP/1.1\r\nHost: test\r\n");
        for (name, value) in headers {
            text.push_str(&format!("{name}: {value}\r\n"));
        }
        text.push_str("\r\n");
        stream.write_all(text.as_bytes()).unwrap();
        let mut raw = RawStream {
            stream,
            buf: Vec::new(),
            body: Vec::new(),
        };
        let end = loop {
            if let Some(at) = find(&raw.buf, b"\r\n\r\n") {
                break at + 4;
            }
            assert!(raw.fill(), "closed before the stream head: {:?}", raw.buf);
        };
        let head = String::from_utf8_lossy(&raw.buf[..end]).into_owned();
        assert!(head.starts_with("HTTP/1.1 200 "), "not a stream: {head:?}");
        raw.buf.drain(..end);
        raw.body.extend_from_slice(&raw.buf);
        raw
    }

    /// Reads more; false at the end of the stream.
    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16384];
        match self.stream.read(&mut chunk) {
            Ok(0) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(e) => panic!("reading the stream: {e}"),
        }
    }

    /// The next whole block (one event, with its terminating blank line).
    fn next_block(&mut self) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(at) = find(&self.buf, b"\n\n") {
                let block: Vec<u8> = self.buf.drain(..at + 2).collect();
                return String::from_utf8(block).expect("a UTF-8 event");
            }
            assert!(Instant::now() < deadline, "no event within {PATIENCE:?}");
            let before = self.buf.len();
            assert!(self.fill(), "stream ended inside or before an event");
            self.body.extend_from_slice(&self.buf[before..]);
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Parses one block the way ssed writes events, strictly: `id: ` (absent only on the gap
/// event), an optional `event: `, then one or more `data: ` lines, nothing else, ended by a blank
/// line.
fn parse_strict(block: &str) -> Result<Event, String> {
    let body = block
        .strip_suffix("\n\n")
        .ok_or_else(|| format!("not ended by a blank line: {block:?}"))?;
    let mut event = Event::default();
    let mut data: Option<String> = None;
    for line in body.split('\n') {
        let (field, value) = line
            .split_once(": ")
            .ok_or_else(|| format!("not a `field: value` line {line:?} in {block:?}"))?;
        match field {
            "id" if event.id.is_none() && event.event.is_none() && data.is_none() => {
                id_key(value);
                event.id = Some(value.into());
            }
            "event" if event.event.is_none() && data.is_none() => event.event = Some(value.into()),
            "data" => match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => data = Some(value.into()),
            },
            _ => return Err(format!("unexpected line {line:?} in {block:?}")),
        }
    }
    event.data = data.ok_or_else(|| format!("no data in {block:?}"))?;
    if event.id.is_none() && event.event.as_deref() != Some("ssed-gap") {
        return Err(format!("an event without an id: {block:?}"));
    }
    Ok(event)
}

// ---- workers -----------------------------------------------------------------------------------

/// `ssed_subscribers` per worker (two workers).
fn subscribers_per_worker(addr: SocketAddr) -> [f64; 2] {
    let body = request(addr, "GET", "/metrics", &[], b"").body_text();
    [0, 1].map(|w| {
        let prefix = format!("ssed_subscribers{{worker=\"{w}\"}} ");
        body.lines()
            .find_map(|l| l.strip_prefix(&prefix)?.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix}in {body}"))
    })
}

/// Opens `path` (with `headers`) until both workers hold at least one such connection; returns
/// them with the worker each landed on.
fn on_both_workers(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Vec<(Subscription, usize)> {
    let mut opened: Vec<(Subscription, usize)> = Vec::new();
    for _ in 0..80 {
        let before = subscribers_per_worker(addr);
        let sub = Subscription::open(addr, path, headers);
        let (after, _) = wait_for("the subscriber to be counted", || {
            let after = subscribers_per_worker(addr);
            (after[0] + after[1] == before[0] + before[1] + 1.0).then_some(after)
        });
        let worker = usize::from(after[1] > before[1]);
        opened.push((sub, worker));
        let workers: BTreeSet<usize> = opened.iter().map(|(_, w)| *w).collect();
        if workers.len() == 2 && opened.len() >= 4 {
            return opened;
        }
    }
    panic!("80 connections to {path} all landed on one worker");
}

// ---- 1. interleaved publishes, exact sequences -------------------------------------------------

#[test]
fn interleaved_publishes_reach_each_connection_exactly_for_the_topics_it_holds() {
    let daemon = Daemon::start(&["--heartbeat", "0"]);
    let topics = ["a", "b", "group/1", "c.d"];
    // Overlapping sets; percent-encoded and plain slashes; a duplicate.
    let sets: [(&str, &[&str]); 3] = [
        ("/events?topic=a&topic=b", &["a", "b"]),
        (
            "/events?topic=b&topic=group%2F1&topic=c.d",
            &["b", "group/1", "c.d"],
        ),
        (
            "/events?topic=c.d&topic=group/1&topic=a&topic=a",
            &["a", "group/1", "c.d"],
        ),
    ];
    let mut multis: Vec<RawStream> = sets
        .iter()
        .map(|(path, _)| RawStream::open(daemon.addr, path, &[]))
        .collect();
    let mut singles: Vec<RawStream> = topics
        .iter()
        .map(|t| RawStream::open(daemon.addr, &format!("/events/{t}"), &[]))
        .collect();
    wait_for_metric(&daemon, "ssed_subscribers", 7.0);

    let mut published = Vec::new();
    for i in 0..52 {
        let topic = topics[i % 4];
        let event = (i % 7 == 3).then(|| format!("kind{i}"));
        let data = if i % 11 == 5 {
            format!("{topic} #{i}\nsecond line")
        } else {
            format!("{topic} #{i}")
        };
        published.push(publish_to(daemon.addr, topic, event.as_deref(), &data, &[]));
        if i % 5 == 0 {
            // A topic no connection holds.
            published.push(publish(daemon.addr, "x", &format!("x #{i}")));
        }
    }
    let ids: BTreeSet<&str> = published.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids.len(), published.len(), "every publish has its own id");

    // The single-topic subscribers: the bytes of each event, by id.
    let mut bytes_of: HashMap<String, String> = HashMap::new();
    for (single, topic) in singles.iter_mut().zip(topics) {
        for expected in expected_for(&published, &[topic]) {
            let block = single.next_block();
            let event = parse_strict(&block).unwrap();
            assert_eq!(
                (
                    event.id.as_deref(),
                    event.event.as_ref(),
                    event.data.as_str()
                ),
                (
                    Some(expected.id.as_str()),
                    expected.event.as_ref(),
                    expected.data.as_str()
                ),
                "single-topic subscriber of {topic}"
            );
            bytes_of.insert(expected.id, block);
        }
    }

    for (multi, (path, held)) in multis.iter_mut().zip(sets) {
        let expected = expected_for(&published, held);
        assert!(expected.len() >= 26, "{path}: {} events", expected.len());
        let mut previous: Option<(u64, u64)> = None;
        for (n, expected) in expected.iter().enumerate() {
            let block = multi.next_block();
            let event = parse_strict(&block).unwrap_or_else(|e| panic!("{path}: {e}"));
            assert_eq!(
                (event.id.as_ref(), event.event.as_ref(), &event.data),
                (Some(&expected.id), expected.event.as_ref(), &expected.data),
                "{path}: event {n} of {held:?}"
            );
            let key = id_key(&expected.id);
            assert!(previous < Some(key), "{path}: ids strictly increase");
            previous = Some(key);
            assert_eq!(
                block, bytes_of[&expected.id],
                "{path}: the same bytes as the single-topic subscribers got"
            );
        }
    }

    // Nothing else is pending on any of them: a marker to `b`, then one to `a`, are the very
    // next events of the connections holding them.
    let on_b = publish(daemon.addr, "b", "marker b");
    let on_a = publish(daemon.addr, "a", "marker a");
    let next_id = |multi: &mut RawStream| parse_strict(&multi.next_block()).unwrap().id.unwrap();
    assert_eq!(next_id(&mut multis[0]), on_b.id);
    assert_eq!(next_id(&mut multis[0]), on_a.id);
    assert_eq!(next_id(&mut multis[1]), on_b.id);
    assert_eq!(next_id(&mut multis[2]), on_a.id);
    // One connection each, however many topics.
    assert_eq!(daemon.metric("ssed_subscribers"), 7.0);
}

// ---- 2. a slow reader on several topics ----------------------------------------------------------

#[test]
fn a_stalled_multi_topic_reader_is_dropped_and_what_it_got_is_whole_events() {
    let daemon = Daemon::start(&[
        "--heartbeat",
        "0",
        "--history",
        "4",
        "--history-bytes",
        "65536",
        "--send-buffer",
        "4096",
    ]);
    let topics = ["f1", "f2", "f3"];
    let path = multi_path(&topics);
    // A client with a tiny receive window that never reads.
    let mut stalled: TcpStream = {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        socket.connect(&daemon.addr.into()).unwrap();
        let mut stream: TcpStream = socket.into();
        stream
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
            .unwrap();
        stream
    };
    wait_for_metric(&daemon, "ssed_subscribers", 1.0);
    let mut healthy = RawStream::open(daemon.addr, &path, &[]);
    wait_for_metric(&daemon, "ssed_subscribers", 2.0);

    let mut published = Vec::new();
    for i in 0..90 {
        let topic = topics[i % 3];
        // Sizes from 300 bytes to 6 KiB, each event filled with its own letter: an event cut
        // into by another would show.
        let fill = char::from(b'a' + (i % 26) as u8);
        let data = format!(
            "{i} {topic} {}",
            fill.to_string().repeat(300 + (i * 977) % 6000)
        );
        let p = publish(daemon.addr, topic, &data);
        let event = parse_strict(&healthy.next_block()).unwrap();
        assert_eq!(
            (event.id.as_deref(), event.data.as_str()),
            (Some(p.id.as_str()), p.data.as_str()),
            "the healthy reader keeps up"
        );
        published.push(p);
    }
    // Closed, and counted once (see also each_dropped_multi_topic_connection_is_counted_once).
    wait_for_metric(&daemon, "ssed_subscribers", 1.0);
    assert_eq!(daemon.metric("ssed_slow_subscribers_dropped_total"), 1.0);
    let marker = publish(daemon.addr, "f2", "still here");
    assert_eq!(
        parse_strict(&healthy.next_block()).unwrap().id,
        Some(marker.id)
    );

    // Now read everything the stalled client got: the server must have closed it.
    stalled.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut received = Vec::new();
    let mut chunk = [0u8; 16384];
    loop {
        match stalled.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!(
                "the server did not close the stalled stream ({e}) after {} bytes",
                received.len()
            ),
        }
    }
    let head_end = find(&received, b"\r\n\r\n").expect("the stream head") + 4;
    assert!(received.starts_with(b"HTTP/1.1 200 "));
    let body = &received[head_end..];
    assert!(
        healthy.body.starts_with(body),
        "the stalled client's {} bytes are the start of what the healthy one got",
        body.len()
    );
    let text = String::from_utf8_lossy(body);
    let complete_end = text.rfind("\n\n").map_or(0, |at| at + 2);
    let by_id: HashMap<&str, &Published> = published.iter().map(|p| (p.id.as_str(), p)).collect();
    let mut events = Vec::new();
    for block in text[..complete_end].split_inclusive("\n\n") {
        let event = parse_strict(block).unwrap_or_else(|e| panic!("broken framing: {e}"));
        let id = event.id.clone().unwrap();
        assert_eq!(
            Some(&event.data),
            by_id.get(id.as_str()).map(|p| &p.data),
            "event {id} whole and intact"
        );
        events.push(id);
    }
    assert!(
        !events.is_empty(),
        "the stalled client got at least one event"
    );
    let prefix: Vec<&str> = published[..events.len()]
        .iter()
        .map(|p| p.id.as_str())
        .collect();
    assert_eq!(
        events, prefix,
        "in order, from the first, none skipped (no silent gap)"
    );
    assert!(
        events.len() < published.len(),
        "it fell behind: {} of {}",
        events.len(),
        published.len()
    );
}

// ---- 3. resume across topics ---------------------------------------------------------------------

#[test]
fn resuming_by_header_or_query_gets_the_missed_events_of_every_topic_merged_then_live() {
    let daemon = Daemon::start(&[]);
    let topics = ["r1", "r2", "r/3"];
    let mut sub = Subscription::open(daemon.addr, &multi_path(&topics), &[]);
    let mut published = Vec::new();
    for i in 0..6 {
        published.push(publish(daemon.addr, topics[i % 3], &format!("before {i}")));
    }
    // Read four of the six, then leave.
    let first = expected_for(&published, &topics);
    assert_exactly(&mut sub, &first[..4], "before leaving");
    let last_seen = first[3].id.clone();
    drop(sub);
    for i in 0..9 {
        published.push(publish(
            daemon.addr,
            topics[(i * 2) % 3],
            &format!("away {i}"),
        ));
        published.push(publish(daemon.addr, "elsewhere", &format!("not held {i}")));
    }
    let missed: Vec<Published> = expected_for(&published, &topics)
        .into_iter()
        .filter(|p| id_key(&p.id) > id_key(&last_seen))
        .collect();
    assert_eq!(missed.len(), 2 + 9);

    let path = multi_path(&topics);
    let mut by_header = Subscription::open(daemon.addr, &path, &[("Last-Event-ID", &last_seen)]);
    let mut by_query = Subscription::open(
        daemon.addr,
        &format!("/events?topic=r/3&lastEventId={last_seen}&topic=r2&topic=r1"),
        &[],
    );
    // The header wins over the query, as for one topic.
    let mut both = Subscription::open(
        daemon.addr,
        &format!("{path}&lastEventId={}", first[0].id),
        &[("Last-Event-ID", &last_seen)],
    );
    for (sub, what) in [
        (&mut by_header, "Last-Event-ID"),
        (&mut by_query, "lastEventId"),
        (&mut both, "both"),
    ] {
        assert_exactly(sub, &missed, what);
    }
    let live = [
        publish(daemon.addr, "r2", "live 1"),
        publish(daemon.addr, "elsewhere", "live, not held"),
        publish(daemon.addr, "r1", "live 2"),
    ];
    let live = expected_for(&live, &topics);
    for (sub, what) in [
        (&mut by_header, "live after Last-Event-ID"),
        (&mut by_query, "live after lastEventId"),
        (&mut both, "live after both"),
    ] {
        assert_exactly(sub, &live, what);
    }
}

#[test]
fn a_topic_out_of_retention_gets_its_gap_event_first_then_the_merged_events() {
    resume_with_gaps("Last-Event-ID", false);
    resume_with_gaps("lastEventId", true);
}

/// `--history 2`: a connection on three topics, one of which loses events while it is away,
/// comes back (by header or by query) and gets that topic's gap event first, then every retained
/// event after its id, merged; another on four topics, two of which lost events, gets both gap
/// events first.
fn resume_with_gaps(how: &str, by_query: bool) {
    let daemon = Daemon::start(&["--history", "2"]);
    let topics = ["g1", "g2", "g3"];
    let mut sub = Subscription::open(daemon.addr, &multi_path(&topics), &[]);
    let mut published = Vec::new();
    for topic in topics {
        published.push(publish(daemon.addr, topic, &format!("{topic} before")));
    }
    assert_exactly(&mut sub, &published, "before leaving");
    let last_seen = published[2].id.clone();
    drop(sub);
    // While away: five to g1 (two kept: it cannot reach back), one to g2 and one to g3 (their
    // retention reaches back to the last seen id), one to g4 (nothing before the id, three while
    // away, two kept: it cannot reach back either).
    for (i, topic) in ["g1", "g2", "g1", "g4", "g3", "g1", "g4", "g1", "g4", "g1"]
        .iter()
        .enumerate()
    {
        published.push(publish(daemon.addr, topic, &format!("{topic} away {i}")));
    }
    let retained_after = |held: &[&str]| -> Vec<Published> {
        let mut kept: Vec<Published> = Vec::new();
        for topic in held {
            let of_topic: Vec<Published> = expected_for(&published, &[topic])
                .into_iter()
                .filter(|p| id_key(&p.id) > id_key(&last_seen))
                .collect();
            let skip = of_topic.len().saturating_sub(2);
            kept.extend(of_topic.into_iter().skip(skip));
        }
        kept.sort_by_key(|p| id_key(&p.id));
        kept
    };

    // One topic out of retention.
    let path = multi_path(&topics);
    let mut three = if by_query {
        Subscription::open(daemon.addr, &format!("{path}&lastEventId={last_seen}"), &[])
    } else {
        Subscription::open(daemon.addr, &path, &[("Last-Event-ID", &last_seen)])
    };
    assert_gap(&three.next_event(), "g1");
    let expected = retained_after(&topics);
    assert_eq!(expected.len(), 2 + 1 + 1);
    assert_exactly(&mut three, &expected, how);

    // Two out of retention: both gap events (in either order) before any event.
    let four = ["g1", "g2", "g3", "g4"];
    let path = multi_path(&four);
    let mut sub = if by_query {
        Subscription::open(daemon.addr, &format!("{path}&lastEventId={last_seen}"), &[])
    } else {
        Subscription::open(daemon.addr, &path, &[("Last-Event-ID", &last_seen)])
    };
    let mut gaps: Vec<String> = (0..2)
        .map(|_| {
            let gap = sub.next_event();
            assert_eq!(
                (gap.event.as_deref(), gap.id.as_deref()),
                (Some("ssed-gap"), None),
                "{how}: the gap events come first"
            );
            gap.data
        })
        .collect();
    gaps.sort();
    assert_eq!(gaps, ["g1", "g4"], "{how}");
    let expected = retained_after(&four);
    assert_eq!(expected.len(), 2 + 1 + 1 + 2);
    assert_exactly(&mut sub, &expected, how);

    // Then live, on both.
    let live = publish(daemon.addr, "g3", &format!("live {how}"));
    assert_exactly(&mut three, std::slice::from_ref(&live), how);
    assert_exactly(&mut sub, std::slice::from_ref(&live), how);
}

// ---- 4. limits, refusals and authorization -------------------------------------------------------

/// A subscribe answered with a refusal: its status and a body saying why.
#[track_caller]
fn assert_refused(addr: SocketAddr, path: &str, headers: &[(&str, &str)], status: u16) {
    let response = request(addr, "GET", path, headers, b"");
    assert_eq!(response.status, status, "{path}: {response:?}");
    assert!(
        !response.body_text().trim().is_empty(),
        "{path}: a refusal says why"
    );
}

#[track_caller]
fn assert_stream(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) {
    let response = request(addr, "GET", path, headers, b"");
    assert_eq!(response.status, 200, "{path}: {response:?}");
    assert_eq!(
        response.header("content-type").as_deref(),
        Some("text/event-stream"),
        "{path}"
    );
}

#[test]
fn too_many_no_invalid_or_mixed_topics_are_400_and_duplicates_count_once() {
    let daemon = Daemon::start(&["--max-topics-per-subscriber", "3"]);
    let addr = daemon.addr;
    assert_stream(addr, "/events?topic=a&topic=b&topic=c", &[]);
    assert_refused(addr, "/events?topic=a&topic=b&topic=c&topic=d", &[], 400);
    // Duplicates collapse, however spelt: three distinct topics.
    assert_stream(
        addr,
        "/events?topic=a&topic=b&topic=a&topic=group%2F1&topic=group/1",
        &[],
    );
    assert_refused(
        addr,
        "/events?topic=a&topic=b&topic=a&topic=group%2F1&topic=group/2",
        &[],
        400,
    );
    // No topic at all.
    assert_refused(addr, "/events", &[], 400);
    assert_refused(addr, "/events?x=1", &[], 400);
    assert_refused(addr, "/events?", &[], 400);
    // Invalid topics, alone or among valid ones.
    let long = "t".repeat(257);
    for bad in [
        "",
        "a%20b",
        "a//b",
        "/a",
        "a/",
        "..",
        "a/../b",
        "a/./b",
        "%2E%2E",
        "a%2F%2E%2E%2Fb",
        "caf%C3%A9",
        "a%zz",
        "a?b",
        "a%00",
        &long,
    ] {
        assert_refused(addr, &format!("/events?topic={bad}"), &[], 400);
        assert_refused(addr, &format!("/events?topic=ok&topic={bad}"), &[], 400);
    }
    // The boundaries of the name rule are accepted.
    let longest = "t".repeat(256);
    assert_stream(addr, &format!("/events?topic={longest}"), &[]);
    assert_stream(addr, "/events?topic=A-Z_a.z~0/9&topic=.x/x.", &[]);
    // One form or the other.
    assert_refused(addr, "/events/a?topic=b", &[], 400);
    assert_refused(addr, "/events/a?topic=a", &[], 400);
    // /events/<topic> keeps working, with other query parameters.
    assert_stream(addr, "/events/a", &[]);
    assert_stream(addr, "/events/a?lastEventId=1-0", &[]);
    // Refusals leave no subscriber behind.
    wait_for_metric(&daemon, "ssed_subscribers", 0.0);

    // A duplicate topic gets each event once.
    let mut dup = Subscription::open(addr, "/events?topic=a&topic=a&topic=g%2F1&topic=g/1", &[]);
    let published = [
        publish(addr, "a", "one"),
        publish(addr, "g/1", "two"),
        publish(addr, "b", "not held"),
        publish(addr, "a", "three"),
    ];
    let expected = expected_for(&published, &["a", "g/1"]);
    assert_exactly(&mut dup, &expected, "duplicates");
    let marker = publish(addr, "g/1", "marker");
    assert_exactly(&mut dup, std::slice::from_ref(&marker), "nothing twice");
    assert_eq!(daemon.metric("ssed_subscribers"), 1.0);
}

#[test]
fn the_topic_limit_defaults_to_32_and_is_read_from_the_environment() {
    let names: Vec<String> = (0..33).map(|i| format!("t{i}")).collect();
    let path = |n: usize| {
        let topics: Vec<&str> = names[..n].iter().map(String::as_str).collect();
        multi_path(&topics)
    };
    let default = Daemon::start(&[]);
    assert_stream(default.addr, &path(32), &[]);
    assert_refused(default.addr, &path(33), &[], 400);

    let from_env = Daemon::start_with_env(&[], &[("SSED_MAX_TOPICS_PER_SUBSCRIBER", "2")]);
    assert_stream(from_env.addr, &path(2), &[]);
    assert_refused(from_env.addr, &path(3), &[], 400);
    // The flag wins over the environment.
    let both = Daemon::start_with_env(
        &["--max-topics-per-subscriber", "4"],
        &[("SSED_MAX_TOPICS_PER_SUBSCRIBER", "2")],
    );
    assert_stream(both.addr, &path(4), &[]);
    assert_refused(both.addr, &path(5), &[], 400);

    // At most 64: a connection's topics, its members, are numbered in 6 bits.
    let names: Vec<String> = (0..65).map(|i| format!("t{i}")).collect();
    let path = |n: usize| {
        let topics: Vec<&str> = names[..n].iter().map(String::as_str).collect();
        multi_path(&topics)
    };
    let most = Daemon::start(&["--max-topics-per-subscriber", "64"]);
    let mut sub = Subscription::open(most.addr, &path(64), &[]);
    assert_refused(most.addr, &path(65), &[], 400);
    let published: Vec<Published> = [63, 0, 31]
        .iter()
        .map(|&i| publish(most.addr, &names[i], &format!("to t{i}")))
        .collect();
    assert_exactly(
        &mut sub,
        &published,
        "the first, middle and last of 64 topics",
    );
    for bad in ["0", "65"] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_ssed"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--max-topics-per-subscriber",
                bad,
            ])
            .output()
            .unwrap();
        assert!(
            !output.status.success(),
            "--max-topics-per-subscriber {bad} is refused at startup"
        );
    }
}

#[test]
fn with_auth_every_topic_must_be_granted() {
    let daemon = Daemon::start(&[
        "--jwt-key",
        SECRET,
        "--publish-token",
        PUBLISH_TOKEN,
        "--public-topic",
        "open/*",
    ]);
    let addr = daemon.addr;
    let token = hs256(&["--subscribe", "users/42/*", "--subscribe", "news"]);
    let auth = format!("Bearer {token}");
    let with_token: &[(&str, &str)] = &[("Authorization", &auth)];

    let refused = |path: &str, headers: &[(&str, &str)], status: u16, reason: &str| {
        let before = auth_failures(&daemon, reason);
        assert_refused(addr, path, headers, status);
        assert_eq!(auth_failures(&daemon, reason), before + 1.0, "{path}");
    };
    // One topic not granted refuses the whole request, wherever it stands.
    refused(
        "/events?topic=news&topic=users%2F7%2Finbox",
        with_token,
        403,
        "not_granted",
    );
    refused(
        "/events?topic=sports&topic=news&topic=users/42/inbox",
        with_token,
        403,
        "not_granted",
    );
    refused(
        "/events?topic=open/room&topic=users/42/a&topic=users/421/b",
        with_token,
        403,
        "not_granted",
    );
    // No token: refused as for one topic, unless every topic is public.
    refused(
        "/events?topic=news&topic=users/42/inbox",
        &[],
        401,
        "missing_token",
    );
    assert_stream(addr, "/events?topic=open/a&topic=open/b/c", &[]);
    wait_for_metric(&daemon, "ssed_subscribers", 0.0);

    // All granted (and public): a stream with every topic's events.
    let topics = ["news", "users/42/inbox", "users/42/outbox", "open/room"];
    let mut sub = Subscription::open(addr, &multi_path(&topics), with_token);
    let publisher = format!("Bearer {PUBLISH_TOKEN}");
    let publisher: &[(&str, &str)] = &[("Authorization", &publisher)];
    let published: Vec<Published> = [
        "users/42/inbox",
        "users/7/inbox",
        "news",
        "open/room",
        "sports",
        "users/42/outbox",
    ]
    .iter()
    .map(|t| publish_to(addr, t, None, &format!("for {t}"), publisher))
    .collect();
    let expected = expected_for(&published, &topics);
    assert_eq!(expected.len(), 4);
    assert_exactly(&mut sub, &expected, "granted topics");
    assert_eq!(daemon.metric("ssed_subscribers"), 1.0);
}

// ---- 5. two workers ----------------------------------------------------------------------------

#[test]
fn with_two_workers_every_connection_gets_its_exact_sequence_whichever_worker_it_is_on() {
    let daemon = Daemon::start(&["--workers", "2", "--heartbeat", "0"]);
    let addr = daemon.addr;
    let sets: [&[&str]; 3] = [&["a", "b"], &["b", "c/d", "e"], &["e", "a"]];
    let mut subs: Vec<(Subscription, usize, &[&str])> = Vec::new();
    for held in sets {
        for (sub, worker) in on_both_workers(addr, &multi_path(held), &[]) {
            subs.push((sub, worker, held));
        }
    }
    // Three publishers at once, each publish on a fresh connection, so that publishes land on
    // both workers.
    let publishers: Vec<_> = (0..3)
        .map(|p| {
            std::thread::spawn(move || {
                let topics = ["a", "b", "c/d", "e", "f"];
                (0..20)
                    .map(|i| publish(addr, topics[(i + p) % 5], &format!("{p}:{i}")))
                    .collect::<Vec<Published>>()
            })
        })
        .collect();
    let published: Vec<Published> = publishers
        .into_iter()
        .flat_map(|p| p.join().unwrap())
        .collect();
    let ids: BTreeSet<&str> = published.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids.len(), 60, "every publish has its own id");
    for (sub, worker, held) in &mut subs {
        let expected = expected_for(&published, held);
        assert_exactly(sub, &expected, &format!("{held:?} on worker {worker}"));
    }
    // Nothing more is pending.
    let marker = publish(addr, "e", "marker");
    for (sub, worker, held) in &mut subs {
        if held.contains(&"e") {
            assert_exactly(
                sub,
                std::slice::from_ref(&marker),
                &format!("{held:?} on worker {worker}: the marker next"),
            );
        }
    }
}

#[test]
fn with_two_workers_resume_is_the_same_on_both() {
    let daemon = Daemon::start(&["--workers", "2", "--history", "6"]);
    let addr = daemon.addr;
    let topics = ["w1", "w2", "w3"];
    let mut published = Vec::new();
    for i in 0..24 {
        // w3 gets most of them: it falls out of retention for an id early on.
        let topic = ["w1", "w3", "w2", "w3"][i % 4];
        published.push(publish(addr, topic, &format!("{topic} {i}")));
    }
    let all = expected_for(&published, &topics);
    // Late enough that w1 and w2 reach back (6 each kept of 6), w3 does not (6 of 12 kept).
    let last_seen = all[3].id.clone();
    let mut missed: Vec<Published> = Vec::new();
    for topic in topics {
        let of_topic = expected_for(&published, &[topic]);
        let skip = of_topic.len() - 6;
        missed.extend(
            of_topic
                .into_iter()
                .skip(skip)
                .filter(|p| id_key(&p.id) > id_key(&last_seen)),
        );
    }
    missed.sort_by_key(|p| id_key(&p.id));
    let mut subs = on_both_workers(addr, &multi_path(&topics), &[("Last-Event-ID", &last_seen)]);
    for (sub, worker) in &mut subs {
        assert_gap(&sub.next_event(), "w3");
        assert_exactly(sub, &missed, &format!("replay on worker {worker}"));
    }
    let live = publish(addr, "w2", "live");
    for (sub, worker) in &mut subs {
        assert_exactly(
            sub,
            std::slice::from_ref(&live),
            &format!("live on worker {worker}"),
        );
    }
}

// ---- 6. several processes sharing Redis ------------------------------------------------------------

#[test]
fn with_redis_subscribers_on_one_process_get_the_exact_sequences_of_publishes_to_both() {
    let redis = RedisServer::start();
    let a = Daemon::with_redis(&redis, "127.0.0.1:0", &["--heartbeat", "0"]);
    let b = Daemon::with_redis(&redis, "127.0.0.1:0", &["--heartbeat", "0"]);
    let sets: [&[&str]; 3] = [&["n", "m"], &["m", "k/1", "j"], &["j", "n", "k/1"]];
    let mut on_a: Vec<Subscription> = sets
        .iter()
        .map(|held| Subscription::open(a.addr, &multi_path(held), &[]))
        .collect();
    let mut on_b: Vec<Subscription> = sets
        .iter()
        .map(|held| Subscription::open(b.addr, &multi_path(held), &[]))
        .collect();
    let topics = ["n", "m", "k/1", "j", "none"];
    let mut published = Vec::new();
    // First to B only, then alternating.
    for i in 0..20 {
        published.push(publish(b.addr, topics[i % 5], &format!("via b {i}")));
    }
    for i in 0..20 {
        let process = if i % 2 == 0 { &a } else { &b };
        published.push(publish(
            process.addr,
            topics[(i * 3) % 5],
            &format!("mixed {i}"),
        ));
    }
    for (subs, process) in [(&mut on_a, "A"), (&mut on_b, "B")] {
        for (sub, held) in subs.iter_mut().zip(sets) {
            let expected = expected_for(&published, held);
            assert_exactly(sub, &expected, &format!("{held:?} on {process}"));
        }
    }

    // Resume on the other process: read part of it on A, leave, miss events published to both,
    // come back on B.
    let held = ["n", "k/1", "j"];
    let mut sub = Subscription::open(a.addr, &multi_path(&held), &[]);
    let mut more = Vec::new();
    for i in 0..6 {
        more.push(publish(a.addr, topics[i % 5], &format!("seen? {i}")));
    }
    let first = expected_for(&more, &held);
    assert_exactly(&mut sub, &first[..2], "on A before leaving");
    let last_seen = first[1].id.clone();
    drop(sub);
    for i in 0..10 {
        let process = if i % 3 == 0 { &a } else { &b };
        more.push(publish(process.addr, topics[i % 5], &format!("away {i}")));
    }
    let missed: Vec<Published> = expected_for(&more, &held)
        .into_iter()
        .filter(|p| id_key(&p.id) > id_key(&last_seen))
        .collect();
    let mut by_header =
        Subscription::open(b.addr, &multi_path(&held), &[("Last-Event-ID", &last_seen)]);
    let mut by_query = Subscription::open(
        b.addr,
        &format!("{}&lastEventId={last_seen}", multi_path(&held)),
        &[],
    );
    assert_exactly(&mut by_header, &missed, "resumed on B by header");
    assert_exactly(&mut by_query, &missed, "resumed on B by query");
    let live = publish(a.addr, "j", "live from A");
    assert_exactly(&mut by_header, std::slice::from_ref(&live), "live on B");
    assert_exactly(&mut by_query, std::slice::from_ref(&live), "live on B");
}

#[test]
fn with_redis_a_process_started_later_replays_several_topics_from_redis() {
    let redis = RedisServer::start();
    let first = Daemon::with_redis(&redis, "127.0.0.1:0", &[]);
    let topics = ["old/1", "old2", "old3"];
    let mut published = Vec::new();
    for i in 0..12 {
        published.push(publish(first.addr, topics[i % 3], &format!("old {i}")));
        published.push(publish(first.addr, "other", &format!("other {i}")));
    }
    let all = expected_for(&published, &topics);
    let last_seen = all[4].id.clone();
    // A process that saw none of it: the replay reads each topic's history from Redis.
    let later = Daemon::with_redis(&redis, "127.0.0.1:0", &[]);
    let mut sub = Subscription::open(
        later.addr,
        &multi_path(&topics),
        &[("Last-Event-ID", &last_seen)],
    );
    assert_exactly(&mut sub, &all[5..], "history from Redis, merged");
    let live = [
        publish(first.addr, "old3", "live 1"),
        publish(later.addr, "old/1", "live 2"),
    ];
    assert_exactly(&mut sub, &live, "then live");
}

// ---- 7. --topic-event-types --------------------------------------------------------------------

#[test]
fn topic_event_types_name_untyped_events_after_their_topic_and_keep_publisher_types() {
    let daemon = Daemon::start(&["--topic-event-types"]);
    let addr = daemon.addr;
    let topics = ["user/42", "news"];
    let mut multi = Subscription::open(addr, &multi_path(&topics), &[]);
    let mut single = Subscription::open(addr, "/events/user/42", &[]);
    let sent = [
        publish_to(addr, "user/42", None, "untyped to user", &[]),
        publish_to(addr, "news", Some("breaking"), "typed news", &[]),
        publish_to(addr, "news", None, "untyped news", &[]),
        publish_to(addr, "user/42", Some("user%2F7"), "typed user", &[]),
    ];
    let types: Vec<(String, Option<String>)> = next_events(&mut multi, 4)
        .into_iter()
        .map(|(id, event, _)| (id, event))
        .collect();
    let expected: Vec<(String, Option<String>)> = [
        Some("user/42"),
        Some("breaking"),
        Some("news"),
        Some("user/7"),
    ]
    .iter()
    .zip(&sent)
    .map(|(t, p)| (p.id.clone(), t.map(str::to_string)))
    .collect();
    assert_eq!(types, expected, "multi-topic connection");
    // The event is the same for a single-topic subscriber.
    let single_types: Vec<Option<String>> = next_events(&mut single, 2)
        .into_iter()
        .map(|(_, event, _)| event)
        .collect();
    assert_eq!(
        single_types,
        [Some("user/42".to_string()), Some("user/7".to_string())]
    );

    // The gap event keeps its own type.
    let retained = Daemon::start(&["--topic-event-types", "--history", "1"]);
    let old: Vec<Published> = (0..3)
        .map(|i| publish(retained.addr, "news", &format!("n{i}")))
        .collect();
    let mut resumed = Subscription::open(
        retained.addr,
        &multi_path(&topics),
        &[("Last-Event-ID", &old[0].id)],
    );
    assert_gap(&resumed.next_event(), "news");
    let event = resumed.next_event();
    assert_eq!(
        (
            event.id.as_ref(),
            event.event.as_deref(),
            event.data.as_str()
        ),
        (Some(&old[2].id), Some("news"), "n2")
    );

    // Without the flag an untyped event has no type.
    let plain = Daemon::start(&[]);
    let mut sub = Subscription::open(plain.addr, &multi_path(&topics), &[]);
    let p = publish(plain.addr, "news", "untyped");
    assert_exactly(&mut sub, std::slice::from_ref(&p), "no --topic-event-types");
    let from_env = Daemon::start_with_env(&[], &[("SSED_TOPIC_EVENT_TYPES", "true")]);
    let mut sub = Subscription::open(from_env.addr, &multi_path(&topics), &[]);
    let p = publish(from_env.addr, "news", "untyped");
    let event = sub.next_event();
    assert_eq!(
        (event.id, event.event.as_deref()),
        (Some(p.id), Some("news")),
        "SSED_TOPIC_EVENT_TYPES=true"
    );
}

// ---- more: what else a multi-topic connection must get right ---------------------------------------

/// A connection with a tiny receive window (`recv_buffer` bytes), not read yet.
fn small_window(addr: SocketAddr, recv_buffer: usize) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(recv_buffer).unwrap();
    socket.connect(&addr.into()).unwrap();
    socket.into()
}

#[test]
fn a_replay_larger_than_the_socket_buffers_arrives_whole_and_merged_with_live_events() {
    let daemon = Daemon::start(&["--heartbeat", "0", "--send-buffer", "4096"]);
    let topics = ["big/1", "big/2", "big/3"];
    let mut published = Vec::new();
    for i in 0..150 {
        let topic = topics[(i * 7 / 3) % 3];
        let fill = char::from(b'A' + (i % 26) as u8);
        let data = format!(
            "{i} {topic} {}",
            fill.to_string().repeat(1500 + (i * 131) % 1000)
        );
        published.push(publish(daemon.addr, topic, &data));
    }
    let last_seen = published[0].id.clone();
    // The replay (~300 KB) cannot go out at once: the client does not read while more events
    // are published, live, to the same topics.
    let mut sub = RawStream::over(
        small_window(daemon.addr, 4096),
        &multi_path(&topics),
        &[("Last-Event-ID", &last_seen)],
    );
    for i in 0..30 {
        let topic = topics[i % 3];
        published.push(publish(daemon.addr, topic, &format!("live {i} {topic}")));
        published.push(publish(daemon.addr, "not/held", &format!("live {i}")));
    }
    let expected: Vec<Published> = expected_for(&published, &topics)
        .into_iter()
        .filter(|p| id_key(&p.id) > id_key(&last_seen))
        .collect();
    assert_eq!(expected.len(), 149 + 30);
    for (n, p) in expected.iter().enumerate() {
        let event = parse_strict(&sub.next_block()).unwrap();
        assert_eq!(
            (event.id.as_ref(), &event.data),
            (Some(&p.id), &p.data),
            "event {n}"
        );
    }
    assert_eq!(daemon.metric("ssed_slow_subscribers_dropped_total"), 0.0);
    let marker = publish(daemon.addr, "big/2", "marker");
    assert_eq!(parse_strict(&sub.next_block()).unwrap().id, Some(marker.id));
}

#[test]
fn a_malformed_last_event_id_gets_a_gap_event_per_topic_then_everything_merged() {
    let daemon = Daemon::start(&[]);
    let topics = ["m1", "m2", "m/3"];
    let published: Vec<Published> = ["m1", "m/3", "m2", "m1", "other", "m/3"]
        .iter()
        .enumerate()
        .map(|(i, t)| publish(daemon.addr, t, &format!("{t} {i}")))
        .collect();
    let expected = expected_for(&published, &topics);
    let path = multi_path(&topics);
    let mut by_header = Subscription::open(daemon.addr, &path, &[("Last-Event-ID", "yesterday")]);
    let mut by_query = Subscription::open(daemon.addr, &format!("{path}&lastEventId=%zz"), &[]);
    for (sub, how) in [(&mut by_header, "header"), (&mut by_query, "query")] {
        let mut gaps: Vec<String> = (0..3)
            .map(|_| {
                let gap = sub.next_event();
                assert_eq!(
                    (gap.event.as_deref(), gap.id.as_deref()),
                    (Some("ssed-gap"), None),
                    "{how}: a gap event per topic first"
                );
                gap.data
            })
            .collect();
        gaps.sort();
        assert_eq!(gaps, ["m/3", "m1", "m2"], "{how}");
        assert_exactly(sub, &expected, how);
    }
    let live = publish(daemon.addr, "m2", "live");
    for sub in [&mut by_header, &mut by_query] {
        assert_exactly(sub, std::slice::from_ref(&live), "live");
    }
}

#[test]
fn resuming_on_either_worker_right_after_publishing_gets_exactly_what_follows() {
    let daemon = Daemon::start(&["--workers", "2"]);
    let mut held = Vec::new();
    for attempt in 0..30 {
        let (a, b) = (format!("ra{attempt}"), format!("rb/{attempt}"));
        publish(daemon.addr, &b, "old");
        // The id is fresh from one worker; the subscriber may land on the other.
        let id = publish(daemon.addr, &a, "a").id;
        let mut sub = Subscription::open(
            daemon.addr,
            &multi_path(&[&a, &b]),
            &[("Last-Event-ID", &id)],
        );
        let next = [
            publish(daemon.addr, &b, "b"),
            publish(daemon.addr, &a, "a2"),
        ];
        assert_exactly(&mut sub, &next, &format!("attempt {attempt}"));
        held.push(sub);
    }
}

#[test]
fn an_idle_multi_topic_connection_gets_heartbeats() {
    let daemon = Daemon::start(&["--heartbeat", "1"]);
    let mut sub = Subscription::open(daemon.addr, "/events?topic=q1&topic=q2", &[]);
    assert_eq!(sub.next_comment(), "heartbeat");
    assert_eq!(sub.next_comment(), "heartbeat");
    let p = publish(daemon.addr, "q2", "after heartbeats");
    assert_exactly(
        &mut sub,
        std::slice::from_ref(&p),
        "an event between heartbeats",
    );
    assert_eq!(sub.next_comment(), "heartbeat");
}

#[test]
fn a_multi_topic_stream_ends_when_its_token_expires() {
    let daemon = Daemon::start(&["--jwt-key", SECRET, "--publish-token", PUBLISH_TOKEN]);
    let publisher = format!("Bearer {PUBLISH_TOKEN}");
    let publisher: &[(&str, &str)] = &[("Authorization", &publisher)];
    let lasting = format!(
        "Bearer {}",
        hs256(&["--subscribe", "e1", "--subscribe", "e2", "--ttl", "3600"])
    );
    let short = format!(
        "Bearer {}",
        hs256(&["--subscribe", "e1", "--subscribe", "e2", "--ttl", "2"])
    );
    let path = multi_path(&["e1", "e2"]);
    let mut survivor = Subscription::open(daemon.addr, &path, &[("Authorization", &lasting)]);
    let mut ending = Subscription::open(daemon.addr, &path, &[("Authorization", &short)]);
    let first = publish_to(daemon.addr, "e2", None, "before exp", publisher);
    for sub in [&mut survivor, &mut ending] {
        assert_exactly(sub, std::slice::from_ref(&first), "before exp");
    }
    // try_next_event bounds the wait by PATIENCE: the stream must end, with no event.
    assert_eq!(ending.try_next_event(), None, "the stream ended at exp");
    let after = publish_to(daemon.addr, "e1", None, "after exp", publisher);
    assert_exactly(
        &mut survivor,
        std::slice::from_ref(&after),
        "the other goes on",
    );
}

#[test]
fn a_multi_topic_connection_refused_at_the_topic_limit_creates_none() {
    let daemon = Daemon::start(&["--workers", "1", "--max-topics", "4"]);
    let _held = Subscription::open(daemon.addr, "/events?topic=k1&topic=k2", &[]);
    // Two more topics fit; three do not, and none of them is kept: two others fit after it.
    let (status, _) = subscribe_status(daemon.addr, "/events?topic=k1&topic=n1&topic=n2&topic=n3");
    assert_eq!(status, 503);
    assert_eq!(rejected(&daemon, "too_many_topics"), 1.0);
    let mut fits = Subscription::open(daemon.addr, "/events?topic=m1&topic=k2&topic=m2", &[]);
    let published = [
        publish(daemon.addr, "m2", "fits"),
        publish(daemon.addr, "k1", "not held"),
        publish(daemon.addr, "m1", "fits too"),
    ];
    let expected = expected_for(&published, &["m1", "k2", "m2"]);
    assert_exactly(&mut fits, &expected, "the topics that fit");
    wait_for_metric(&daemon, "ssed_topics", 4.0);
}

#[test]
fn multi_topic_connections_leave_no_topic_behind() {
    let daemon = Daemon::start(&["--workers", "1"]);
    // The topics gauge is refreshed once a second: seeing 2 with the marker held proves a
    // refresh after it came; it leaves only once every one-shot connection is closed, so the
    // final 0 is a refresh after all of them.
    let marker = Subscription::open(daemon.addr, "/events?topic=k1&topic=k2", &[]);
    wait_for_metric(&daemon, "ssed_topics", 2.0);
    let salt = std::process::id();
    for i in 0..60 {
        // Read the stream head, then leave.
        drop(Subscription::open(
            daemon.addr,
            &format!("/events?topic=once-{salt}-{i}&topic=k1&topic=twice-{salt}/{i}"),
            &[],
        ));
    }
    for i in 60..120 {
        // Ask and leave at once, without reading anything.
        let mut stream = daemon.connect();
        stream
            .write_all(
                format!("GET /events?topic=once-{salt}-{i}&topic=k2&topic=twice-{salt}/{i} HTTP/1.1\r\nHost: t\r\n\r\n")
                    .as_bytes(),
            )
            .unwrap();
    }
    // The marker and this /metrics request.
    wait_for_metric(&daemon, "ssed_connections", 2.0);
    assert_eq!(daemon.metric("ssed_subscribers"), 1.0);
    drop(marker);
    wait_for_metric(&daemon, "ssed_topics", 0.0);
}

/// The status of a subscribe request (and its connection, held).
fn subscribe_status(addr: SocketAddr, path: &str) -> (u16, TcpStream) {
    let mut stream = connect(addr);
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).unwrap(), 1, "{head:?}");
        head.push(byte[0]);
    }
    (
        String::from_utf8_lossy(&head[9..12]).parse().unwrap(),
        stream,
    )
}

#[test]
fn each_dropped_multi_topic_connection_is_counted_once() {
    let daemon = Daemon::start(&[
        "--workers",
        "1",
        "--heartbeat",
        "0",
        "--history",
        "4",
        "--history-bytes",
        "65536",
        "--send-buffer",
        "4096",
    ]);
    // Five connections that never read: three on three topics, two on one.
    let stalled: Vec<TcpStream> = (0..5)
        .map(|i| {
            let path = if i % 2 == 0 {
                "/events?topic=f1&topic=f2&topic=f3"
            } else {
                "/events/f2"
            };
            let mut stream = small_window(daemon.addr, 4096);
            stream
                .write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
                .unwrap();
            stream
        })
        .collect();
    wait_for_metric(&daemon, "ssed_subscribers", 5.0);
    // Sixty events to the three topics in one write: several topics have new events in the
    // same turn of the loop, and each stalled connection falls out of retention in all three.
    let body = "x".repeat(3000);
    let mut requests = Vec::new();
    for i in 0..60 {
        let topic = ["f1", "f2", "f3"][i % 3];
        requests.extend_from_slice(
            format!(
                "POST /events/{topic} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
    }
    let mut publisher = daemon.connect();
    publisher.write_all(&requests).unwrap();
    let mut answers = std::io::BufReader::new(publisher);
    for i in 0..60 {
        assert_eq!(read_response(&mut answers).status, 200, "publish {i}");
    }
    wait_for_metric(&daemon, "ssed_subscribers", 0.0);
    assert_eq!(
        daemon.metric("ssed_slow_subscribers_dropped_total"),
        5.0,
        "five connections dropped, each counted once"
    );
    drop(stalled);
}

#[test]
fn connections_leaving_during_long_fan_out_passes_cost_the_others_nothing() {
    // One worker, and more subscribers per topic than one pass slice (256): passes span turns of
    // the loop while connections (multi-topic members and single-topic subscribers alike) leave.
    let daemon = Daemon::start(&["--workers", "1", "--heartbeat", "0"]);
    let addr = daemon.addr;
    let mut subs: Vec<(Subscription, &[&str])> = Vec::new();
    for i in 0..420 {
        let (path, held): (&str, &[&str]) = match i % 3 {
            0 => ("/events?topic=p&topic=q", &["p", "q"]),
            1 => ("/events?topic=q&topic=r&topic=p", &["p", "q", "r"]),
            _ => ("/events/p", &["p"]),
        };
        subs.push((Subscription::open(addr, path, &[]), held));
    }
    wait_for_metric(&daemon, "ssed_subscribers", 420.0);
    let mut kept = Vec::new();
    let mut gone = Vec::new();
    for (i, sub) in subs.into_iter().enumerate() {
        if i % 2 == 1 {
            gone.push(sub);
        } else {
            kept.push(sub);
        }
    }
    let publisher = std::thread::spawn(move || {
        (0..30)
            .map(|i| publish(addr, ["p", "q", "r", "s"][i % 4], &format!("n{i}")))
            .collect::<Vec<Published>>()
    });
    // Leave while the events go out.
    for sub in gone {
        drop(sub);
    }
    let published = publisher.join().unwrap();
    for (n, (sub, held)) in kept.iter_mut().enumerate() {
        let expected = expected_for(&published, held);
        assert_exactly(sub, &expected, &format!("connection {n} on {held:?}"));
    }
    wait_for_metric(&daemon, "ssed_subscribers", 210.0);
    let marker = publish(addr, "p", "marker");
    for (sub, _) in &mut kept {
        assert_exactly(sub, std::slice::from_ref(&marker), "the marker next");
    }
}

#[test]
fn with_redis_a_later_process_gaps_only_the_topic_whose_history_it_cannot_read_whole() {
    let redis = RedisServer::start();
    let first = Daemon::with_redis(&redis, "127.0.0.1:0", &[]);
    let big = "x".repeat(10_000);
    let mut published = Vec::new();
    for i in 0..10 {
        // `big` gets ten 10 KB events, `small` small ones, `never` none at all.
        published.push(publish(first.addr, "big", &format!("{i}{big}")));
        published.push(publish(first.addr, "small", &format!("small {i}")));
    }
    let last_seen = published[1].id.clone();
    // A process that saw none of it, whose history reads hold 25 KB: two of big's events, all
    // of small's.
    let later = Daemon::with_redis(&redis, "127.0.0.1:0", &["--history-bytes", "25000"]);
    let topics = ["big", "small", "never"];
    let mut sub = Subscription::open(
        later.addr,
        &multi_path(&topics),
        &[("Last-Event-ID", &last_seen)],
    );
    assert_gap(&sub.next_event(), "big");
    let big_kept: Vec<Published> = expected_for(&published, &["big"])
        .into_iter()
        .skip(8)
        .collect();
    let mut expected: Vec<Published> = expected_for(&published, &["small"])
        .into_iter()
        .filter(|p| id_key(&p.id) > id_key(&last_seen))
        .chain(big_kept)
        .collect();
    expected.sort_by_key(|p| id_key(&p.id));
    assert_exactly(
        &mut sub,
        &expected,
        "small whole, big's retained two, no gap for never",
    );
    let live = [
        publish(first.addr, "never", "live 1"),
        publish(later.addr, "big", "live 2"),
    ];
    assert_exactly(&mut sub, &live, "then live");
}

#[test]
fn sigterm_flushes_multi_topic_streams_then_tells_them_to_come_back() {
    let mut daemon = Daemon::start(&["--heartbeat", "0"]);
    let sets: [&[&str]; 2] = [&["s1", "s2"], &["s2", "s/3", "s4"]];
    let mut subs: Vec<(Subscription, &[&str])> = (0..10)
        .map(|i| {
            let held = sets[i % 2];
            (
                Subscription::open(daemon.addr, &multi_path(held), &[]),
                held,
            )
        })
        .collect();
    let published: Vec<Published> = (0..12)
        .map(|i| {
            let topic = ["s1", "s2", "s/3", "s4"][i % 4];
            publish(daemon.addr, topic, &format!("{topic} {i}"))
        })
        .collect();
    let status = daemon.terminate();
    assert!(status.success(), "exit status {status:?}");
    for (sub, held) in &mut subs {
        let expected = expected_for(&published, held);
        assert_exactly(
            sub,
            &expected,
            &format!("{held:?}: every event before closing"),
        );
        assert_eq!(sub.try_next_event(), None, "the stream ends");
        let retry = sub.retry.expect("a retry: field before closing");
        assert!((1000..5000).contains(&retry), "retry {retry}");
    }
}

#[test]
fn a_multi_topic_subscriber_that_sends_bytes_is_closed_and_counted() {
    let daemon = Daemon::start(&["--workers", "1"]);
    let mut bystander = Subscription::open(daemon.addr, "/events?topic=c1&topic=c2", &[]);
    let mut chatty = Subscription::open(daemon.addr, "/events?topic=c1&topic=c2", &[]);
    chatty.stream().write_all(b"hello?").unwrap();
    while chatty.try_next_event().is_some() {}
    assert_eq!(rejected(&daemon, "subscriber_input"), 1.0);
    let p = publish(daemon.addr, "c2", "after the chatter");
    assert_exactly(
        &mut bystander,
        std::slice::from_ref(&p),
        "the other goes on",
    );
    wait_for_metric(&daemon, "ssed_subscribers", 1.0);
}
