//! What each request does: routing, subscribing (the stream head, Last-Event-ID), publishing
//! (authorisation, validation, handing the event to the broker), and the small answers
//! (/healthz, /livez, /readyz, /metrics, CORS preflight).
//!
//! The connection machine (`connection.rs`) calls this through [`Requests`] at two points: when
//! a head is whole ([`Requests::screen`]: route and authorise, so a refused request is refused
//! before its body is read and before any `100 Continue`), and when the body is in
//! ([`Requests::answer`]). A subscribe is not performed here: the answer says what to subscribe
//! to, and the worker, which owns the subscriber lists, does it.

use crate::auth::{Action, Credentials, Denial};
use crate::broker::{Outcome, Publish};
use crate::event_log::EventId;
use crate::http::{self, Method, Rejection, Request, Response, MAX_HEADERS};
use crate::metrics::{self, RejectReason, WorkerStats};
use crate::publish::Hub;
use crate::settings::Settings;
use crate::topics::{TopicId, Topics};
use std::borrow::Cow;

/// What is known of the client from its socket, decided at accept: by the time a pipelined
/// request is read the peer may be gone, and with it `getpeername`.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub loopback: bool,
}

/// Where a request goes, decided from its head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Healthz,
    Livez,
    Readyz,
    Metrics,
    Preflight,
    /// Allowed, until the token's `exp` (Unix seconds) if it has one.
    Subscribe {
        expires_at_unix: Option<u64>,
    },
    Publish,
}

/// A refusal: the status, its reason, extra headers. The connection closes after it.
#[derive(Debug)]
pub struct Refusal {
    rejection: Rejection,
    headers: String,
}

impl Refusal {
    pub fn new(rejection: Rejection, headers: String) -> Refusal {
        Refusal { rejection, headers }
    }

    pub fn write(&self, out: &mut Vec<u8>) {
        let body = format!("{}\n", self.rejection.reason);
        http::write_response(
            out,
            self.rejection.status,
            &self.headers,
            body.as_bytes(),
            false,
        );
    }
}

/// How a subscriber starts reading its topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// From now on.
    Live,
    /// After the event with this id (Last-Event-ID).
    After(EventId),
    /// Its Last-Event-ID cannot be placed (malformed, or from another deployment): everything
    /// retained, after an `ssed-gap` event.
    Unplaceable,
}

/// A subscribe request, for the worker to perform.
#[derive(Debug)]
pub struct SubscribeTo {
    /// One topic or more, distinct, in the order the request named them.
    pub topics: Vec<TopicId>,
    pub resume: Resume,
    /// When the token it subscribed with expires (Unix seconds): the stream ends then.
    pub expires_at_unix: Option<u64>,
    /// The response head (and `retry:`), ready to write.
    pub head: Vec<u8>,
}

/// What became of a complete request.
#[derive(Debug)]
pub enum Answer {
    /// The answer is in the output.
    Answered,
    /// The answer (a refusal) is in the output; close after it.
    Close,
    /// Handed to the broker; its answer comes later as publish `serial`, to be sent with these
    /// CORS headers.
    Pending(u64, String),
    Subscribe(SubscribeTo),
}

/// The request layer as the connection machine sees it.
pub trait Requests {
    fn max_body(&self) -> usize;
    /// The worker's fan-out is behind: read no more requests for now. This is the publishers'
    /// back-pressure: events are accepted no faster than the worker writes them out, instead of
    /// piling up until every subscriber falls out of retention.
    fn busy(&self) -> bool;
    fn screen(&mut self, token: usize, peer: Peer, request: &Request<'_>)
        -> Result<Route, Refusal>;
    fn answer(
        &mut self,
        token: usize,
        route: Route,
        request: &Request<'_>,
        out: &mut Vec<u8>,
    ) -> Answer;
    /// A request the parser refused: counted, and turned into its answer.
    fn rejected(&mut self, rejection: Rejection, headers: Option<String>) -> Refusal;
}

/// The worker's request layer: borrows what answering needs from the worker for one call.
pub struct Handler<'a> {
    pub index: usize,
    pub hub: &'a Hub,
    pub settings: &'a Settings,
    pub topics: &'a mut Topics,
    pub now: u32,
    pub next_serial: &'a mut u64,
    /// Fan-out work is queued on this worker.
    pub busy: bool,
}

