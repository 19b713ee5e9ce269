//! What each request does: routing, subscribing (the stream head, Last-Event-ID), publishing
//! (authorisation, validation, handing the event to the hub), and the small answers
//! (/healthz, /metrics, CORS preflight).

use super::{Next, Worker};
use crate::event_log::EventId;
use crate::http::{self, Rejection, Request};
use crate::metrics::{self, RejectReason, WorkerStats};
use crate::publish::{Outcome, Publish};
use crate::subscribers::{self, AwaitingPublish, ConnState, HttpConn, Subscriber};
use std::io::IoSlice;
use std::sync::atomic::Ordering::Relaxed;

impl Worker {
    pub(super) fn answer(
        &mut self,
        token: usize,
        request: &Request<'_>,
        http: &mut HttpConn,
    ) -> Next {
        let cors = self.cors_headers(request);
        let keep_alive = request.keep_alive;
        let (method, path) = (request.method, request.path);
        // Debug builds only, and only when asked: lets the tests check that a worker that dies
        // takes the process down (see server.rs) instead of leaving a listener no one serves.
        #[cfg(debug_assertions)]
        if path == "/debug/panic" && std::env::var_os("SSED_DEBUG_PANIC").is_some() {
            panic!("worker panic requested through SSED_DEBUG_PANIC");
        }
        if path == "/healthz" || path == "/metrics" {
            if method != "GET" && method != "HEAD" {
                let rejection = Rejection::new(405, "use GET");
                return self.reject(token, http, rejection, "Allow: GET, HEAD\r\n");
            }
            let redis = self.hub.redis.as_ref();
            let redis_down = redis.is_some_and(|link| !link.connected.load(Relaxed));
            let (status, content_type, body) = match path {
                "/healthz" if redis_down => (503, "text/plain", "redis unavailable\n".to_string()),
                "/healthz" => (200, "text/plain", "ok\n".to_string()),
                _ => {
                    let workers: Vec<&WorkerStats> = self.hub.worker_stats.iter().collect();
                    let extra = redis.map(|link| link.metrics()).unwrap_or_default();
                    let text = metrics::render(&self.hub.global_stats, &workers, &extra);
                    (200, "text/plain; version=0.0.4", text)
                }
            };
            let body = if method == "HEAD" { "" } else { &body };
            http::write_response(
                &mut http.output,
                status,
                "",
                content_type,
                body.as_bytes(),
                keep_alive,
            );
            return Next::Continue;
        }
        let Some(topic) = path.strip_prefix("/events/") else {
            let rejection = Rejection::new(404, "no such path; use /events/<topic>");
            return self.reject(token, http, rejection, "");
        };
        if !http::valid_topic(topic) {
            let rejection = Rejection::bad_request(
                "a topic is 1-256 characters of A-Z a-z 0-9 - _ . ~ / with no empty segment",
            );
            return self.reject(token, http, rejection, &cors);
        }
        match method {
            "GET" => self.subscribe(token, request, topic, http, &cors),
            "POST" => {
                self.publish(token, request, topic, http, &cors);
                Next::Continue
            }
            "OPTIONS" => {
                let mut headers = cors;
                headers.push_str("Allow: GET, POST, OPTIONS\r\n");
                if !self.settings.cors_origins.is_empty() {
                    headers.push_str("Access-Control-Allow-Methods: GET, POST, OPTIONS\r\nAccess-Control-Allow-Headers: Authorization, Content-Type, Last-Event-ID, Cache-Control\r\nAccess-Control-Max-Age: 600\r\n");
                }
                http::write_response(&mut http.output, 204, &headers, "", b"", keep_alive);
                Next::Continue
            }
            _ => {
                let rejection = Rejection::new(405, "use GET to subscribe or POST to publish");
                self.reject(token, http, rejection, "Allow: GET, POST, OPTIONS\r\n")
            }
        }
    }

