//! Serialising a forwarded request for its upstream: origin-form target, HTTP/1.1, hop-by-hop fields
//! removed, Host rewritten per the [`Route`], body re-framed exactly.
#![forbid(unsafe_code)]

use super::{has_token, HostAction, Route, Via};

/// Header fields that describe one connection, not the message (RFC 9110 §7.6.1), plus `Expect`
/// (the server has the whole body already) and `Proxy-Authorization` (meant for the proxy).
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "transfer-encoding",
];

/// Whether the client wants its connection kept after this exchange (spec §f.5 rule 2, tokens compared
/// case-insensitively as RFC 9112 says): no `close` token, and HTTP/1.1 or a `keep-alive` token.
pub fn client_wants_keep_alive(http_minor: u8, headers: &[httparse::Header<'_>]) -> bool {
    let mut close = false;
    let mut keep_alive = false;
    for h in headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
    {
        close |= has_token(h.value, "close");
        keep_alive |= has_token(h.value, "keep-alive");
    }
    !crate::http1::keep_alive::message_closes(http_minor >= 1, close, keep_alive)
}

/// Appends the request for the upstream to `out`: `METHOD path HTTP/1.1`, the client's fields in order
/// without hop-by-hop ones (and without fields the `Connection` header names), Host per
/// `route.host`, our `via` entry for a request received as HTTP/1.`client_minor`, then the body. `body` is the complete, de-chunked request body: it goes out with a
/// `Content-Length` (the client's, or a new one when it sent the body chunked or, non-empty,
/// without one), since the whole body is at hand.
pub fn write_request(
    out: &mut Vec<u8>,
    method: &str,
    route: &Route<'_>,
    headers: &[httparse::Header<'_>],
    body: &[u8],
    via: &Via,
    client_minor: u8,
) {
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    if route.path.first() == Some(&b'?') {
        out.push(b'/');
    }
    out.extend_from_slice(route.path);
    out.extend_from_slice(b" HTTP/1.1\r\n");

    let named_by_connection = |name: &str| {
        headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("connection"))
            .any(|h| has_token(h.value, name))
    };
    let chunked = headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("transfer-encoding"));
    let mut host_written = false;
    let mut length_written = false;
    for h in headers {
        if HOP_BY_HOP.iter().any(|n| h.name.eq_ignore_ascii_case(n)) || named_by_connection(h.name)
        {
            continue;
        }
        let value = if h.name.eq_ignore_ascii_case("host") {
            if host_written {
                continue;
            }
            host_written = true;
            match &route.host {
                HostAction::Keep => h.value,
                HostAction::Set(v) => v.as_bytes(),
            }
        } else if h.name.eq_ignore_ascii_case("content-length") {
            if chunked || length_written {
                continue;
            }
            length_written = true;
            h.value
        } else {
            h.value
        };
        write_field(out, h.name.as_bytes(), value);
    }
    if !host_written {
        if let HostAction::Set(v) = &route.host {
            write_field(out, b"Host", v.as_bytes());
        }
    }
    via.write_field(out, client_minor);
    if !length_written && (chunked || !body.is_empty()) {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

fn write_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::{Origin, Scheme};

    fn h<'a>(name: &'a str, value: &'a str) -> httparse::Header<'a> {
        httparse::Header {
            name,
            value: value.as_bytes(),
        }
    }

    fn route(host: HostAction, path: &[u8]) -> Route<'_> {
        Route {
            origin: Origin {
                scheme: Scheme::Http,
                host: "up".into(),
                port: 80,
            },
            path,
            host,
        }
    }

    fn written(
        method: &str,
        r: &Route<'_>,
        headers: &[httparse::Header<'_>],
        body: &[u8],
    ) -> String {
        let mut out = Vec::new();
        write_request(&mut out, method, r, headers, body, &Via::new(1), 1);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn host_is_overwritten_in_place_and_hop_by_hop_fields_are_dropped() {
        let headers = [
            h("Accept", "*/*"),
            h("Host", "client"),
            h("Connection", "keep-alive, X-Secret"),
            h("X-Secret", "1"),
            h("Keep-Alive", "timeout=5"),
            h("Proxy-Connection", "keep-alive"),
            h("Upgrade", "websocket"),
            h("X-Other", "2"),
        ];
        let got = written(
            "GET",
            &route(HostAction::Set("up:81".into()), b"/a?b"),
            &headers,
            b"",
        );
        assert_eq!(
            got,
            "GET /a?b HTTP/1.1\r\nAccept: */*\r\nHost: up:81\r\nX-Other: 2\r\nVia: 1.1 uringreplay-0000000000000001\r\n\r\n"
        );
    }

    #[test]
    fn host_is_appended_when_missing_and_kept_when_asked() {
        let got = written(
            "GET",
            &route(HostAction::Set("up".into()), b"/"),
            &[h("A", "1")],
            b"",
        );
        assert_eq!(
            got,
            "GET / HTTP/1.1\r\nA: 1\r\nHost: up\r\nVia: 1.1 uringreplay-0000000000000001\r\n\r\n"
        );
        let got = written(
            "GET",
            &route(HostAction::Keep, b"/"),
            &[h("host", "mine:1")],
            b"",
        );
        assert_eq!(
            got,
            "GET / HTTP/1.1\r\nhost: mine:1\r\nVia: 1.1 uringreplay-0000000000000001\r\n\r\n"
        );
    }

    #[test]
    fn a_query_right_after_the_authority_gets_a_slash() {
        let got = written("GET", &route(HostAction::Keep, b"?q=1"), &[], b"");
        assert!(got.starts_with("GET /?q=1 HTTP/1.1\r\n"), "{got}");
    }

    #[test]
    fn bodies_keep_their_content_length_or_get_one() {
        let got = written(
            "POST",
            &route(HostAction::Keep, b"/p"),
            &[h("Content-Length", "5")],
            b"hello",
        );
        assert_eq!(got, "POST /p HTTP/1.1\r\nContent-Length: 5\r\nVia: 1.1 uringreplay-0000000000000001\r\n\r\nhello");
        let got = written("PUT", &route(HostAction::Keep, b"/p"), &[], b"abc");
        assert_eq!(got, "PUT /p HTTP/1.1\r\nVia: 1.1 uringreplay-0000000000000001\r\nContent-Length: 3\r\n\r\nabc");
    }

    #[test]
    fn chunked_requests_go_out_with_a_content_length() {
        let headers = [h("Transfer-Encoding", "chunked"), h("Content-Length", "9")];
        let route = route(HostAction::Keep, b"/");
        let got = written("POST", &route, &headers, b"0123456789abcdef!");
        assert_eq!(
            got,
            "POST / HTTP/1.1\r\nVia: 1.1 uringreplay-0000000000000001\r\nContent-Length: 17\r\n\r\n0123456789abcdef!"
        );
        let got = written("POST", &route, &headers[..1], b"");
        assert_eq!(
            got,
            "POST / HTTP/1.1\r\nVia: 1.1 uringreplay-0000000000000001\r\nContent-Length: 0\r\n\r\n"
        );
    }

    #[test]
    fn keep_alive_follows_version_and_connection_tokens() {
        assert!(client_wants_keep_alive(1, &[]));
        assert!(!client_wants_keep_alive(0, &[]));
        assert!(client_wants_keep_alive(0, &[h("Connection", "Keep-Alive")]));
        assert!(!client_wants_keep_alive(
            1,
            &[h("connection", "foo, Close")]
        ));
    }
}
