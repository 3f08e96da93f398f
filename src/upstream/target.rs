//! Where a forwarded request goes: the reverse-mode spec, regular-mode destinations, Host rewriting
//! (spec §e.1, §e.2).
#![forbid(unsafe_code)]

use std::fmt;

/// The scheme of an upstream connection: plain TCP or TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// Plain HTTP over TCP.
    Http,
    /// HTTP over TLS.
    Https,
}

impl Scheme {
    /// The port used when none is given (80 / 443).
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }

    /// `http` or `https`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    fn parse(s: &[u8]) -> Option<Scheme> {
        if s.eq_ignore_ascii_case(b"http") {
            Some(Scheme::Http)
        } else if s.eq_ignore_ascii_case(b"https") {
            Some(Scheme::Https)
        } else {
            None
        }
    }
}

/// One upstream server: scheme, host (as typed; IPv6 without brackets) and port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    /// Plain or TLS.
    pub scheme: Scheme,
    /// Host name or IP literal, as typed (case preserved), IPv6 without brackets.
    pub host: Box<str>,
    /// TCP port.
    pub port: u16,
}

impl Origin {
    /// Parses a reverse-mode spec `[SCHEME://]HOST[:PORT][/]` (spec §e.1): scheme defaults to https,
    /// ports to the scheme's default, IPv6 hosts in brackets, no path.
    pub fn parse_reverse_spec(spec: &str) -> Result<Origin, TargetError> {
        let bad = |why: &'static str| TargetError {
            spec: spec.to_owned(),
            why,
        };
        let (scheme, rest) = match spec.find("://") {
            Some(i) => (
                Scheme::parse(&spec.as_bytes()[..i])
                    .ok_or_else(|| bad("the scheme must be http or https"))?,
                &spec[i + 3..],
            ),
            None => (Scheme::Https, spec),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') {
            return Err(bad("a path is not allowed"));
        }
        let (host, port) =
            split_authority(rest.as_bytes(), scheme.default_port()).ok_or_else(|| {
                bad("expected HOST[:PORT] with a non-empty host and a port from 1 to 65535")
            })?;
        Ok(Origin {
            scheme,
            host: host.into(),
            port,
        })
    }

    /// The Host header value for this origin: host (IPv6 bracketed), plus `:port` only when the port is
    /// not the scheme's default (spec §e.1).
    pub fn host_header(&self) -> String {
        let mut s = String::with_capacity(self.host.len() + 8);
        if self.host.contains(':') {
            s.push('[');
            s.push_str(&self.host);
            s.push(']');
        } else {
            s.push_str(&self.host);
        }
        if self.port != self.scheme.default_port() {
            s.push(':');
            s.push_str(&self.port.to_string());
        }
        s
    }
}

impl Origin {
    /// `scheme://host:port` (IPv6 bracketed, the port always written): how start-up messages
    /// name a reverse target.
    pub fn url(&self) -> impl fmt::Display + '_ {
        struct Url<'a>(&'a Origin);
        impl fmt::Display for Url<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}://{}", self.0.scheme.as_str(), self.0)
            }
        }
        Url(self)
    }
}

impl fmt::Display for Origin {
    /// `host:port` (IPv6 bracketed), the name used in error texts.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// A reverse-mode spec that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid reverse-proxy target {spec:?}: {why}")]
pub struct TargetError {
    /// The spec as given.
    pub spec: String,
    /// What is wrong with it.
    pub why: &'static str,
}

/// How the server finds the upstream of a request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Mode {
    /// A regular proxy: each request names its own destination (absolute-form or Host header).
    #[default]
    Regular,
    /// A reverse proxy in front of one upstream (`--mode reverse:URL`).
    Reverse(Origin),
}

/// What to do with the request's Host header when forwarding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostAction {
    /// Leave the Host header(s) as the client sent them.
    Keep,
    /// Overwrite the first Host header with this value (append one if there is none).
    Set(String),
}

/// Where one request is forwarded, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route<'a> {
    /// The upstream server.
    pub origin: Origin,
    /// The request target to send: origin-form (`/path?query`) or `*`.
    pub path: &'a [u8],
    /// Host header handling.
    pub host: HostAction,
}

/// A request whose destination cannot be determined.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// Regular mode, origin-form request without a usable Host header (spec §e.2).
    #[error("HTTP request has no host header, destination unknown.")]
    NoHost,
    /// An absolute-form target with a scheme other than http/https or an unusable authority.
    #[error("request target is not a usable absolute URL")]
    BadTarget,
    /// Authority-form (CONNECT) requests are not proxied.
    #[error("CONNECT is not supported")]
    Connect,
}

