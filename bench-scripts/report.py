#!/usr/bin/env python3
"""Writes docs/benchmarks.md and docs/memory-per-connection.svg from the JSON lines that
memory.sh, fanout.sh, scale.sh and abuse.sh wrote into docs/benchmark-data/ (run-all.sh runs them there).
Lines with "tls": true (memory.sh --tls, fanout.sh --tls; abuse.sh --tls by its meta line) go to the TLS sections only.

Nothing in the page is typed by hand: every figure is read from those files, each table says
which run (date, commit, command) it comes from, and when a point was measured several times the
page shows the median the scripts computed. Usage: bench-scripts/report.py [DATA_DIR]
"""
import datetime
import glob
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "docs", "benchmark-data")
SERVERS = ["ssed", "ssed-1w", "floor", "go-nethttp", "go-hijack", "axum", "nginx-nchan"]
LABELS = {
    "ssed": "ssed",
    "ssed-1w": "ssed --workers 1",
    "floor": "kernel floor (C, epoll)",
    "go-nethttp": "Go net/http",
    "go-hijack": "Go Hijacker",
    "axum": "axum Sse (tokio)",
    "nginx-nchan": "nginx + nchan",
}
# Over TLS (memory.sh --tls, fanout.sh --tls): ssed and ssed-1w keep their names there.
TLS_SERVERS = ["ssed", "ssed-1w", "go-hijack-tls", "axum-tls", "nginx-tls", "nginx-nchan-tls"]
TLS_LABELS = {
    "ssed": "ssed (its own TLS: rustls)",
    "ssed-1w": "ssed --workers 1 (rustls)",
    "go-hijack-tls": "Go Hijacker + crypto/tls",
    "axum-tls": "axum Sse + rustls (axum-server)",
    "nginx-tls": "nginx TLS in front of ssed (both)",
    "nginx-nchan-tls": "nginx + nchan, TLS",
}
# The chart's labels must fit in its 190 px left margin.
TLS_CHART_LABELS = {
    "ssed": "ssed (rustls)",
    "ssed-1w": "ssed --workers 1 (rustls)",
    "go-hijack-tls": "Go Hijacker + crypto/tls",
    "axum-tls": "axum + rustls",
    "nginx-tls": "nginx TLS → ssed",
    "nginx-nchan-tls": "nginx + nchan (TLS)",
}
# ssed's bar on user space per idle TLS subscriber at N >= 10,000, and the stretch goal.
TLS_BAR, TLS_STRETCH = 4096, 2048


def load(bench):
    """Every row of every file of one benchmark, each with its file's meta line attached."""
    rows = []
    for path in sorted(glob.glob(os.path.join(DATA, f"{bench}-*.jsonl"))):
        if path.endswith("-latest.jsonl"):
            continue
        meta = {}
        with open(path) as f:
            for line in f:
                row = json.loads(line)
                if row.get("kind") == "meta":
                    meta = row
                else:
                    row["_meta"] = meta
                    rows.append(row)
    return rows


def stamp(row):
    return row.get("stamp") or row["_meta"].get("stamp", "")


def is_tls(row):
    """A line of a --tls run (the flag is on the run and median lines and on the meta line)."""
    return bool(row.get("tls", row.get("_meta", {}).get("tls", False)))


def when(s):
    """A run's stamp (20261203-084337) as a datetime, or None."""
    try:
        return datetime.datetime.strptime(s, "%Y%m%d-%H%M%S")
    except (TypeError, ValueError):
        return None


def span(a, b):
    """How far apart two stamps are, in words."""
    ta, tb = when(a), when(b)
    if not ta or not tb:
        return "at an unknown distance in time"
    minutes = round(abs((tb - ta).total_seconds()) / 60)
    size = f"{minutes} min" if minutes < 120 else f"{minutes / 60:.1f} h" if minutes < 48 * 60 else f"{minutes / 1440:.0f} days"
    return f"{size} {'before' if ta <= tb else 'after'}"


def latest(rows, key):
    """For each key, the row of the newest run."""
    picked = {}
    for row in sorted(rows, key=stamp):
        picked[key(row)] = row
    return picked


def order(server):
    return SERVERS.index(server) if server in SERVERS else len(SERVERS)


def tls_order(server):
    return TLS_SERVERS.index(server) if server in TLS_SERVERS else len(TLS_SERVERS)


def tls_label(server):
    return TLS_LABELS.get(server, server)


def fmt(n):
    return f"{n:,.0f}" if isinstance(n, (int, float)) and n >= 100 else f"{n:g}" if isinstance(n, (int, float)) else str(n)


def ms(us):
    return f"{us / 1000:,.1f}"


def provenance(metas):
    lines = []
    for meta in metas:
        machine = f"{meta.get('cores', '?')} cores, {round(meta.get('mem_total_kb', 0) / 1048576)} GiB RAM, Linux {meta.get('kernel', '?')}"
        lines.append(f"- `{meta.get('command', '?')}` — run {meta.get('stamp', '?')}, commit {meta.get('commit', '?')}, {machine}")
    return "\n".join(sorted(set(lines)))


# ssed's bars on user space per idle subscriber, by kind of point (memory.sh prints the same).
BARS = {"single": 64, "single+auth": 96, "per-connection": 256, "multi": 256, "multi+auth": 256}


