//! HTTP/1.1 request parsing (RFC 9112) and the few responses ssed writes itself.
//!
//! Parsing is incremental and never looks at a byte twice in a way that grows with the input:
//! - [`HeadScan`] remembers how far the search for the end of a head has gone, so a head
//!   trickled in one byte at a time is scanned once, and httparse runs once, when it is whole.
//! - [`parse_head`] turns a whole head into a [`Head`]: offsets into the input, the body's
//!   framing and the few facts the connection needs, all validated once.
//! - [`ChunkedDecoder`] decodes a chunked body in place, as it arrives: each data byte is moved
//!   once, to just after the head, so the decoded body is a plain slice of the input.
//!
//! Nothing here does I/O. Every way a request can be wrong maps to the status that tells the
//! client what to fix.

use std::fmt::Write as _;

/// Request heads larger than this are answered 431 (RFC 6585 §5).
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
pub const MAX_HEADERS: usize = 48;
/// A chunk-size line (with extensions) longer than this is garbage, not a slow client.
const MAX_CHUNK_LINE: usize = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Options,
    Other,
}

/// Where a piece of the head lies in the input: (start, end) offsets. A head is at most
/// [`MAX_HEAD_BYTES`], so `u16` offsets suffice.
type Span = (u16, u16);

/// A parsed request head: facts, and offsets of the parts read later.
#[derive(Debug, Clone)]
pub struct Head {
    pub method: Method,
    pub http10: bool,
    /// `None` for an absolute-form target without a path, which means `/`.
    path: Option<Span>,
    query: Span,
    headers: Vec<(Span, Span)>,
    /// Bytes of input the head occupies.
    pub len: usize,
    pub keep_alive: bool,
    /// `Expect: 100-continue` on an HTTP/1.1 request (RFC 9110 §10.1.1: an HTTP/1.0 client's is
    /// ignored).
    pub expects_continue: bool,
    pub framing: Framing,
}

/// How the body that follows a head ends (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Length(usize),
    Chunked,
}

/// A complete request: its head, and the input it was parsed from.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub head: &'a Head,
    input: &'a [u8],
    pub body: &'a [u8],
}

impl<'a> Request<'a> {
    pub fn new(head: &'a Head, input: &'a [u8], body: &'a [u8]) -> Request<'a> {
        Request { head, input, body }
    }

    fn text(&self, (start, end): Span) -> &'a str {
        // Spans come from httparse's &str slices of this same input.
        std::str::from_utf8(&self.input[start as usize..end as usize]).unwrap_or("")
    }

    pub fn method(&self) -> Method {
        self.head.method
    }

    pub fn path(&self) -> &'a str {
        self.head.path.map_or("/", |span| self.text(span))
    }

    pub fn query(&self) -> &'a str {
        self.text(self.head.query)
    }

    /// Every value of header `name` (names compare without case, RFC 9110 §5.1).
    pub fn headers(&self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        let input = self.input;
        self.head
            .headers
            .iter()
            .filter(move |&&((s, e), _)| {
                input[s as usize..e as usize].eq_ignore_ascii_case(name.as_bytes())
            })
            .map(move |&(_, (s, e))| &input[s as usize..e as usize])
    }

    pub fn header(&self, name: &'a str) -> Option<&'a [u8]> {
        self.headers(name).next()
    }

    pub fn header_str(&self, name: &'a str) -> Option<&'a str> {
        self.header(name)
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(str::trim)
    }

    /// The first value of query parameter `name`, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<Result<String, Rejection>> {
        query_param(self.query(), name)
    }

    /// Every header as (name, value), into `out` (a caller's array: no allocation); returns
    /// how many there are.
    pub fn header_pairs(&self, out: &mut [(&'a str, &'a [u8]); MAX_HEADERS]) -> usize {
        for (slot, &(name, value)) in out.iter_mut().zip(&self.head.headers) {
            *slot = (
                self.text(name),
                &self.input[value.0 as usize..value.1 as usize],
            );
        }
        self.head.headers.len().min(MAX_HEADERS)
    }
}