impl RouteError {
    /// The status to answer with (400 for a bad request, 501 for CONNECT).
    pub fn status(&self) -> u16 {
        match self {
            RouteError::NoHost | RouteError::BadTarget => 400,
            RouteError::Connect => 501,
        }
    }
}

/// Finds the upstream of a request (spec §e.1/§e.2): in reverse mode the spec's origin, with Host
/// rewritten to it unless `keep_host_header`; in regular mode the absolute-form target's authority, or
/// else the Host header (scheme `https` with port default 443 when the client connection is `tls`,
/// else `http` and 80).
pub fn route<'a>(
    mode: &Mode,
    keep_host_header: bool,
    tls: bool,
    method: &str,
    target: &'a [u8],
    headers: &[httparse::Header<'_>],
) -> Result<Route<'a>, RouteError> {
    if method.eq_ignore_ascii_case("CONNECT") {
        return Err(RouteError::Connect);
    }
    let absolute = parse_absolute(target);
    match mode {
        Mode::Reverse(origin) => {
            let path = match absolute {
                Some(Ok((_, path))) => path,
                _ => target,
            };
            let host = if keep_host_header {
                HostAction::Keep
            } else {
                HostAction::Set(origin.host_header())
            };
            Ok(Route {
                origin: origin.clone(),
                path,
                host,
            })
        }
        Mode::Regular => match absolute {
            Some(Ok((origin, path))) => {
                let has_host = headers.iter().any(|h| h.name.eq_ignore_ascii_case("host"));
                let host = if has_host {
                    HostAction::Keep
                } else {
                    HostAction::Set(origin.host_header())
                };
                Ok(Route { origin, path, host })
            }
            Some(Err(e)) => Err(e),
            None => {
                let value = headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("host"))
                    .map(|h| h.value.trim_ascii())
                    .ok_or(RouteError::NoHost)?;
                let scheme = if tls { Scheme::Https } else { Scheme::Http };
                let (host, port) =
                    split_authority(value, scheme.default_port()).ok_or(RouteError::NoHost)?;
                Ok(Route {
                    origin: Origin {
                        scheme,
                        host: host.into(),
                        port,
                    },
                    path: target,
                    host: HostAction::Keep,
                })
            }
        },
    }
}

/// A request's destination as the matcher sees it (spec §b.1): scheme, host and port of the
/// recorded flow it should match, and the origin-form target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Destination<'b> {
    /// `http` or `https`.
    pub scheme: &'b [u8],
    /// The host, as the request names it (no brackets, no port).
    pub host: &'b [u8],
    /// The port.
    pub port: u16,
    /// The origin-form target (`/path?query`).
    pub target: &'b [u8],
}

/// Where a request goes, by mode (spec §b.1, §e), for matching: `reverse` is reverse mode's
/// origin and the Host value it writes (see [`Origin::host_header`]). Reverse mode rewrites the
/// Host field in `headers` unless `keep_host_header`, in which case the matcher sees the
/// client's Host host instead (a CONNECT tunnel routes as reverse mode to its destination with
/// the Host kept). `tls`: the client connection is TLS, so an origin-form request in regular mode
/// is `https` on port 443 unless its Host names one. `None`: regular mode without a usable
/// destination (spec §e.2). Allocation-free: it runs for every replayed request.
pub fn destination<'b>(
    reverse: Option<(&'b Origin, &'b [u8])>,
    keep_host_header: bool,
    tls: bool,
    target: &'b [u8],
    headers: &mut [httparse::Header<'b>],
) -> Option<Destination<'b>> {
    use crate::http1::{split_absolute, split_authority as split_any};
    let absolute = split_absolute(target);
    let origin_target = absolute.map_or(target, |a| a.2);
    if let Some((origin, host_header)) = reverse {
        let mut host: &'b [u8] = origin.host.as_bytes();
        for h in headers.iter_mut() {
            if h.name.eq_ignore_ascii_case("host") {
                if keep_host_header {
                    if let Some((client_host, _)) = split_any(h.value) {
                        host = client_host;
                    }
                    break;
                }
                h.value = host_header;
            }
        }
        return Some(Destination {
            scheme: origin.scheme.as_str().as_bytes(),
            host,
            port: origin.port,
            target: origin_target,
        });
    }
    let host_field = headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("host"))
        .map(|h| h.value);
    let (scheme, authority): (Scheme, &'b [u8]) = match absolute {
        Some((scheme, authority, _)) if scheme.eq_ignore_ascii_case(b"https") => {
            (Scheme::Https, authority)
        }
        Some((_, authority, _)) => (Scheme::Http, authority),
        None if tls => (Scheme::Https, host_field?),
        None => (Scheme::Http, host_field?),
    };
    let (url_host, port) = split_any(authority)?;
    let host = host_field.and_then(split_any).map_or(url_host, |(h, _)| h);
    Some(Destination {
        scheme: scheme.as_str().as_bytes(),
        host,
        port: port.unwrap_or(scheme.default_port()),
        target: origin_target,
    })
}

