//! HTTP/1.1 request parsing (RFC 9112) and the few responses ssed writes itself.
//!
//! A request is parsed from whatever bytes have arrived so far; [`parse_request`] answers
//! "incomplete" until the head and the whole body are there, so the event loop can simply call it
//! again after the next read. Nothing here does I/O or keeps state between calls. Every way a
//! request can be wrong maps to the status that tells the client what to fix.

use std::fmt::Write as _;

/// Request heads larger than this are answered 431 (RFC 6585 §5).
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
const MAX_HEADERS: usize = 48;

/// A request whose head and body have fully arrived.
#[derive(Debug)]
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub headers: Vec<(&'a str, &'a [u8])>,
    pub body: Body<'a>,
    pub keep_alive: bool,
    /// Bytes of input this request occupied, head and body.
    pub len: usize,
}

#[derive(Debug)]
pub enum Body<'a> {
    /// Content-Length framed (or empty): the body is a slice of the input.
    Whole(&'a [u8]),
    /// Chunked: the decoded body.
    Chunked(Vec<u8>),
}

impl Body<'_> {
    pub fn bytes(&self) -> &[u8] {
        match self {
            Body::Whole(bytes) => bytes,
            Body::Chunked(bytes) => bytes,
        }
    }
}

impl Request<'_> {
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        header_values(&self.headers, name).next()
    }

    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name)
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(str::trim)
    }

    /// The first value of query parameter `name`, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<Result<String, Rejection>> {
        self.query
            .split('&')
            .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
            .find(|(key, _)| *key == name)
            .map(|(_, value)| {
                percent_decode(value).ok_or(Rejection::bad_request("badly percent-encoded query"))
            })
    }
}

/// The outcome of trying to parse one request from the front of the input.
#[derive(Debug)]
pub enum Parse<'a> {
    Complete(Request<'a>),
    /// More bytes are needed. `head_done` says whether the head has been parsed (so a client that
    /// sent `Expect: 100-continue` can be told to go on).
    Incomplete {
        head_done: bool,
        expects_continue: bool,
    },
    Invalid(Rejection),
}

/// Why a request was refused: its status and a one-line reason for the client and the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    pub reason: &'static str,
}

impl Rejection {
    pub const fn new(status: u16, reason: &'static str) -> Rejection {
        Rejection { status, reason }
    }
    pub const fn bad_request(reason: &'static str) -> Rejection {
        Rejection::new(400, reason)
    }
}

/// Parses one request from the front of `input`. Bodies larger than `max_body` are refused with
/// 413 as soon as that is known (from `Content-Length`, or while decoding chunks).
pub fn parse_request(input: &[u8], max_body: usize) -> Parse<'_> {
    let mut header_buf = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut header_buf);
    let head_len = match parsed.parse(input) {
        Ok(httparse::Status::Complete(len)) if len > MAX_HEAD_BYTES => {
            return Parse::Invalid(Rejection::new(431, "request head larger than 8 KiB"))
        }
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if input.len() > MAX_HEAD_BYTES => {
            return Parse::Invalid(Rejection::new(431, "request head larger than 8 KiB"))
        }
        Ok(httparse::Status::Partial) => {
            return Parse::Incomplete {
                head_done: false,
                expects_continue: false,
            }
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Parse::Invalid(Rejection::new(431, "too many request headers"))
        }
        Err(_) => return Parse::Invalid(Rejection::bad_request("malformed request")),
    };
    let (method, target, version) = match (parsed.method, parsed.path, parsed.version) {
        (Some(m), Some(t), Some(v)) => (m, t, v),
        _ => return Parse::Invalid(Rejection::bad_request("malformed request line")),
    };
    let headers: Vec<(&str, &[u8])> = parsed.headers.iter().map(|h| (h.name, h.value)).collect();
    let header = |name| header_values(&headers, name);
    let has_token = |name: &'static str, token: &str| {
        header(name).any(|v| {
            v.split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
        })
    };

    // RFC 9112 §3.2: a 1.1 request without exactly one Host is a 400.
    if version == 1 && header("host").count() != 1 {
        return Parse::Invalid(Rejection::bad_request(
            "HTTP/1.1 request without one Host header",
        ));
    }
    let keep_alive = if version == 1 {
        !has_token("connection", "close")
    } else {
        has_token("connection", "keep-alive")
    };
    let expects_continue = header("expect").any(|v| v.eq_ignore_ascii_case(b"100-continue"));

    // RFC 9112 §3.2.2: a server must accept the absolute form (what proxies send).
    let origin_form = ["http://", "https://"]
        .iter()
        .find_map(|scheme| {
            target
                .get(..scheme.len())
                .filter(|s| s.eq_ignore_ascii_case(scheme))
                .map(|s| &target[s.len()..])
        })
        .map_or(target, |rest| rest.find('/').map_or("/", |at| &rest[at..]));
    let (path, query) = origin_form.split_once('?').unwrap_or((origin_form, ""));
    match frame_body(&headers, &input[head_len..], max_body) {
        Framing::Complete(body, body_len) => Parse::Complete(Request {
            method,
            path,
            query,
            headers,
            body,
            keep_alive,
            len: head_len + body_len,
        }),
        Framing::Incomplete => Parse::Incomplete {
            head_done: true,
            expects_continue,
        },
        Framing::Invalid(rejection) => Parse::Invalid(rejection),
    }
}