def memory_section(out):
    rows = [r for r in load("memory") if r.get("kind") == "median" and not is_tls(r)]
    if not rows:
        return {}
    # A run with a token per subscriber (--auth) is its own kind of point.
    for r in rows:
        if r.get("auth"):
            r["topics"] = r["topics"] + "+auth"
    table = latest(rows, lambda r: (r["server"], r["topics"], r["n"]))
    counts = sorted({n for (_, _, n) in table})
    out.append("## Memory per idle subscriber\n")
    out.append(
        "Each server is started fresh; once its RSS has settled, N subscribers connect and receive their "
        "response head, and once the RSS has settled again: **user** = growth of the server's RSS / N "
        "(what the server's own code costs), **kernel** = growth of the machine's `Slab:` / N (both ends "
        "of each loopback connection, the load generator's socket included, so about twice the server's "
        "own share; the same for every server). Heartbeat every 5 s, as in the original question. "
        "Medians of the runs shown.\n"
    )
    for topics, title in (
        ("single", "All subscribers on one topic"),
        ("per-connection", "One topic per subscriber"),
        ("single+auth", "One topic, each subscriber with its own token (HS256, `exp` one hour ahead)"),
        ("multi", "Three topics per subscriber, in one request: `GET /events?topic=all&topic=group/<i mod 100>&topic=user/<i>`"),
    ):
        servers = sorted({s for (s, t, _) in table if t == topics}, key=order)
        if not servers:
            continue
        out.append(f"### {title}\n")
        out.append("| server | " + " | ".join(f"user B/conn at {n:,}" for n in counts) + " | " + " | ".join(f"kernel B/conn at {n:,}" for n in counts) + " | runs |")
        out.append("|---" * (2 * len(counts) + 2) + "|")
        for s in servers:
            cells = [table.get((s, topics, n)) for n in counts]
            user = [fmt(c["user_bytes_per_conn"]) if c else "" for c in cells]
            kernel = [fmt(c["kernel_bytes_per_conn"]) if c else "" for c in cells]
            runs = max((c["runs"] for c in cells if c), default=0)
            out.append(f"| {LABELS.get(s, s)} | " + " | ".join(user) + " | " + " | ".join(kernel) + f" | {runs} |")
        out.append("")
    ssed_rows = [table[k] for k in table if k[0] == "ssed"]
    for r in ssed_rows:
        r["_bar"] = BARS.get(r["topics"], 256)
    verdicts = [
        f"{'meets' if r['user_bytes_per_conn'] <= r['_bar'] else 'MISSES'} the {r['_bar']}-byte bar at {r['n']:,} ({r['topics']} topics: {fmt(r['user_bytes_per_conn'])} B)"
        for r in sorted(ssed_rows, key=lambda r: (r["topics"], r["n"]))
        if r["n"] >= 10000
    ]
    if verdicts:
        out.append("ssed " + "; ".join(verdicts) + ".\n")
    # Only the runs whose figures are shown (a newer run of a point replaces an older one).
    out.append("Produced by:\n\n" + provenance({json.dumps(r["_meta"], sort_keys=True): r["_meta"] for r in table.values()}.values()) + "\n")
    return table


def chart(table, path, tls_table=None):
    """Horizontal bars, log scale: user-space and kernel bytes per connection per server, at the
    largest N measured with one topic; below, when there are TLS runs, the same over TLS."""
    def largest(t):
        biggest = {}
        for (s, topics, n), r in t.items():
            if topics == "single" and n >= biggest.get(s, (0, None))[0]:
                biggest[s] = (n, r)
        return biggest

    biggest = largest(table)
    servers = sorted(biggest, key=order)
    if not servers:
        return
    import math

    tls_biggest = largest(tls_table or {})
    tls_servers = sorted(tls_biggest, key=tls_order)
    width, left, bar, gap = 760, 190, 14, 14
    tls_top = 55 + len(servers) * (2 * bar + gap) + 30  # where the TLS panel starts
    height = tls_top + (45 + len(tls_servers) * (2 * bar + gap) + 30 if tls_servers else 0)
    lo, hi = 1, 100_000
    scale = lambda v: left + (width - left - 30) * (math.log10(max(v, lo)) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))
    n = max(biggest[s][0] for s in servers)
    svg = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="20" font-size="14" font-weight="bold">Memory per idle SSE connection ({n:,} subscribers, log scale)</text>',
        f'<rect x="{left}" y="30" width="12" height="10" fill="#1f77b4"/><text x="{left + 16}" y="39">user space (the server\'s RSS)</text>',
        f'<rect x="{left + 220}" y="30" width="12" height="10" fill="#bbbbbb"/><text x="{left + 236}" y="39">kernel (Slab, both socket ends)</text>',
    ]
    bottom = 55 + len(servers) * (2 * bar + gap)
    for tick in (1, 10, 100, 1_000, 10_000, 100_000):  # the grid first, so that bars cover it
        x = scale(tick)
        svg.append(f'<line x1="{x:.1f}" y1="50" x2="{x:.1f}" y2="{bottom}" stroke="#dddddd"/>')
        svg.append(f'<text x="{x:.1f}" y="{bottom + 14}" text-anchor="middle">{tick:,} B</text>')
    def bars(y, servers, biggest, label, user_colour):
        for s in servers:
            r = biggest[s][1]
            svg.append(f'<text x="{left - 8}" y="{y + bar + 4}" text-anchor="end">{label(s)}</text>')
            for value, colour in ((r["user_bytes_per_conn"], user_colour), (r["kernel_bytes_per_conn"], "#bbbbbb")):
                svg.append(f'<rect x="{left}" y="{y}" width="{max(scale(value) - left, 0):.1f}" height="{bar}" fill="{colour}"/>')
                svg.append(f'<text x="{max(scale(value), left) + 4:.1f}" y="{y + bar - 3}">{value:,.0f} B</text>')
                y += bar
            y += gap

    bars(55, servers, biggest, lambda s: LABELS.get(s, s), "#1f77b4")
    if tls_servers:
        # Over TLS, its own panel on the same scale: ssed (rustls) beside the TLS baselines.
        top, tn = tls_top, max(tls_biggest[s][0] for s in tls_servers)
        tls_bottom = top + 45 + len(tls_servers) * (2 * bar + gap)
        svg.append(f'<text x="{left}" y="{top + 12}" font-size="14" font-weight="bold">Over TLS ({tn:,} subscribers, same scale)</text>')
        svg.append(f'<rect x="{left}" y="{top + 22}" width="12" height="10" fill="#d62728"/><text x="{left + 16}" y="{top + 31}">user space (nginx TLS → ssed: both processes; its kernel bar: two connections)</text>')
        for tick in (1, 10, 100, 1_000, 10_000, 100_000):
            x = scale(tick)
            svg.append(f'<line x1="{x:.1f}" y1="{top + 40}" x2="{x:.1f}" y2="{tls_bottom}" stroke="#dddddd"/>')
            svg.append(f'<text x="{x:.1f}" y="{tls_bottom + 14}" text-anchor="middle">{tick:,} B</text>')
        bars(top + 45, tls_servers, tls_biggest, lambda s: TLS_CHART_LABELS.get(s, s), "#d62728")
    svg.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(svg) + "\n")


def fanout_rows(multi, tls=False):
    """fanout.sh's rows: those of its --topics multi runs (several topics per subscriber against
    one, in the same session), or all the others; over TLS (--tls) or not."""
    return [r for r in load("fanout") if (r["_meta"].get("topics") == "multi") == multi and is_tls(r) == tls]


