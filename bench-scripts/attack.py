#!/usr/bin/env python3
"""attack.py: hostile HTTP clients for bench-scripts/abuse.sh (Python 3 stdlib only).

    attack.py MODE --addr 127.0.0.1:PORT [--connections N] [--processes P] [--duration S] ...
    attack.py seed --addr ... --path /events/bench --count K    # prints the first event's id

Modes (one connection = one socket; `reconnect` = a connection the server closes is replaced,
as a real attacker would, until --duration ends):
  pipeline         write --bytes of pipelined `GET /metrics` requests, never read the answers
  garbage          subscribe (GET /events/x), read the stream, and write garbage continuously
  trickle-cl       POST with Content-Length 60000, the body 4 bytes per --interval (reconnect)
  trickle-chunked  POST with Transfer-Encoding: chunked, one 1-byte chunk per --interval (reconnect)
  slowloris        a partial request head, then one more header byte per --interval (reconnect)
  oneshot          GET /events/<random> then close once the response head is in, --total times,
                   --concurrency at once per process, as fast as possible
  storm            subscribe to --path with `Last-Event-ID: --last-event-id`, read everything
  flood            subscribe to /events/flood and hold; counts 200s against 503s

Prints `ready opened=N` once every process has its initial connections connected (or failed),
then, at --duration or on SIGTERM/SIGINT, one JSON line of counters summed over the processes.
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
import selectors
import signal
import socket
import sys
import time

IP_BIND_ADDRESS_NO_PORT = 24  # linux/in.h: pick the source port at connect(), per 4-tuple
STOP = False


def on_signal(*_):
    global STOP
    STOP = True


def die_with_parent():
    # PR_SET_PDEATHSIG: a child never outlives its parent, even after a SIGKILL.
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)
    except OSError:
        pass


class Conn:
    __slots__ = ("sock", "pending", "status", "head_done", "connected", "closed", "ticks", "mask")

    def __init__(self, sock):
        self.sock, self.pending, self.status = sock, b"", None
        self.head_done = self.connected = self.closed = False
        self.ticks, self.mask = 0, 0


def request_head(a):
    """The first bytes each connection sends, and what it sends on every tick after."""
    m = a.mode
    if m == "pipeline":
        one = b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n"
        return lambda: one * (a.bytes // len(one)), None
    if m == "garbage":
        junk = bytes(random.getrandbits(8) for _ in range(a.chunk))
        return (lambda: b"GET /events/x HTTP/1.1\r\nHost: a\r\n\r\n"), (lambda c: junk)
    if m == "trickle-cl":
        head = b"POST /events/x HTTP/1.1\r\nHost: a\r\nContent-Length: 60000\r\n\r\n"
        return (lambda: head), (lambda c: b"abcd")
    if m == "trickle-chunked":
        head = b"POST /events/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        return (lambda: head), (lambda c: b"1\r\na\r\n")
    if m == "slowloris":
        line = b"X-a: b\r\n"
        return (lambda: b"GET /events/x HTTP/1.1\r\nHost: a\r\n"), (lambda c: line[c.ticks % len(line):][:1])
    if m == "oneshot":
        return (lambda: b"GET /events/r%016x HTTP/1.1\r\nHost: a\r\n\r\n" % random.getrandbits(64)), None
    if m == "storm":
        head = f"GET {a.path} HTTP/1.1\r\nHost: a\r\nLast-Event-ID: {a.last_event_id}\r\n\r\n".encode()
        return (lambda: head), None
    if m == "flood":
        return (lambda: b"GET /events/flood HTTP/1.1\r\nHost: a\r\n\r\n"), None
    raise ValueError(m)


def worker(a, idx, n, total, queue):
    """One process: n connections at once (oneshot: `total` in all), until the deadline."""
    die_with_parent()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    host, port = a.addr.rsplit(":", 1)
    addr = (host, int(port))
    head, tick = request_head(a)
    reads = a.mode != "pipeline"                      # pipeline never reads, by design
    reconnect = a.mode in ("trickle-cl", "trickle-chunked", "slowloris")
    sel = selectors.DefaultSelector()
    timers = []                                       # (when, seq, conn) for the ticks
    st = {"opened": 0, "connected": 0, "connect_failed": 0, "server_closed": 0, "reset": 0,
          "done": 0, "bytes_out": 0, "bytes_in": 0, "statuses": {}}
    live = []
    connecting = 0
    open_count = 0
    seq = 0
    cap = total if a.mode == "oneshot" else n + (a.max_reconnects if reconnect else 0)
    deadline = time.monotonic() + a.duration

    def set_mask(c):
        want = (selectors.EVENT_WRITE if (c.pending or not c.connected) else 0) | \
               (selectors.EVENT_READ if (reads and c.connected) else 0)
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
        nonlocal connecting, open_count
        k = st["opened"] // a.per_source
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            s.bind((f"127.{20 + idx}.{k // 250 % 250}.{1 + k % 250}", 0))
            err = s.connect_ex(addr)
        except OSError as e:
            err = e.errno
        st["opened"] += 1
        if err not in (0, errno.EINPROGRESS):
            st["connect_failed"] += 1
            s.close()
            return
        c = Conn(s)
        live.append(c)
        connecting += 1
        open_count += 1
        set_mask(c)

    def close(c, why):
        nonlocal open_count
        if c.closed:
            return
        c.closed = True
        open_count -= 1
        if c.mask:
            sel.unregister(c.sock)
        c.sock.close()
        st[why] += 1
        if (reconnect or a.mode == "oneshot") and not STOP and time.monotonic() < deadline and st["opened"] < cap:
            open_one()

    def flush(c):
        while c.pending:
            try:
                sent = c.sock.send(c.pending[:262144])
            except BlockingIOError:
                break
            except OSError:
                close(c, "reset")
                return
            st["bytes_out"] += sent
            c.pending = c.pending[sent:]
        set_mask(c)

    def on_tick(c, now):
        nonlocal seq
        if c.closed:
            return
        if len(c.pending) < 65536:                    # the server is not reading: do not pile up
            c.pending += tick(c)
            c.ticks += 1
            flush(c)
        if not c.closed:
            seq += 1
            heapq.heappush(timers, (now + a.interval, seq, c))

    initial = min(n, total) if a.mode == "oneshot" else n
    ready_sent = False
    t0 = time.monotonic()
    buf = bytearray(65536)
    while not STOP:
        now = time.monotonic()
        if now >= deadline or (a.mode == "oneshot" and st["opened"] >= total and open_count == 0):
            break
        while st["opened"] < initial and connecting < a.batch:
            open_one()
        if not ready_sent and st["opened"] >= initial and connecting == 0:
            queue.put(("ready", idx, st["opened"]))
            ready_sent = True
        wait = 0.05 if not timers else max(0.0, min(0.05, timers[0][0] - now))
        for key, ev in sel.select(wait):
            c = key.data
            if not c.connected:
                connecting -= 1
                err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    close(c, "connect_failed")
                    continue
                c.connected = True
                st["connected"] += 1
                c.pending = head()
                flush(c)
                if tick and not c.closed:
                    seq += 1
                    heapq.heappush(timers, (time.monotonic() + a.interval, seq, c))
                continue
            if ev & selectors.EVENT_READ:
                try:
                    got = c.sock.recv_into(buf)
                except BlockingIOError:
                    got = -1
                except OSError:
                    close(c, "reset")
                    continue
                if got == 0:
                    close(c, "server_closed")
                    continue
                if got > 0:
                    st["bytes_in"] += got
                    if c.status is None and got >= 12 and buf[:5] == b"HTTP/":
                        c.status = bytes(buf[9:12]).decode("ascii", "replace")
                        st["statuses"][c.status] = st["statuses"].get(c.status, 0) + 1
                    if a.mode == "oneshot" and c.status is not None:
                        close(c, "done")
                        continue
            if ev & selectors.EVENT_WRITE and not c.closed:
                flush(c)
        now = time.monotonic()
        while timers and timers[0][0] <= now:
            on_tick(heapq.heappop(timers)[2], now)
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


def seed(a):
    """POST --count events to --path; print the id of the first (for Last-Event-ID)."""
    host, port = a.addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
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


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["pipeline", "garbage", "trickle-cl", "trickle-chunked", "slowloris",
                                    "oneshot", "storm", "flood", "seed"])
    p.add_argument("--addr", required=True, help="HOST:PORT, on 127.0.0.0/8")
    p.add_argument("--connections", type=int, default=100, help="connections held at once (oneshot: per process in flight is --concurrency)")
    p.add_argument("--total", type=int, default=100000, help="oneshot: connections in all")
    p.add_argument("--concurrency", type=int, default=64, help="oneshot: connections in flight per process")
    p.add_argument("--processes", type=int, default=1)
    p.add_argument("--duration", type=float, default=30, help="hard bound in seconds")
    p.add_argument("--interval", type=float, default=0.5, help="seconds between a connection's writes after its head")
    p.add_argument("--bytes", type=int, default=200_000, help="pipeline: bytes of requests per connection")
    p.add_argument("--chunk", type=int, default=2048, help="garbage: bytes per write")
    p.add_argument("--batch", type=int, default=500, help="connections connecting at once per process")
    p.add_argument("--per-source", type=int, default=10000, help="connections per source address")
    p.add_argument("--max-reconnects", type=int, default=100000, help="replacements per process, in all")
    p.add_argument("--path", default="/events/bench", help="storm, seed: the topic path")
    p.add_argument("--last-event-id", default="", help="storm: the id to replay from")
    p.add_argument("--count", type=int, default=100, help="seed: events to publish")
    a = p.parse_args()
    if not a.addr.startswith("127."):
        p.error("--addr must be on 127.0.0.0/8: this tool only ever loads loopback")
    if a.mode == "seed":
        return seed(a)
    if a.processes < 1 or a.processes > 200 or a.connections < 1 or a.connections > 19000 * a.processes:
        p.error("--processes 1..200, --connections 1..19000 per process (20,000 open files each)")
    if a.mode == "oneshot":
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
    total = {"mode": a.mode, "processes": len(procs), "reported": len(stats)}
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