/// Every value of header `name` (names compare without case, RFC 9110 §5.1).
fn header_values<'h, 'v>(
    headers: &'h [(&str, &'v [u8])],
    name: &'h str,
) -> impl Iterator<Item = &'v [u8]> + 'h {
    headers
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .map(|&(_, v)| v)
}

enum Framing<'a> {
    /// The body, and how many bytes of input it took (framing included).
    Complete(Body<'a>, usize),
    Incomplete,
    Invalid(Rejection),
}

/// Finds the body that follows a request head in `rest` (RFC 9112 §6).
fn frame_body<'a>(headers: &[(&str, &[u8])], rest: &'a [u8], max_body: usize) -> Framing<'a> {
    let header = |name| header_values(headers, name);
    // RFC 9112 §6.1 and §6.3: chunked must be the final transfer coding, and a request carrying
    // both framings is refused rather than guessed at (request smuggling).
    let transfer_encodings: Vec<&[u8]> = header("transfer-encoding").collect();
    if !transfer_encodings.is_empty() {
        if header("content-length").next().is_some() {
            return Framing::Invalid(Rejection::bad_request(
                "both Transfer-Encoding and Content-Length",
            ));
        }
        let last = transfer_encodings
            .iter()
            .flat_map(|v| v.split(|&b| b == b','))
            .map(|t| t.trim_ascii())
            .next_back()
            .unwrap_or_default();
        if !last.eq_ignore_ascii_case(b"chunked") {
            return Framing::Invalid(Rejection::bad_request(
                "unsupported Transfer-Encoding (only chunked)",
            ));
        }
        return match decode_chunked(rest, max_body) {
            Chunked::Complete { body, len } => Framing::Complete(Body::Chunked(body), len),
            Chunked::Incomplete => Framing::Incomplete,
            Chunked::Invalid(rejection) => Framing::Invalid(rejection),
        };
    }

    let mut lengths = header("content-length");
    let content_length = match lengths.next() {
        None => 0,
        Some(first) => {
            let parse = |v: &[u8]| -> Option<usize> {
                let v = std::str::from_utf8(v).ok()?;
                v.bytes()
                    .all(|b| b.is_ascii_digit())
                    .then(|| v.parse().ok())?
            };
            match parse(first) {
                Some(n) if lengths.all(|other| parse(other) == Some(n)) => n,
                _ => return Framing::Invalid(Rejection::bad_request("invalid Content-Length")),
            }
        }
    };
    if content_length > max_body {
        return Framing::Invalid(Rejection::new(413, "body larger than --max-event-bytes"));
    }
    if rest.len() < content_length {
        return Framing::Incomplete;
    }
    Framing::Complete(Body::Whole(&rest[..content_length]), content_length)
}