/// The first value of parameter `name` in a query string, percent-decoded.
pub fn query_param(query: &str, name: &str) -> Option<Result<String, Rejection>> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| {
            percent_decode(value).ok_or(Rejection::bad_request("badly percent-encoded query"))
        })
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

/// The search for the end of a head, kept between reads: a head trickled in one byte at a time
/// is scanned once, and httparse runs only when a terminator has arrived.
#[derive(Debug, Default, Clone, Copy)]
pub struct HeadScan {
    /// How far the search has gone.
    scanned: usize,
    /// Terminators that did not end a head (blank lines before the request line).
    false_ends: u8,
}

/// Blank lines tolerated before a request line (RFC 9112 §2.2 asks for at least one).
const MAX_FALSE_ENDS: u8 = 4;

impl HeadScan {
    /// The head at the front of `input` (the bytes of the request so far), once it is whole:
    /// looks only at bytes not looked at before (and the few before them, where a terminator
    /// may straddle two reads).
    pub fn next(&mut self, input: &[u8], max_body: usize) -> Result<Option<Head>, Rejection> {
        loop {
            let from = self.scanned.saturating_sub(2);
            let found = input[from..]
                .windows(2)
                .position(|w| w == b"\n\n")
                .map(|at| from + at + 2)
                .into_iter()
                .chain(
                    input[from..]
                        .windows(3)
                        .position(|w| w == b"\n\r\n")
                        .map(|at| from + at + 3),
                )
                .min();
            let Some(end) = found else {
                self.scanned = input.len();
                if input.len() > MAX_HEAD_BYTES {
                    return Err(Rejection::new(431, "request head larger than 8 KiB"));
                }
                return Ok(None);
            };
            self.scanned = end;
            match parse_head(&input[..end], max_body)? {
                Some(head) => {
                    *self = HeadScan::default();
                    return Ok(Some(head));
                }
                None => {
                    self.false_ends += 1;
                    if self.false_ends > MAX_FALSE_ENDS {
                        return Err(Rejection::bad_request("malformed request"));
                    }
                }
            }
        }
    }
}

/// Parses the head at the front of `input`: `Ok(None)` if it is not whole yet. A head that is
/// whole is validated here once: Host, framing, the body-size limit.
pub fn parse_head(input: &[u8], max_body: usize) -> Result<Option<Head>, Rejection> {
    let mut header_buf = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut header_buf);
    let len = match parsed.parse(input) {
        Ok(httparse::Status::Complete(len)) if len > MAX_HEAD_BYTES => {
            return Err(Rejection::new(431, "request head larger than 8 KiB"))
        }
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if input.len() > MAX_HEAD_BYTES => {
            return Err(Rejection::new(431, "request head larger than 8 KiB"))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Rejection::new(431, "too many request headers"))
        }
        Err(_) => return Err(Rejection::bad_request("malformed request")),
    };
    let (method, target, version) = match (parsed.method, parsed.path, parsed.version) {
        (Some(m), Some(t), Some(v)) => (m, t, v),
        _ => return Err(Rejection::bad_request("malformed request line")),
    };
    let base = input.as_ptr() as usize;
    let span = |s: &[u8]| -> Span {
        let start = s.as_ptr() as usize - base;
        (start as u16, (start + s.len()) as u16)
    };
    let headers: Vec<(Span, Span)> = parsed
        .headers
        .iter()
        .map(|h| (span(h.name.as_bytes()), span(h.value)))
        .collect();
    let values = |name: &'static str| {
        parsed
            .headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    let has_token = |name: &'static str, token: &str| {
        values(name).any(|v| {
            v.split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
        })
    };
    let http10 = version == 0;

    // RFC 9112 §3.2: a 1.1 request without exactly one Host is a 400.
    if !http10 && values("host").count() != 1 {
        return Err(Rejection::bad_request(
            "HTTP/1.1 request without one Host header",
        ));
    }
    let keep_alive = if http10 {
        has_token("connection", "keep-alive")
    } else {
        !has_token("connection", "close")
    };
    let expects_continue =
        !http10 && values("expect").any(|v| v.eq_ignore_ascii_case(b"100-continue"));

    // RFC 9112 §3.2.2: a server must accept the absolute form (what proxies send).
    let origin_form = ["http://", "https://"]
        .iter()
        .find_map(|scheme| {
            target
                .get(..scheme.len())
                .filter(|s| s.eq_ignore_ascii_case(scheme))
                .map(|s| &target[s.len()..])
        })
        .map_or(Some(target), |rest| rest.find('/').map(|at| &rest[at..]));
    let (path, query) = match origin_form.map(|form| form.split_once('?').unwrap_or((form, ""))) {
        Some((path, "")) => {
            let path = span(path.as_bytes());
            (Some(path), (path.1, path.1))
        }
        Some((path, query)) => (Some(span(path.as_bytes())), span(query.as_bytes())),
        None => (None, (0, 0)),
    };

    let framing = framing(&parsed.headers[..], http10, max_body)?;
    Ok(Some(Head {
        method: match method {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "OPTIONS" => Method::Options,
            _ => Method::Other,
        },
        http10,
        path,
        query,
        headers,
        len,
        keep_alive,
        expects_continue,
        framing,
    }))
}

