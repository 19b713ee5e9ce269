//! Starting and stopping the daemon: the open-file limit, the listeners, one worker thread per
//! event loop, and the signals that end them.
//!
//! Every worker gets its own listening socket bound to the same address with SO_REUSEPORT, so the
//! kernel spreads new connections over the workers and no accept is shared. The main thread only
//! waits: for SIGINT/SIGTERM (then it asks every worker to stop and gives them 2 s), or for a
//! worker that ended on its own, which is a bug: the process then exits non-zero rather than live
//! on with a listener nobody serves, so that a supervisor restarts it.

use crate::broker::Broker;
use crate::config::Config;
use crate::event_loop::{Worker, WAKER};
use crate::mailbox::Mailboxes;
use crate::metrics::GlobalStats;
use crate::publish::Hub;
use crate::redis_broker::{self, redacted, BrokerSettings};
use crate::settings::Settings;
use crate::tls::Certificates;
use mio::{Poll, Waker};
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::SocketAddr;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// Descriptors kept back from --max-connections: listeners, wakers, epoll, logs, /proc reads.
const RESERVED_FDS: usize = 64;
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// A daemon listening, its workers started.
pub struct Server {
    pub local_addr: SocketAddr,
    hub: Arc<Hub>,
    notices: mpsc::Receiver<Notice>,
    notify: mpsc::Sender<Notice>,
    workers: usize,
    shutdown_delay: Duration,
    tls: Option<Arc<Certificates>>,
}

/// What the main thread waits for.
pub enum Notice {
    /// Shut down (a signal, or the embedding program asks).
    Stop,
    /// Re-read the files that may change under a running daemon (SIGHUP): key files, and the
    /// TLS certificate and key.
    Reload,
    /// A worker thread ended, with its error if it had one.
    WorkerEnded(usize, Result<(), String>),
}

/// Raises the soft open-file limit to the hard limit; returns the resulting limit.
pub fn raise_open_file_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(io::Error::last_os_error());
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    Ok(limit.rlim_cur)
}

/// A non-blocking listener with SO_REUSEPORT, so several workers and processes can share `addr`.
pub fn bind_listener(addr: SocketAddr) -> io::Result<mio::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(false)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    // The kernel caps the backlog at net.core.somaxconn (see docs/operations.md).
    socket.listen(65535)?;
    Ok(mio::net::TcpListener::from_std(socket.into()))
}

impl Server {
    pub fn start(config: &Config) -> io::Result<Server> {
        // A write to a connection its peer has closed must be an EPIPE for that connection, not
        // a signal that ends the process. Rust's `main` ignores SIGPIPE already; a server
        // started from elsewhere (a fuzz target, another program) must not depend on that.
        // SAFETY: setting a signal's disposition to SIG_IGN installs no handler.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
        let auth =
            crate::auth::Authorizer::from_config(&config.auth, config.publish_token.as_deref())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => {
                Some(Arc::new(Certificates::load(cert, key).map_err(|e| {
                    io::Error::new(io::ErrorKind::InvalidInput, e)
                })?))
            }
            _ => None,
        };
        let open_files = raise_open_file_limit()?;
        let workers = config.workers();
        let max_connections = config
            .max_connections
            .unwrap_or_else(|| (open_files as usize).saturating_sub(RESERVED_FDS + 4 * workers))
            .max(workers);
        log::info!(
            "open-file limit {open_files}: up to {max_connections} connections over {workers} worker(s)"
        );
        if let Some(wanted) = config.max_connections {
            if wanted + RESERVED_FDS > open_files as usize {
                log::warn!("--max-connections {wanted} is above what the open-file limit ({open_files}) allows; accepts will fail with EMFILE first");
            }
        }