impl Handler<'_> {
    fn stats(&self) -> &WorkerStats {
        &self.hub.worker_stats[self.index]
    }

    fn refuse(&self, rejection: Rejection, headers: String) -> Refusal {
        self.stats()
            .reject(RejectReason::for_status(rejection.status));
        log::debug!("refused: {} {}", rejection.status, rejection.reason);
        Refusal { rejection, headers }
    }

    /// CORS response headers for this request, if its origin is allowed (Fetch standard §3.2).
    /// An origin named explicitly may send credentials (the auth cookie of an EventSource with
    /// `withCredentials: true`); `*` never may, as the standard requires.
    fn cors_headers(&self, request: &Request<'_>) -> String {
        let origins = &self.settings.cors_origins;
        if origins.iter().any(|o| o == "*") {
            return "Access-Control-Allow-Origin: *\r\n".into();
        }
        match request.header_str("origin") {
            Some(origin) if origins.iter().any(|o| o == origin) => format!(
                "Access-Control-Allow-Origin: {origin}\r\nAccess-Control-Allow-Credentials: true\r\nVary: Origin\r\n"
            ),
            _ => String::new(),
        }
    }

    /// Asks the authorizer whether this request may do `action` on every one of `topics`.
    fn authorize(
        &self,
        peer: Peer,
        request: &Request<'_>,
        action: Action,
        topics: &[&str],
        cors: &str,
    ) -> Result<Option<u64>, Refusal> {
        let mut pairs = [("", &b""[..]); MAX_HEADERS];
        let n = request.header_pairs(&mut pairs);
        let credentials = Credentials::new(&pairs[..n], request.query());
        match self
            .hub
            .auth
            .check_all(&credentials, action, topics, peer.loopback)
        {
            Ok(grant) => Ok(grant.expires_at_unix),
            Err(denial) => Err(self.denied(&denial, cors)),
        }
    }

    fn denied(&self, denial: &Denial, cors: &str) -> Refusal {
        self.stats().auth_failures.count(denial.metric);
        let challenge = denial
            .www_authenticate()
            .map(|value| format!("WWW-Authenticate: {value}\r\n"))
            .unwrap_or_default();
        self.refuse(
            Rejection::new(denial.status, denial.reason),
            format!("{cors}{challenge}"),
        )
    }

    fn subscribe(
        &mut self,
        request: &Request<'_>,
        expires_at_unix: Option<u64>,
        cors: &str,
        out: &mut Vec<u8>,
    ) -> Answer {
        if !request.body.is_empty() {
            let refusal = self.refuse(
                Rejection::bad_request("a subscribe request has no body"),
                cors.into(),
            );
            return refused(refusal, out);
        }
        let resume = match last_event_id(request) {
            None => Resume::Live,
            Some(Some(id)) => Resume::After(id),
            // An id ssed cannot place must not cost a browser its stream: EventSource gives up on
            // any non-200 answer. The client is told instead, with the gap event.
            Some(None) => Resume::Unplaceable,
        };
        // Checked when the head was screened.
        let names = match requested_topics(request, self.settings.max_topics_per_subscriber) {
            Ok(names) => names,
            Err(rejection) => return refused(self.refuse(rejection, cors.into()), out),
        };
        let mut topics = Vec::with_capacity(names.len());
        for name in &names {
            match self.topics.get_or_create(name, self.now) {
                Some(topic) => topics.push(topic),
                None => {
                    // The ones created for this request have no one yet: they go again.
                    for &topic in &topics {
                        self.topics.unsubscribed(topic, self.now);
                    }
                    self.stats().reject(RejectReason::TooManyTopics);
                    let refusal = Refusal {
                        rejection: Rejection::new(
                            503,
                            "too many topics on this server; try again later",
                        ),
                        headers: format!("{cors}Retry-After: 5\r\n"),
                    };
                    return refused(refusal, out);
                }
            }
        }
        let mut head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nX-Accel-Buffering: no\r\nConnection: close\r\n{cors}\r\n"
        )
        .into_bytes();
        if let Some(ms) = self.settings.retry_ms {
            head.extend_from_slice(format!("retry: {ms}\n\n").as_bytes());
        }
        Answer::Subscribe(SubscribeTo {
            topics,
            resume,
            expires_at_unix,
            head,
        })
    }

    fn publish(
        &mut self,
        token: usize,
        request: &Request<'_>,
        cors: &str,
        out: &mut Vec<u8>,
    ) -> Answer {
        let topic = request.path().strip_prefix("/events/").unwrap_or_default();
        let Ok(data) = std::str::from_utf8(request.body) else {
            let refusal = self.refuse(
                Rejection::bad_request("event data must be UTF-8"),
                cors.into(),
            );
            return refused(refusal, out);
        };
        let event_type = match request.query_param("event") {
            None => None,
            Some(Ok(t)) if t.contains(['\r', '\n']) => {
                let rejection = Rejection::bad_request("event type must not contain CR or LF");
                return refused(self.refuse(rejection, cors.into()), out);
            }
            Some(Ok(t)) => Some(t).filter(|t| !t.is_empty()),
            Some(Err(rejection)) => return refused(self.refuse(rejection, cors.into()), out),
        };
        // Encoded once for every subscriber: the topic's name as its type costs nothing more.
        let event_type =
            event_type.or_else(|| self.settings.topic_event_types.then(|| topic.to_string()));
        if self.topics.find(topic).is_none() && self.topics.len() >= self.settings.max_topics {
            self.stats().reject(RejectReason::TooManyTopics);
            let refusal = Refusal {
                rejection: Rejection::new(503, "too many topics on this server; try again later"),
                headers: format!("{cors}Retry-After: 5\r\n"),
            };
            return refused(refusal, out);
        }
        *self.next_serial += 1;
        let outcome = self.hub.publish(Publish {
            worker: self.index,
            token,
            serial: *self.next_serial,
            topic,
            event_type: event_type.as_deref(),
            data,
        });
        match outcome {
            Outcome::Done(id) => {
                answer_published(out, Ok(id), request.head.keep_alive, cors);
                Answer::Answered
            }
            Outcome::Pending => Answer::Pending(*self.next_serial, cors.to_string()),
            Outcome::Unavailable => {
                self.stats().reject(RejectReason::Unavailable);
                answer_published(
                    out,
                    Err("broker unavailable".into()),
                    request.head.keep_alive,
                    cors,
                );
                Answer::Answered
            }
        }
    }

    fn small_answer(&self, route: Route, request: &Request<'_>, out: &mut Vec<u8>) {
        let (status, content_type, body) = match route {
            Route::Metrics => {
                let workers: Vec<&WorkerStats> = self.hub.worker_stats.iter().collect();
                let text =
                    metrics::render(&self.hub.global_stats, &workers, &self.hub.broker.metrics());
                (200, "text/plain; version=0.0.4", text)
            }
            Route::Livez => match metrics::stuck_worker(&self.hub.worker_stats) {
                None => (200, "text/plain", "ok\n".to_string()),
                Some(worker) => (
                    503,
                    "text/plain",
                    format!("worker {worker} is not turning\n"),
                ),
            },
            Route::Healthz | Route::Readyz => {
                if self.hub.is_draining() {
                    (503, "text/plain", "shutting down\n".to_string())
                } else if !self.hub.broker.is_available() {
                    (503, "text/plain", "broker unavailable\n".to_string())
                } else {
                    (200, "text/plain", "ok\n".to_string())
                }
            }
            _ => (500, "text/plain", String::new()),
        };
        Response {
            status,
            headers: "",
            content_type,
            body: body.as_bytes(),
            head_only: request.method() == Method::Head,
            keep_alive: request.head.keep_alive,
        }
        .write(out);
    }
}

