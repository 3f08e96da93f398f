//! Forwarding an unmatched request upstream over plain HTTP/1.1 (issue 4's simple version).
//!
//! THE SEAM: the connection loop calls exactly one function, [`forward`], with a
//! [`ForwardContext`] (per worker), a [`ForwardRequest`] (borrowed from the parsed request) and
//! the client stream, after flushing every earlier answer. It returns a [`ForwardOutcome`]; on
//! `Failed` the loop answers `502` with the reason and closes. Issue 5 replaces this file's body
//! (pooling, TLS, streaming) behind the same signature.
//!
//! What this version does: one new TCP connection per forwarded request, contacted lazily; the
//! request goes out with its Host (reverse mode: rewritten), a Content-Length for the de-chunked
//! body and `Connection: close`; the response is read to EOF (bounded) and relayed verbatim.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

/// Largest upstream response relayed (this version buffers it whole).
const MAX_RESPONSE: usize = 64 * 1024 * 1024;

/// Per-worker forwarding state and settings.
#[derive(Debug, Clone)]
pub struct ForwardContext {
    /// Reverse mode: the upstream's address, resolved at start-up.
    pub reverse: Option<SocketAddr>,
    /// Reverse mode with an https upstream (not supported by this version).
    pub reverse_tls: bool,
    /// Reverse mode whose host did not resolve at start-up.
    pub unresolved: Option<String>,
    /// Time allowed to connect.
    pub connect_timeout: Duration,
    /// Time allowed for the whole exchange after connecting.
    pub exchange_timeout: Duration,
}

/// The request to forward, as the client sent it (body de-chunked).
#[derive(Debug)]
pub struct ForwardRequest<'a> {
    /// Method.
    pub method: &'a [u8],
    /// Origin-form target.
    pub target: &'a [u8],
    /// Header fields; Host, framing and hop-by-hop fields are replaced.
    pub headers: &'a [httparse::Header<'a>],
    /// The Host value to send.
    pub host_header: &'a [u8],
    /// Regular mode: destination host and port from the request.
    pub destination: (&'a [u8], u16),
    /// `https` destinations are not supported by this version.
    pub tls: bool,
    /// The body.
    pub body: &'a [u8],
    /// The request is HEAD (no response body).
    pub is_head: bool,
}

/// How forwarding ended.
#[derive(Debug)]
pub enum ForwardOutcome {
    /// The upstream's response was written to the client; `close`: the response is delimited by
    /// the connection's end (spec §f.5 rule 1), so the client connection must close.
    Relayed {
        /// The upstream status.
        status: u16,
        /// Close the client connection.
        close: bool,
    },
    /// Nothing was written to the client; answer 502 with this one-line reason.
    Failed(String),
    /// Writing to the client failed; drop the connection.
    ClientGone,
}

fn destination(ctx: &ForwardContext, req: &ForwardRequest<'_>) -> Result<SocketAddr, String> {
    if let Some(host) = &ctx.unresolved {
        return Err(format!("the upstream host {host:?} did not resolve"));
    }
    if let Some(addr) = ctx.reverse {
        if ctx.reverse_tls {
            return Err("forwarding to an https upstream is not supported yet".to_string());
        }
        return Ok(addr);
    }
    if req.tls {
        return Err("forwarding to an https destination is not supported yet".to_string());
    }
    let (host, port) = req.destination;
    let host = std::str::from_utf8(host).unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip = if host.eq_ignore_ascii_case("localhost") {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        host.parse::<IpAddr>().map_err(|_| {
            format!(
                "forwarding to the named host {host:?} is not supported yet (IP addresses only)"
            )
        })?
    };
    Ok(SocketAddr::new(ip, port))
}

fn is_replaced(name: &str) -> bool {
    [
        "host",
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "content-length",
        "te",
        "upgrade",
        "expect",
    ]
    .iter()
    .any(|n| name.eq_ignore_ascii_case(n))
}

fn render(req: &ForwardRequest<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + req.body.len());
    out.extend_from_slice(req.method);
    out.push(b' ');
    out.extend_from_slice(req.target);
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(req.host_header);
    out.extend_from_slice(b"\r\n");
    for h in req.headers.iter().filter(|h| !is_replaced(h.name)) {
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    if !req.body.is_empty() || matches!(req.method, b"POST" | b"PUT" | b"PATCH") {
        out.extend_from_slice(format!("Content-Length: {}\r\n", req.body.len()).as_bytes());
    }
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    out.extend_from_slice(req.body);
    out
}

async fn exchange(addr: SocketAddr, request: Vec<u8>, timeout: Duration) -> io::Result<Vec<u8>> {
    let mut upstream = TcpStream::connect_addr(addr).await?;
    let work = async {
        let (res, _) = upstream.write_all(request).await;
        res?;
        let mut response = Vec::with_capacity(16 * 1024);
        loop {
            if response.capacity() - response.len() < 4096 {
                response.reserve(response.capacity());
            }
            let (len, cap) = (response.len(), response.capacity());
            let (res, slice) = upstream
                .read(monoio::buf::IoBufMut::slice_mut(response, len..cap))
                .await;
            response = slice.into_inner();
            if res? == 0 {
                return Ok(response);
            }
            if response.len() > MAX_RESPONSE {
                return Err(io::Error::other("the upstream response is too large"));
            }
        }
    };
    match monoio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "timed out")),
    }
}

/// Forwards `request` and relays the upstream's answer to `client` (see the module docs).
pub async fn forward(
    ctx: &ForwardContext,
    request: &ForwardRequest<'_>,
    client: &mut TcpStream,
) -> ForwardOutcome {
    let addr = match destination(ctx, request) {
        Ok(a) => a,
        Err(reason) => return ForwardOutcome::Failed(reason),
    };
    let bytes = render(request);
    let response = match monoio::time::timeout(
        ctx.connect_timeout + ctx.exchange_timeout,
        exchange(addr, bytes, ctx.exchange_timeout),
    )
    .await
    {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return ForwardOutcome::Failed(format!("upstream {addr}: {e}")),
        Err(_) => return ForwardOutcome::Failed(format!("upstream {addr}: timed out")),
    };
    let mut headers = [httparse::EMPTY_HEADER; 100];
    let mut head = httparse::Response::new(&mut headers);
    let status = match head.parse(&response) {
        Ok(httparse::Status::Complete(_)) => head.code.unwrap_or(0),
        _ => {
            return ForwardOutcome::Failed(format!(
                "upstream {addr} closed the connection without a valid response"
            ))
        }
    };
    let framed = head.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("content-length")
            || (h.name.eq_ignore_ascii_case("transfer-encoding")
                && h.value.to_ascii_lowercase().ends_with(b"chunked"))
    });
    let bodiless = request.is_head || matches!(status, 100..=199 | 204 | 304);
    let close = !framed && !bodiless;
    let (res, _) = client.write_all(response).await;
    match res {
        Ok(_) => ForwardOutcome::Relayed { status, close },
        Err(_) => ForwardOutcome::ClientGone,
    }
}
