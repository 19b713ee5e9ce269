//! Finding the token a request carries, without copying it: the `Authorization: Bearer` header
//! (RFC 6750 §2.1), then a cookie (RFC 6265 §4.2), then the `access_token` query parameter
//! (RFC 6750 §2.3). Everything here borrows from the parsed request.

/// Tokens longer than this are refused before anything looks at them. Real tokens with a few
/// dozen selectors are well under 1 KiB; a bound keeps a client from making us base64-decode and
/// parse megabytes of header.
pub const MAX_TOKEN_BYTES: usize = 4096;

/// What a request offers for authorisation: its raw header list and its query string, exactly as
/// the HTTP parser produced them (header names in any case).
#[derive(Clone, Copy, Debug)]
pub struct Credentials<'a> {
    pub headers: &'a [(&'a str, &'a [u8])],
    /// The query string without the `?`, still percent-encoded.
    pub query: &'a str,
}

/// Where a token came from; only used to word answers and to refuse the URL unless allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Header,
    Cookie,
    Query,
}

/// The outcome of looking for a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found<'a> {
    None,
    Token(&'a [u8], Source),
    /// `Authorization` was sent twice, or `Bearer` with nothing after it (RFC 6750 §3.1
    /// `invalid_request`, a 400).
    Malformed(&'static str),
    /// Longer than [`MAX_TOKEN_BYTES`].
    TooLong,
}

impl<'a> Credentials<'a> {
    pub fn new(headers: &'a [(&'a str, &'a [u8])], query: &'a str) -> Credentials<'a> {
        Credentials { headers, query }
    }

    fn values(&self, name: &'static str) -> impl Iterator<Item = &'a [u8]> + 'a {
        let headers = self.headers;
        headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    /// Whether a proxy says the request came from elsewhere. Such a request is never treated as a
    /// loopback client: the proxy on the loopback interface is not the one asking.
    pub fn forwarded(&self) -> bool {
        self.headers.iter().any(|(n, _)| {
            n.eq_ignore_ascii_case("forwarded")
                || n.eq_ignore_ascii_case("x-forwarded-for")
                || n.eq_ignore_ascii_case("x-real-ip")
        })
    }

    /// The token, looked for in the header, the cookie named `cookie`, then (only when
    /// `query_allowed`) the URL. The first source present wins, even if a later one would verify:
    /// a client sending two is confused, and guessing would hide it.
    pub fn find(&self, cookie: &str, query_allowed: bool) -> Found<'a> {
        let mut authorization = self.values("authorization");
        let first = authorization.next();
        if first.is_some() && authorization.next().is_some() {
            return Found::Malformed("more than one Authorization header");
        }
        if let Some(token) = first.and_then(bearer) {
            if token.is_empty() {
                return Found::Malformed("Authorization: Bearer without a token");
            }
            return checked(token, Source::Header);
        }
        for header in self.values("cookie") {
            // An empty value is how applications clear the cookie on logout: no token.
            if let Some(token) = cookie_value(header, cookie.as_bytes()).filter(|t| !t.is_empty()) {
                return checked(token, Source::Cookie);
            }
        }
        if let Some(token) = self.query_token() {
            if !query_allowed {
                return Found::Token(token, Source::Query);
            }
            return checked(token, Source::Query);
        }
        Found::None
    }

    fn query_token(&self) -> Option<&'a [u8]> {
        let query = self.query;
        query
            .split('&')
            .find_map(|pair| pair.strip_prefix("access_token="))
            .map(str::as_bytes)
    }
}

fn checked(token: &[u8], source: Source) -> Found<'_> {
    if token.len() > MAX_TOKEN_BYTES {
        Found::TooLong
    } else {
        Found::Token(token, source)
    }
}

/// The credentials of an `Authorization: Bearer ...` value; `None` for another scheme, which is
/// not ours to judge (a proxy may use Basic). The scheme is case-insensitive (RFC 9110 §11.1).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let value = trim(value);
    let (scheme, rest) = match value.iter().position(|&b| b == b' ' || b == b'\t') {
        Some(at) => (&value[..at], &value[at..]),
        None => (value, &b""[..]),
    };
    scheme.eq_ignore_ascii_case(b"bearer").then(|| trim(rest))
}

/// The value of cookie `name` in one `Cookie` header (RFC 6265 §4.2.1: `name=value` pairs
/// separated by `;` and a space). Lenient about spacing, as browsers and proxies vary; a value in
/// double quotes loses them (§4.1.1 allows them around the value). The first pair with that name
/// wins: browsers put the cookie with the most specific path first.
fn cookie_value<'a>(header: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    header.split(|&b| b == b';').find_map(|pair| {
        let pair = trim(pair);
        let eq = pair.iter().position(|&b| b == b'=')?;
        if trim(&pair[..eq]) != name {
            return None;
        }
        let value = trim(&pair[eq + 1..]);
        Some(match value {
            [b'"', inner @ .., b'"'] => inner,
            _ => value,
        })
    })
}