def fanout_section(out):
    rows = fanout_rows(multi=False)
    if not rows:
        return
    table = latest(rows, lambda r: (r["server"], r["phase"], r["subscribers"]))
    for subs in sorted({n for (_, _, n) in table}):
        servers = sorted({s for (s, _, n) in table if n == subs}, key=order)
        out.append(f"## Fan-out: {subs:,} subscribers on one topic\n")
        out.append(
            "Server CPU is the server process's utime + stime over the phase (all its threads), divided by "
            "the events the subscribers actually received. The load generator runs on the same two cores, so "
            "latency and throughput are those of the pair on this machine; CPU per event is the server's own. "
            "*steady*: events at a fixed rate; *saturation*: published as fast as the publisher can; "
            "*heartbeat*: idle subscribers, a heartbeat every second.\n"
        )
        out.append("| server | steady: latency p50 / p99 / max (ms) | to the last subscriber p50 / max (ms) | CPU µs per delivery | saturation: deliveries/s | CPU µs per delivery | heartbeat: CPU µs per heartbeat |")
        out.append("|---|---|---|---|---|---|---|")
        for s in servers:
            st, sa, hb = (table.get((s, phase, subs)) for phase in ("steady", "saturate", "heartbeat"))
            cells = [LABELS.get(s, s)]
            if st:
                lat, last = st["latency_us"], st["last_subscriber_latency_us"]
                cells += [f"{ms(lat['p50'])} / {ms(lat['p99'])} / {ms(lat['max'])}", f"{ms(last['p50'])} / {ms(last['max'])}", f"{st['cpu_us_per_delivery']:g}"]
            else:
                cells += ["", "", ""]
            cells += [fmt(sa["delivered_per_s"]), f"{sa['cpu_us_per_delivery']:g}"] if sa else ["", ""]
            cells += [f"{hb['cpu_us_per_heartbeat']:g}"] if hb else [""]
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
        one, two = table.get(("ssed-1w", "saturate", subs)), table.get(("ssed", "saturate", subs))
        if one and two:
            steady = (table.get(("ssed", "steady", subs)), table.get(("ssed-1w", "steady", subs)))
            out.append(
                f"**Workers** (same run): ssed with 2 workers delivered {fmt(two['delivered_per_s'])} events/s at saturation "
                f"against {fmt(one['delivered_per_s'])} with 1, a ratio of {two['delivered_per_s'] / one['delivered_per_s']:.2f}"
                + (f"; steady latency p50 {ms(steady[0]['latency_us']['p50'])} ms against {ms(steady[1]['latency_us']['p50'])} ms." if all(steady) else ".")
                + " The load generator shares the same two cores, which caps what a second worker can show here.\n"
            )
    out.append("Produced by:\n\n" + provenance({json.dumps(r["_meta"], sort_keys=True): r["_meta"] for r in table.values()}.values()) + "\n")


PHASES = ["steady", "saturate", "heartbeat"]


def multi_topic_section(out):
    """The newest `fanout.sh --topics multi` run, whole: its ratios compare sub-runs of the same
    session, so rows of different runs are never mixed."""
    rows = fanout_rows(multi=True)
    if not rows:
        return
    newest = max(stamp(r) for r in rows)
    run = [r for r in rows if stamp(r) == newest]
    meta = run[0]["_meta"]
    medians = sorted((r for r in run if r.get("kind") == "median"), key=lambda r: (order(r["server"]), PHASES.index(r["phase"])))
    subs = meta.get("subscribers", 0)
    # Runs before the single sub-run had the same publisher published every event to all.
    same_publisher = "single_publish" in meta
    out.append(f"## Fan-out: {subs:,} subscribers of three topics each, against one\n")
    out.append(
        f"`fanout.sh --topics multi`: per phase, two sub-runs on fresh servers in the same session: **single**, "
        f"{subs:,} subscribers of `all`; **multi**, {subs:,} subscribers each holding three topics on one connection "
        "(`/events?topic=all&topic=group/<i mod 100>&topic=user/<i>`). "
        + (
            "In both, the events are published in turn to `all` and `group/k`, k cycling 0..99: one event reaches all "
            f"{subs:,} subscribers, the next the {subs // 100:,} of one group in *multi* and nobody in *single* (the same "
            "publisher in both, as the events a write carries at saturation depend on how fast events come to `all`). "
            if same_publisher
            else "In *single* every event is published to `all`; in *multi* in turn to `all` and `group/k`, k cycling "
            f"0..99, so that one event reaches all {subs:,} subscribers and the next the {subs // 100:,} of one group. "
        )
        + "CPU per delivery is ssed's utime + stime over the phase divided by the events the subscribers received, in "
        "each sub-run; the ratio multi / single is taken within each run, and its median is shown. "
        f"*steady*: {meta.get('steady_events', '?')} events at {meta.get('steady_rate', '?')}/s; *saturation*: published as "
        f"fast as the publisher can for {meta.get('saturate_s', '?')} s (pipeline {meta.get('saturate_pipeline', '?')}). "
        f"Bar: ratio ≤ {meta.get('ratio_bar', 1.2)}. The machine's load average (1 min) was "
        f"{(meta.get('loadavg_before') or ['?'])[0]} before the run.\n"
    )
    out.append("| server | phase | CPU µs per delivery, one topic | CPU µs per delivery, three topics | ratio (median) | ratio range | runs | verdict |")
    out.append("|---|---|---|---|---|---|---|---|")
    for m in medians:
        verdict = "meets the bar" if m["pass"] else "**misses the bar**"
        if m["ratio_range"][0] <= m["bar"] < m["ratio_range"][1]:
            verdict += " (median; the runs fall on both sides of it)"
        out.append(
            f"| {LABELS.get(m['server'], m['server'])} | {m['phase']} | {m['single_cpu_us_per_delivery']:g} | {m['multi_cpu_us_per_delivery']:g} "
            f"| {m['ratio']:g} | {m['ratio_range'][0]:g}–{m['ratio_range'][1]:g} | {m['runs']} | {verdict} |"
        )
    out.append("")
    out.append("Each sub-run:\n")
    out.append("| run | server | phase | topics per subscriber | delivered / expected | latency p50 / p99 (ms) | ssed CPU (s) | CPU µs per delivery |")
    out.append("|---|---|---|---|---|---|---|---|")
    for r in sorted((r for r in run if r.get("kind") == "run"), key=lambda r: (r["run"], order(r["server"]), PHASES.index(r["phase"]), r["topics"] != "single")):
        lat = r.get("latency_us") or {}
        latency = f"{ms(lat['p50'])} / {ms(lat['p99'])}" if lat.get("samples") else "–"
        out.append(
            f"| {r['run']} | {LABELS.get(r['server'], r['server'])} | {r['phase']} | {1 if r['topics'] == 'single' else 3} "
            f"| {r['delivered']:,} / {r['expected']:,} | {latency} | {r['server_cpu_us'] / 1e6:g} | {r['cpu_us_per_delivery']:g} |"
        )
    out.append("")
    out.append("Produced by:\n\n" + provenance([meta]) + "\n")


ABUSE_PHASES = ["none", "pipeline", "garbage", "trickle-cl", "trickle-chunked", "slowloris", "oneshot", "storm", "flood",
                "handshake-storm", "tls-garbage", "tls-stall"]