    /// CORS response headers for this request, if its origin is allowed (Fetch standard §3.2).
    pub(super) fn cors_headers(&self, request: &Request<'_>) -> String {
        let origins = &self.settings.cors_origins;
        if origins.iter().any(|o| o == "*") {
            return "Access-Control-Allow-Origin: *\r\n".into();
        }
        match request.header_str("origin") {
            Some(origin) if origins.iter().any(|o| o == origin) => {
                format!("Access-Control-Allow-Origin: {origin}\r\nVary: Origin\r\n")
            }
            _ => String::new(),
        }
    }

    pub(super) fn subscribe(
        &mut self,
        token: usize,
        request: &Request<'_>,
        topic_name: &str,
        http: &mut HttpConn,
        cors: &str,
    ) -> Next {
        if !request.body.bytes().is_empty() {
            let rejection = Rejection::bad_request("a subscribe request has no body");
            return self.reject(token, http, rejection, cors);
        }
        let last_seen = match last_event_id(request) {
            Ok(last_seen) => last_seen,
            Err(rejection) => return self.reject(token, http, rejection, cors),
        };

        let now = self.now();
        let topic_id = self.topics.get_or_create(topic_name, now);
        let topic = self.topics.get_mut(topic_id);
        topic.subscriber_count += 1;
        match last_seen {
            None => {
                self.conns[token].state =
                    ConnState::Subscriber(Subscriber::new(topic_id, topic.end()));
                subscribers::link(&mut self.conns, &mut topic.first_subscriber, token);
            }
            Some(last_seen) => {
                self.conns[token].state = ConnState::Parked {
                    topic: topic_id,
                    last_seen,
                };
                self.start_replay(token, Some(topic_name));
            }
        }
        self.stats().subscribers.fetch_add(1, Relaxed);

        let mut head = std::mem::take(&mut http.output);
        head.extend_from_slice(
            format!("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nX-Accel-Buffering: no\r\nConnection: close\r\n{cors}\r\n").as_bytes(),
        );
        if let Some(ms) = self.settings.retry_ms {
            head.extend_from_slice(format!("retry: {ms}\n\n").as_bytes());
        }
        // A fresh socket's send buffer is empty, so a head of a few hundred bytes goes out whole;
        // if it does not, the client is already gone or misbehaving.
        match subscribers::write_some(&mut self.conns[token].stream, &[IoSlice::new(&head)]) {
            Ok(Some(n)) if n == head.len() => {}
            outcome => {
                log::debug!("connection {token}: could not write the stream head ({outcome:?})");
                self.close(token);
                return Next::Subscribed;
            }
        }
        self.flush_subscriber(token);
        Next::Subscribed
    }

    pub(super) fn publish(
        &mut self,
        token: usize,
        request: &Request<'_>,
        topic: &str,
        http: &mut HttpConn,
        cors: &str,
    ) {
        if let Err(rejection) = self.authorize_publisher(token, request) {
            let challenge = if rejection.status == 401 {
                "WWW-Authenticate: Bearer\r\n"
            } else {
                ""
            };
            self.reject(token, http, rejection, &format!("{cors}{challenge}"));
            return;
        }
        let Ok(data) = std::str::from_utf8(request.body.bytes()) else {
            self.reject(
                token,
                http,
                Rejection::bad_request("event data must be UTF-8"),
                cors,
            );
            return;
        };
        let event_type = match request.query_param("event") {
            None => None,
            Some(Ok(t)) if t.contains(['\r', '\n']) => {
                self.reject(
                    token,
                    http,
                    Rejection::bad_request("event type must not contain CR or LF"),
                    cors,
                );
                return;
            }
            Some(Ok(t)) => Some(t).filter(|t| !t.is_empty()),
            Some(Err(rejection)) => {
                self.reject(token, http, rejection, cors);
                return;
            }
        };
        self.next_serial += 1;
        let outcome = self.hub.publish(Publish {
            worker: self.index,
            token,
            serial: self.next_serial,
            topic,
            event_type: event_type.as_deref(),
            data,
        });
        match outcome {
            Outcome::Done(id) => answer_published(http, Ok(id), request.keep_alive, cors),
            Outcome::Pending => {
                http.awaiting = Some(AwaitingPublish {
                    serial: self.next_serial,
                    keep_alive: request.keep_alive,
                    cors: cors.to_string(),
                })
            }
        }
    }

