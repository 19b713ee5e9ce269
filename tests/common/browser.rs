//! Headless Chromium for the browser tests: a tiny server for the test page, the browser with a
//! throwaway profile, and the reports the page sends back by publishing them (as JSON) to a
//! topic on an ssed of its own, which the test subscribes to.

use super::Subscription;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Serves `page` to whoever asks, on a free loopback port; returns its origin
/// (`http://127.0.0.1:PORT`).
pub fn serve_page(page: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                page.len()
            );
            let _ = reader.get_mut().write_all(response.as_bytes());
        }
    });
    origin
}

/// Headless Chromium with a throwaway profile, killed and cleaned up on drop.
pub struct Browser {
    child: Child,
    profile: std::path::PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Opens `url` in a fresh headless Chromium.
pub fn open_browser(url: &str) -> Browser {
    open_browser_with(url, &[])
}

/// Opens `url` in a fresh headless Chromium started with `extra` flags too.
pub fn open_browser_with(url: &str, extra: &[&str]) -> Browser {
    static OPENED: AtomicUsize = AtomicUsize::new(0);
    let profile = std::env::temp_dir().join(format!(
        "ssed-chromium-{}-{}",
        std::process::id(),
        OPENED.fetch_add(1, Relaxed)
    ));
    let child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            &format!("--user-data-dir={}", profile.display()),
            "--remote-debugging-port=0",
        ])
        .args(extra)
        .arg(url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium is needed for this test: run ./test.sh, which installs it");
    Browser { child, profile }
}

/// The next report from the page: the JSON object it published.
pub fn next_report(reports: &mut Subscription) -> serde_json::Value {
    let json = reports.next_event().data;
    serde_json::from_str(&json)
        .unwrap_or_else(|e| panic!("a report that is not JSON ({e}): {json}"))
}
