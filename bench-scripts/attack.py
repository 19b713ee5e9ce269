#!/usr/bin/env python3
"""attack.py: hostile HTTP and TLS clients for bench-scripts/abuse.sh (Python 3 stdlib only).

    attack.py MODE --addr 127.0.0.1:PORT [--tls] [--connections N] [--processes P] [--duration S] ...
    attack.py seed --addr ... [--tls] --path /events/bench --count K   # prints the first event's id
    attack.py metrics --addr ... [--tls]   # ssed's TLS handshake failures and rejected requests
                                           # by reason, from /metrics, as one JSON line

Modes (one connection = one socket; `reconnect` = a connection the server closes is replaced,
as a real attacker would, --reconnect-delay later, until --duration ends):
  pipeline         write --bytes of pipelined `GET /metrics` requests, never read the answers
  garbage          subscribe (GET /events/x), read the stream, and write garbage continuously
  trickle-cl       POST with Content-Length 60000, the body 4 bytes per --interval (reconnect)
  trickle-chunked  POST with Transfer-Encoding: chunked, one 1-byte chunk per --interval (reconnect)
  slowloris        a partial request head, then one more header byte per --interval (reconnect)
  oneshot          GET /events/<random> then close once the response head is in, --total times,
                   --concurrency at once per process, as fast as possible
  storm            subscribe to --path with `Last-Event-ID: --last-event-id`, read everything
  flood            subscribe to /events/flood and hold; counts 200s against 503s
TLS (the server must serve HTTPS):
  handshake-storm  full TLS handshakes as fast as possible, --total in all, --concurrency in
                   flight per process: connect, handshake, then every other connection sends
                   `GET /healthz` and closes once the answer's head is in, the others send
                   close_notify right after the handshake and close
  tls-garbage      non-TLS bytes to the TLS port (reconnect), in turn: random bytes (more every
                   --interval), a plaintext `GET /events/x`, a TLS handshake record header
                   followed by random bytes
  tls-stall        in turn: nothing at all, or the first half of a real ClientHello; then
                   silence until the server closes (reconnect)
With --tls, every mode above the TLS ones speaks HTTPS: each socket is wrapped with Python's
ssl module once connected, the handshake done non-blocking within the same event loop (its
time counts against --duration like everything else). The attackers never verify the
certificate (an attacker has no reason to) and send SNI `localhost`.

Prints `ready opened=N` once every process has its initial connections connected (over TLS: past
their handshakes) or failed, then, at --duration or on SIGTERM/SIGINT, one JSON line of counters
summed over the processes (with TLS also: handshakes done, handshake_failed, max_in_flight).
Every loop is bounded by --duration; only 127.0.0.0/8 is ever used (source addresses
127.<20+process>.x.y, --per-source connections each, so ephemeral ports never run out).
"""
import argparse
import ctypes
import errno
import heapq
import http.client
import json
import multiprocessing as mp
import os
import random
import re
import selectors
import signal
import socket
import ssl
import sys
import time

IP_BIND_ADDRESS_NO_PORT = 24  # linux/in.h: pick the source port at connect(), per 4-tuple
STOP = False
TLS_MODES = ("handshake-storm", "tls-garbage", "tls-stall")
RECONNECT = ("trickle-cl", "trickle-chunked", "slowloris", "tls-garbage", "tls-stall")
TLS_RECORD = 16384        # plaintext per SSL write: one record, so a retried write is the same one
# Errors that only mean "not now" on a non-blocking socket, plain or TLS.
WOULD_BLOCK = (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


def on_signal(*_):
    global STOP
    STOP = True


def die_with_parent():
    # PR_SET_PDEATHSIG: a child never outlives its parent, even after a SIGKILL.
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)
    except OSError:
        pass


