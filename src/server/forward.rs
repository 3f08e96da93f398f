//! The seam between the connection loop and forwarding: the settings built from the options, and
//! the one call the loop makes for an unmatched request ([`forward`]).
//!
//! The work happens in `upstream_io` (connections, pool, TLS, relay) on top of the sans-IO
//! `crate::upstream`. Replayed requests never come here: forwarding costs nothing on the replay
//! path, and with `-k` or a status policy nothing is ever sent upstream (not even a connect).

use std::sync::Arc;

use monoio::io::AsyncWriteRent;

use super::clock;
use super::transport::Transport;
pub use super::upstream_io::{ClientSide, ForwardSettings, Forwarded, Forwarder};
use super::upstream_tls::UpstreamTls;
use crate::capture::{Endpoint, Recorder, DEFAULT_PENDING_BYTES};
use crate::config::ServeOptions;
use crate::http1::{self, Request};
use crate::upstream::{route, Mode, Origin, PoolLimits, Via};

/// Builds the forwarding settings from the serve options (reads `--upstream-ca`); the error is one
/// sentence for the user.
pub fn settings(options: &ServeOptions) -> Result<Arc<ForwardSettings>, String> {
    let ca = match &options.upstream_ca {
        Some(path) => {
            // Start-up, in the driver: reading the CA file is this module's job.
            #[allow(clippy::disallowed_methods)]
            let pem = std::fs::read(path)
                .map_err(|e| format!("cannot read --upstream-ca {}: {e}", path.display()))?;
            Some(pem)
        }
        None => None,
    };
    let tls = UpstreamTls::new(ca.as_deref(), options.ssl_insecure).map_err(|e| match &options
        .upstream_ca
    {
        Some(path) => format!("--upstream-ca {}: {e}", path.display()),
        None => e.to_string(),
    })?;
    let mode = options.mode.clone();
    let recorder = match &options.save {
        Some(target) => {
            let proxy_mode = match &mode {
                crate::upstream::Mode::Regular => "regular".to_string(),
                crate::upstream::Mode::Reverse(origin) => format!("reverse:{}", origin.url()),
            };
            let recorder = Recorder::start(target, &proxy_mode, DEFAULT_PENDING_BYTES)
                .map_err(|e| format!("{e} (-w FILE)"))?;
            Some(Arc::new(recorder))
        }
        None => None,
    };
    Ok(Arc::new(ForwardSettings {
        tls,
        timeout: options.upstream_timeout,
        pool: PoolLimits::default(),
        mode,
        keep_host_header: options.keep_host_header,
        via: Via::new(process_token()),
        recorder,
        resolver: Arc::default(),
    }))
}

/// A random number fixed for this process, for its `Via` entry: std's `RandomState` is seeded
/// from the OS's random source.
fn process_token() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(std::process::id())
}

/// A request to forward, from any protocol (HTTP/1 passes its parsed request, HTTP/2 a stream's).
#[derive(Debug, Clone, Copy)]
pub struct Parts<'r> {
    /// The method, as sent.
    pub method: &'r [u8],
    /// The request target (origin-form or absolute-form).
    pub target: &'r [u8],
    /// The header fields, Host included.
    pub headers: &'r [httparse::Header<'r>],
    /// The complete, decoded body.
    pub body: &'r [u8],
    /// The client's HTTP/1.x minor version (HTTP/2 passes 1).
    pub version_minor: u8,
    /// The client will close its connection after this exchange.
    pub wants_close: bool,
    /// The request came through a CONNECT tunnel to this destination: it goes there with its
    /// Host kept, as mitmproxy forwards it.
    pub tunnel: Option<&'r Origin>,
    /// The client connection is TLS.
    pub tls: bool,
}

/// Forwards `req` (all earlier answers already written) and relays the upstream's response to
/// `client`. A request whose destination cannot be used is answered 400/501 and closes.
/// `tunnel`: the request came through a CONNECT tunnel, so it goes to the tunnel's destination
/// with its Host kept (as mitmproxy forwards it); `tls`: the client connection is TLS.
pub async fn forward(
    forwarder: &Forwarder,
    req: &Request<'_, '_>,
    client: &mut impl Transport,
    tunnel: Option<&Origin>,
    tls: bool,
) -> Forwarded {
    let record = saved_side(forwarder, client);
    let parts = Parts {
        method: req.method,
        target: req.target,
        headers: req.headers,
        body: req.body,
        version_minor: req.version_minor,
        wants_close: req.wants_close,
        tunnel,
        tls,
    };
    forward_parts(forwarder, &parts, record, client).await
}