enum Chunked {
    Complete { body: Vec<u8>, len: usize },
    Incomplete,
    Invalid(Rejection),
}

/// Decodes a chunked body (RFC 9112 §7.1) from the start of `input`; chunk extensions and
/// trailer fields are read past and ignored.
fn decode_chunked(input: &[u8], max_body: usize) -> Chunked {
    let mut body = Vec::new();
    let mut at = 0;
    let line_at = |at: usize| -> Option<(&[u8], usize)> {
        let end = input[at..].windows(2).position(|w| w == b"\r\n")?;
        Some((&input[at..at + end], at + end + 2))
    };
    loop {
        let Some((size_line, data_start)) = line_at(at) else {
            // A size line can't be long; an endless one is garbage, not a slow client.
            return if input.len() - at > 1024 {
                Chunked::Invalid(Rejection::bad_request("malformed chunk size"))
            } else {
                Chunked::Incomplete
            };
        };
        let size_hex = size_line
            .split(|&b| b == b';')
            .next()
            .unwrap_or_default()
            .trim_ascii();
        let size = match std::str::from_utf8(size_hex)
            .ok()
            .filter(|s| !s.is_empty() && s.len() <= 8)
            .and_then(|s| usize::from_str_radix(s, 16).ok())
        {
            Some(size) => size,
            None => return Chunked::Invalid(Rejection::bad_request("malformed chunk size")),
        };
        if body.len() + size > max_body {
            return Chunked::Invalid(Rejection::new(413, "body larger than --max-event-bytes"));
        }
        if size == 0 {
            let mut trailer_at = data_start;
            loop {
                match line_at(trailer_at) {
                    None if input.len() - trailer_at > MAX_HEAD_BYTES => {
                        return Chunked::Invalid(Rejection::new(431, "trailer fields too large"))
                    }
                    None => return Chunked::Incomplete,
                    Some((b"", next)) => return Chunked::Complete { body, len: next },
                    Some((_, next)) => trailer_at = next,
                }
            }
        }
        let data_end = data_start + size;
        if input.len() < data_end + 2 {
            return Chunked::Incomplete;
        }
        if &input[data_end..data_end + 2] != b"\r\n" {
            return Chunked::Invalid(Rejection::bad_request("chunk not followed by CRLF"));
        }
        body.extend_from_slice(&input[data_start..data_end]);
        at = data_end + 2;
    }
}