/// How the body is framed (RFC 9112 §6), refusing what cannot be framed safely.
fn framing(
    headers: &[httparse::Header<'_>],
    http10: bool,
    max_body: usize,
) -> Result<Framing, Rejection> {
    let values = |name: &'static str| {
        headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    if values("transfer-encoding").next().is_some() {
        // RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 means the framing is faulty; with
        // Content-Length too, it is refused rather than guessed at (request smuggling).
        if http10 {
            return Err(Rejection::bad_request(
                "Transfer-Encoding in an HTTP/1.0 request",
            ));
        }
        if values("content-length").next().is_some() {
            return Err(Rejection::bad_request(
                "both Transfer-Encoding and Content-Length",
            ));
        }
        // Only `chunked` alone is understood: any other coding (`gzip, chunked` included) is a
        // coding this server does not implement (RFC 9112 §6.1: 501).
        let mut codings = values("transfer-encoding")
            .flat_map(|v| v.split(|&b| b == b','))
            .map(|t| t.trim_ascii())
            .filter(|t| !t.is_empty());
        return match (codings.next(), codings.next()) {
            (Some(only), None) if only.eq_ignore_ascii_case(b"chunked") => Ok(Framing::Chunked),
            _ => Err(Rejection::new(
                501,
                "unsupported Transfer-Encoding (only chunked alone)",
            )),
        };
    }
    let mut lengths = values("content-length");
    let Some(first) = lengths.next() else {
        return Ok(Framing::Length(0));
    };
    let parse = |v: &[u8]| -> Option<usize> {
        let v = std::str::from_utf8(v).ok()?;
        v.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| v.parse().ok())?
    };
    match parse(first) {
        Some(n) if lengths.all(|other| parse(other) == Some(n)) => {
            if n > max_body {
                Err(Rejection::new(413, "body larger than --max-event-bytes"))
            } else {
                Ok(Framing::Length(n))
            }
        }
        _ => Err(Rejection::bad_request("invalid Content-Length")),
    }
}

/// Decodes a chunked body (RFC 9112 §7.1) in place, as its bytes arrive.
///
/// The buffer it works on starts right after the head. Decoded data is moved to the front of
/// it, so when the body is complete it is `buf[..decoded]`; `read` is where the undecoded input
/// starts. Chunk extensions and trailer fields are read past and ignored.
#[derive(Debug, Default, Clone)]
pub struct ChunkedDecoder {
    state: ChunkState,
    decoded: usize,
    read: usize,
    /// Bytes of the current size or trailer line, and all trailer bytes, for the limits.
    line: usize,
    trailers: usize,
    size: u64,
    digits: u8,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    Extension,
    SizeLf,
    Data(u64),
    DataCr,
    DataLf,
    Trailer,
    TrailerLf,
    Done,
}

/// A finished chunked body: `decoded` bytes of body at the front, `consumed` bytes of input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded {
    pub decoded: usize,
    pub consumed: usize,
}