/// The client side to save with a forwarded exchange (`-w`), or `None` when nothing is saved.
pub fn saved_side(forwarder: &Forwarder, client: &impl Transport) -> Option<ClientSide> {
    forwarder
        .settings()
        .recorder
        .as_ref()
        .and_then(|_| client_side(client))
}

/// [`forward`] for a request of any protocol: the upstream's response goes to `client` as
/// HTTP/1.1 bytes (HTTP/2 captures them and re-frames them); `record` is [`saved_side`]'s.
pub async fn forward_parts(
    forwarder: &Forwarder,
    req: &Parts<'_>,
    record: Option<ClientSide>,
    client: &mut impl AsyncWriteRent,
) -> Forwarded {
    let settings = forwarder.settings();
    // httparse only accepts token characters in a method, so it is ASCII (HTTP/2 methods are
    // checked tokens too).
    let method = std::str::from_utf8(req.method).unwrap_or("GET");
    let headers: &[httparse::Header<'_>] = req.headers;
    let tunnel_mode;
    let (mode, keep_host_header) = match req.tunnel {
        Some(origin) => {
            tunnel_mode = Mode::Reverse(origin.clone());
            (&tunnel_mode, true)
        }
        None => (&settings.mode, settings.keep_host_header),
    };
    let route = match route(mode, keep_host_header, req.tls, method, req.target, headers) {
        Ok(r) => r,
        Err(e) => {
            let status = e.status();
            let reason = if status == 501 {
                "Not Implemented"
            } else {
                "Bad Request"
            };
            let mut out = Vec::with_capacity(256);
            http1::write_plain(status, reason, &e.to_string(), true, &mut out);
            let (res, _) = monoio::io::AsyncWriteRentExt::write_all(client, out).await;
            return match res {
                Ok(_) => Forwarded::Rejected { status },
                Err(_) => Forwarded::ClientGone,
            };
        }
    };
    let outbound = super::upstream_io::Outbound {
        method,
        route,
        headers,
        body: req.body,
        client_minor: req.version_minor,
        client_keep_alive: !req.wants_close,
        target: req.target,
        record,
    };
    forwarder.forward(&outbound, client).await
}

/// The client's side of an exchange to save (`-w`): its addresses (two syscalls, on the
/// forward path only) and the time now. The connection's own open time is not known here: the
/// request's time stands in for it.
fn client_side(client: &impl Transport) -> Option<ClientSide> {
    let (peer, local) = client.addresses()?;
    let now = clock::unix_seconds();
    Some(ClientSide {
        endpoint: Endpoint {
            connection: super::upstream_io::connection_number(peer, local),
            peer,
            local,
            opened: now,
            established: None,
        },
        request_time: now,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProxyMode;
    use crate::upstream::{Mode, Origin, Scheme};

    #[test]
    fn a_missing_upstream_ca_file_is_one_sentence() {
        let options = ServeOptions {
            upstream_ca: Some("/nonexistent/ca.pem".into()),
            ..ServeOptions::default()
        };
        let err = settings(&options).unwrap_err();
        assert!(
            err.starts_with("cannot read --upstream-ca /nonexistent/ca.pem: "),
            "{err}"
        );
    }

    #[test]
    fn the_reverse_target_becomes_the_forwarding_mode() {
        let options = ServeOptions {
            mode: ProxyMode::Reverse(Origin::parse_reverse_spec("https://up:8443").unwrap()),
            keep_host_header: true,
            ..ServeOptions::default()
        };
        let s = settings(&options).unwrap();
        assert_eq!(
            s.mode,
            Mode::Reverse(Origin {
                scheme: Scheme::Https,
                host: "up".into(),
                port: 8443
            })
        );
        assert!(s.keep_host_header);
    }
}
