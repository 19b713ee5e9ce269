//! A chunked POST: a fixed head, then fuzzer bytes as the chunked body (sizes, extensions, data,
//! trailers), whole and in pieces of every size from a fuzzer-chosen one. The decoded body never
//! exceeds max_body, the request never takes more than the input, and the pieces never change
//! the answer.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ssed::http::parse_in_pieces;

const HEAD: &[u8] = b"POST /events/t HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
const MAX_BODY: usize = 100;

fuzz_target!(|data: &[u8]| {
    let Some((&size, body)) = data.split_first() else { return };
    let input = [HEAD, body].concat();
    let whole = parse_in_pieces(&[&input], MAX_BODY);
    let pieces: Vec<&[u8]> = input.chunks(usize::from(size).max(1)).collect();
    let split = parse_in_pieces(&pieces, MAX_BODY);
    if let Ok(Some((_, body, len))) = &whole {
        assert!(body.len() <= MAX_BODY, "body over max_body");
        assert!(*len <= input.len(), "len past the input");
    }
    let agrees = match (&split, &whole) {
        (Ok(Some((_, sb, sl))), Ok(Some((_, wb, wl)))) => (sb, sl) == (wb, wl),
        (Ok(None), Ok(None)) => true,
        (Err(s), Err(w)) => s.status == w.status,
        _ => false,
    };
    assert!(agrees, "in pieces of {size}: {split:?}, whole: {whole:?}");
});