ABUSE_LABELS = {
    "none": "no attack (reference)",
    "pipeline": "pipelined `GET /metrics`, answers never read",
    "garbage": "subscribers that keep sending bytes",
    "trickle-cl": "trickled body (Content-Length)",
    "trickle-chunked": "trickled body (chunked)",
    "slowloris": "slowloris",
    "oneshot": "one-shot random topics",
    "storm": "reconnect storm (Last-Event-ID replay)",
    "flood": "connection flood past --max-connections 3000",
    # abuse.sh --tls only
    "handshake-storm": "TLS handshake storm (billed per connection in flight)",
    "tls-garbage": "non-TLS bytes to the TLS port",
    "tls-stall": "stalled TLS handshakes",
}


def auth_section(out):
    """Token verification per core, and a reconnect storm of subscribers with tokens."""
    verify = [r for r in load("auth-verify") if r.get("kind") == "median"]
    storm = [r for r in load("auth-storm") if r.get("kind") == "median"]
    if not verify and not storm:
        return
    out.append("## Authorization\n")
    if verify:
        table = latest(verify, lambda r: r["alg"])
        out.append(
            "Verifications per second on one core (the daemon's whole check: finding the token, "
            "verifying it with jsonwebtoken + aws-lc-rs, matching the topic), median of the runs.\n"
        )
        out.append("| algorithm | verifications/s per core | µs each | runs |")
        out.append("|---|---|---|---|")
        for alg in ("HS256", "RS256", "ES256", "EdDSA"):
            r = table.get(alg)
            if r:
                out.append(f"| {alg} | {fmt(r['per_second'])} | {r['us_per_verification']:g} | {r['runs']} |")
        out.append("")
        out.append("Produced by:\n\n" + provenance({json.dumps(r["_meta"], sort_keys=True): r["_meta"] for r in verify}.values()) + "\n")
    if storm:
        table = latest(storm, lambda r: r["mode"])
        out.append(
            "A reconnect storm: N subscribers connect at once, each with its own token, timed until "
            "every one has its stream head; the same storm without tokens beside it. The server CPU "
            "is ssed's utime + stime over the storm. Median of the runs.\n"
        )
        out.append("| tokens | subscribers | all subscribed after (s) | ssed CPU (ms) | runs |")
        out.append("|---|---|---|---|---|")
        for mode, r in sorted(table.items()):
            out.append(f"| {mode} | {r['connections']:,} | {r['ready_s']:g} | {fmt(r['server_cpu_us'] / 1000)} | {r['runs']} |")
        out.append("")
        out.append("Produced by:\n\n" + provenance({json.dumps(r["_meta"], sort_keys=True): r["_meta"] for r in storm}.values()) + "\n")


def abuse_run(tls):
    """The newest abuse.sh run, whole, plain (meta tls false or absent) or --tls: its phases
    share one no-attack reference, so rows of different runs are never mixed."""
    rows = [r for r in load("abuse") if bool(r["_meta"].get("tls", False)) == tls]
    if not rows:
        return []
    newest = max(stamp(r) for r in rows)
    return sorted((r for r in rows if stamp(r) == newest), key=lambda r: ABUSE_PHASES.index(r["phase"]) if r["phase"] in ABUSE_PHASES else 99)


def tls_failures(r):
    """ssed's TLS handshake failures during an attack, by reason (the non-zero ones): counted up to
    just before the attack was stopped where the run recorded that, else up to 1 s after it."""
    before = r.get("tls_handshake_failures_before_stop")
    counts = before if before is not None else r.get("tls_handshake_failures")
    if counts is None:
        return "?"
    cell = ", ".join(f"`{k}` {v:,}" for k, v in counts.items() if v) or "0"
    return cell if before is not None else cell + " (to 1 s after the stop)"


def abuse_table(out, run, tls=False):
    """One row per phase; over TLS each row's RSS bar is its own and TLS handshake failures are added."""
    head = "| attack | hostile connections | honest latency p50 / p99 / max (ms) | p99 bar (ms) | RSS growth (MB) | RSS growth per hostile connection (B) | ssed CPU (s) | missed events | alive | verdict |"
    if tls:
        head = head.replace("per hostile connection (B) |", "per hostile connection (B; the row's bar) |") + " TLS handshake failures by reason |"
    out.append(head)
    out.append("|---" * head.count(" | ") + "|---|")
    for r in run:
        lat = r.get("latency_us") or {}
        bars = r.get("bars", {})
        if not lat.get("samples"):
            lat = {}  # nothing arrived: no latency to show
        cell = lambda k: ms(lat[k]) if lat.get(k) is not None else "–"
        if bars.get("latency") and bars["latency"].get("p99_known") is False:
            cell = (lambda c: lambda k: "beyond the phase (>1% never arrived)" if k == "p99" else c(k))(cell)
        failed = [k for k, v in bars.items() if v is not None and not v["pass"]]
        lat_bar = bars.get("latency")
        alive = "yes" if r["alive"] and r["panics"] == 0 else ("panicked" if r["panics"] else "**died**")
        verdict = "PASS" if r["pass"] else "**FAIL** (" + ", ".join(failed) + ")"
        per = r.get("rss_growth_bytes_per_hostile")
        hostile = f"{r['hostile_connections']:,}"
        if tls:
            if r["phase"] == "handshake-storm":
                hostile += " in flight"
            elif r.get("hostile_counted") not in (None, r["hostile_connections"]):
                hostile += f" ({r['hostile_counted']:,} made)"
            per_cell = f"{fmt(per)} (≤ {r.get('rss_bound_kib_per_conn', 16)} KiB)" if per is not None else "–"
        else:
            per_cell = fmt(per) if per is not None else "–"
        out.append(
            f"| {ABUSE_LABELS.get(r['phase'], r['phase'])} | {hostile} | {cell('p50')} / {cell('p99')} / {cell('max')} "
            f"| {ms(lat_bar['limit_us']) if lat_bar else '–'} | {r['rss_growth_kb'] / 1024:,.1f} | {per_cell} "
            f"| {r['server_cpu_s'] if r.get('server_cpu_s') is not None else '?'} | {r['missed']:,} of {r['expected']:,} | {alive} | {verdict} |"
            + (f" {tls_failures(r)} |" if tls else "")
        )
    out.append("")
    one = next((r for r in run if r["phase"] == "oneshot"), None)
    if one and one.get("rss_growth_kb_per_1000_topics") is not None:
        out.append(
            f"One-shot topics: RSS grew by {one['rss_growth_kb']:,} kB in all over {one.get('hostile_counted', one['hostile_connections']):,} random topics, "
            f"{one['rss_growth_kb_per_1000_topics']:g} kB per 1,000 topics.\n"
        )


