//! Arbitrary bytes through a real connection of the real event loop: one daemon in this process
//! (1 worker), a fresh TCP connection per input written in up to three pieces, then a check that
//! the daemon still answers `GET /healthz`. Input: 2 bytes that choose where the pieces end (as
//! fractions of the rest), then the bytes sent. A worker panic aborts the process (panic hook),
//! and a worker that ends any other way is caught by `Server::wait` returning.
#![no_main]
use clap::Parser as _;
use libfuzzer_sys::fuzz_target;
use ssed::{config::Config, server::Server};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::{sync::OnceLock, thread, time::Duration};

fn daemon() -> SocketAddr {
    static ADDR: OnceLock<SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| {
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            hook(info);
            std::process::abort()
        }));
        let args = ["ssed", "--listen", "127.0.0.1:0", "--workers", "1", "--header-timeout", "1"];
        let server = Server::start(&Config::parse_from(args)).expect("start ssed");
        let addr = server.local_addr;
        thread::spawn(move || {
            eprintln!("ssed stopped: {:?}", server.wait());
            std::process::abort()
        });
        addr
    })
}

fn exchange(addr: SocketAddr, pieces: &[&[u8]], timeout_ms: u64) -> Vec<u8> {
    let mut conn = TcpStream::connect(addr).expect("connect to ssed");
    conn.set_nodelay(true).unwrap();
    conn.set_read_timeout(Some(Duration::from_millis(timeout_ms))).unwrap();
    for piece in pieces.iter().filter(|p| !p.is_empty()) {
        if conn.write_all(piece).is_err() {
            break; // refused and closed: fine
        }
        thread::sleep(Duration::from_micros(200)); // let the worker read this piece alone
    }
    let _ = conn.shutdown(Shutdown::Write);
    let mut answer = Vec::new();
    let _ = conn.read_to_end(&mut answer); // EOF, a reset, or the timeout
    answer
}

fn healthy(addr: SocketAddr) -> bool {
    let answer = exchange(addr, &[b"GET /healthz HTTP/1.1\r\nHost: f\r\n\r\n"], 5000);
    answer.starts_with(b"HTTP/1.1 200 ")
}

fuzz_target!(|data: &[u8]| {
    let addr = daemon();
    let Some(([a, b], input)) = data.split_first_chunk::<2>() else { return };
    let at = |x: &u8| input.len() * usize::from(*x) / 255;
    let (first, second) = (at(a).min(at(b)), at(a).max(at(b)));
    exchange(addr, &[&input[..first], &input[first..second], &input[second..]], 200);
    assert!(healthy(addr), "ssed no longer answers GET /healthz");
});
