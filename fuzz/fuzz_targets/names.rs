//! Names that come from clients: topic names, event ids, query parameters. Never panics; an event
//! id prints back to text that parses to the same id; a query value is percent-decoded only if
//! every `%` in it is followed by two hex digits; a valid topic's URL parses back to it.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ssed::event_log::EventId;
use ssed::http::{parse_in_pieces, query_param, valid_topic, Request};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if valid_topic(text) {
        // A valid topic is addressable: its URL parses back to it.
        let get = format!("GET /events/{text} HTTP/1.1\r\nHost: h\r\n\r\n");
        let Ok(Some((head, _, _))) = parse_in_pieces(&[get.as_bytes()], 0) else { panic!("{get:?}") };
        let request = Request::new(&head, get.as_bytes(), b"");
        assert_eq!(request.path().strip_prefix("/events/"), Some(text));
    }
    if let Some(id) = EventId::parse(text) {
        assert_eq!(EventId::parse(&id.to_string()), Some(id), "{text:?} does not round-trip");
    }
    let input = [b"GET /events/t?", data, b" HTTP/1.1\r\nHost: h\r\n\r\n"].concat();
    let Ok(Some((head, _, _))) = parse_in_pieces(&[&input], 0) else { return };
    let request = Request::new(&head, &input, b"");
    let query = request.query();
    assert_eq!(request.query_param("event"), query_param(query, "event"));
    let first_key = query.split(['&', '=']).next().unwrap_or_default();
    for name in ["lastEventId", "event", first_key] {
        let raw = query.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (key == name).then_some(value)
        });
        let well_formed = |v: &str| {
            v.split('%').skip(1).all(|h| h.len() >= 2 && h.as_bytes()[..2].iter().all(u8::is_ascii_hexdigit))
        };
        match (request.query_param(name), raw) {
            (None, None) | (Some(Err(_)), Some(_)) => {}
            (Some(Ok(_)), Some(v)) => assert!(well_formed(v), "{v:?} decoded"),
            (got, raw) => panic!("query_param({name:?}) = {got:?}, raw value {raw:?}"),
        }
        if let Some(Ok(value)) = request.query_param(name) {
            if let Some(id) = EventId::parse(&value) {
                assert_eq!(EventId::parse(&id.to_string()), Some(id));
            }
        }
    }
});