impl ChunkedDecoder {
    /// Decodes what has arrived of `buf`; `Ok(None)` while the body is incomplete.
    pub fn advance(
        &mut self,
        buf: &mut [u8],
        max_body: usize,
    ) -> Result<Option<Decoded>, Rejection> {
        use ChunkState::*;
        let malformed = Rejection::bad_request("malformed chunked body");
        while self.read < buf.len() && self.state != Done {
            if let Data(left) = self.state {
                let n = (left as usize).min(buf.len() - self.read);
                buf.copy_within(self.read..self.read + n, self.decoded);
                self.read += n;
                self.decoded += n;
                self.state = if left as usize == n {
                    DataCr
                } else {
                    Data(left - n as u64)
                };
                continue;
            }
            let byte = buf[self.read];
            self.read += 1;
            self.line += 1;
            if self.line > MAX_CHUNK_LINE && matches!(self.state, Size | Extension) {
                return Err(Rejection::bad_request("malformed chunk size"));
            }
            self.state = match (self.state, byte) {
                (Size, b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F') => {
                    self.digits += 1;
                    if self.digits > 8 {
                        return Err(Rejection::bad_request("malformed chunk size"));
                    }
                    self.size = self.size * 16 + (byte as char).to_digit(16).unwrap_or(0) as u64;
                    Size
                }
                (Size, b';' | b' ' | b'\t') if self.digits > 0 => Extension,
                (Size, b'\r') if self.digits > 0 => SizeLf,
                (Size, _) => return Err(Rejection::bad_request("malformed chunk size")),
                (Extension, b'\r') => SizeLf,
                (Extension, _) => Extension,
                (SizeLf, b'\n') => {
                    let size = std::mem::take(&mut self.size);
                    self.digits = 0;
                    self.line = 0;
                    if self.decoded as u64 + size > max_body as u64 {
                        return Err(Rejection::new(413, "body larger than --max-event-bytes"));
                    }
                    if size == 0 {
                        Trailer
                    } else {
                        Data(size)
                    }
                }
                (DataCr, b'\r') => DataLf,
                (DataLf, b'\n') => Size,
                (Trailer, b'\r') => TrailerLf,
                (Trailer, _) => Trailer,
                (TrailerLf, b'\n') if self.line == 2 => Done,
                (TrailerLf, b'\n') => {
                    self.line = 0;
                    Trailer
                }
                (SizeLf | DataCr | DataLf | TrailerLf, _) => return Err(malformed),
                (Data(_) | Done, _) => unreachable!("handled above"),
            };
            if matches!(self.state, Trailer | TrailerLf) {
                self.trailers += 1;
                if self.trailers > MAX_HEAD_BYTES {
                    return Err(Rejection::new(431, "trailer fields too large"));
                }
            }
        }
        Ok((self.state == Done).then_some(Decoded {
            decoded: self.decoded,
            consumed: self.read,
        }))
    }
}

impl ChunkedDecoder {
    /// Drops the framing bytes already decoded past (between the decoded body and the
    /// undecoded rest), so a body sent in tiny chunks holds no more memory than its data.
    /// `input[body_at..]` is the buffer [`advance`](Self::advance) works on.
    pub fn squeeze(&mut self, input: &mut Vec<u8>, body_at: usize) {
        if self.read > self.decoded {
            input.drain(body_at + self.decoded..body_at + self.read);
            self.read = self.decoded;
        }
    }
}

/// A topic is 1–256 characters of `A–Z a–z 0–9 - _ . ~ /` with no empty, `.` or `..` path
/// segment (a proxy that normalises URLs would send those to another topic).
pub fn valid_topic(topic: &str) -> bool {
    (1..=256).contains(&topic.len())
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~/".contains(&b))
        && topic
            .split('/')
            .all(|segment| !segment.is_empty() && segment != "." && segment != "..")
}

pub fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return None;
                }
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
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// A response ssed writes itself.
pub struct Response<'a> {
    pub status: u16,
    /// Whole `Name: value\r\n` lines.
    pub headers: &'a str,
    pub content_type: &'a str,
    pub body: &'a [u8],
    /// A HEAD request: the head says what GET would send, and the body is left out
    /// (RFC 9110 §9.3.2).
    pub head_only: bool,
    pub keep_alive: bool,
}