/// A refusal of a complete request: written, and the connection closes after it.
fn refused(refusal: Refusal, out: &mut Vec<u8>) -> Answer {
    refusal.write(out);
    Answer::Close
}

impl Requests for Handler<'_> {
    fn max_body(&self) -> usize {
        self.settings.max_event_bytes
    }

    fn busy(&self) -> bool {
        self.busy
    }

    fn screen(
        &mut self,
        _token: usize,
        peer: Peer,
        request: &Request<'_>,
    ) -> Result<Route, Refusal> {
        let path = request.path();
        let method = request.method();
        // Debug builds only, and only when asked: lets the tests check that a worker that dies
        // takes the process down (see server.rs) instead of leaving a listener no one serves.
        #[cfg(debug_assertions)]
        if path == "/debug/panic" && std::env::var_os("SSED_DEBUG_PANIC").is_some() {
            panic!("worker panic requested through SSED_DEBUG_PANIC");
        }
        let small = match path {
            "/healthz" => Some(Route::Healthz),
            "/livez" => Some(Route::Livez),
            "/readyz" => Some(Route::Readyz),
            "/metrics" => Some(Route::Metrics),
            _ => None,
        };
        if let Some(route) = small {
            return match method {
                Method::Get | Method::Head => Ok(route),
                _ => Err(self.refuse(
                    Rejection::new(405, "use GET"),
                    "Allow: GET, HEAD\r\n".into(),
                )),
            };
        }
        let cors = self.cors_headers(request);
        let topic = path.strip_prefix("/events/");
        if topic.is_none() && path != "/events" {
            return Err(self.refuse(
                Rejection::new(
                    404,
                    "no such path; use /events/<topic> or /events?topic=<topic>&topic=<topic>",
                ),
                String::new(),
            ));
        }
        if topic.is_some_and(|topic| !http::valid_topic(topic)) {
            return Err(self.refuse(Rejection::bad_request(INVALID_TOPIC), cors));
        }
        match (method, topic) {
            (Method::Get, _) => {
                let names = requested_topics(request, self.settings.max_topics_per_subscriber)
                    .map_err(|rejection| self.refuse(rejection, cors.clone()))?;
                let names: Vec<&str> = names.iter().map(|name| &**name).collect();
                let expires_at_unix =
                    self.authorize(peer, request, Action::Subscribe, &names, &cors)?;
                Ok(Route::Subscribe { expires_at_unix })
            }
            (Method::Options, _) => Ok(Route::Preflight),
            (Method::Post, Some(topic)) => {
                self.authorize(peer, request, Action::Publish, &[topic], &cors)?;
                Ok(Route::Publish)
            }
            (Method::Post, None) => Err(self.refuse(
                Rejection::new(405, "publish to /events/<topic>, one topic per event"),
                format!("{cors}Allow: GET, OPTIONS\r\n"),
            )),
            _ => Err(self.refuse(
                Rejection::new(405, "use GET to subscribe or POST to publish"),
                "Allow: GET, POST, OPTIONS\r\n".into(),
            )),
        }
    }

    fn answer(
        &mut self,
        token: usize,
        route: Route,
        request: &Request<'_>,
        out: &mut Vec<u8>,
    ) -> Answer {
        match route {
            Route::Subscribe { expires_at_unix } => {
                let cors = self.cors_headers(request);
                self.subscribe(request, expires_at_unix, &cors, out)
            }
            Route::Publish => {
                let cors = self.cors_headers(request);
                self.publish(token, request, &cors, out)
            }
            Route::Preflight => {
                let mut headers = self.cors_headers(request);
                headers.push_str("Allow: GET, POST, OPTIONS\r\n");
                if !self.settings.cors_origins.is_empty() {
                    headers.push_str("Access-Control-Allow-Methods: GET, POST, OPTIONS\r\nAccess-Control-Allow-Headers: Authorization, Content-Type, Last-Event-ID, Cache-Control\r\nAccess-Control-Max-Age: 600\r\n");
                }
                http::write_response(out, 204, &headers, b"", request.head.keep_alive);
                Answer::Answered
            }
            _ => {
                self.small_answer(route, request, out);
                Answer::Answered
            }
        }
    }

    fn rejected(&mut self, rejection: Rejection, headers: Option<String>) -> Refusal {
        self.refuse(rejection, headers.unwrap_or_default())
    }
}

