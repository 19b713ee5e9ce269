//! A real browser's EventSource (headless Chromium) on three topics at once: one
//! `/events?topic=...` stream, a listener per topic (`--topic-event-types`) and one for a
//! publisher-set type. The ssed it reads from shuts down (SIGTERM: subscribers are told to come
//! back, then closed) while a second ssed sharing the port and Redis takes over; EventSource
//! reconnects there with its Last-Event-ID and resumes all three topics. The page must end up
//! with exactly the published events of each topic, in id order, none twice, none missing.
//!
//! The page (tests/browser/multi.html) reports every EventSource callback by publishing it to the
//! topic `report` on another ssed, which this test subscribes to.

mod common;
use common::browser::{open_browser, serve_page};
use common::*;
use std::collections::BTreeMap;

const PAGE: &str = include_str!("browser/multi.html");
const TOPICS: [&str; 3] = ["user/42", "news", "room.1"];

/// The next report from the page, as (kind, id, data).
fn next_report(reports: &mut Subscription) -> (String, String, String) {
    let report = common::browser::next_report(reports);
    let field = |name: &str| report[name].as_str().unwrap_or_default().to_string();
    (field("kind"), field("id"), field("data"))
}

/// One published event: its topic, the type the page should see it under, its id and data.
struct Sent {
    topic: &'static str,
    kind: String,
    id: String,
    data: String,
}

/// Publishes to `topic` on `daemon` (typed `alert` if `alert`).
fn send(daemon: &Daemon, topic: &'static str, data: String, alert: bool) -> Sent {
    let path = if alert {
        format!("/events/{topic}?event=alert")
    } else {
        format!("/events/{topic}")
    };
    let answer = request(daemon.addr, "POST", &path, &[], data.as_bytes());
    assert_eq!(answer.status, 200, "{answer:?}");
    Sent {
        topic,
        kind: if alert { "alert".into() } else { topic.into() },
        id: answer.body_text(),
        data,
    }
}

/// Publishes a round of events over the three topics (and one to a topic the page does not
/// hold), returns those the page holds.
fn publish_round(daemon: &Daemon, round: &str) -> Vec<Sent> {
    let mut held = Vec::new();
    for i in 0..6 {
        let topic = TOPICS[i % 3];
        held.push(send(
            daemon,
            topic,
            format!("{round} {i} on {topic}"),
            i == 4,
        ));
        if i == 2 {
            send(daemon, "not/held", format!("{round}: not held"), false);
        }
    }
    held
}

/// Asserts that the page reports exactly these events next, in this order; keeps them in
/// `page` as (id, data).
#[track_caller]
fn assert_reported(
    reports: &mut Subscription,
    sent: &[Sent],
    page: &mut Vec<(String, String)>,
    what: &str,
) {
    for (n, s) in sent.iter().enumerate() {
        let (kind, id, data) = next_report(reports);
        assert_eq!(
            (&kind, &id, &data),
            (&s.kind, &s.id, &s.data),
            "{what}: event {n}"
        );
        page.push((id, data));
    }
}

#[test]
fn eventsource_on_three_topics_reconnects_elsewhere_and_resumes_all_of_them() {
    let redis = RedisServer::start();
    let page = serve_page(PAGE);
    let reporter = Daemon::start(&["--cors-origin", &page]);
    let mut reports = reporter.subscribe("report");
    let flags = ["--cors-origin", &page, "--topic-event-types"];
    let mut first = Daemon::with_redis(&redis, "127.0.0.1:0", &flags);
    let shared_port = first.addr.to_string();

    let url = format!(
        "{page}/?ssed=http://{shared_port}&report=http://{}&topic=user%2F42&topic=news&topic=room.1",
        reporter.addr
    );
    let _browser = open_browser(&url);
    assert_eq!(next_report(&mut reports).0, "open");

    let mut page_got = Vec::new();
    let mut all = publish_round(&first, "before");
    assert_reported(
        &mut reports,
        &all,
        &mut page_got,
        "live, before the reconnect",
    );

    // A second process joins the port; the first leaves, telling the browser to come back.
    // What is published meanwhile is replayed by the second, from Redis, for all three topics.
    let second = Daemon::with_redis(&redis, &shared_port, &flags);
    assert!(first.terminate().success());
    let away = publish_round(&second, "away");
    assert_eq!(
        next_report(&mut reports).0,
        "error",
        "EventSource noticed the close"
    );
    assert_eq!(next_report(&mut reports).0, "open", "and reconnected");
    assert_reported(
        &mut reports,
        &away,
        &mut page_got,
        "replayed after the reconnect",
    );
    all.extend(away);
    let live = publish_round(&second, "live");
    assert_reported(
        &mut reports,
        &live,
        &mut page_got,
        "live after the reconnect",
    );
    all.extend(live);

    // Nothing else arrived: a marker is the very next report.
    let marker = send(&second, "news", "marker on news".into(), false);
    assert_reported(
        &mut reports,
        std::slice::from_ref(&marker),
        &mut page_got,
        "nothing more",
    );
    all.push(marker);

    // Per topic, the page ended up with exactly what was published to it, in order, each once.
    let topic_of = |data: &str| data.rsplit(" on ").next().unwrap().to_string();
    let mut published: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for s in &all {
        published
            .entry(s.topic.to_string())
            .or_default()
            .push((s.id.clone(), s.data.clone()));
    }
    let mut received: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for (id, data) in page_got {
        received
            .entry(topic_of(&data))
            .or_default()
            .push((id, data));
    }
    assert_eq!(received, published);
    assert_eq!(
        published.values().map(Vec::len).collect::<Vec<_>>(),
        [7, 6, 6],
        "news, room.1, user/42"
    );
}