def client_context():
    """The attackers' TLS client: no certificate check (an attacker needs none), TLS 1.2+."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def client_hello():
    """The bytes of a real ClientHello (as this Python's OpenSSL sends it to `localhost`)."""
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = client_context().wrap_bio(inc, out, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


class Conn:
    __slots__ = ("sock", "pending", "status", "head_done", "connected", "closed", "ticks", "mask",
                 "n", "hs", "retry", "opening")

    def __init__(self, sock, n):
        self.sock, self.pending, self.status = sock, b"", None
        self.head_done = self.connected = self.closed = False
        self.ticks, self.mask = 0, 0
        self.n = n            # this process's connection number: which variant a mixed mode sends
        self.hs = None        # TLS handshake under way: "r" / "w", what it waits for
        self.retry = 0        # length of a TLS write to retry (OpenSSL wants the same one again)
        self.opening = True   # still counted in `connecting` (TCP connect, and TLS handshake)


def request_head(a):
    """(head(c), tick(c)): the first bytes each connection sends (once connected, and over TLS
    once the handshake is done), and what it sends on every tick after (None: no ticks)."""
    m = a.mode
    if m == "pipeline":
        one = b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n"
        return lambda c: one * (a.bytes // len(one)), None
    if m == "garbage":
        junk = bytes(random.getrandbits(8) for _ in range(a.chunk))
        return (lambda c: b"GET /events/x HTTP/1.1\r\nHost: a\r\n\r\n"), (lambda c: junk)
    if m == "trickle-cl":
        head = b"POST /events/x HTTP/1.1\r\nHost: a\r\nContent-Length: 60000\r\n\r\n"
        return (lambda c: head), (lambda c: b"abcd")
    if m == "trickle-chunked":
        head = b"POST /events/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        return (lambda c: head), (lambda c: b"1\r\na\r\n")
    if m == "slowloris":
        line = b"X-a: b\r\n"
        return (lambda c: b"GET /events/x HTTP/1.1\r\nHost: a\r\n"), (lambda c: line[c.ticks % len(line):][:1])
    if m == "oneshot":
        return (lambda c: b"GET /events/r%016x HTTP/1.1\r\nHost: a\r\n\r\n" % random.getrandbits(64)), None
    if m == "storm":
        head = f"GET {a.path} HTTP/1.1\r\nHost: a\r\nLast-Event-ID: {a.last_event_id}\r\n\r\n".encode()
        return (lambda c: head), None
    if m == "flood":
        return (lambda c: b"GET /events/flood HTTP/1.1\r\nHost: a\r\n\r\n"), None
    if m == "handshake-storm":
        req = b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        return (lambda c: req if c.n % 2 == 0 else b""), None
    if m == "tls-garbage":
        # Random bytes never start with 0x16 (a handshake record): ssed must see "not TLS" at
        # once for those, and a broken record (protocol) for the third kind.
        rand = bytes([0x47]) + random.randbytes(511)
        plain = b"GET /events/x HTTP/1.1\r\nHost: a\r\n\r\n"
        record = bytes([0x16, 0x03, 0x01, 0x02, 0x00]) + random.randbytes(512)
        first = (rand, plain, record)
        return (lambda c: first[c.n % 3]), (lambda c: random.randbytes(512) if c.n % 3 == 0 else b"")
    if m == "tls-stall":
        hello = client_hello()
        part = hello[:len(hello) // 2]
        return (lambda c: part if c.n % 2 else b""), None
    raise ValueError(m)


def worker(a, idx, n, total, queue):
    """One process: n connections at once (oneshot, handshake-storm: `total` in all), until the
    deadline."""
    die_with_parent()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    host, port = a.addr.rsplit(":", 1)
    addr = (host, int(port))
    head, tick = request_head(a)
    reads = a.mode != "pipeline"                      # pipeline never reads, by design
    reconnect = a.mode in RECONNECT
    one_shot = a.mode in ("oneshot", "handshake-storm")
    # TLS sockets for the HTTP-level attacks (with --tls) and the handshake storm; tls-garbage
    # and tls-stall write raw bytes to the TLS port.
    ctx = client_context() if (a.tls and a.mode not in ("tls-garbage", "tls-stall")) else None
    sel = selectors.DefaultSelector()
    timers = []                                       # (when, seq, conn) for the ticks
    st = {"opened": 0, "connected": 0, "connect_failed": 0, "server_closed": 0, "reset": 0,
          "done": 0, "bytes_out": 0, "bytes_in": 0, "statuses": {}}
    if ctx:
        st.update({"handshakes": 0, "handshake_failed": 0, "max_in_flight": 0})
    live = []
    connecting = 0
    open_count = 0
    seq = 0
    cap = total if one_shot else n + (a.max_reconnects if reconnect else 0)
    deadline = time.monotonic() + a.duration

    def set_mask(c):
        if not c.connected:
            want = selectors.EVENT_WRITE
        elif c.hs:
            want = selectors.EVENT_READ if c.hs == "r" else selectors.EVENT_WRITE
        else:
            want = (selectors.EVENT_WRITE if c.pending else 0) | (selectors.EVENT_READ if reads else 0)
        if want == c.mask:
            return
        if c.mask == 0:
            sel.register(c.sock, want, c)
        elif want == 0:
            sel.unregister(c.sock)
        else:
            sel.modify(c.sock, want, c)
        c.mask = want

    def open_one():
        nonlocal connecting, open_count, initial_pending
        k = st["opened"] // a.per_source
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            s.bind((f"127.{20 + idx}.{k // 250 % 250}.{1 + k % 250}", 0))
            err = s.connect_ex(addr)
        except OSError as e:
            err = e.errno
        c = Conn(s, st["opened"])
        st["opened"] += 1
        if err not in (0, errno.EINPROGRESS):
            st["connect_failed"] += 1
            s.close()
            if c.n < initial:
                initial_pending -= 1
            return
        live.append(c)
        connecting += 1
        open_count += 1
        if ctx and open_count > st["max_in_flight"]:
            st["max_in_flight"] = open_count
        set_mask(c)

    def opened(c):
        """The connection is open (connected, and over TLS past its handshake) or failed."""
        nonlocal connecting, initial_pending
        if c.opening:
            c.opening = False
            connecting -= 1
            if c.n < initial:
                initial_pending -= 1

    def close(c, why):
        nonlocal open_count, seq
        if c.closed:
            return
        opened(c)
        c.closed = True
        open_count -= 1
        if c.mask:
            sel.unregister(c.sock)
            c.mask = 0
        if why == "done" and ctx and not c.hs:
            try:                                      # close_notify, best effort, never waits
                c.sock.unwrap()
            except (OSError, ValueError):
                pass
        c.sock.close()
        st[why] += 1
        if reconnect and a.reconnect_delay > 0:
            seq += 1                                  # a timer without a connection: reopen()
            heapq.heappush(timers, (time.monotonic() + a.reconnect_delay, seq, None))
        else:
            reopen()

    def reopen():
        if (reconnect or one_shot) and not STOP and time.monotonic() < deadline and st["opened"] < cap:
            open_one()

    def flush(c):
        while c.pending:
            size = c.retry or min(len(c.pending), TLS_RECORD if ctx else 262144)
            try:
                sent = c.sock.send(c.pending[:size])
            except WOULD_BLOCK:
                c.retry = size if ctx else 0
                break
            except OSError:
                close(c, "reset")
                return
            c.retry = 0
            st["bytes_out"] += sent
            c.pending = c.pending[sent:]
        set_mask(c)

    def start(c):
        """Connected (and over TLS, handshake done): send the head, start the ticks."""
        nonlocal seq
        c.pending = head(c)
        if a.mode == "handshake-storm" and not c.pending:
            close(c, "done")                          # the handshake alone was the point
            return
        flush(c)
        if tick and not c.closed:
            seq += 1
            heapq.heappush(timers, (time.monotonic() + a.interval, seq, c))

    def handshake(c):
        try:
            c.sock.do_handshake()
        except ssl.SSLWantReadError:
            c.hs = "r"
            set_mask(c)
            return
        except ssl.SSLWantWriteError:
            c.hs = "w"
            set_mask(c)
            return
        except (ssl.SSLEOFError, ConnectionResetError, BrokenPipeError):
            st["handshake_failed"] += 1
            close(c, "server_closed")
            return
        except OSError:                               # an alert, or anything else TLS refused
            st["handshake_failed"] += 1
            close(c, "reset")
            return
        c.hs = None
        st["handshakes"] += 1
        opened(c)
        set_mask(c)
        start(c)

    def on_connected(c):
        err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            close(c, "connect_failed")
            return
        c.connected = True
        st["connected"] += 1
        if not ctx:
            opened(c)
            start(c)
            return
        # wrap_socket detaches the plain socket: take it out of the selector first.
        if c.mask:
            sel.unregister(c.sock)
            c.mask = 0
        try:
            c.sock = ctx.wrap_socket(c.sock, server_side=False, do_handshake_on_connect=False,
                                     server_hostname="localhost")
        except OSError:
            close(c, "reset")
            return
        handshake(c)

    def on_readable(c):
        # A TLS socket may hold decrypted bytes the kernel no longer shows: read until it has none.
        for _ in range(64):
            try:
                got = c.sock.recv_into(buf)
            except WOULD_BLOCK:
                return
            except ssl.SSLZeroReturnError:            # close_notify
                got = 0
            except OSError:
                close(c, "reset")
                return
            if got == 0:
                close(c, "server_closed")
                return
            st["bytes_in"] += got
            if c.status is None and got >= 12 and buf[:5] == b"HTTP/":
                c.status = bytes(buf[9:12]).decode("ascii", "replace")
                st["statuses"][c.status] = st["statuses"].get(c.status, 0) + 1
            if one_shot and c.status is not None:
                close(c, "done")
                return
            if not (ctx and c.sock.pending()):
                return

    def on_tick(c, now):
        nonlocal seq
        if c.closed:
            return
        if len(c.pending) < 65536 and not c.hs:       # the server is not reading: do not pile up
            c.pending += tick(c)
            c.ticks += 1
            flush(c)
        if not c.closed:
            seq += 1
            heapq.heappush(timers, (now + a.interval, seq, c))

    initial = min(n, total) if one_shot else n
    # "ready" once each of the first `initial` connections is open or failed. (Not "nothing is
    # connecting": a one-shot mode always has some connecting, over TLS handshaking, and would
    # be ready only by chance, maybe after the honest load it is meant to overlap.)
    initial_pending = initial
    ready_sent = False
    t0 = time.monotonic()
    buf = bytearray(65536)
    while not STOP:
        now = time.monotonic()
        if now >= deadline or (one_shot and st["opened"] >= total and open_count == 0):
            break
        while st["opened"] < initial and connecting < a.batch:
            open_one()
        if not ready_sent and st["opened"] >= initial and initial_pending <= 0:
            queue.put(("ready", idx, st["opened"]))
            ready_sent = True
        wait = 0.05 if not timers else max(0.0, min(0.05, timers[0][0] - now))
        for key, ev in sel.select(wait):
            c = key.data
            if c.closed:
                continue
            if not c.connected:
                on_connected(c)
                continue
            if c.hs:
                handshake(c)
                continue
            if ev & selectors.EVENT_READ:
                on_readable(c)
            if ev & selectors.EVENT_WRITE and not c.closed:
                flush(c)
        now = time.monotonic()
        while timers and timers[0][0] <= now:
            c = heapq.heappop(timers)[2]
            if c is None:
                reopen()
            else:
                on_tick(c, now)
        if len(live) > 4 * max(initial, 1000):          # forget closed connections now and then
            live[:] = [c for c in live if not c.closed]
    st["open_at_end"] = sum(1 for c in live if not c.closed and c.connected)
    st["elapsed_s"] = round(time.monotonic() - t0, 3)
    for c in live:
        if not c.closed:
            c.sock.close()
    if not ready_sent:
        queue.put(("ready", idx, st["opened"]))
    queue.put(("stats", idx, st))


def http_connection(a, timeout=10):
    host, port = a.addr.rsplit(":", 1)
    if a.tls:
        return http.client.HTTPSConnection(host, int(port), timeout=timeout, context=client_context())
    return http.client.HTTPConnection(host, int(port), timeout=timeout)


def seed(a):
    """POST --count events to --path; print the id of the first (for Last-Event-ID)."""
    conn = http_connection(a)
    first = None
    body = "seed " + "x" * 100
    for _ in range(a.count):
        conn.request("POST", a.path, body=body)
        r = conn.getresponse()
        text = r.read().decode().strip()
        if r.status != 200:
            sys.exit(f"attack.py seed: POST {a.path} answered {r.status} {text}")
        first = first or text
    print(first)


def metrics(a):
    """GET /metrics; print {"tls_handshake_failures": {reason: n}, "requests_rejected": {reason: n}}.
    A counter ssed does not have is simply absent."""
    conn = http_connection(a)
    conn.request("GET", "/metrics")
    r = conn.getresponse()
    text = r.read().decode("utf-8", "replace")
    if r.status != 200:
        sys.exit(f"attack.py metrics: GET /metrics answered {r.status}")
    out = {"tls_handshake_failures": {}, "requests_rejected": {}}
    names = {"ssed_tls_handshake_failures_total": "tls_handshake_failures",
             "ssed_requests_rejected_total": "requests_rejected"}
    for m in re.finditer(r'^(\w+)\{reason="([^"]*)"\} (\d+)$', text, re.M):
        if m.group(1) in names:
            out[names[m.group(1)]][m.group(2)] = int(m.group(3))
    print(json.dumps(out))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["pipeline", "garbage", "trickle-cl", "trickle-chunked", "slowloris",
                                    "oneshot", "storm", "flood", *TLS_MODES, "seed", "metrics"])
    p.add_argument("--addr", required=True, help="HOST:PORT, on 127.0.0.0/8")
    p.add_argument("--tls", action="store_true", help="the server speaks HTTPS (implied by the TLS modes)")
    p.add_argument("--connections", type=int, default=100, help="connections held at once (oneshot, handshake-storm: per process in flight is --concurrency)")
    p.add_argument("--total", type=int, default=100000, help="oneshot, handshake-storm: connections in all")
    p.add_argument("--concurrency", type=int, default=64, help="oneshot, handshake-storm: connections in flight per process")
    p.add_argument("--processes", type=int, default=1)
    p.add_argument("--duration", type=float, default=30, help="hard bound in seconds")
    p.add_argument("--interval", type=float, default=0.5, help="seconds between a connection's writes after its head")
    p.add_argument("--bytes", type=int, default=200_000, help="pipeline: bytes of requests per connection")
    p.add_argument("--chunk", type=int, default=2048, help="garbage: bytes per write")
    p.add_argument("--batch", type=int, default=500, help="connections connecting at once per process")
    p.add_argument("--per-source", type=int, default=10000, help="connections per source address")
    p.add_argument("--max-reconnects", type=int, default=100000, help="replacements per process, in all")
    p.add_argument("--reconnect-delay", type=float, default=0, help="seconds before a closed connection is replaced (0: at once)")
    p.add_argument("--path", default="/events/bench", help="storm, seed: the topic path")
    p.add_argument("--last-event-id", default="", help="storm: the id to replay from")
    p.add_argument("--count", type=int, default=100, help="seed: events to publish")
    a = p.parse_args()
    if not a.addr.startswith("127."):
        p.error("--addr must be on 127.0.0.0/8: this tool only ever loads loopback")
    if a.mode in TLS_MODES:
        a.tls = True
    if a.mode == "seed":
        return seed(a)
    if a.mode == "metrics":
        return metrics(a)
    if a.processes < 1 or a.processes > 200 or a.connections < 1 or a.connections > 19000 * a.processes:
        p.error("--processes 1..200, --connections 1..19000 per process (20,000 open files each)")
    if a.mode in ("oneshot", "handshake-storm"):
        per = [a.total // a.processes + (i < a.total % a.processes) for i in range(a.processes)]
        conc = [min(a.concurrency, t) for t in per]
    else:
        per = [a.connections // a.processes + (i < a.connections % a.processes) for i in range(a.processes)]
        conc = per
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    queue = mp.Queue()
    procs = [mp.Process(target=worker, args=(a, i, conc[i], per[i], queue), daemon=True) for i in range(a.processes)]
    for pr in procs:
        pr.start()
    stats, ready, opened = {}, set(), 0
    end = time.monotonic() + a.duration + 15
    while len(stats) < len(procs) and time.monotonic() < end:
        if STOP:                                  # forward the stop; the workers then report
            for pr in procs:
                if pr.is_alive():
                    os.kill(pr.pid, signal.SIGTERM)
            end = min(end, time.monotonic() + 5)
        try:
            kind, idx, val = queue.get(timeout=0.2)
        except Exception:
            continue
        if kind == "ready":
            ready.add(idx)
            opened += val
            if len(ready) == len(procs):
                print(f"ready opened={opened}", flush=True)
        else:
            stats[idx] = val
    for pr in procs:
        pr.join(timeout=2)
        if pr.is_alive():
            pr.kill()
    total = {"mode": a.mode, "tls": a.tls, "processes": len(procs), "reported": len(stats)}
    for st in stats.values():
        for k, v in st.items():
            if k == "statuses":
                for code, m in v.items():
                    total.setdefault("statuses", {})[code] = total.get("statuses", {}).get(code, 0) + m
            elif k == "elapsed_s":
                total[k] = max(total.get(k, 0), v)
            else:
                total[k] = total.get(k, 0) + v
    print(json.dumps(total), flush=True)


if __name__ == "__main__":
    main()
