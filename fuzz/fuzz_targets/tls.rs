//! Arbitrary bytes at the TLS layer of a real HTTPS connection: one daemon in this process
//! (1 worker, `--header-timeout 1`, a certificate made at startup), a fresh TCP connection per
//! input, then a check that the daemon still completes a handshake and answers `GET /healthz`.
//! Input: 1 byte choosing what the rest is, then the bytes:
//! - 0 mod 3: sent raw, as a client's first bytes (plaintext, garbage, record headers);
//! - 1 mod 3: XORed over a real ClientHello (cycling), which is then sent: malformed handshakes;
//! - 2 mod 3: sent raw after a real, completed handshake: records that do not decrypt, partial
//!   records, alerts out of place.
//!
//! A worker panic aborts the process (panic hook), and a worker that ends any other way is
//! caught by `Server::wait` returning.
#![no_main]
use clap::Parser as _;
use libfuzzer_sys::fuzz_target;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use ssed::{config::Config, server::Server};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, OnceLock};
use std::{thread, time::Duration};

struct Target {
    addr: SocketAddr,
    client: Arc<ClientConfig>,
}

fn target() -> &'static Target {
    static TARGET: OnceLock<Target> = OnceLock::new();
    TARGET.get_or_init(|| {
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            hook(info);
            std::process::abort()
        }));
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let dir = std::env::temp_dir().join(format!("ssed-fuzz-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        let args = [
            "ssed",
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "1",
            "--header-timeout",
            "1",
            "--tls-cert",
            cert_path.to_str().unwrap(),
            "--tls-key",
            key_path.to_str().unwrap(),
        ];
        let server = Server::start(&Config::parse_from(args)).expect("start ssed");
        let addr = server.local_addr;
        thread::spawn(move || {
            eprintln!("ssed stopped: {:?}", server.wait());
            std::process::abort()
        });
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from(cert.der().to_vec()))
            .unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Target {
            addr,
            client: Arc::new(client),
        }
    })
}

fn tcp(addr: SocketAddr) -> TcpStream {
    let conn = TcpStream::connect(addr).expect("connect to ssed");
    conn.set_nodelay(true).unwrap();
    conn.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    conn
}

fn client(target: &Target) -> ClientConnection {
    let name = ServerName::try_from("localhost").unwrap();
    ClientConnection::new(Arc::clone(&target.client), name).unwrap()
}

/// A completed handshake, or None if the server refused it.
fn handshake(target: &Target, timeout_ms: u64) -> Option<StreamOwned<ClientConnection, TcpStream>> {
    let mut conn = client(target);
    let mut sock = tcp(target.addr);
    sock.set_read_timeout(Some(Duration::from_millis(timeout_ms)))
        .unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).ok()?;
    }
    Some(StreamOwned::new(conn, sock))
}

fn healthy(target: &Target) -> bool {
    let Some(mut stream) = handshake(target, 5000) else {
        return false;
    };
    if stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: f\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    answer.starts_with(b"HTTP/1.1 200 ")
}

fn send_and_drain(mut sock: TcpStream, bytes: &[u8]) {
    let _ = sock.write_all(bytes);
    let _ = sock.shutdown(Shutdown::Write);
    let mut answer = Vec::new();
    let _ = sock.read_to_end(&mut answer); // EOF, a reset, or the timeout
}

fuzz_target!(|data: &[u8]| {
    let target = target();
    let Some((&mode, input)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => send_and_drain(tcp(target.addr), input),
        1 => {
            let mut hello = Vec::new();
            let mut conn = client(target);
            while conn.wants_write() {
                conn.write_tls(&mut hello).unwrap();
            }
            if !input.is_empty() {
                for (i, byte) in hello.iter_mut().enumerate() {
                    *byte ^= input[i % input.len()];
                }
            }
            send_and_drain(tcp(target.addr), &hello);
        }
        _ => {
            if let Some(stream) = handshake(target, 1000) {
                send_and_drain(stream.sock, input);
            }
        }
    }
    assert!(
        healthy(target),
        "ssed no longer completes a handshake and answers GET /healthz"
    );
});
