//! A zero-downtime upgrade, as docs/operations.md describes it: with --redis, start the new
//! process on the same port (SO_REUSEPORT), SIGTERM the old one, and every subscriber moves to
//! the new process by reconnecting with Last-Event-ID, missing nothing and receiving nothing
//! twice, while a publisher keeps publishing throughout.
//!
//! The subscribers behave like EventSource: on a close they wait the `retry:` they were given
//! (or 3 s, a browser's default), reconnect with the last id they saw, and drop an event that
//! was cut off by the close. They all live in one mio loop on one thread.

mod common;
use common::*;
use mio::net::TcpStream as MioStream;
use mio::{Events, Interest, Poll, Token};
use std::collections::{HashMap, HashSet};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SUBSCRIBERS: usize = 1000;
const TOPICS: [&str; 4] = ["upgrade/a", "upgrade/b", "upgrade/c", "upgrade/d"];
/// What EventSource waits before reconnecting when the server sent no `retry:`.
const DEFAULT_RETRY: Duration = Duration::from_secs(3);
/// The whole upgrade, reconnections included, must finish well within this.
const DEADLINE: Duration = Duration::from_secs(60);

/// An event id `ms-seq` as numbers, to compare ids by order.
fn id_key(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').expect("an ms-seq id");
    (ms.parse().unwrap(), seq.parse().unwrap())
}