def abuse_section(out):
    """The newest plain abuse.sh run."""
    run = abuse_run(tls=False)
    if not run:
        return
    meta = run[0]["_meta"]
    bound = meta.get("rss_bound_kib_per_conn", 8)
    out.append("## Abuse\n")
    out.append(
        f"`abuse.sh`: {meta.get('subscribers', 1000):,} honest subscribers of one topic and a publisher at "
        f"{meta.get('rate', '?')} events/s ({meta.get('events', '?')} events per phase), first with no attack, then under "
        "each attack in turn, each phase on a fresh ssed. Latency is the honest subscribers' publish-to-delivery time. "
        "RSS growth = ssed's peak VmRSS during the attack minus its VmRSS before it; CPU = ssed's utime + stime over "
        "the phase. The attack clients (`bench-scripts/attack.py`) run at nice 10 on the same two cores. Bars: "
        f"**latency** honest p99 ≤ 2 × the no-attack p99 + 50 ms; **RSS** growth ≤ {bound} KiB per hostile connection; "
        "**alive** ssed still running, nothing panicked; **missed** every honest subscriber got every event.\n"
    )
    abuse_table(out, run)
    out.append("Produced by:\n\n" + provenance([meta]) + "\n")


def tls_abuse_section(out):
    """The newest abuse.sh --tls run: the same attacks over HTTPS, and three TLS-only ones."""
    run = abuse_run(tls=True)
    if not run:
        return
    meta = run[0]["_meta"]
    http_bound = meta.get("rss_bound_kib_per_conn", 52)
    tls_bound = meta.get("rss_bound_kib_per_conn_tls_phases", 24)
    out.append("## Abuse over TLS\n")
    out.append(
        f"`abuse.sh --tls`: the same honest load ({meta.get('subscribers', 1000):,} subscribers, {meta.get('rate', '?')} events/s, "
        f"{meta.get('events', '?')} events per phase) and the same attacks as above, over HTTPS: ssed serves TLS itself "
        "(rustls, `--tls-cert`/`--tls-key`), the honest clients verify its certificate, and every attacker (niced as above) "
        "completes a full handshake first, so each hostile connection also holds a TLS session on ssed's side. Differences: "
        "an attack is ready once its connections are past their handshakes; one-shot makes fewer connections, each a full "
        "handshake; the flood's connections past `--max-connections` are closed at once, without a handshake or a 503. "
        "Three attacks exist only here: a **handshake storm** (full handshakes as fast as two attacker processes can, "
        "100 in flight each; every other one then asks `GET /healthz`, the others close at once), **non-TLS bytes to the "
        "TLS port** (random bytes, a plaintext request, a handshake record header followed by garbage; each connection "
        "ssed closes is replaced) and **stalled TLS handshakes** (half a ClientHello, or nothing, then silence; ssed must "
        "close them at its 10 s header timeout). Bars as above, except RSS.\n"
    )
    out.append(
        f"The RSS bar per hostile connection is each row's own. {http_bound} KiB for the HTTP-level attacks: the 16 KiB of a "
        "plain connection, its TLS session (~3.9 KB idle) and the 32 KiB ssed keeps of TLS by design for a connection in "
        "the middle of a request (a 16 KiB record of decrypted input the request parser has not taken yet, and a record of "
        f"ciphertext the socket did not take; the worker's TLS buffers are per thread, not per connection). {tls_bound} KiB "
        "for the three TLS attacks, whose connections never get past the handshake or ask one small request after it: the "
        "16 KiB, the session, and a handshake's state while it is under way. The handshake storm is billed per connection "
        "in flight, not per handshake: thousands come and go, and only those in flight at once can hold memory. TLS "
        "handshake failures are ssed's own counters (`ssed_tls_handshake_failures_total`) from the attack's start to just "
        "before it was stopped (stopping it closes its connections: a stalled handshake then counts as `closed`).\n"
    )
    if meta.get("quick"):
        out.append(
            "This is a `--quick` run: each phase publishes for less than ssed's 10 s header timeout, so the trickle, "
            "slowloris and stalled-handshake connections are held there, never closed and replaced.\n"
        )
    abuse_table(out, run, tls=True)
    storm = next((r for r in run if r["phase"] == "handshake-storm"), None)
    if storm:
        done = storm.get("tls_handshakes") if storm.get("tls_handshakes") is not None else storm.get("hostile_completed")
        if done:
            line = f"Handshake storm: {done:,} TLS handshakes completed"
            if storm.get("hostile_completed") is not None and storm["hostile_completed"] != done:
                line += f" ({storm['hostile_completed']:,} connections went through to their close)"
            elapsed = (storm.get("attack_summary") or {}).get("elapsed_s")
            if elapsed:
                line += f" in {elapsed:g} s"
            cpu = storm.get("server_cpu_s")
            if cpu is not None:
                line += f"; {cpu * 1e6 / done:,.0f} µs of ssed CPU per handshake ({cpu:g} s over the phase / {done:,}, serving the honest load included"
                ref = next((r for r in run if r["phase"] == "none" and r.get("server_cpu_s") is not None), None)
                line += f": the no-attack phase took {ref['server_cpu_s']:g} s)" if ref else ")"
            out.append(line + ".\n")
        else:
            out.append("Handshake storm: no completed handshakes recorded.\n")
    out.append("Produced by:\n\n" + provenance([meta]) + "\n")


def fanout_losses(fanout, label, prefix):
    """Where a server beat ssed in a fan-out table keyed (server, phase, subscribers)."""
    lines = []
    get = lambda row, path: row[path.split(".")[0]][path.split(".")[1]] if "." in path else row[path]
    for (server, phase, subs), row in sorted(fanout.items(), key=lambda kv: (kv[0][2], order(kv[0][0]), tls_order(kv[0][0]))):
        if server.startswith("ssed"):
            continue
        mine = fanout.get(("ssed", phase, subs))
        if not mine:
            continue
        for m_phase, key, what, unit, higher in FANOUT_METRICS:
            if m_phase != phase:
                continue
            theirs, ours = get(row, key), get(mine, key)
            if (theirs > ours) if higher else (theirs < ours):
                lines.append(f"- {prefix + 'fan-out' if prefix else 'Fan-out'} to {subs:,}, {what}: {label(server)} {fmt(theirs)}{unit and ' ' + unit}, ssed {fmt(ours)}{unit and ' ' + unit}.")
    return lines


