//! What a `subscribe` run reports: its counters, the latency histogram and the per-event table
//! behind the last-subscriber latency. A process prints a `Summary` as the JSON line users and
//! the bench scripts read; under `--processes` each child prints it as a `raw ...` line
//! instead, which the parent parses back and merges into one JSON line.

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::histogram::Histogram;

/// Bounds the per-event table should a run publish far more than the tens of thousands planned.
const MAX_TRACKED_EVENTS: usize = 1 << 20;

/// Why a connection never got established; names in `FAIL_REASONS`, same order.
#[derive(Clone, Copy, Debug)]
pub enum Fail {
    Connect,
    Status,
    ContentType,
    Closed,
    Timeout,
    Aborted,
}

const FAIL_REASONS: [&str; 6] = [
    "connect",
    "status",
    "content_type",
    "closed",
    "timeout",
    "aborted",
];

#[derive(Default)]
pub struct Summary {
    pub attempted: u64,
    pub established: u64,
    /// Connections that never got established, counted by `Fail`.
    pub fails: [u64; FAIL_REASONS.len()],
    /// Established connections that ended before the run did.
    pub dropped: u64,
    pub events: u64,
    pub heartbeats: u64,
    pub comments: u64,
    pub bytes: u64,
    pub rss_bytes: u64,
    /// Fewest and most events an established connection received; `None` if none was.
    pub min_events: Option<u64>,
    pub max_events: u64,
    latency: Histogram,
    /// Event stamp → latency to the last subscriber that got it.
    last_latency: HashMap<u64, u64>,
    pub elapsed_s: f64,
    /// Seconds from the start until every connection was established or failed (`ready`).
    pub ready_s: f64,
    children_rss: Vec<u64>,
}

impl Summary {
    pub fn record_delivery(&mut self, t: u64, now_us: u64) {
        let latency = now_us.saturating_sub(t);
        self.latency.record(latency);
        if self.last_latency.len() < MAX_TRACKED_EVENTS || self.last_latency.contains_key(&t) {
            let slowest = self.last_latency.entry(t).or_default();
            *slowest = latency.max(*slowest);
        }
    }

    /// The counters that add up across processes, listed once for merging and the hand-off.
    fn sums(&mut self) -> impl Iterator<Item = &mut u64> {
        let s = self;
        [
            &mut s.attempted,
            &mut s.established,
            &mut s.dropped,
            &mut s.events,
            &mut s.heartbeats,
            &mut s.comments,
            &mut s.bytes,
            &mut s.rss_bytes,
        ]
        .into_iter()
        .chain(&mut s.fails)
    }

    /// Adds a child's report to the parent's total.
    pub fn merge(&mut self, mut other: Summary) {
        self.sums()
            .zip(other.sums())
            .for_each(|(sum, v)| *sum += *v);
        self.min_events = self.min_events.into_iter().chain(other.min_events).min();
        self.max_events = self.max_events.max(other.max_events);
        self.latency.merge(&other.latency);
        for (t, latency) in other.last_latency {
            let slowest = self.last_latency.entry(t).or_default();
            *slowest = latency.max(*slowest);
        }
        self.children_rss.push(other.rss_bytes);
    }

    /// What a child prints for its parent: `raw <min> <max> <latency max> <sums>... |
    /// <bucket count>... | <stamp latency>...`.
    pub fn raw_line(&mut self) -> String {
        let (min, max) = (self.min_events.unwrap_or(0), self.max_events);
        let mut line = format!("raw {min} {max} {}", self.latency.max);
        self.sums().for_each(|v| _ = write!(line, " {v}"));
        line += " |";
        for (i, &n) in self.latency.buckets.iter().enumerate() {
            if n > 0 {
                _ = write!(line, " {i} {n}");
            }
        }
        line += " |";
        for (t, latency) in &self.last_latency {
            _ = write!(line, " {t} {latency}");
        }
        line
    }

