#!/usr/bin/env python3
"""Writes the seed corpus (fuzz/corpus/<target>/). Run from anywhere; files are overwritten.

request and connection inputs start with 2 control bytes (the split point for `request`, the
piece boundaries for `connection`), then the bytes of the request(s).
"""
import hashlib, os, struct

HERE = os.path.dirname(os.path.abspath(__file__))

REQUESTS = {
    "subscribe": b"GET /events/news HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n",
    "subscribe-last-event-id": b"GET /events/users/42 HTTP/1.1\r\nHost: h\r\nLast-Event-ID: 1700000000000-3\r\n\r\n",
    "subscribe-query-id": b"GET /events/a.b~c?lastEventId=1700000000000-0 HTTP/1.1\r\nHost: h\r\n\r\n",
    "publish-content-length": b"POST /events/news?event=update HTTP/1.1\r\nHost: h\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello\nworld",
    "publish-chunked": b"POST /events/news?event=a%20b HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;name=value\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: 1\r\n\r\n",
    "pipelined": b"POST /events/t HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\naGET /healthz HTTP/1.1\r\nHost: h\r\n\r\nHEAD /metrics HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    "expect-continue": b"POST /events/t HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\ndata",
    "http10": b"GET /events/t HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    "absolute-form": b"GET http://example.com:8080/events/t?lastEventId=5 HTTP/1.1\r\nHost: example.com:8080\r\n\r\n",
    "options-cors": b"OPTIONS /events/t HTTP/1.1\r\nHost: h\r\nOrigin: https://example.com\r\nAccess-Control-Request-Method: POST\r\n\r\n",
    "bad-both-framings": b"POST /events/t HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "bad-no-host": b"GET /events/t HTTP/1.1\r\n\r\n",
    "bad-topic": b"GET /events/a//b HTTP/1.1\r\nHost: h\r\n\r\n",
    "bad-id-and-percent": b"GET /events/t?lastEventId=12-x&event=%zz HTTP/1.1\r\nHost: h\r\n\r\n",
    "bad-chunk-size": b"POST /events/t HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nfffffffff\r\n",
    "long-chunk-extension": b"POST /events/t HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2;" + b"x" * 1000 + b"\r\nhi\r\n0\r\n\r\n",
}

CHUNKED = {
    "one-chunk": b"5\r\nhello\r\n0\r\n\r\n",
    "extensions-trailers": b"3;a=1;b=\"q\"\r\nabc\r\n2 ; c\r\nde\r\n0;last\r\nT: 1\r\nU: 2\r\n\r\n",
    "empty": b"0\r\n\r\n",
    "uppercase-hex": b"A\r\n0123456789\r\n0\r\n\r\n",
    "at-limit": b"64\r\n" + b"x" * 100 + b"\r\n0\r\n\r\n",
    "over-limit": b"32\r\n" + b"y" * 50 + b"\r\n33\r\n" + b"z" * 51 + b"\r\n0\r\n\r\n",
    "pipelined-after": b"1\r\na\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
    "incomplete": b"10\r\nonly part",
    "no-crlf-after-data": b"2\r\nabcd\r\n0\r\n\r\n",
    "bad-size": b"-1\r\n",
    "long-size": b"00000000001\r\nx\r\n0\r\n\r\n",
    "long-extension": b"1;" + b"e" * 1000 + b"\r\nx\r\n0\r\n\r\n",
}

NAMES = [
    b"news", b"users/42/inbox", b"A-Z_a.z~0", b"a//b", b"/lead", b"x" * 257,
    b"1700000000000-3", b"17", b"18446744073709551615-18446744073709551615", b"1-2-3", b"-5",
    b"lastEventId=1700000000000-0&event=update",
    b"event=a%20b+c&lastEventId=%31%2D2",
    b"event=%zz&x", b"event=%e2%82%ac", b"lastEventId&event=",
]


def write(target, name, data):
    directory = os.path.join(HERE, target)
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, name), "wb") as f:
        f.write(data)


for name, request in REQUESTS.items():
    # request: split in the middle; connection: three pieces, at a third and two thirds.
    write("request", name, struct.pack("<H", len(request) // 2) + request)
    write("connection", name, bytes([85, 170]) + request)
for name, body in CHUNKED.items():
    write("chunked", name, body)
for text in NAMES:
    write("names", hashlib.sha1(text).hexdigest()[:12], text)