def losses_section(out, memory, tls_memory=None):
    """Every measured point where some other server does better than ssed, stated plainly."""
    lines = []
    single = {s: r for (s, t, n), r in memory.items() if t == "single" and n == max(n for (_, t2, n) in memory if t2 == "single")}
    if "ssed" in single:
        for s, r in single.items():
            if s != "ssed" and r["user_bytes_per_conn"] < single["ssed"]["user_bytes_per_conn"]:
                lines.append(f"- Memory: {LABELS[s]} keeps {fmt(r['user_bytes_per_conn'])} B of user space per idle connection at {r['n']:,}, ssed {fmt(single['ssed']['user_bytes_per_conn'])} B.")
    fanout = latest(fanout_rows(multi=False), lambda r: (r["server"], r["phase"], r["subscribers"]))
    lines += fanout_losses(fanout, lambda s: LABELS.get(s, s), "")
    # Over TLS: every N measured with ssed, user space only (nginx TLS in front of ssed counts two
    # loopback connections per subscriber in the kernel figure).
    for (s, t, n), r in sorted((tls_memory or {}).items(), key=lambda kv: (kv[0][1] != "single", kv[0][1], kv[0][2], tls_order(kv[0][0]))):
        mine = tls_memory.get(("ssed", t, n))
        if s != "ssed" and mine and r["user_bytes_per_conn"] < mine["user_bytes_per_conn"]:
            lines.append(
                f"- Over TLS, memory{'' if t == 'single' else ' (' + TOPIC_TITLES.get(t, t) + ')'}: {tls_label(s)} keeps {fmt(r['user_bytes_per_conn'])} B "
                f"of user space per idle connection at {n:,}, ssed {fmt(mine['user_bytes_per_conn'])} B."
            )
    tls_fanout = latest(fanout_rows(multi=False, tls=True), lambda r: (r["server"], r["phase"], r["subscribers"]))
    lines += fanout_losses(tls_fanout, tls_label, "Over TLS, ")
    # Bars ssed itself misses under attack (the abuse sections), plain and over TLS.
    for tls in (False, True):
        for r in abuse_run(tls):
            failed = [k for k, v in r.get("bars", {}).items() if v is not None and not v["pass"]]
            if r["pass"] or not failed:
                continue
            what = []
            lat = r["bars"].get("latency")
            if "latency" in failed and lat:
                p99 = (r.get("latency_us") or {}).get("p99")
                what.append(f"honest p99 {ms(p99) if p99 is not None else '?'} ms against a bar of {ms(lat['limit_us'])} ms")
            for k in failed:
                if k != "latency":
                    what.append(f"the {k} bar")
            lines.append(
                f"- {'Abuse over TLS' if tls else 'Abuse'}, {ABUSE_LABELS.get(r['phase'], r['phase'])}: ssed misses "
                + ", ".join(what) + "."
            )
    out.append("## Where ssed does not win\n")
    out.append(
        "Every point above where another server measured better than ssed, and every bar ssed missed under attack "
        "(single runs on a shared, noisy machine: differences of a few percent are within noise):\n"
    )
    out.append("\n".join(lines) if lines else "- None in this run.")
    out.append("")

TOPIC_TITLES = {
    "single": "all subscribers on one topic",
    "per-connection": "one topic per subscriber",
    "single+auth": "one topic, each subscriber with its own token",
    "multi": "three topics per subscriber, in one request",
}


def same_run_metas(rows):
    return {json.dumps(r["_meta"], sort_keys=True): r["_meta"] for r in rows}.values()


def tls_memory_section(out):
    """memory.sh --tls: ssed's own TLS beside the TLS baselines, newest run of each point."""
    rows = [r for r in load("memory") if r.get("kind") == "median" and is_tls(r)]
    if not rows:
        return {}
    for r in rows:
        if r.get("auth"):
            r["topics"] = r["topics"] + "+auth"
    table = latest(rows, lambda r: (r["server"], r["topics"], r["n"]))
    counts = sorted({n for (_, _, n) in table})
    out.append("## Over TLS: memory per idle subscriber\n")
    out.append(
        "`memory.sh --tls`: the same measurement as above, over HTTPS: `ssed-bench --tls` (rustls) against each "
        "server, all given the same ECDSA P-256 certificate for `localhost`. **ssed** terminates TLS itself "
        "(`--tls-cert/--tls-key`, rustls); **nginx TLS in front of ssed** is the usual deployment, nginx "
        "terminating TLS and proxying to plain ssed: its user figure is the RSS growth of nginx's workers and of "
        "ssed together, and its kernel figure counts two loopback connections per subscriber (client–nginx and "
        "nginx–ssed), so about twice the others'. **× ssed** is the server's user B/conn divided by ssed's at the "
        "same N (when these runs have ssed). Medians of the runs shown (runs disturbed by other socket activity are left out by memory.sh).\n"
    )
    for topics in ("single", "per-connection", "single+auth", "multi"):
        servers = sorted({s for (s, t, _) in table if t == topics}, key=tls_order)
        if not servers:
            continue
        if topics != "single" or any(t != "single" for (_, t, _) in table):
            out.append(f"### Over TLS, {TOPIC_TITLES[topics]}\n")
        here = [n for n in counts if any((s, topics, n) in table for s in servers)]
        versus = [n for n in here if ("ssed", topics, n) in table]  # the "× ssed" columns
        out.append(
            "| server | " + " | ".join(f"user B/conn at {n:,}" for n in here) + " | " + " | ".join(f"kernel B/conn at {n:,}" for n in here)
            + "".join(f" | × ssed at {n:,}" for n in versus) + " | runs |"
        )
        out.append("|---" * (2 * len(here) + len(versus) + 2) + "|")
        for s in servers:
            cells = [table.get((s, topics, n)) for n in here]
            mine = [table.get(("ssed", topics, n)) for n in versus]
            user = [fmt(c["user_bytes_per_conn"]) if c else "" for c in cells]
            kernel = [fmt(c["kernel_bytes_per_conn"]) if c else "" for c in cells]
            ratio = [
                "" if s == "ssed" or not c or not m or m["user_bytes_per_conn"] <= 0 else f"{c['user_bytes_per_conn'] / m['user_bytes_per_conn']:.1f}×"
                for c, m in zip((table.get((s, topics, n)) for n in versus), mine)
            ]
            runs = sorted({c["runs"] for c in cells if c})
            out.append(
                f"| {tls_label(s)} | " + " | ".join(user) + " | " + " | ".join(kernel) + "".join(" | " + c for c in ratio)
                + " | " + (" / ".join(str(c["runs"]) for c in cells if c) if len(runs) > 1 else str(runs[0] if runs else "")) + " |"
            )
        out.append("")
        parts = [
            f"{fmt(r['n'])}: nginx {fmt(r['user_parts'].get('nginx', 0))} B + ssed {fmt(r['user_parts'].get('ssed', 0))} B"
            for (s, t, n), r in sorted(table.items(), key=lambda kv: kv[0][2])
            if t == topics and r.get("user_parts")
        ]
        if parts:
            out.append("nginx TLS in front of ssed, user B/conn by process — at " + "; at ".join(parts) + ".\n")
    ssed_rows = sorted((r for (s, t, n), r in table.items() if s == "ssed" and t == "single" and n >= 10000), key=lambda r: r["n"])
    if ssed_rows:
        verdicts = []
        for r in ssed_rows:
            u, rng = r["user_bytes_per_conn"], r.get("user_bytes_range") or [r["user_bytes_per_conn"]] * 2
            v = f"{'meets' if u <= TLS_BAR else 'MISSES'} the {TLS_BAR:,} B bar at {r['n']:,} ({fmt(u)} B"
            if rng[0] <= TLS_BAR < rng[1]:
                v += f"; median of {r['runs']} runs that fall on both sides of it, {fmt(rng[0])}–{fmt(rng[1])} B"
            v += f"), and {'meets' if u <= TLS_STRETCH else 'misses'} the {TLS_STRETCH:,} B stretch goal"
            verdicts.append(v)
        out.append(f"Bar: ssed ≤ {TLS_BAR:,} B of user space per idle TLS subscriber at 10,000 and 18,000 (stretch: ≤ {TLS_STRETCH:,} B). ssed " + "; ".join(verdicts) + ".\n")
    elif any(s == "ssed" for (s, _, _) in table):
        out.append(f"Bar: ssed ≤ {TLS_BAR:,} B of user space per idle TLS subscriber at 10,000 and 18,000 (stretch: ≤ {TLS_STRETCH:,} B); no ssed point at N ≥ 10,000 in these runs, so no verdict.\n")
    else:
        out.append(f"Bar: ssed ≤ {TLS_BAR:,} B of user space per idle TLS subscriber at 10,000 and 18,000 (stretch: ≤ {TLS_STRETCH:,} B); these runs have no ssed, so no verdict yet.\n")
    mine = next((r for r in reversed(ssed_rows)), None)
    out.append(
        "**What dominates an idle TLS subscriber.** Not measured by the runs on this page: a separate measurement of "
        "rustls alone (`/work/shared/notes/rustls-memory.md`: 1,000 server connections handshaken in memory under a "
        "counting allocator, rustls 0.23.46 with aws-lc-rs, 2026-12-03) puts an idle `UnbufferedServerConnection` at "
        "about 3.3–3.5 KB (requested bytes; glibc adds some 150–200 B): the cipher state, ~1.1 KB (two directions "
        "of ~584 B with aws-lc), a handshake list reserved at 16 entries, ~640 B that is never freed, and the "
        "connection struct itself, ~1.1 KB. By that note, this is the floor with stock rustls: below it, and to the "
        "2 KiB stretch goal, would take kTLS (not available on that kernel) or a record layer of one's own; the "
        "buffered rustls API keeps a 4,096 B receive buffer and comes to ~7.6 KB."
        + (f" ssed measured {fmt(mine['user_bytes_per_conn'])} B per idle TLS subscriber at {mine['n']:,} above (RSS growth, so everything it keeps per connection)." if mine else "")
        + "\n"
    )
    out.append("Produced by:\n\n" + provenance(same_run_metas(table.values())) + "\n")
    return table