/// `None` when `target` is not absolute-form; else the origin and the origin-form rest (`/` if empty).
fn parse_absolute(target: &[u8]) -> Option<Result<(Origin, &[u8]), RouteError>> {
    let sep = target.windows(3).position(|w| w == b"://")?;
    if target[..sep].iter().any(|&b| b == b'/' || b == b'?') {
        return None;
    }
    let Some(scheme) = Scheme::parse(&target[..sep]) else {
        return Some(Err(RouteError::BadTarget));
    };
    let rest = &target[sep + 3..];
    let end = rest
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .unwrap_or(rest.len());
    let Some((host, port)) = split_authority(&rest[..end], scheme.default_port()) else {
        return Some(Err(RouteError::BadTarget));
    };
    let path: &[u8] = match &rest[end..] {
        [] => b"/",
        p => p,
    };
    // A query directly after the authority (`http://h?q`) is kept as `?q`; `write_request` puts the
    // missing `/` in front.
    Some(Ok((
        Origin {
            scheme,
            host: host.into(),
            port,
        },
        path,
    )))
}

/// [`http1::split_authority`](crate::http1::split_authority) for an upstream to connect to:
/// `host[:port]` / `[v6][:port]` as a host string and a port (`default_port` when none). `None`
/// if unusable: empty host, userinfo, port 0, non-ASCII, whitespace or control bytes, or a
/// bracketed host that is not an IPv6 literal.
fn split_authority(authority: &[u8], default_port: u16) -> Option<(&str, u16)> {
    if authority
        .iter()
        .any(|&b| b == b'@' || b.is_ascii_whitespace() || b.is_ascii_control() || !b.is_ascii())
    {
        return None;
    }
    let (host, port) = crate::http1::split_authority(authority)?;
    if host.is_empty() || (authority.starts_with(b"[") && !host.contains(&b':')) {
        return None;
    }
    let port = match port {
        None => default_port,
        Some(0) => return None,
        Some(p) => p,
    };
    Some((std::str::from_utf8(host).ok()?, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(scheme: Scheme, host: &str, port: u16) -> Origin {
        Origin {
            scheme,
            host: host.into(),
            port,
        }
    }

    fn h<'a>(name: &'a str, value: &'a str) -> httparse::Header<'a> {
        httparse::Header {
            name,
            value: value.as_bytes(),
        }
    }

    #[test]
    fn reverse_spec_defaults_to_https_and_the_scheme_port() {
        assert_eq!(
            Origin::parse_reverse_spec("example.com").unwrap(),
            origin(Scheme::Https, "example.com", 443)
        );
        assert_eq!(
            Origin::parse_reverse_spec("http://Example.com/").unwrap(),
            origin(Scheme::Http, "Example.com", 80)
        );
        assert_eq!(
            Origin::parse_reverse_spec("http://127.0.0.1:8080").unwrap(),
            origin(Scheme::Http, "127.0.0.1", 8080)
        );
        assert_eq!(
            Origin::parse_reverse_spec("https://[::1]:8443").unwrap(),
            origin(Scheme::Https, "::1", 8443)
        );
        assert_eq!(
            Origin::parse_reverse_spec("HTTPS://[::1]").unwrap(),
            origin(Scheme::Https, "::1", 443)
        );
    }

    #[test]
    fn reverse_spec_rejects_paths_bad_schemes_and_ports() {
        for bad in [
            "http://h/x",
            "ftp://h",
            "http://h:0",
            "http://h:70000",
            "http://h:x",
            "http://",
            "http://[::1",
            "http://::1",
            "http://u@h",
            "http://h:+1",
            "http://[h]:80",
            "http://[::1]x",
            "http://fe80::1:80",
        ] {
            assert!(Origin::parse_reverse_spec(bad).is_err(), "{bad} accepted");
        }
        // An empty port is the scheme's default (RFC 3986 §3.2.3).
        assert_eq!(
            Origin::parse_reverse_spec("http://h:").unwrap(),
            origin(Scheme::Http, "h", 80)
        );
        assert_eq!(
            Origin::parse_reverse_spec("https://[::1]:").unwrap(),
            origin(Scheme::Https, "::1", 443)
        );
    }

    #[test]
    fn host_header_omits_the_default_port_and_brackets_ipv6() {
        assert_eq!(origin(Scheme::Https, "a.b", 443).host_header(), "a.b");
        assert_eq!(origin(Scheme::Http, "a.b", 443).host_header(), "a.b:443");
        assert_eq!(
            origin(Scheme::Http, "::1", 8080).host_header(),
            "[::1]:8080"
        );
        assert_eq!(origin(Scheme::Http, "::1", 8080).to_string(), "[::1]:8080");
        assert_eq!(origin(Scheme::Http, "a.b", 80).to_string(), "a.b:80");
    }

    #[test]
    fn reverse_mode_rewrites_host_unless_kept() {
        let mode = Mode::Reverse(origin(Scheme::Http, "up.example", 8080));
        let headers = [h("Host", "client.example")];
        let r = route(&mode, false, false, "GET", b"/a?b", &headers).unwrap();
        assert_eq!(r.origin, origin(Scheme::Http, "up.example", 8080));
        assert_eq!(r.path, b"/a?b");
        assert_eq!(r.host, HostAction::Set("up.example:8080".into()));
        let r = route(&mode, true, false, "GET", b"/a", &headers).unwrap();
        assert_eq!(r.host, HostAction::Keep);
    }

    #[test]
    fn reverse_mode_sends_absolute_form_targets_as_origin_form() {
        let mode = Mode::Reverse(origin(Scheme::Https, "up", 443));
        let r = route(&mode, false, false, "GET", b"http://other:81/p?q", &[]).unwrap();
        assert_eq!(r.origin.host.as_ref(), "up");
        assert_eq!(r.path, b"/p?q");
        assert_eq!(r.host, HostAction::Set("up".into()));
    }

    #[test]
    fn regular_mode_uses_the_absolute_target() {
        let r = route(
            &Mode::Regular,
            false,
            false,
            "GET",
            b"https://x.test:8443/p",
            &[h("host", "x.test:8443")],
        )
        .unwrap();
        assert_eq!(r.origin, origin(Scheme::Https, "x.test", 8443));
        assert_eq!(r.path, b"/p");
        assert_eq!(r.host, HostAction::Keep);
        let r = route(&Mode::Regular, false, false, "GET", b"http://x.test", &[]).unwrap();
        assert_eq!(r.origin, origin(Scheme::Http, "x.test", 80));
        assert_eq!(r.path, b"/");
        assert_eq!(r.host, HostAction::Set("x.test".into()));
    }

    #[test]
    fn regular_mode_uses_the_host_header_for_origin_form() {
        let r = route(
            &Mode::Regular,
            false,
            false,
            "GET",
            b"/x",
            &[h("HOST", " 127.0.0.1:9000 ")],
        )
        .unwrap();
        assert_eq!(r.origin, origin(Scheme::Http, "127.0.0.1", 9000));
        assert_eq!(r.path, b"/x");
        assert_eq!(r.host, HostAction::Keep);
        // Over TLS (no CONNECT) an origin-form request is https, on 443 unless the Host says.
        let r = route(
            &Mode::Regular,
            false,
            true,
            "GET",
            b"/x",
            &[h("host", "a.test")],
        )
        .unwrap();
        assert_eq!(r.origin, origin(Scheme::Https, "a.test", 443));
        let r = route(
            &Mode::Regular,
            false,
            false,
            "GET",
            b"/x",
            &[h("host", "[::1]")],
        )
        .unwrap();
        assert_eq!(r.origin, origin(Scheme::Http, "::1", 80));
    }

    #[test]
    fn regular_mode_without_host_is_a_400() {
        let e = route(&Mode::Regular, false, false, "GET", b"/x", &[]).unwrap_err();
        assert_eq!(e, RouteError::NoHost);
        assert_eq!(e.status(), 400);
        assert_eq!(
            e.to_string(),
            "HTTP request has no host header, destination unknown."
        );
        let e = route(&Mode::Regular, false, false, "GET", b"/x", &[h("host", "")]).unwrap_err();
        assert_eq!(e, RouteError::NoHost);
        let e = route(&Mode::Regular, false, false, "GET", b"ftp://h/x", &[]).unwrap_err();
        assert_eq!(e, RouteError::BadTarget);
        let e = route(&Mode::Regular, false, false, "CONNECT", b"h:443", &[]).unwrap_err();
        assert_eq!(e.status(), 501);
    }
}
