//! The HTTP/1 a load generator needs to read: a streaming `Transfer-Encoding: chunked` decoder,
//! response heads (the status and the few headers that matter), and whole responses framed on a
//! persistent connection (for `publish`). Anything unexpected is a `ProtocolError`, never a
//! panic.

/// What went wrong in the bytes a server sent.
pub type ProtocolError = &'static str;

/// A response head larger than this is garbage.
const MAX_HEAD: usize = 16 * 1024;

/// Streaming `Transfer-Encoding: chunked` decoder.
#[derive(Clone, Copy, Default)]
pub struct Dechunker {
    state: u8,
    /// Chunk size being read, payload bytes left, or in trailers whether the line has text.
    n: u32,
}

const CHUNK_SIZE: u8 = 0;
const CHUNK_EXT: u8 = 1;
const CHUNK_DATA: u8 = 2;
const CHUNK_DATA_END: u8 = 3;
const CHUNK_TRAILER: u8 = 4;

impl Dechunker {
    /// Hands payload to `out`; once the last chunk and trailers are through, returns how much
    /// of `input` the body used.
    pub fn feed(
        &mut self,
        input: &[u8],
        out: &mut impl FnMut(&[u8]),
    ) -> Result<Option<usize>, ProtocolError> {
        let mut i = 0;
        while i < input.len() {
            if self.state == CHUNK_DATA {
                let take = (self.n as usize).min(input.len() - i);
                out(&input[i..i + take]);
                i += take;
                self.n -= take as u32;
                self.state = if self.n == 0 {
                    CHUNK_DATA_END
                } else {
                    CHUNK_DATA
                };
                continue;
            }
            let b = input[i];
            i += 1;
            match (self.state, b) {
                (CHUNK_SIZE | CHUNK_EXT, b'\n') if self.n == 0 => self.state = CHUNK_TRAILER,
                (CHUNK_SIZE | CHUNK_EXT, b'\n') => self.state = CHUNK_DATA,
                (CHUNK_SIZE, b';' | b' ' | b'\t') => self.state = CHUNK_EXT,
                (CHUNK_SIZE, b) if b != b'\r' => {
                    let digit = (b as char).to_digit(16).ok_or("bad chunk size")?;
                    let n = self.n.checked_mul(16).and_then(|n| n.checked_add(digit));
                    self.n = n.ok_or("chunk too large")?;
                }
                (CHUNK_DATA_END, b'\n') => self.state = CHUNK_SIZE,
                (CHUNK_DATA_END, b) if b != b'\r' => return Err("no CRLF after chunk data"),
                (CHUNK_TRAILER, b'\n') if self.n == 0 => return Ok(Some(i)),
                (CHUNK_TRAILER, b'\n') => self.n = 0,
                (CHUNK_TRAILER, b) if b != b'\r' => self.n = 1,
                _ => {}
            }
        }
        Ok(None)
    }
}

#[derive(Debug, Default)]
pub struct Head {
    pub status: u16,
    /// Bytes up to and including the blank line.
    pub len: usize,
    pub event_stream: bool,
    pub chunked: bool,
    pub content_length: Option<usize>,
    pub close: bool,
}

pub fn parse_head(buf: &[u8]) -> Result<Option<Head>, ProtocolError> {
    let end = (0..buf.len()).find_map(|i| match &buf[i..] {
        [b'\n', b'\n', ..] => Some(i + 2),
        [b'\n', b'\r', b'\n', ..] => Some(i + 3),
        _ => None,
    });
    let Some(len) = end else {
        return if buf.len() > MAX_HEAD {
            Err("response head too large")
        } else {
            Ok(None)
        };
    };
    let text = std::str::from_utf8(&buf[..len]).map_err(|_| "response head is not UTF-8")?;
    let mut lines = text.lines();
    let mut status_line = lines.next().unwrap_or_default().split(' ');
    let version = status_line.next().unwrap_or_default();
    let status = status_line.next().and_then(|s| s.parse().ok());
    let (Some(status), true) = (status, version.starts_with("HTTP/1.")) else {
        return Err("malformed status line");
    };
    let close = version == "HTTP/1.0";
    let mut head = Head {
        status,
        len,
        close,
        ..Head::default()
    };
    for (name, value) in lines.filter_map(|l| l.split_once(':')) {
        let value = value.trim().to_ascii_lowercase();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-type" => head.event_stream = value.starts_with("text/event-stream"),
            "transfer-encoding" => head.chunked = value.ends_with("chunked"),
            "content-length" => head.content_length = value.parse().ok(),
            "connection" if value.contains("close") => head.close = true,
            "connection" if value.contains("keep-alive") => head.close = false,
            _ => {}
        }
    }
    Ok(Some(head))
}

/// The first complete response in `rx` and the bytes it spans. One framed by neither length
/// nor chunking ends with the connection, so it is complete only at `eof`.
pub fn take_response(rx: &[u8], eof: bool) -> Result<Option<(Head, usize)>, ProtocolError> {
    let Some(mut head) = parse_head(rx)? else {
        return Ok(None);
    };
    let body = &rx[head.len..];
    let body_len = if head.status < 200 || head.status == 204 || head.status == 304 {
        Some(0)
    } else if head.chunked {
        Dechunker::default().feed(body, &mut |_| {})?
    } else if let Some(n) = head.content_length {
        (body.len() >= n).then_some(n)
    } else {
        head.close = true;
        eof.then_some(body.len())
    };
    Ok(body_len.map(|body_len| {
        let used = head.len + body_len;
        (head, used)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dechunker_handles_every_split() {
        let body = b"5;ext=1\r\ndata:\r\n7\r\n t=42\n\n\r\n0\r\nX-Trailer: 1\r\n\r\nnext";
        for split in 0..=body.len() {
            let (mut d, mut payload) = (Dechunker::default(), Vec::new());
            let mut out = |p: &[u8]| payload.extend_from_slice(p);
            let end = match d.feed(&body[..split], &mut out).unwrap() {
                Some(end) => end,
                None => split + d.feed(&body[split..], &mut out).unwrap().unwrap(),
            };
            assert_eq!(
                (&payload[..], end),
                (&b"data: t=42\n\n"[..], body.len() - 4)
            );
        }
        assert!(Dechunker::default().feed(b"zz\r\n", &mut |_| {}).is_err());
    }

    #[test]
    fn heads_and_responses() {
        let sse = b"HTTP/1.1 200 OK\r\nContent-Type: Text/Event-Stream; charset=utf-8\r\n\r\ndata";
        let head = parse_head(sse).unwrap().unwrap();
        assert!(head.status == 200 && head.event_stream && !head.chunked);
        assert_eq!(head.len, sse.len() - 4);
        let partial = parse_head(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n");
        assert!(partial.unwrap().is_none());
        assert!(parse_head(b"garbage\r\n\r\n").is_err());
        let two = b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\nok\
            HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n";
        let (head, used) = take_response(two, false).unwrap().unwrap();
        assert_eq!((head.status, used), (202, 46));
        let (head, rest) = take_response(&two[46..], false).unwrap().unwrap();
        assert_eq!(
            (head.status, rest, head.close),
            (200, two.len() - 46, false)
        );
        let unframed = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nbye";
        assert!(take_response(unframed, false).unwrap().is_none());
        let (head, used) = take_response(unframed, true).unwrap().unwrap();
        assert!(head.close && used == unframed.len());
    }
}