def closest_plain(tls_row, phase):
    """The plain (non-TLS) ssed row of a phase at the same N: from the TLS row's own run if it has
    one, else from the plain run closest in time. Returns (row, same_session)."""
    subs, at = tls_row["subscribers"], stamp(tls_row)
    plain = [r for r in fanout_rows(multi=False) if r["server"] == "ssed" and r["phase"] == phase and r["subscribers"] == subs]
    same = [r for r in plain if stamp(r) == at]
    if same:
        return same[-1], True
    t = when(at)
    dist = lambda r: abs((when(stamp(r)) - t).total_seconds()) if t and when(stamp(r)) else float("inf")
    return (min(plain, key=lambda r: (dist(r), stamp(r))) if plain else None), False


# What a TLS server is compared on (the fan-out tables' columns), for "where ssed does not win".
FANOUT_METRICS = [
    ("steady", "cpu_us_per_delivery", "CPU per delivered event at a steady rate", "µs", False),
    ("steady", "latency_us.p50", "median delivery latency at a steady rate", "µs", False),
    ("saturate", "cpu_us_per_delivery", "CPU per delivered event at saturation", "µs", False),
    ("saturate", "delivered_per_s", "deliveries per second at saturation", "", True),
    ("heartbeat", "cpu_us_per_heartbeat", "CPU per heartbeat", "µs", False),
]
TLS_CPU_BAR = 1.5