impl Response<'_> {
    /// Appends the response to `out`. A 204 carries no Content-Length (RFC 9110 §8.6).
    pub fn write(&self, out: &mut Vec<u8>) {
        let mut head = String::with_capacity(160 + self.headers.len());
        let _ = write!(
            head,
            "HTTP/1.1 {} {}\r\n",
            self.status,
            status_text(self.status)
        );
        if self.status != 204 {
            let _ = write!(head, "Content-Length: {}\r\n", self.body.len());
        }
        if !self.body.is_empty() {
            let _ = write!(head, "Content-Type: {}\r\n", self.content_type);
        }
        if !self.keep_alive {
            head.push_str("Connection: close\r\n");
        }
        head.push_str(self.headers);
        head.push_str("\r\n");
        let body = if self.head_only { &[][..] } else { self.body };
        // Exactly what this answer needs: unsent answers are per-connection memory, and a
        // doubling buffer would hold up to twice that.
        out.reserve_exact(head.len() + body.len());
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(body);
    }
}

/// A plain-text answer (errors, ids, health).
pub fn write_response(
    out: &mut Vec<u8>,
    status: u16,
    extra_headers: &str,
    body: &[u8],
    keep_alive: bool,
) {
    Response {
        status,
        headers: extra_headers,
        content_type: "text/plain; charset=utf-8",
        body,
        head_only: false,
        keep_alive,
    }
    .write(out);
}