        // The first listener picks the port (for `:0`); the others join it with SO_REUSEPORT.
        let first = bind_listener(config.listen).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot listen on {}: {e}", config.listen))
        })?;
        let local_addr = first.local_addr()?;
        let mut listeners = vec![first];
        for _ in 1..workers {
            listeners.push(bind_listener(local_addr)?);
        }
        let mut polls = Vec::with_capacity(workers);
        let mut wakers = Vec::with_capacity(workers);
        for _ in 0..workers {
            let poll = Poll::new()?;
            wakers.push(Waker::new(poll.registry(), WAKER)?);
            polls.push(poll);
        }
        let mailboxes = Arc::new(Mailboxes::new(wakers));
        let global_stats = Arc::new(GlobalStats::default());
        let mut redis_threads = None;
        let broker = match &config.redis {
            None => Broker::local(),
            Some(url) => {
                let broker_settings = BrokerSettings {
                    url: url.clone(),
                    history: config.history,
                    history_bytes: config.history_bytes,
                    stream_len: config.redis_stream_len,
                    topic_ttl_ms: config.topic_ttl.saturating_mul(1000),
                };
                let (link, threads) = redis_broker::connect_at_startup(&broker_settings)
                    .map_err(|e| io::Error::new(io::ErrorKind::ConnectionRefused, e))?;
                log::info!(
                    "following Redis stream at {} after event {}",
                    redacted(url),
                    link.stream_start()
                );
                redis_threads = Some(threads);
                Broker::Redis(link)
            }
        };
        let hub = Arc::new(Hub::new(
            Arc::clone(&mailboxes),
            broker,
            auth,
            Arc::clone(&global_stats),
        ));
        if let Some(threads) = redis_threads {
            threads.start(mailboxes, global_stats)?;
        }
        let settings = Arc::new(Settings {
            tls: tls.clone(),
            ..Settings::from_config(config)
        });

        let (notify, notices) = mpsc::channel();
        for (index, (poll, listener)) in polls.into_iter().zip(listeners).enumerate() {
            let share = max_connections / workers + usize::from(index < max_connections % workers);
            let worker = Worker::new(
                index,
                poll,
                listener,
                Arc::clone(&hub),
                Arc::clone(&settings),
                share,
            )?;
            let notify = notify.clone();
            std::thread::Builder::new()
                .name(format!("ssed-worker-{index}"))
                .spawn(move || {
                    // Sent from a guard so that a panicking worker is reported too.
                    struct Report(usize, mpsc::Sender<Notice>, Option<Result<(), String>>);
                    impl Drop for Report {
                        fn drop(&mut self) {
                            let outcome = self.2.take().unwrap_or_else(|| Err("panicked".into()));
                            let _ = self.1.send(Notice::WorkerEnded(self.0, outcome));
                        }
                    }
                    let mut report = Report(index, notify, None);
                    report.2 = Some(worker.run().map_err(|e| e.to_string()));
                })?;
        }
        Ok(Server {
            local_addr,
            hub,
            notices,
            notify,
            workers,
            shutdown_delay: Duration::from_secs(config.shutdown_delay),
            tls,
        })
    }

    /// A handle that stops the server when sent [`Notice::Stop`].
    pub fn stopper(&self) -> mpsc::Sender<Notice> {
        self.notify.clone()
    }

    /// Blocks until asked to stop, then stops every worker within 2 s. A worker that ends before
    /// that is a bug, reported as an error so that the process exits non-zero.
    pub fn wait(self) -> Result<(), String> {
        loop {
            match self.notices.recv() {
                Ok(Notice::Stop) | Err(_) => break,
                Ok(Notice::Reload) => {
                    // Logs what it did; a bad file keeps the old keys.
                    let _ = self.hub.auth.reload();
                    if let Some(tls) = &self.tls {
                        let _ = tls.reload();
                    }
                }
                Ok(Notice::WorkerEnded(index, outcome)) => {
                    let why = outcome.err().unwrap_or_else(|| "returned".into());
                    return Err(format!(
                        "worker {index} stopped unexpectedly ({why}); exiting so that a supervisor restarts ssed"
                    ));
                }
            }
        }
        self.hub.drain();
        if !self.shutdown_delay.is_zero() {
            log::info!(
                "not ready any more; shutting down in {} s",
                self.shutdown_delay.as_secs()
            );
            // A second signal ends the wait.
            let _ = self.notices.recv_timeout(self.shutdown_delay);
        }
        self.hub.shut_down();
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        let mut ended = 0;
        while ended < self.workers {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.notices.recv_timeout(left) {
                Ok(Notice::Stop | Notice::Reload) => {}
                Ok(Notice::WorkerEnded(_, Ok(()))) => ended += 1,
                Ok(Notice::WorkerEnded(index, Err(why))) => {
                    return Err(format!("worker {index} failed while stopping: {why}"))
                }
                Err(_) => return Err("workers did not stop within 2 s".into()),
            }
        }
        Ok(())
    }
}