const INVALID_TOPIC: &str =
    "a topic is 1-256 characters of A-Z a-z 0-9 - _ . ~ / with no empty segment";

/// The topics a subscribe request names: the one in its path (`/events/<topic>`), or the
/// `topic` parameters of `/events?topic=a&topic=b`, percent-decoded, each checked, repeats
/// dropped (in the order first named), at most `max` of them.
fn requested_topics<'a>(request: &Request<'a>, max: usize) -> Result<Vec<Cow<'a, str>>, Rejection> {
    let query = request.query();
    let named = query
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .filter(|(key, _)| *key == "topic");
    if let Some(topic) = request.path().strip_prefix("/events/") {
        if named.count() > 0 {
            return Err(Rejection::bad_request(
                "name the topics either in the path or as ?topic= parameters, not both",
            ));
        }
        return Ok(vec![Cow::Borrowed(topic)]);
    }
    let mut topics: Vec<Cow<str>> = Vec::new();
    for (_, value) in named {
        // Decoded only when encoded: most topics are named as they are.
        let topic = if value.contains(['%', '+']) {
            Cow::Owned(
                http::percent_decode(value)
                    .ok_or(Rejection::bad_request("badly percent-encoded query"))?,
            )
        } else {
            Cow::Borrowed(value)
        };
        if !http::valid_topic(&topic) {
            return Err(Rejection::bad_request(INVALID_TOPIC));
        }
        if topics.contains(&topic) {
            continue;
        }
        if topics.len() == max {
            return Err(Rejection::bad_request(
                "too many topics for one connection (see --max-topics-per-subscriber)",
            ));
        }
        topics.push(topic);
    }
    if topics.is_empty() {
        return Err(Rejection::bad_request(
            "name at least one topic: /events?topic=<topic>&topic=<topic>",
        ));
    }
    Ok(topics)
}

