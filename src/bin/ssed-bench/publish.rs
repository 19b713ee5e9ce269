//! `publish`: POSTs `t=<unix micros>` events over one persistent HTTP/1.1 connection, paced to
//! --rate with up to --pipeline requests in flight, reconnecting if the server closes it. One
//! connection needs no event loop, so this is a blocking loop with short read timeouts.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use crate::http::take_response;
use crate::tls::{self, Blocking};
use crate::{expand, resolve, secs, unix_micros, Failure, PublishArgs, SIGNAL};

pub fn run_publish(a: &PublishArgs) -> Result<(), Failure> {
    let addr = resolve(&a.addr)?;
    let tls = tls::Client::from_args(&a.tls)?;
    let start = Instant::now();
    let hard_stop = start + secs(a.max_seconds);
    let send_until = if a.duration > 0.0 {
        start + secs(a.duration)
    } else {
        hard_stop
    };
    let (mut sent, mut in_flight, mut published, mut errors) = (0, 0, 0, 0);
    let (mut stream, mut connects, mut connect_failures) = (None::<Blocking>, 0u64, 0);
    let (mut rx, mut buf, mut request) = (Vec::new(), vec![0; 16 * 1024], Vec::new());
    let mut drain_until = None;
    let failure = loop {
        let now = Instant::now();
        let sending = sent < a.count && now < send_until;
        // Once sending is over, answers still owed get a few seconds.
        let drained =
            !sending && (in_flight == 0 || now >= *drain_until.get_or_insert(now + secs(5.0)));
        if SIGNAL.load(Relaxed) != 0 || now >= hard_stop || drained {
            break None;
        }
        let Some(conn) = stream.as_mut() else {
            let connected = TcpStream::connect_timeout(&addr, secs(5.0)).and_then(|s| {
                _ = s.set_nodelay(true);
                _ = s.set_write_timeout(Some(secs(5.0)));
                Blocking::new(s, tls.as_ref())
            });
            match connected {
                Ok(s) => {
                    (stream, connects, connect_failures) = (Some(s), connects + 1, 0);
                }
                Err(e) if connects == 0 => return Err(fatal!("connect to {addr}: {e}")),
                Err(e) if connect_failures >= 10 => break Some(fatal!("reconnect to {addr}: {e}")),
                Err(_) => {
                    connect_failures += 1;
                    std::thread::sleep(secs(0.1));
                }
            }
            continue;
        };
        let can_send = sending && in_flight < a.pipeline;
        let due = if a.rate > 0.0 {
            start + secs(sent as f64 / a.rate)
        } else {
            now
        };
        if can_send && now >= due {
            // Round-robin over the paths; `{i}` counts the events sent to this one before.
            let (turn, paths) = (sent as usize % a.paths.len(), a.paths.len() as u64);
            let path = expand(&a.paths[turn], sent / paths).expect("--path is checked when parsed");
            build_publish(&mut request, a, &path, unix_micros());
            sent += 1;
            in_flight += 1;
            if let Err(e) = conn.write_all(&request) {
                log::debug!("publish: write: {e}");
                errors += u64::from(in_flight);
                (stream, in_flight) = (None, 0);
                rx.clear();
            }
            continue;
        }
        // Wait for answers until the next send is due. Reading while idle also notices the
        // server closing the connection between events.
        let wait = if can_send {
            due.saturating_duration_since(now)
        } else {
            secs(0.1)
        };
        _ = conn
            .socket()
            .set_read_timeout(Some(wait.clamp(secs(0.001), secs(0.1))));
        let eof = match conn.read(&mut buf) {
            Ok(n) => {
                rx.extend_from_slice(&buf[..n]);
                n == 0
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                log::debug!("publish: read: {e}");
                true
            }
        };
        let close = loop {
            match take_response(&rx, eof) {
                Ok(Some((head, used))) => {
                    rx.drain(..used);
                    if head.status >= 200 && in_flight > 0 {
                        in_flight -= 1;
                        let ok = (200..300).contains(&head.status);
                        (published, errors) = (published + u64::from(ok), errors + u64::from(!ok));
                    }
                    if head.close {
                        break true;
                    }
                }
                Ok(None) => break eof,
                Err(e) => {
                    log::debug!("publish: bad response: {e}");
                    break true;
                }
            }
        };
        if close {
            // What is still in flight on a closing connection will never be answered.
            errors += u64::from(in_flight);
            (stream, in_flight) = (None, 0);
            rx.clear();
        }
    };
    errors += u64::from(in_flight);
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "{}",
        json! {
            "mode": "\"publish\"",
            "published": published,
            "errors": errors,
            "reconnects": connects.saturating_sub(1),
            "sent": sent,
            "elapsed_s": format!("{elapsed:.3}"),
            "rate": format!("{:.1}", published as f64 / elapsed.max(1e-9)),
        }
    );
    failure.map_or(Ok(()), Err)
}

fn build_publish(request: &mut Vec<u8>, a: &PublishArgs, path: &str, t: u64) {
    let stamp = format!("t={t}");
    let padding = a.size.saturating_sub(stamp.len());
    request.clear();
    _ = write!(request, "POST {path} HTTP/1.1\r\nHost: {}\r\n", a.addr);
    if let Some(token) = &a.token {
        _ = write!(request, "Authorization: Bearer {token}\r\n");
    }
    let length = stamp.len() + padding;
    _ = write!(
        request,
        "Content-Type: text/plain\r\nContent-Length: {length}\r\n\r\n{stamp}"
    );
    if padding > 0 {
        request.push(b' ');
        request.resize(request.len() + padding - 1, b'x');
    }
}
