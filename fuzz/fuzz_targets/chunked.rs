//! A chunked POST: a fixed head, then fuzzer bytes as the chunked body (sizes, extensions, data,
//! trailers). The decoded body never exceeds max_body, `len` never exceeds the input, and a
//! complete request's prefixes are incomplete (checked at two cuts: halfway into the body, and one
//! byte short).
#![no_main]
use libfuzzer_sys::fuzz_target;
use ssed::http::{parse_request, Body, Parse};

const HEAD: &[u8] = b"POST /events/t HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
const MAX_BODY: usize = 100;

fuzz_target!(|body: &[u8]| {
    let input = [HEAD, body].concat();
    let whole = parse_request(&input, MAX_BODY);
    let half = HEAD.len() + body.len() / 2;
    for cut in [half, input.len().saturating_sub(1)] {
        let part = parse_request(&input[..cut], MAX_BODY);
        let agrees = match (&part, &whole) {
            (Parse::Incomplete { .. }, _) => true,
            (Parse::Complete(p), Parse::Complete(w)) => p.len == w.len,
            (Parse::Invalid(p), Parse::Invalid(w)) => p.status == w.status,
            _ => false,
        };
        assert!(agrees, "the first {cut} bytes parse as {part:?}, all {} as {whole:?}", input.len());
    }
    if let Parse::Complete(request) = whole {
        assert!(matches!(request.body, Body::Chunked(_)));
        assert!(request.body.bytes().len() <= MAX_BODY, "body over max_body");
        assert!(request.len <= input.len(), "len past the input");
    }
});