    pub(super) fn authorize_publisher(
        &self,
        token: usize,
        request: &Request<'_>,
    ) -> Result<(), Rejection> {
        may_publish(
            self.conns[token].from_loopback,
            self.settings.publish_token.as_deref(),
            request.header_str("authorization"),
        )
    }

    /// The broker answered a publish that connection `token` waits for: answer it, then go on
    /// with the requests it sent meanwhile.
    pub(super) fn on_publish_done(
        &mut self,
        token: usize,
        serial: u64,
        outcome: Result<EventId, String>,
    ) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        let ConnState::Http(http) = &mut conn.state else {
            return;
        };
        let Some(awaiting) = http.awaiting.take_if(|a| a.serial == serial) else {
            return;
        };
        let failed = outcome.is_err();
        answer_published(http, outcome, awaiting.keep_alive, &awaiting.cors);
        if failed {
            self.stats().reject(RejectReason::Unavailable);
        }
        self.continue_http(token, None);
    }
}

/// Who may publish: with a token, whoever presents it (`Authorization: Bearer TOKEN`) and no one
/// else; without one, loopback clients only.
pub fn may_publish(
    from_loopback: bool,
    token: Option<&str>,
    authorization: Option<&str>,
) -> Result<(), Rejection> {
    match token {
        Some(expected) => {
            let presented = authorization.and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            });
            match presented {
                None => Err(Rejection::new(
                    401,
                    "publishing needs Authorization: Bearer <token>",
                )),
                Some(given) if constant_time_eq(given.trim().as_bytes(), expected.as_bytes()) => {
                    Ok(())
                }
                Some(_) => Err(Rejection::new(403, "wrong publish token")),
            }
        }
        None if from_loopback => Ok(()),
        None => Err(Rejection::new(
            403,
            "only loopback clients may publish unless --publish-token is set",
        )),
    }
}

/// The id a reconnecting client last saw. The header wins over the query: EventSource sends the
/// header on every reconnect, while the URL still carries the id the page started from.
fn last_event_id(request: &Request<'_>) -> Result<Option<EventId>, Rejection> {
    let text = match request
        .header_str("last-event-id")
        .filter(|v| !v.is_empty())
    {
        Some(value) => value.to_string(),
        None => match request.query_param("lastEventId") {
            None => return Ok(None),
            Some(value) => value?,
        },
    };
    if text.is_empty() {
        return Ok(None);
    }
    EventId::parse(&text)
        .map(Some)
        .ok_or(Rejection::bad_request(
            "Last-Event-ID is not an event id (ms-seq)",
        ))
}

fn answer_published(
    http: &mut HttpConn,
    outcome: Result<EventId, String>,
    keep_alive: bool,
    cors: &str,
) {
    match outcome {
        Ok(id) => http::write_response(
            &mut http.output,
            200,
            cors,
            "text/plain",
            id.to_string().as_bytes(),
            keep_alive,
        ),
        Err(e) => {
            log::debug!("publish failed: {e}");
            let headers = format!("{cors}Retry-After: 1\r\n");
            http::write_response(
                &mut http.output,
                503,
                &headers,
                "text/plain",
                b"event broker unavailable; try again\n",
                keep_alive,
            );
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishing_is_loopback_only_unless_a_token_is_set() {
        assert!(may_publish(true, None, None).is_ok());
        assert_eq!(may_publish(false, None, None).unwrap_err().status, 403);
        let token = Some("s3cret");
        assert!(may_publish(false, token, Some("Bearer s3cret")).is_ok());
        assert_eq!(may_publish(true, token, None).unwrap_err().status, 401);
        assert_eq!(
            may_publish(true, token, Some("Basic abc"))
                .unwrap_err()
                .status,
            401
        );
        assert_eq!(
            may_publish(false, token, Some("Bearer s3cre"))
                .unwrap_err()
                .status,
            403
        );
        // IPv4 clients of a dual-stack listener appear as mapped IPv6 addresses.
        let mapped: std::net::IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert!(mapped.to_canonical().is_loopback());
    }
}