    pub fn from_raw(line: &str) -> Option<Summary> {
        let parts: Vec<&str> = line.strip_prefix("raw ")?.split('|').collect();
        let numbers = |s: &str| -> Option<Vec<u64>> {
            s.split_whitespace().map(|v| v.parse().ok()).collect()
        };
        let [counts, buckets, events] = parts[..] else {
            return None;
        };
        let (counts, buckets, events) = (numbers(counts)?, numbers(buckets)?, numbers(events)?);
        let [min, max_events, latency_max, ref sums @ ..] = counts[..] else {
            return None;
        };
        let mut s = Summary {
            max_events,
            ..Summary::default()
        };
        s.sums().zip(sums).for_each(|(sum, &v)| *sum = v);
        s.min_events = (s.established > 0).then_some(min);
        buckets
            .chunks_exact(2)
            .for_each(|b| s.latency.add(b[0] as usize, b[1]));
        s.latency.max = latency_max;
        s.last_latency
            .extend(events.chunks_exact(2).map(|e| (e[0], e[1])));
        Some(s)
    }

    pub fn to_json(&self) -> String {
        let fails = FAIL_REASONS
            .iter()
            .zip(self.fails)
            .map(|(k, v)| format!("\"{k}\":{v}"));
        let fails = format!("{{{}}}", fails.collect::<Vec<_>>().join(","));
        let mut last: Vec<u64> = self.last_latency.values().copied().collect();
        last.sort_unstable();
        let children: Vec<String> = self.children_rss.iter().map(u64::to_string).collect();
        let lat = &self.latency;
        json! {
            "mode": "\"subscribe\"",
            "attempted": self.attempted,
            "established": self.established,
            "failed": self.fails.iter().sum::<u64>(),
            "fail_reasons": fails,
            "dropped": self.dropped,
            "events": self.events,
            "heartbeats": self.heartbeats,
            "comments": self.comments,
            "bytes": self.bytes,
            "min_events_per_conn": self.min_events.unwrap_or(0),
            "max_events_per_conn": self.max_events,
            "latency_us": json! {
                "p50": lat.percentile(0.5),
                "p99": lat.percentile(0.99),
                "max": lat.max,
                "samples": lat.count,
            },
            "last_subscriber_latency_us": json! {
                "p50": last.get(last.len().saturating_sub(1) / 2).unwrap_or(&0),
                "max": last.last().unwrap_or(&0),
                "events": last.len(),
            },
            "elapsed_s": format!("{:.3}", self.elapsed_s),
            "ready_s": format!("{:.3}", self.ready_s),
            "rss_bytes": self.rss_bytes,
            "processes": children.len().max(1),
            "children_rss_bytes": format!("[{}]", children.join(",")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_reports_round_trip_and_merge() {
        let mut s = Summary {
            attempted: 10,
            established: 8,
            dropped: 1,
            ..Summary::default()
        };
        (s.events, s.min_events, s.max_events, s.rss_bytes) = (80, Some(9), 11, 4096);
        s.fails[Fail::Timeout as usize] = 2;
        [(100, 150), (100, 170), (200, 230)]
            .iter()
            .for_each(|&(t, now)| s.record_delivery(t, now));
        let mut total = Summary::default();
        total.merge(Summary::from_raw(&s.raw_line()).unwrap());
        total.merge(Summary::from_raw(&s.raw_line()).unwrap());
        let json = total.to_json();
        for part in [
            r#""attempted":20,"established":16,"failed":4"#,
            r#""timeout":4,"aborted":0},"dropped":2,"events":160"#,
            r#""min_events_per_conn":9,"max_events_per_conn":11"#,
            r#""latency_us":{"p50":50,"p99":70,"max":70,"samples":6}"#,
            r#""last_subscriber_latency_us":{"p50":30,"max":70,"events":2}"#,
            r#""rss_bytes":8192,"processes":2,"children_rss_bytes":[4096,4096]}"#,
        ] {
            assert!(json.contains(part), "{part} not in {json}");
        }
    }
}