/// A topic is 1–256 characters of `A–Z a–z 0–9 - _ . ~ /` with no empty path segment.
pub fn valid_topic(topic: &str) -> bool {
    (1..=256).contains(&topic.len())
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~/".contains(&b))
        && topic.split('/').all(|segment| !segment.is_empty())
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

pub fn status_text(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// Appends a complete response with a `Content-Length` body to `out`. `extra_headers` are whole
/// `Name: value\r\n` lines.
pub fn write_response(
    out: &mut Vec<u8>,
    status: u16,
    extra_headers: &str,
    content_type: &str,
    body: &[u8],
    keep_alive: bool,
) {
    let mut head = String::with_capacity(160 + extra_headers.len());
    let _ = write!(
        head,
        "HTTP/1.1 {status} {}\r\nContent-Length: {}\r\n",
        status_text(status),
        body.len()
    );
    if !body.is_empty() {
        let _ = write!(head, "Content-Type: {content_type}\r\n");
    }
    if !keep_alive {
        head.push_str("Connection: close\r\n");
    }
    head.push_str(extra_headers);
    head.push_str("\r\n");
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(input: &[u8]) -> Request<'_> {
        match parse_request(input, 100) {
            Parse::Complete(request) => request,
            other => panic!("expected a complete request, got {other:?}"),
        }
    }

    fn rejected(input: &[u8]) -> u16 {
        match parse_request(input, 100) {
            Parse::Invalid(rejection) => rejection.status,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn parses_head_query_and_content_length_body() {
        let input =
            b"POST /events/a?event=x%20y HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcGET";
        let request = complete(input);
        assert_eq!((request.method, request.path), ("POST", "/events/a"));
        assert_eq!(request.query_param("event"), Some(Ok("x y".to_string())));
        assert_eq!(request.body.bytes(), b"abc");
        assert_eq!(request.len, input.len() - 3);
        assert!(request.keep_alive);
    }

    #[test]
    fn waits_for_the_whole_body_and_says_when_the_head_is_done() {
        let input =
            b"POST /e HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nab";
        assert!(matches!(
            parse_request(input, 100),
            Parse::Incomplete {
                head_done: true,
                expects_continue: true
            }
        ));
        assert!(matches!(
            parse_request(b"GET / HTTP/1.1\r\nHo", 100),
            Parse::Incomplete {
                head_done: false,
                ..
            }
        ));
    }

    #[test]
    fn decodes_chunked_bodies_with_extensions_and_trailers() {
        let input = b"POST /e HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\nnext";
        let request = complete(input);
        assert_eq!(request.body.bytes(), b"abcde");
        assert_eq!(request.len, input.len() - 4);
        for cut in 1..input.len() - 4 {
            assert!(
                matches!(parse_request(&input[..cut], 100), Parse::Incomplete { .. }),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn refuses_what_it_cannot_frame_or_accept() {
        assert_eq!(rejected(b"GET / HTTP/1.1\r\n\r\n"), 400, "missing Host");
        assert_eq!(rejected(b"\x01\x02 nonsense\r\n\r\n"), 400);
        assert_eq!(
            rejected(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            400
        );
        assert_eq!(
            rejected(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n"),
            400
        );
        assert_eq!(
            rejected(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n"),
            400
        );
        assert_eq!(
            rejected(
                b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"
            ),
            400
        );
        assert_eq!(
            rejected(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 101\r\n\r\n"),
            413
        );
        assert_eq!(
            rejected(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n65\r\n"),
            413
        );
        assert_eq!(
            rejected(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
            400
        );
        let mut huge = b"GET / HTTP/1.1\r\nHost: h\r\nX: ".to_vec();
        huge.resize(MAX_HEAD_BYTES + 1, b'a');
        assert_eq!(rejected(&huge), 431);
    }

    #[test]
    fn accepts_the_absolute_form_of_the_target() {
        let request = complete(
            b"GET HTTP://example.com:8080/events/a?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n",
        );
        assert_eq!((request.path, request.query), ("/events/a", "x=1"));
        assert_eq!(
            complete(b"GET http://example.com HTTP/1.1\r\nHost: h\r\n\r\n").path,
            "/"
        );
    }

    #[test]
    fn http_1_0_closes_unless_asked_to_keep_alive() {
        assert!(!complete(b"GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(complete(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").keep_alive);
        assert!(!complete(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").keep_alive);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_parser() {
        // Requests assembled from HTTP-ish pieces and noise, cut at random lengths.
        let pieces: [&[u8]; 16] = [
            b"GET ",
            b"POST ",
            b"/events/a",
            b"?event=%0",
            b" HTTP/1.1\r\n",
            b"Host: h\r\n",
            b"Content-Length: ",
            b"Transfer-Encoding: chunked\r\n",
            b"\r\n",
            b"5",
            b"ffffffff",
            b";x\r\n",
            b"0\r\n\r\n",
            b"\x00\xff",
            b"Expect: 100-continue\r\n",
            b"\n",
        ];
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let mut input = Vec::new();
            for _ in 0..next() % 24 {
                input.extend_from_slice(pieces[(next() % 16) as usize]);
            }
            let cut = (next() as usize) % (input.len() + 1);
            let _ = parse_request(&input[..cut], 64);
        }
    }

    #[test]
    fn topics_are_restricted_to_safe_path_segments() {
        for good in ["a", "users/42", "A-Z_a.z~0", &"x".repeat(256)] {
            assert!(valid_topic(good), "{good}");
        }
        for bad in ["", "/a", "a/", "a//b", "a b", "a%20", "ä", &"x".repeat(257)] {
            assert!(!valid_topic(bad), "{bad}");
        }
    }
}