/// A request parsed from input that arrives in `pieces`, keeping progress between them as a
/// connection does (the head scan, the head parsed once, the chunked body decoded and squeezed
/// in place). For tests and fuzzing: the answer must not depend on how the bytes were split.
/// Returns the head, the body and the bytes of input the request took.
#[allow(clippy::type_complexity)]
pub fn parse_in_pieces(
    pieces: &[&[u8]],
    max_body: usize,
) -> Result<Option<(Head, Vec<u8>, usize)>, Rejection> {
    let mut input = Vec::new();
    let mut scan = HeadScan::default();
    let mut head: Option<Head> = None;
    let mut decoder = ChunkedDecoder::default();
    // Bytes the chunked decoder squeezed out: the request took them too.
    let mut squeezed = 0;
    for piece in pieces {
        input.extend_from_slice(piece);
        if head.is_none() {
            head = scan.next(&input, max_body)?;
        }
        let Some(h) = &head else { continue };
        match h.framing {
            Framing::Length(n) if input.len() >= h.len + n => {
                let body = input[h.len..h.len + n].to_vec();
                return Ok(Some((h.clone(), body, h.len + n)));
            }
            Framing::Length(_) => {}
            Framing::Chunked => {
                let body_at = h.len;
                match decoder.advance(&mut input[body_at..], max_body)? {
                    Some(done) => {
                        let body = input[body_at..body_at + done.decoded].to_vec();
                        return Ok(Some((h.clone(), body, body_at + done.consumed + squeezed)));
                    }
                    None => {
                        let before = input.len();
                        decoder.squeeze(&mut input, body_at);
                        squeezed += before - input.len();
                    }
                }
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses a whole request; returns the head, the body and the bytes it took.
    fn complete(input: &[u8]) -> (Head, Vec<u8>, usize) {
        match parse_in_pieces(&[input], 100) {
            Ok(Some(parsed)) => parsed,
            other => panic!("expected a complete request, got {other:?}"),
        }
    }

    fn rejected(input: &[u8]) -> u16 {
        match parse_in_pieces(&[input], 100) {
            Err(rejection) => rejection.status,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn parses_head_query_and_content_length_body() {
        let input =
            b"POST /events/a?event=x%20y HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcGET";
        let (head, body, len) = complete(input);
        let request = Request::new(&head, input, &body);
        assert_eq!(
            (request.method(), request.path()),
            (Method::Post, "/events/a")
        );
        assert_eq!(request.query_param("event"), Some(Ok("x y".to_string())));
        assert_eq!(request.header_str("HOST"), Some("h"));
        assert_eq!(body, b"abc");
        assert_eq!(len, input.len() - 3);
        assert!(head.keep_alive);
    }

    #[test]
    fn a_trickled_head_is_parsed_once_whole_even_after_blank_lines() {
        let input = b"\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n";
        let mut scan = HeadScan::default();
        for end in 1..input.len() {
            assert!(scan.next(&input[..end], 0).unwrap().is_none(), "at {end}");
        }
        assert_eq!(
            scan.next(input, 0).unwrap().map(|h| h.len),
            Some(input.len())
        );
        let blank_lines = b"\n\n\n\n\n\n\n\n\n\n\n\n";
        assert_eq!(
            HeadScan::default().next(blank_lines, 0).unwrap_err().status,
            400
        );
    }

    #[test]
    fn decodes_chunked_bodies_in_place_whatever_the_pieces() {
        let body = b"3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\nnext";
        let whole_len = body.len() - 4;
        for piece in 1..=body.len() {
            let mut buf = Vec::new();
            let mut decoder = ChunkedDecoder::default();
            let mut outcome = None;
            for chunk in body.chunks(piece) {
                buf.extend_from_slice(chunk);
                if outcome.is_none() {
                    outcome = decoder.advance(&mut buf, 100).unwrap();
                }
            }
            let done = outcome.unwrap_or_else(|| panic!("pieces of {piece}: incomplete"));
            assert_eq!(
                done,
                Decoded {
                    decoded: 5,
                    consumed: whole_len
                }
            );
            assert_eq!(&buf[..5], b"abcde");
            assert_eq!(&buf[done.consumed..], b"next");
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
            501
        );
        assert_eq!(
            rejected(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            501
        );
        assert_eq!(
            rejected(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
            400,
            "Transfer-Encoding from HTTP/1.0"
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
        assert_eq!(
            rejected(
                b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n"
            ),
            400,
            "chunk data not followed by CRLF"
        );
        let mut huge = b"GET / HTTP/1.1\r\nHost: h\r\nX: ".to_vec();
        huge.resize(MAX_HEAD_BYTES + 1, b'a');
        assert_eq!(rejected(&huge), 431);
    }

    #[test]
    fn accepts_the_absolute_form_of_the_target() {
        let input =
            b"GET HTTP://example.com:8080/events/a?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n";
        let (head, _, _) = complete(input);
        let request = Request::new(&head, input, b"");
        assert_eq!((request.path(), request.query()), ("/events/a", "x=1"));
        let input = b"GET http://example.com HTTP/1.1\r\nHost: h\r\n\r\n";
        let (head, _, _) = complete(input);
        assert_eq!(Request::new(&head, input, b"").path(), "/");
    }

    #[test]
    fn http_1_0_closes_unless_asked_to_keep_alive_and_is_never_told_to_continue() {
        assert!(!complete(b"GET / HTTP/1.0\r\n\r\n").0.keep_alive);
        assert!(
            complete(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                .0
                .keep_alive
        );
        assert!(
            !complete(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
                .0
                .keep_alive
        );
        assert!(
            !complete(b"GET / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n")
                .0
                .expects_continue
        );
        assert!(
            complete(b"GET / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n")
                .0
                .expects_continue
        );
    }

    #[test]
    fn no_content_length_on_204_and_head_answers_say_what_get_would_send() {
        let mut out = Vec::new();
        write_response(&mut out, 204, "", b"", true);
        assert!(!String::from_utf8_lossy(&out).contains("Content-Length"));
        out.clear();
        Response {
            status: 200,
            headers: "",
            content_type: "text/plain",
            body: b"ok\n",
            head_only: true,
            keep_alive: true,
        }
        .write(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("Content-Length: 3\r\n") && text.ends_with("\r\n\r\n"),
            "{text:?}"
        );
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
            let _ = parse_in_pieces(&[&input[..cut]], 64);
        }
    }

    #[test]
    fn topics_are_restricted_to_safe_path_segments() {
        for good in ["a", "users/42", "A-Z_a.z~0", &"x".repeat(256)] {
            assert!(valid_topic(good), "{good}");
        }
        for bad in [
            "",
            "/a",
            "a/",
            "a//b",
            "a b",
            "a%20",
            "ä",
            "a/../b",
            ".",
            "a/.",
            &"x".repeat(257),
        ] {
            assert!(!valid_topic(bad), "{bad}");
        }
    }
}
