//! A real browser's credentialed EventSource (headless Chromium) against an ssed that checks
//! tokens: the page, served from another origin of the same site, puts the token in the
//! `ssed_token` cookie; its EventSource with `withCredentials: true` gets the private topic the
//! token grants, and is refused (403, then readyState CLOSED, no retry) another user's topic.
//!
//! The page (tests/browser/auth.html) reports every EventSource callback by publishing it to the
//! topic `report` on a second ssed process, which this test subscribes to.

mod common;
use common::browser::{next_report, open_browser, serve_page};
use common::keys::{hs256, PUBLISH_TOKEN, SECRET};
use common::*;

const PAGE: &str = include_str!("browser/auth.html");

#[test]
fn credentialed_eventsource_gets_its_private_topic_through_a_cookie_and_not_anothers() {
    // The page on http://127.0.0.1:P1, ssed on http://127.0.0.1:P2: cross-origin, same site.
    let page = serve_page(PAGE);
    let reporter = Daemon::start(&["--cors-origin", &page]);
    let mut reports = reporter.subscribe("report");
    let ssed = Daemon::start(&[
        "--jwt-key",
        SECRET,
        "--publish-token",
        PUBLISH_TOKEN,
        "--cors-origin",
        &page,
    ]);
    let token = hs256(&["--subscribe", "users/42/*", "--ttl", "600"]);
    let url = format!(
        "{page}/?ssed=http://{}&report=http://{}&token={token}&mine=users/42/inbox&theirs=users/7/inbox",
        ssed.addr, reporter.addr
    );
    let _browser = open_browser(&url);

    // The two streams report in either order.
    let (mut mine_open, mut theirs_closed) = (false, false);
    while !(mine_open && theirs_closed) {
        let report = next_report(&mut reports);
        match (report["stream"].as_str(), report["kind"].as_str()) {
            (Some("mine"), Some("open")) => mine_open = true,
            (Some("theirs"), Some("error")) => {
                assert_eq!(
                    report["state"], 2,
                    "EventSource.CLOSED: refused, not retried"
                );
                theirs_closed = true;
            }
            _ => panic!("unexpected report {report}"),
        }
    }
    // The cookie was sent: the refusal was for the topic, not for a missing token.
    let failures = |reason: &str| auth_failures(&ssed, reason);
    assert_eq!(failures("not_granted"), 1.0);
    assert_eq!(failures("missing_token"), 0.0);

    let auth = format!("Bearer {PUBLISH_TOKEN}");
    for data in ["for 42", "again"] {
        let published = request(
            ssed.addr,
            "POST",
            "/events/users/42/inbox",
            &[("Authorization", &auth)],
            data.as_bytes(),
        );
        assert_eq!(published.status, 200);
        let report = next_report(&mut reports);
        assert_eq!(
            (
                &report["stream"],
                &report["kind"],
                &report["id"],
                &report["data"]
            ),
            (
                &"mine".into(),
                &"message".into(),
                &published.body_text().into(),
                &data.into()
            ),
            "{report}"
        );
    }
}
