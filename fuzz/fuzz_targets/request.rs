//! Arbitrary bytes through the incremental request parser, whole and in two pieces: it never
//! panics, and the answer does not depend on where TCP happened to split the bytes (a complete
//! request is the same request, a refusal the same status; a head still unfinished past 8 KiB is
//! a 431 before the rest could show it to be malformed). Input: 2 bytes (little-endian) that
//! choose the split point, then the request bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ssed::http::{parse_in_pieces, Request, MAX_HEAD_BYTES};

const MAX_BODY: usize = 100;

fuzz_target!(|data: &[u8]| {
    let Some((split, input)) = data.split_first_chunk::<2>() else { return };
    let cut = usize::from(u16::from_le_bytes(*split)) % (input.len() + 1);
    let whole = parse_in_pieces(&[input], MAX_BODY);
    let pieces = parse_in_pieces(&[&input[..cut], &input[cut..]], MAX_BODY);
    if let Ok(Some((head, body, len))) = &whole {
        assert!(*len <= input.len() && body.len() <= MAX_BODY);
        // Every accessor works on what was parsed.
        let request = Request::new(head, input, body);
        let _ = (request.path(), request.query(), request.header_str("host"));
    }
    let agrees = match (&pieces, &whole) {
        (Ok(Some((ph, pb, pl))), Ok(Some((wh, wb, wl)))) => {
            (pb, pl, ph.len, ph.method, ph.keep_alive) == (wb, wl, wh.len, wh.method, wh.keep_alive)
        }
        (Ok(None), Ok(None)) => true,
        (Err(p), Err(w)) => p.status == w.status || (p.status == 431 && cut > MAX_HEAD_BYTES),
        (Err(p), Ok(None)) => p.status == 431 && cut > MAX_HEAD_BYTES,
        _ => false,
    };
    assert!(agrees, "split at {cut}: {pieces:?}, whole: {whole:?}");
});