/// Polls `probe` until it holds, panicking after `within`.
fn wait_until(what: &str, within: Duration, mut probe: impl FnMut() -> bool) {
    let start = Instant::now();
    while !probe() {
        assert!(
            start.elapsed() < within,
            "timed out after {within:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What the test thread can see of each subscriber while the client loop runs.
#[derive(Default, Clone)]
struct View {
    /// The generation (see `Clients::generation`) in which the current stream began, while one
    /// is open.
    streaming_since: Option<u32>,
    last_id: Option<String>,
}

struct Clients {
    views: Mutex<Vec<View>>,
    /// Bumped by the test to tell streams opened before a moment from those opened after it.
    generation: AtomicU32,
    stop: AtomicBool,
}

impl Clients {
    fn count(&self, pred: impl Fn(&View) -> bool) -> usize {
        self.views
            .lock()
            .unwrap()
            .iter()
            .filter(|v| pred(v))
            .count()
    }
}

/// One subscriber's connection and SSE parser state.
struct Client {
    topic: &'static str,
    stream: Option<MioStream>,
    head_done: bool,
    input: Vec<u8>,
    /// EventSource's "last event ID buffer": survives events and reconnections.
    last_id: Option<String>,
    data: Option<String>,
    retry: Duration,
    reconnect_at: Option<Instant>,
    received: Received,
    streams: usize,
    told_retry: usize,
}

/// Event ids and data, in the order a subscriber received them.
type Received = Vec<(String, String)>;

/// What each subscriber saw, for the assertions at the end.
struct Outcome {
    topic: &'static str,
    received: Received,
    streams: usize,
    told_retry: usize,
}

fn run_clients(addr: SocketAddr, shared: Arc<Clients>) -> Vec<Outcome> {
    let mut poll = Poll::new().unwrap();
    let mut events = Events::with_capacity(1024);
    let now = Instant::now();
    let mut clients: Vec<Client> = (0..SUBSCRIBERS)
        .map(|i| Client {
            topic: TOPICS[i % TOPICS.len()],
            stream: None,
            head_done: false,
            input: Vec::new(),
            last_id: None,
            data: None,
            retry: DEFAULT_RETRY,
            reconnect_at: Some(now),
            received: Vec::new(),
            streams: 0,
            told_retry: 0,
        })
        .collect();
    let mut scratch = vec![0u8; 64 * 1024];

    while !shared.stop.load(SeqCst) {
        let now = Instant::now();
        for (i, client) in clients.iter_mut().enumerate() {
            if client.reconnect_at.is_some_and(|at| at <= now) {
                client.reconnect_at = None;
                open(&poll, addr, i, client);
            }
        }
        poll.poll(&mut events, Some(Duration::from_millis(20)))
            .unwrap();
        for event in events.iter() {
            let i = event.token().0;
            let client = &mut clients[i];
            let Some(stream) = client.stream.as_mut() else {
                continue;
            };
            let mut closed = false;
            loop {
                match stream.read(&mut scratch) {
                    Ok(0) => {
                        closed = true;
                        break;
                    }
                    Ok(n) => client.input.extend_from_slice(&scratch[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => {
                        closed = true;
                        break;
                    }
                }
            }
            let generation = shared.generation.load(SeqCst);
            let ok = parse(client, &shared, i, generation);
            if closed || !ok {
                close(&poll, client, &shared, i);
            }
        }
    }
    clients
        .into_iter()
        .map(|c| Outcome {
            topic: c.topic,
            received: c.received,
            streams: c.streams,
            told_retry: c.told_retry,
        })
        .collect()
}

fn open(poll: &Poll, addr: SocketAddr, i: usize, client: &mut Client) {
    let attempt = (|| {
        let mut stream = TcpStream::connect(addr)?;
        let mut request = format!(
            "GET /events/{} HTTP/1.1\r\nHost: test\r\nAccept: text/event-stream\r\n",
            client.topic
        );
        if let Some(id) = &client.last_id {
            request.push_str(&format!("Last-Event-ID: {id}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes())?;
        stream.set_nonblocking(true)?;
        let mut stream = MioStream::from_std(stream);
        poll.registry()
            .register(&mut stream, Token(i), Interest::READABLE)?;
        Ok::<_, std::io::Error>(stream)
    })();
    match attempt {
        Ok(stream) => client.stream = Some(stream),
        // EventSource retries a failed connection after its reconnection time too.
        Err(_) => client.reconnect_at = Some(Instant::now() + client.retry),
    }
}

fn close(poll: &Poll, client: &mut Client, shared: &Clients, i: usize) {
    if let Some(mut stream) = client.stream.take() {
        let _ = poll.registry().deregister(&mut stream);
    }
    // An event the close cut short is never dispatched.
    client.input.clear();
    client.data = None;
    client.head_done = false;
    client.reconnect_at = Some(Instant::now() + client.retry);
    shared.views.lock().unwrap()[i].streaming_since = None;
}

/// Consumes the complete lines in the client's input; false if the answer is not a stream.
fn parse(client: &mut Client, shared: &Clients, i: usize, generation: u32) -> bool {
    if !client.head_done {
        let Some(end) = client.input.windows(4).position(|w| w == b"\r\n\r\n") else {
            return true;
        };
        if !client.input.starts_with(b"HTTP/1.1 200 ") {
            return false;
        }
        client.input.drain(..end + 4);
        client.head_done = true;
        client.streams += 1;
        shared.views.lock().unwrap()[i].streaming_since = Some(generation);
    }
    let mut consumed = 0;
    let mut dispatched = false;
    while let Some(nl) = client.input[consumed..].iter().position(|&b| b == b'\n') {
        let line = String::from_utf8(client.input[consumed..consumed + nl].to_vec()).unwrap();
        consumed += nl + 1;
        if line.is_empty() {
            if let Some(data) = client.data.take() {
                let id = client.last_id.clone().expect("every ssed event has an id");
                client.received.push((id, data));
                dispatched = true;
            }
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((&line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => client.last_id = Some(value.to_string()),
            "data" => match &mut client.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => client.data = Some(value.to_string()),
            },
            "retry" => {
                if let Ok(ms) = value.parse() {
                    client.retry = Duration::from_millis(ms);
                    client.told_retry += 1;
                }
            }
            _ => {}
        }
    }
    client.input.drain(..consumed);
    if dispatched {
        shared.views.lock().unwrap()[i].last_id = client.last_id.clone();
    }
    true
}

/// The publisher's record: events acknowledged with their id, and attempts whose outcome it
/// cannot know (the request went out, no answer came back: the process that took it may have
/// published it and been stopped before answering).
#[derive(Default)]
struct Published {
    acked: Vec<(&'static str, String, String)>,
    uncertain: HashSet<String>,
    refused: usize,
}

enum Answer {
    Acked(String),
    /// Certainly not published: no connection, or a 503.
    Refused,
    Unknown,
}

fn post(addr: SocketAddr, topic: &str, data: &str) -> Answer {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return Answer::Refused;
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let request = format!(
        "POST /events/{topic} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{data}",
        data.len()
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return Answer::Unknown;
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    if answer.starts_with("HTTP/1.1 200 ") {
        let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        Answer::Acked(body.trim().to_string())
    } else if answer.starts_with("HTTP/1.1 503 ") {
        Answer::Refused
    } else {
        Answer::Unknown
    }
}

fn run_publisher(addr: SocketAddr, stop: Arc<AtomicBool>, published: Arc<Mutex<Published>>) {
    let mut seq = 0usize;
    let mut attempt = 0usize;
    while !stop.load(SeqCst) {
        let topic = TOPICS[seq % TOPICS.len()];
        // Unique per attempt, so that a retried event is never mistaken for its first try.
        let data = format!("{topic} event {seq} attempt {attempt}");
        match post(addr, topic, &data) {
            Answer::Acked(id) => {
                published.lock().unwrap().acked.push((topic, id, data));
                seq += 1;
                attempt = 0;
            }
            Answer::Refused => {
                published.lock().unwrap().refused += 1;
                attempt += 1;
            }
            Answer::Unknown => {
                published.lock().unwrap().uncertain.insert(data);
                attempt += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// 1,000 streams need more descriptors than a default soft limit of 1,024 leaves.
fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

#[test]
fn subscribers_move_to_a_new_process_without_losing_or_repeating_an_event() {
    raise_open_file_limit();
    let redis = RedisServer::start();
    let mut old = Daemon::with_redis(&redis, "127.0.0.1:0", &[]);
    let addr = old.addr;

    let clients = Arc::new(Clients {
        views: Mutex::new(vec![View::default(); SUBSCRIBERS]),
        generation: AtomicU32::new(0),
        stop: AtomicBool::new(false),
    });
    let client_loop = {
        let clients = Arc::clone(&clients);
        std::thread::spawn(move || run_clients(addr, clients))
    };
    wait_until("every subscriber's stream to open", DEADLINE, || {
        clients.count(|v| v.streaming_since.is_some()) == SUBSCRIBERS
    });
    // Subscribed, not only answered: an event published now reaches every one of them.
    wait_until(
        "the old process to count every subscriber",
        DEADLINE,
        || try_metric(addr, "ssed_subscribers") == Some(SUBSCRIBERS as f64),
    );

    let published = Arc::new(Mutex::new(Published::default()));
    let stop_publishing = Arc::new(AtomicBool::new(false));
    let publisher = {
        let (stop, published) = (Arc::clone(&stop_publishing), Arc::clone(&published));
        std::thread::spawn(move || run_publisher(addr, stop, published))
    };
    let acked = || published.lock().unwrap().acked.len();
    wait_until("events to flow through the old process", DEADLINE, || {
        acked() >= 40
    });

    // The upgrade: the new process shares the port, then the old one is told to stop.
    let _new = Daemon::with_redis(&redis, &addr.to_string(), &[]);
    let before_switch = acked();
    wait_until("events to flow while both run", DEADLINE, || {
        acked() >= before_switch + 20
    });
    clients.generation.store(1, SeqCst);
    let status = old.terminate();
    assert!(status.success(), "the old process exited with {status:?}");
    let stopped_at = Instant::now();

    // Every stream opened after the old process was told to stop, and the new process (the
    // only one left on the port) holding all of them: everyone has moved.
    wait_until(
        "every subscriber to reconnect to the new process",
        DEADLINE,
        || {
            clients.count(|v| v.streaming_since == Some(1)) == SUBSCRIBERS
                && try_metric(addr, "ssed_subscribers") == Some(SUBSCRIBERS as f64)
        },
    );
    let moved_after = stopped_at.elapsed();
    let after_move = acked();
    wait_until("events to flow through the new process", DEADLINE, || {
        acked() >= after_move + 20
    });
    stop_publishing.store(true, SeqCst);
    publisher.join().unwrap();

    let published = std::mem::take(&mut *published.lock().unwrap());
    let mut last_of_topic: HashMap<&str, (u64, u64)> = HashMap::new();
    for (topic, id, _) in &published.acked {
        last_of_topic.insert(topic, id_key(id));
    }
    assert_eq!(last_of_topic.len(), TOPICS.len());
    let final_ids: Vec<(u64, u64)> = (0..SUBSCRIBERS)
        .map(|i| last_of_topic[TOPICS[i % TOPICS.len()]])
        .collect();
    wait_until(
        "every subscriber to receive its topic's last event",
        DEADLINE,
        || {
            let views = clients.views.lock().unwrap();
            views.iter().zip(&final_ids).all(|(view, last)| {
                view.last_id
                    .as_deref()
                    .is_some_and(|id| id_key(id) >= *last)
            })
        },
    );
    clients.stop.store(true, SeqCst);
    let outcomes = client_loop.join().unwrap();

    let mut uncertain_delivered = 0;
    let mut told_retry = 0;
    // An unanswered publish was either published or not, for everyone: every subscriber of a
    // topic must have received the very same events.
    let mut first_of_topic: HashMap<&str, (usize, &Received)> = HashMap::new();
    for (i, outcome) in outcomes.iter().enumerate() {
        let (first, reference) = *first_of_topic
            .entry(outcome.topic)
            .or_insert((i, &outcome.received));
        assert!(
            outcome.received == *reference,
            "subscribers {first} and {i} of {} received different events",
            outcome.topic
        );
        assert!(outcome.streams >= 2, "subscriber {i} never reconnected");
        told_retry += usize::from(outcome.told_retry > 0);
        let keys: Vec<(u64, u64)> = outcome.received.iter().map(|(id, _)| id_key(id)).collect();
        assert!(
            keys.windows(2).all(|w| w[0] < w[1]),
            "subscriber {i} ({}) received ids out of order or twice: {:?}",
            outcome.topic,
            outcome
                .received
                .iter()
                .map(|(id, _)| id)
                .collect::<Vec<_>>()
        );
        let expected: Vec<(&str, &str)> = published
            .acked
            .iter()
            .filter(|(topic, _, _)| *topic == outcome.topic)
            .map(|(_, id, data)| (id.as_str(), data.as_str()))
            .collect();
        let mut got = Vec::new();
        for (id, data) in &outcome.received {
            if published.uncertain.contains(data) {
                uncertain_delivered += 1;
            } else {
                got.push((id.as_str(), data.as_str()));
            }
        }
        if got != expected {
            let missing: Vec<_> = expected.iter().filter(|e| !got.contains(e)).collect();
            let extra: Vec<_> = got.iter().filter(|g| !expected.contains(g)).collect();
            panic!(
                "subscriber {i} ({}) did not receive exactly the acknowledged events of its \
                 topic: {} expected, {} received; missing {missing:?}; unexpected {extra:?}",
                outcome.topic,
                expected.len(),
                got.len()
            );
        }
    }
    eprintln!(
        "upgrade: {} events acknowledged, {} refused and retried, {} without an answer \
         ({uncertain_delivered} deliveries of those); every subscriber moved within {:?} of \
         SIGTERM; {told_retry} of {SUBSCRIBERS} were told a retry delay",
        published.acked.len(),
        published.refused,
        published.uncertain.len(),
        moved_after
    );
}
