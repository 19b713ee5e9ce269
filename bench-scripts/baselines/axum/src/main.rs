//! axum baseline: the SSE server a Rust user writes by default.
//!
//! GET /events/<topic>: `axum::response::sse::Sse` over a
//! `tokio::sync::broadcast` receiver of the topic, with a `KeepAlive` that
//! sends `event: keep-alive` / `data: null` every heartbeat (axum's default
//! keep-alive is a comment; this matches the other servers' heartbeat).
//! POST /events/<topic>: the body is sent on the topic's broadcast channel.
//! One broadcast channel per topic, in a mutex-protected map. Tokio's default
//! multi-threaded runtime (one worker per core).
//!
//! Usage: axum [--listen 127.0.0.1:PORT] [--heartbeat SECS] [--cert FILE --key FILE]
//! (or env LISTEN / HEARTBEAT / TLS_CERT / TLS_KEY; port 0 picks a free port).
//! With --cert/--key (a PEM certificate chain and its key) it serves HTTPS with
//! what a user adds for TLS: axum-server's rustls acceptor (aws-lc-rs) in place
//! of `axum::serve`. Built as axum-tls for the TLS benchmarks.

use axum_server::tls_rustls::RustlsConfig;
use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::{
        sse::{Event, KeepAlive, Sse},
        IntoResponse, Response,
    },
    routing::get,
    Router,
};
use std::{
    collections::HashMap,
    convert::Infallible,
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::sync::broadcast;
use tokio_stream::{wrappers::BroadcastStream, StreamExt};

/// Events a slow subscriber may lag behind before it skips some.
const CHANNEL_CAPACITY: usize = 1024;

#[derive(Clone)]
struct AppState {
    topics: Arc<Mutex<HashMap<String, broadcast::Sender<Arc<str>>>>>,
    heartbeat: Duration,
}

fn valid_topic(t: &str) -> bool {
    (1..=256).contains(&t.len())
        && t.bytes().all(|c| c.is_ascii_alphanumeric() || b"-_.~/".contains(&c))
}

async fn subscribe(Path(topic): Path<String>, State(state): State<AppState>) -> Response {
    if !valid_topic(&topic) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let rx = state
        .topics
        .lock()
        .unwrap()
        .entry(topic)
        .or_insert_with(|| broadcast::channel(CHANNEL_CAPACITY).0)
        .subscribe();
    // A lagged receiver yields Err(Lagged): skip it and go on.
    let stream = BroadcastStream::new(rx)
        .filter_map(|msg| msg.ok().map(|data| Ok::<_, Infallible>(Event::default().data(&*data))));
    let keep_alive = KeepAlive::new()
        .interval(state.heartbeat)
        .event(Event::default().event("keep-alive").data("null"));
    Sse::new(stream).keep_alive(keep_alive).into_response()
}

async fn publish(
    Path(topic): Path<String>,
    State(state): State<AppState>,
    body: String,
) -> StatusCode {
    if !valid_topic(&topic) {
        return StatusCode::NOT_FOUND;
    }
    if let Some(tx) = state.topics.lock().unwrap().get(&topic) {
        let _ = tx.send(Arc::from(body)); // Err: nobody subscribed right now
    }
    StatusCode::NO_CONTENT
}

#[tokio::main]
async fn main() {
    let mut listen = std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let mut heartbeat: f64 = std::env::var("HEARTBEAT").ok().and_then(|v| v.parse().ok()).unwrap_or(5.0);
    let mut cert = std::env::var("TLS_CERT").unwrap_or_default();
    let mut key = std::env::var("TLS_KEY").unwrap_or_default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--listen", Some(v)) => listen = v,
            ("--heartbeat", Some(v)) => heartbeat = v.parse().expect("--heartbeat SECS"),
            ("--cert", Some(v)) => cert = v,
            ("--key", Some(v)) => key = v,
            _ => {
                eprintln!("usage: axum [--listen ADDR] [--heartbeat SECS] [--cert FILE --key FILE]");
                std::process::exit(2);
            }
        }
    }
    let state = AppState {
        topics: Arc::default(),
        heartbeat: Duration::from_secs_f64(heartbeat),
    };
    let app = Router::new()
        .route("/events/{*topic}", get(subscribe).post(publish))
        .with_state(state);
    if cert.is_empty() {
        let listener = tokio::net::TcpListener::bind(&listen).await.expect("bind");
        println!("listening on {}", listener.local_addr().unwrap());
        axum::serve(listener, app).await.unwrap();
        return;
    }
    let tls = RustlsConfig::from_pem_file(&cert, &key).await.expect("--cert / --key");
    let listener = std::net::TcpListener::bind(&listen).expect("bind");
    listener.set_nonblocking(true).expect("nonblocking listener");
    println!("listening on {}", listener.local_addr().unwrap());
    axum_server::from_tcp_rustls(listener, tls)
        .serve(app.into_make_service())
        .await
        .unwrap();
}
