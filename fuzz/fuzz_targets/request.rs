//! Arbitrary bytes into `parse_request`: it never panics, and the answer for a prefix of the input
//! agrees with the answer for the whole (the event loop re-parses after every read, so an answer
//! must not depend on where TCP happened to split the bytes). Input: 2 bytes (little-endian) that
//! choose the split point, then the request bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ssed::http::{parse_request, Parse, MAX_HEAD_BYTES};

const MAX_BODY: usize = 100;

fuzz_target!(|data: &[u8]| {
    let Some((split, input)) = data.split_first_chunk::<2>() else { return };
    let cut = usize::from(u16::from_le_bytes(*split)) % (input.len() + 1);
    let whole = parse_request(input, MAX_BODY);
    if let Parse::Complete(request) = &whole {
        assert!(request.len <= input.len() && request.body.bytes().len() <= MAX_BODY);
    }
    let part = parse_request(&input[..cut], MAX_BODY);
    let agrees = match (&part, &whole) {
        // More bytes may complete the head, never un-complete it.
        (Parse::Incomplete { head_done, .. }, Parse::Incomplete { head_done: whole_done, .. }) => {
            !head_done || *whole_done
        }
        (Parse::Incomplete { .. }, _) => true,
        // Bytes after a complete request are not part of it.
        (Parse::Complete(p), Parse::Complete(w)) => {
            (p.len, p.method, p.path, p.query, p.keep_alive, p.body.bytes())
                == (w.len, w.method, w.path, w.query, w.keep_alive, w.body.bytes())
        }
        // Once refused, always refused, for the same reason; except that a head still unfinished
        // past 8 KiB is a 431 before the rest could show it to be malformed.
        (Parse::Invalid(p), Parse::Invalid(w)) => {
            p.status == w.status || (p.status == 431 && cut > MAX_HEAD_BYTES)
        }
        _ => false,
    };
    assert!(agrees, "the first {cut} bytes parse as {part:?}, all {} as {whole:?}", input.len());
});