fn trim(bytes: &[u8]) -> &[u8] {
    let is_space = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes
        .iter()
        .position(|b| !is_space(b))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_space(b))
        .map_or(start, |e| e + 1);
    &bytes[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(headers: &[(&str, &[u8])], query: &str, allowed: bool) -> Found<'static> {
        // The tests' inputs are literals, so leaking them to get 'static is harmless.
        let headers: &'static [(&'static str, &'static [u8])] = Box::leak(
            headers
                .iter()
                .map(|(n, v)| {
                    let n: &'static str = Box::leak(n.to_string().into_boxed_str());
                    let v: &'static [u8] = Box::leak(v.to_vec().into_boxed_slice());
                    (n, v)
                })
                .collect::<Vec<_>>()
                .into_boxed_slice(),
        );
        let query: &'static str = Box::leak(query.to_string().into_boxed_str());
        Credentials::new(headers, query).find("ssed_token", allowed)
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_other_schemes_are_ignored() {
        for value in ["Bearer abc", "bearer abc", "BEARER   abc ", "Bearer\tabc"] {
            assert_eq!(
                find(&[("Authorization", value.as_bytes())], "", false),
                Found::Token(b"abc", Source::Header),
                "{value}"
            );
        }
        assert_eq!(
            find(&[("authorization", b"Basic eDp5")], "", false),
            Found::None
        );
        assert_eq!(
            find(&[("authorization", b"Bearerabc")], "", false),
            Found::None
        );
        assert!(matches!(
            find(&[("authorization", b"Bearer ")], "", false),
            Found::Malformed(_)
        ));
        assert!(matches!(
            find(
                &[
                    ("authorization", b"Bearer a"),
                    ("Authorization", b"Bearer b")
                ],
                "",
                false
            ),
            Found::Malformed(_)
        ));
    }

    #[test]
    fn cookies_are_parsed_per_rfc_6265() {
        let cases: [(&[u8], Option<&[u8]>); 8] = [
            (b"ssed_token=abc", Some(b"abc")),
            (b"a=1; ssed_token=abc; b=2", Some(b"abc")),
            (b"a=1;ssed_token=abc", Some(b"abc")),
            (b"ssed_token=\"abc\"", Some(b"abc")),
            (b"xssed_token=abc; ssed_tokenx=def", None),
            (b"ssed_token=first; ssed_token=second", Some(b"first")),
            (b"a=b=c; ssed_token=x=y", Some(b"x=y")),
            (b"ssed_token=; a=1", None),
        ];
        for (header, want) in cases {
            let got = find(&[("Cookie", header)], "", false);
            let want = want.map_or(Found::None, |t| Found::Token(t, Source::Cookie));
            assert_eq!(got, want, "{}", String::from_utf8_lossy(header));
        }
        // Several Cookie headers (HTTP/2 gateways split them).
        assert_eq!(
            find(
                &[("cookie", b"a=1"), ("cookie", b"ssed_token=t")],
                "",
                false
            ),
            Found::Token(b"t", Source::Cookie)
        );
    }

    #[test]
    fn sources_are_tried_in_order() {
        let both: &[(&str, &[u8])] = &[("Cookie", b"ssed_token=c"), ("Authorization", b"Bearer h")];
        assert_eq!(
            find(both, "access_token=q", true),
            Found::Token(b"h", Source::Header)
        );
        assert_eq!(
            find(&both[..1], "access_token=q", true),
            Found::Token(b"c", Source::Cookie)
        );
        assert_eq!(
            find(&[], "topic=x&access_token=q", true),
            Found::Token(b"q", Source::Query)
        );
        // Not allowed: still reported, so that the answer can say why it is refused.
        assert_eq!(
            find(&[], "access_token=q", false),
            Found::Token(b"q", Source::Query)
        );
    }

    #[test]
    fn over_long_tokens_are_refused_from_every_source() {
        let long = "a".repeat(MAX_TOKEN_BYTES + 1);
        let header = format!("Bearer {long}");
        let cookie = format!("ssed_token={long}");
        assert_eq!(
            find(&[("Authorization", header.as_bytes())], "", false),
            Found::TooLong
        );
        assert_eq!(
            find(&[("Cookie", cookie.as_bytes())], "", false),
            Found::TooLong
        );
        assert_eq!(
            find(&[], &format!("access_token={long}"), true),
            Found::TooLong
        );
        let fits = "a".repeat(MAX_TOKEN_BYTES);
        let header = format!("Bearer {fits}");
        assert!(matches!(
            find(&[("Authorization", header.as_bytes())], "", false),
            Found::Token(..)
        ));
    }

    #[test]
    fn forwarding_headers_are_noticed_in_any_case() {
        for name in ["Forwarded", "x-forwarded-for", "X-Real-IP"] {
            let headers: &[(&str, &[u8])] = &[(name, b"for=1.2.3.4")];
            assert!(Credentials::new(headers, "").forwarded(), "{name}");
        }
        assert!(!Credentials::new(&[("Host", b"x")], "").forwarded());
    }
}