def tls_fanout_section(out):
    """fanout.sh --tls, newest run of each point; and ssed over TLS against plain ssed."""
    rows = fanout_rows(multi=False, tls=True)
    if not rows:
        return
    table = latest(rows, lambda r: (r["server"], r["phase"], r["subscribers"]))
    used = list(table.values())
    for subs in sorted({n for (_, _, n) in table}):
        servers = sorted({s for (s, _, n) in table if n == subs}, key=tls_order)
        out.append(f"## Over TLS: fan-out to {subs:,} subscribers on one topic\n")
        out.append(
            "`fanout.sh --tls`: the fan-out above over HTTPS, subscribers and publisher through `ssed-bench --tls`. "
            "Server CPU is the server's utime + stime over the phase divided by the events the subscribers received; "
            "for nginx TLS in front of ssed it is nginx's workers' and ssed's together. Same phases as above.\n"
        )
        out.append("| server | steady: latency p50 / p99 / max (ms) | to the last subscriber p50 / max (ms) | CPU µs per delivery | saturation: deliveries/s | CPU µs per delivery | heartbeat: CPU µs per heartbeat |")
        out.append("|---|---|---|---|---|---|---|")
        for s in servers:
            st, sa, hb = (table.get((s, phase, subs)) for phase in PHASES)
            cells = [tls_label(s)]
            if st:
                lat, last = st["latency_us"], st["last_subscriber_latency_us"]
                cells += [f"{ms(lat['p50'])} / {ms(lat['p99'])} / {ms(lat['max'])}", f"{ms(last['p50'])} / {ms(last['max'])}", f"{st['cpu_us_per_delivery']:g}"]
            else:
                cells += ["", "", ""]
            cells += [fmt(sa["delivered_per_s"]), f"{sa['cpu_us_per_delivery']:g}"] if sa else ["", ""]
            cells += [f"{hb['cpu_us_per_heartbeat']:g}"] if hb else [""]
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
        parts = []
        for phase in PHASES:
            r = table.get(("nginx-tls", phase, subs))
            if r and r.get("server_cpu_parts_us"):
                p = r["server_cpu_parts_us"]
                parts.append(f"{phase} nginx {p.get('nginx', 0) / 1e6:g} s + ssed {p.get('ssed', 0) / 1e6:g} s")
        if parts:
            out.append("nginx TLS in front of ssed, CPU by process: " + "; ".join(parts) + ".\n")
        mine = {phase: table.get(("ssed", phase, subs)) for phase in PHASES}
        if not any(mine.values()):
            out.append(
                f"Bar: ssed over TLS ≤ {TLS_CPU_BAR:g} × plain ssed's CPU per delivered event at a steady rate. These runs "
                "have no ssed, so no verdict yet.\n"
            )
            continue
        out.append(
            f"ssed over TLS against plain ssed at {subs:,} subscribers, CPU µs per delivered event (per heartbeat in the heartbeat "
            "phase). Plain ssed from the TLS run itself when it has it, else from the plain run at the same N closest in time:\n"
        )
        out.append("| phase | plain ssed | ssed over TLS | TLS / plain | plain figure from |")
        out.append("|---|---|---|---|---|")
        verdict = None
        for phase in PHASES:
            t = mine[phase]
            if not t:
                continue
            key = "cpu_us_per_heartbeat" if phase == "heartbeat" else "cpu_us_per_delivery"
            p, same = closest_plain(t, phase)
            if not p:
                out.append(f"| {phase} | (no plain ssed run at {subs:,}) | {t[key]:g} | | |")
                continue
            used.append(p)
            ratio = t[key] / p[key] if p[key] else float("inf")
            where = f"the same run ({stamp(p)})" if same else f"run {stamp(p)}, {span(stamp(p), stamp(t))} the TLS run {stamp(t)}: not the same session"
            out.append(f"| {phase} | {p[key]:g} | {t[key]:g} | {ratio:.2f} | {where} |")
            if phase == "steady":
                verdict = (ratio, same, p, t)
        out.append("")
        if verdict:
            ratio, same, p, t = verdict
            out.append(
                f"Bar: ssed over TLS ≤ {TLS_CPU_BAR:g} × plain ssed's CPU per delivered event at a steady rate, plain ssed "
                + ("from the same session. " if same else f"from the same session. `fanout.sh --tls` runs the TLS servers only, so the plain figure here is from the plain ssed run at {subs:,} closest in time (`{p['_meta'].get('command', '?')}`, run {stamp(p)}, {span(stamp(p), stamp(t))} the TLS run), **not from the same session**. ")
                + f"ssed **{'meets' if ratio <= TLS_CPU_BAR else 'MISSES'}** it: {t['cpu_us_per_delivery']:g} µs against {p['cpu_us_per_delivery']:g} µs, {ratio:.2f}×.\n"
            )
        else:
            out.append(f"Bar: ssed over TLS ≤ {TLS_CPU_BAR:g} × plain ssed's CPU per delivered event at a steady rate: no steady figure for both at {subs:,}, so no verdict.\n")
    out.append("Produced by:\n\n" + provenance(same_run_metas(used)) + "\n")


def scale_section(out):
    rows = load("scale")
    if not rows:
        return
    table = latest(rows, lambda r: r["n"])
    out.append("## Beyond one process: many ssed processes on one port, with Redis\n")
    out.append(
        "`scale.sh N` starts one ssed per ~17,000 subscribers (the machine allows 20,000 open files per "
        "process), all on one port through SO_REUSEPORT and all following one Redis stream, and several "
        "ssed-bench processes; then counts heartbeats and publishes a few events to the shared port, each of "
        "which must reach all N subscribers.\n"
    )
    out.append("| subscribers | ssed processes | established | user B/conn (all ssed) | kernel B/conn (both ends) | heartbeats delivered / expected | broadcast deliveries | latency p50 / p99 (ms) | to the last of N, p50 / max (ms) |")
    out.append("|---|---|---|---|---|---|---|---|---|")
    for n in sorted(table):
        r = table[n]
        b = r["broadcast"]
        out.append(
            f"| {n:,} | {r['processes']['ssed']} | {r['established']:,} | {fmt(r['user_bytes_per_conn'])} | {fmt(r['kernel_bytes_per_conn'])} "
            f"| {r['heartbeats']['delivered']:,} / ≥{r['heartbeats']['expected_min']:,} | {b['delivered']:,} / {b['expected']:,} "
            f"| {ms(b['latency_us']['p50'])} / {ms(b['latency_us']['p99'])} | {ms(b['last_subscriber_latency_us']['p50'])} / {ms(b['last_subscriber_latency_us']['max'])} |"
        )
    out.append("")
    for path in sorted(glob.glob(os.path.join(DATA, "scale-check-*.txt"))):
        with open(path) as f:
            text = "".join(line.split("] ", 1)[-1] for line in f)
        out.append(f"Where it stops: the next step up is refused before anything starts (`{os.path.basename(path)}`):\n")
        out.append("```\n" + text.rstrip() + "\n```\n")
    # scale.sh writes one self-describing line per run, without a separate meta line.
    metas = [
        {"command": r.get("command"), "stamp": r.get("stamp"), "commit": r.get("commit"), "cores": r["machine"]["nproc"],
         "mem_total_kb": r["machine"]["mem_total_kb"], "kernel": r["machine"]["kernel"]}
        for r in rows
    ]
    out.append("Produced by:\n\n" + provenance(metas) + "\n")


def main():
    out = [
        "# Benchmarks",
        "",
        "<!-- Generated by bench-scripts/report.py from docs/benchmark-data/; do not edit by hand. -->",
        "",
        "How much memory does an idle Server-Sent Events connection cost, and how fast do events reach "
        "thousands of subscribers? ssed against the servers people write today, on one machine, over "
        "loopback. Every figure below comes from the committed scripts in `bench-scripts/` (see "
        "`bench-scripts/README.md`); rerun them with `bench-scripts/run-all.sh` and regenerate this page "
        "with `bench-scripts/report.py`.",
        "",
        "![memory per connection](memory-per-connection.svg)",
        "",
    ]
    table = memory_section(out)
    fanout_section(out)
    multi_topic_section(out)
    tls_table = tls_memory_section(out)
    tls_fanout_section(out)
    scale_section(out)
    auth_section(out)
    abuse_section(out)
    tls_abuse_section(out)
    losses_section(out, table, tls_table)
    chart(table, os.path.join(ROOT, "docs", "memory-per-connection.svg"), tls_table)
    with open(os.path.join(ROOT, "docs", "benchmarks.md"), "w") as f:
        f.write("\n".join(out).rstrip() + "\n")


if __name__ == "__main__":
    main()
