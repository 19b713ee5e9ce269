//! `subscribe --processes P`: one process can hold only so many sockets (the open-file limit),
//! so the parent re-executes this binary P times, each child on its own share of the
//! connections and its own source addresses, forwards signals to them, and merges their `raw`
//! reports into the one `ready` line and JSON summary a single process would print.

use std::io::{self, BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc;
use std::time::Instant;

use crate::subscribe::MAX_PER_PROCESS;
use crate::summary::Summary;
use crate::{resolve, secs, source_ip, Failure, SubscribeArgs, SIGNAL};

pub fn run_parent(a: &SubscribeArgs) -> Result<(), Failure> {
    let (n, p) = (u64::from(a.connections), u64::from(a.processes));
    resolve(&a.addr)?;
    if p > n {
        return Err(usage!("--processes is larger than --connections"));
    }
    let shares: Vec<u64> = (0..p).map(|j| n / p + u64::from(j < n % p)).collect();
    if shares[0] > MAX_PER_PROCESS {
        return Err(usage!(
            "{} connections per process is over 19000; raise --processes",
            shares[0]
        ));
    }
    // Each child starts on a fresh source address, so no two processes share one.
    let sources: Vec<u64> = shares
        .iter()
        .map(|s| s.div_ceil(a.per_source.into()))
        .collect();
    source_ip(a.source_base, sources.iter().sum::<u64>() - 1)?;
    let exe = std::env::current_exe().map_err(|e| fatal!("current_exe: {e}"))?;
    let start = Instant::now();
    let (tx, rx) = mpsc::channel::<(usize, Option<String>)>();
    let mut children: Vec<Child> = Vec::new();
    let (mut first_index, mut first_source) = (a.index_offset, 0);
    for (j, &share) in shares.iter().enumerate() {
        let overrides = [
            format!("--connections={share}"),
            format!("--source-base={}", source_ip(a.source_base, first_source)?),
            format!("--index-offset={first_index}"),
            format!("--connect-batch={}", (a.connect_batch / a.processes).max(1)),
            "--processes=1".into(),
            "--report-raw".into(),
        ];
        let mut command = Command::new(&exe);
        command
            .args(std::env::args_os().skip(1))
            .args(overrides)
            .stdout(Stdio::piped());
        let mut child = command.spawn().map_err(|e| {
            signal_all(&children, libc::SIGTERM);
            fatal!("starting child process: {e}")
        })?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                _ = tx.send((j, Some(line)));
            }
            _ = tx.send((j, None));
        });
        children.push(child);
        (first_index, first_source) = (first_index + share, first_source + sources[j]);
    }
    drop(tx);

    let mut ready = vec![None; children.len()];
    let mut ready_s = 0.0;
    let mut reports: Vec<Option<Summary>> = children.iter().map(|_| None).collect();
    let (mut running, mut lost_child) = (children.len(), None);
    while running > 0 {
        let sig = SIGNAL.swap(0, Relaxed);
        if sig != 0 {
            signal_all(&children, sig);
        }
        match rx.recv_timeout(secs(0.1)) {
            Ok((j, Some(line))) if line.starts_with("ready ") => {
                ready[j] = Some(line);
                if ready.iter().all(Option::is_some) {
                    let sum = |key| {
                        ready
                            .iter()
                            .flatten()
                            .map(|l| ready_count(l, key))
                            .sum::<u64>()
                    };
                    let (established, failed) = (sum("established"), sum("failed"));
                    println!("ready established={established} failed={failed} attempted={n}");
                    _ = io::stdout().flush();
                    ready_s = start.elapsed().as_secs_f64();
                }
            }
            Ok((j, Some(line))) => reports[j] = Summary::from_raw(&line),
            Ok((j, None)) => {
                running -= 1;
                if reports[j].is_none() && lost_child.is_none() {
                    lost_child = Some(j);
                    signal_all(&children, libc::SIGTERM);
                }
            }
            Err(_) => {}
        }
    }
    let statuses: Vec<_> = children.iter_mut().map(Child::wait).collect();
    if let Some(j) = lost_child {
        return Err(fatal!(
            "child process {j} ended without a report ({:?})",
            statuses[j]
        ));
    }
    let mut total = Summary::default();
    reports
        .into_iter()
        .flatten()
        .for_each(|report| total.merge(report));
    total.elapsed_s = start.elapsed().as_secs_f64();
    total.ready_s = ready_s;
    println!("{}", total.to_json());
    if total.established == 0 {
        return Err(fatal!("no connection to {} could be established", a.addr));
    }
    Ok(())
}

/// `key=<count>` from a child's ready line.
fn ready_count(line: &str, key: &str) -> u64 {
    let value = line
        .split(' ')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='));
    value.and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn signal_all(children: &[Child], sig: libc::c_int) {
    for child in children {
        // SAFETY: plain kill(2). Children are reaped only after the last signal is sent, so
        // their pids cannot have been reused.
        unsafe { libc::kill(child.id() as libc::pid_t, sig) };
    }
}