/// The id a reconnecting client last saw: `None` without one, `Some(None)` if it cannot be
/// parsed. The header wins over the query: EventSource sends the header on every reconnect,
/// while the URL still carries the id the page started from.
fn last_event_id(request: &Request<'_>) -> Option<Option<EventId>> {
    let text = match request.header("last-event-id").filter(|v| !v.is_empty()) {
        Some(value) => std::str::from_utf8(value)
            .ok()
            .map(|v| v.trim().to_string()),
        None => request.query_param("lastEventId")?.ok(),
    };
    match text {
        Some(text) if text.is_empty() => None,
        Some(text) => Some(EventId::parse(&text)),
        None => Some(None),
    }
}

pub fn answer_published(
    out: &mut Vec<u8>,
    outcome: Result<EventId, String>,
    keep_alive: bool,
    cors: &str,
) {
    match outcome {
        Ok(id) => Response {
            status: 200,
            headers: cors,
            content_type: "text/plain",
            body: id.to_string().as_bytes(),
            head_only: false,
            keep_alive,
        }
        .write(out),
        Err(e) => {
            log::debug!("publish failed: {e}");
            let headers = format!("{cors}Retry-After: 1\r\n");
            http::write_response(
                out,
                503,
                &headers,
                b"event broker unavailable; try again\n",
                keep_alive,
            );
        }
    }
}
